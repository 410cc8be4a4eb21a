//! Models for the `registry` tables: what the ETL inserts and what reports read.

use crate::registry::import_run;
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
    pub rows_unchanged: i64,
    pub cells_nulled: i64,
}
