//! Models for the `registry` tables: what the ETL inserts and what reports read.

use crate::registry::{audit_log, import_run, person_map, reject};
use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// A new import run (see [`crate::registry::import_run`]).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = import_run)]
pub struct NewImportRun<'a> {
    pub command: &'a str,
    pub actor_os_user: &'a str,
    pub key_id: Option<&'a str>,
    pub registrar_version: &'a str,
}

/// A finished or running import run.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = import_run)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ImportRun {
    pub run_id: i64,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub actor_os_user: String,
    pub actor_db_role: String,
    pub key_id: Option<String>,
    pub registrar_version: String,
    pub rows_in: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
    pub message: Option<String>,
}

/// A reject: the reason a row or file was not loaded. Never carries a cell value.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = reject)]
pub struct NewReject<'a> {
    pub run_id: i64,
    pub source_file_id: Option<i64>,
    pub row_number: Option<i64>,
    pub column_name: Option<&'a str>,
    pub reason_code: &'a str,
    pub reason: &'a str,
}

/// One person-map row: a keyed pseudonym and the integer `person_id` it stands for.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = person_map)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct PersonMapRow {
    pub pseudonym: String,
    pub person_id: i32,
    pub identifier_type: String,
    pub key_id: String,
    pub domain: String,
    pub first_run_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// One audit log row, as stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct AuditLogRow {
    pub seq: i64,
    pub logged_at: DateTime<Utc>,
    pub actor_os_user: String,
    pub actor_db_role: String,
    pub action: String,
    pub run_id: Option<i64>,
    pub locator_hash: Option<String>,
    pub key_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub entry_hash: String,
}
