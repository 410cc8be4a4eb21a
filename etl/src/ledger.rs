//! The ledger: everything registrar records about what came in, and the only place that
//! writes it. Source files (`registry.source_file`) with their identity, series and status;
//! records (`registry.source_record`) with their content hash and version; lineage (every
//! cdm row back to its file, record and person); rejects (rows, cells and whole files, with
//! reasons); unmapped codes; FHIR watermarks; and the person map. Statuses are enums here and
//! strings only in the database.
//!
//! Nothing stored here identifies anyone: locators and record keys are keyed hashes, persons
//! pseudonyms, and reasons never quote a value.

use crate::privacy::audit;
use anyhow::{Context, Result};
use postgres::types::{ToSql, Type};
use postgres::GenericClient;
use serde::Serialize;
use std::collections::HashMap;

/// What became of a source file (or FHIR page, DICOM tree) in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Being loaded (only ever seen inside the loading transaction, or left by a crash).
    #[default]
    Loading,
    Loaded,
    /// Nothing of it was loaded; see the reason.
    Rejected,
    /// Not loaded because nothing needed loading (unchanged, an older version).
    Skipped,
    Quarantined,
    /// Replaced by a newer version; its rows are gone.
    Superseded,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Loading => "loading",
            FileStatus::Loaded => "loaded",
            FileStatus::Rejected => "rejected",
            FileStatus::Skipped => "skipped",
            FileStatus::Quarantined => "quarantined",
            FileStatus::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for FileStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a loaded unit (`registry.source_file.source_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UnitKind {
    #[serde(rename = "csv")]
    Csv,
    #[serde(rename = "xlsx")]
    Xlsx,
    #[serde(rename = "fhir")]
    Fhir,
    #[serde(rename = "fhir-bulk")]
    FhirBulk,
    #[serde(rename = "dicom-index")]
    DicomIndex,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Csv => "csv",
            UnitKind::Xlsx => "xlsx",
            UnitKind::Fhir => "fhir",
            UnitKind::FhirBulk => "fhir-bulk",
            UnitKind::DicomIndex => "dicom-index",
        }
    }
}

/// What a reject record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectOutcome {
    /// The row was not loaded.
    RowRejected,
    /// The row was not loaded on purpose (a duplicate, a deletion, no emit applies).
    RowSkipped,
    /// The row loaded without this cell (`on_error = "null"`).
    CellNulled,
    /// Nothing of the file was loaded.
    FileRejected,
}

impl RejectOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectOutcome::RowRejected => "row_rejected",
            RejectOutcome::RowSkipped => "row_skipped",
            RejectOutcome::CellNulled => "cell_nulled",
            RejectOutcome::FileRejected => "file_rejected",
        }
    }
}

/// One reject record (never a value: a reason code, and a reason naming columns and fields).
#[derive(Debug, Clone)]
pub struct RejectRow {
    pub row: Option<i64>,
    /// The source column (header name).
    pub column: Option<String>,
    /// The mapping field (`table.column`).
    pub field: Option<String>,
    pub mapping_line: Option<i32>,
    pub code: &'static str,
    pub reason: String,
    pub outcome: RejectOutcome,
}

impl RejectRow {
    /// A row-level record without column or field.
    pub fn row(
        row: i64,
        code: &'static str,
        reason: impl Into<String>,
        outcome: RejectOutcome,
    ) -> Self {
        Self {
            row: Some(row),
            column: None,
            field: None,
            mapping_line: None,
            code,
            reason: reason.into(),
            outcome,
        }
    }
}

/// A member of a declared series of files (`[source] series`).
#[derive(Debug, Clone)]
pub struct SeriesMember {
    /// Keyed hash of the source, the folder and the pattern.
    pub series_hash: String,
    /// The natural-order key of the part the `*` matched.
    pub version_key: String,
}

/// What identifies a unit in the ledger.
#[derive(Debug, Clone)]
pub struct FileIdentity {
    pub kind: UnitKind,
    /// The source: the mapping's name, or the nightly source's name.
    pub source: String,
    /// The mapping's name, when a mapping reads the unit.
    pub mapping: Option<String>,
    /// Keyed hash of the source and the path relative to the import root.
    pub locator_hash: String,
    /// The locator an earlier registrar recorded the same file under (source and bare name),
    /// whose rows the first load under the new identity replaces.
    pub legacy_locator: Option<String>,
    pub content_sha256: String,
    pub size: u64,
    /// The mapping (and concept maps) fingerprint.
    pub mapping_sha256: Option<String>,
    pub series: Option<SeriesMember>,
}

/// What the ledger already knows of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    New,
    /// Same identity, content and mapping, loaded by this run.
    Unchanged {
        since_run: i64,
    },
    /// A newer member of its series is loaded.
    OlderSeriesMember,
}

/// What a loaded unit replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// The rows of earlier loaded versions of the same file (same identity).
    EarlierVersions,
    /// The rows of the series' members up to this one's version, and of earlier versions of
    /// the same file.
    Series,
    /// Nothing file-wise: records replace their own earlier rows.
    Records,
}

/// Counts of one unit as the ledger keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnitCounts {
    pub rows_in: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
    /// Rows of records that were already loaded as they are (or newer): nothing to do.
    pub rows_unchanged: i64,
    /// Cells nulled by `on_error = "null"` (their rows count as loaded).
    pub cells_nulled: i64,
    pub records_added: i64,
    pub records_updated: i64,
    pub records_unchanged: i64,
    pub records_deleted: i64,
}

impl UnitCounts {
    /// rows in = loaded + rejected + skipped + unchanged.
    pub fn balanced(&self) -> bool {
        self.rows_in
            == self.rows_loaded + self.rows_rejected + self.rows_skipped + self.rows_unchanged
    }

    pub fn add(&mut self, o: &UnitCounts) {
        self.rows_in += o.rows_in;
        self.rows_loaded += o.rows_loaded;
        self.rows_rejected += o.rows_rejected;
        self.rows_skipped += o.rows_skipped;
        self.rows_unchanged += o.rows_unchanged;
        self.cells_nulled += o.cells_nulled;
        self.records_added += o.records_added;
        self.records_updated += o.records_updated;
        self.records_unchanged += o.records_unchanged;
        self.records_deleted += o.records_deleted;
    }
}

/// The stored state of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub content: i64,
    pub version: String,
    pub deleted: bool,
}

/// A record as a unit leaves it.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    pub hash: String,
    pub content: i64,
    pub deleted: bool,
    /// The record has a stored state (else it is new, and COPYed).
    pub stored: bool,
}

/// One lineage row.
pub struct LineageRow<'a> {
    pub table: &'a str,
    pub row_id: i64,
    pub source_row: Option<i64>,
    pub source_key: Option<&'a str>,
    pub person_id: Option<i32>,
    pub emit: Option<i16>,
}

/// A new person-map row.
#[derive(Debug, Clone)]
pub struct PersonMapRow {
    pub pseudonym: String,
    pub person_id: i32,
    pub identifier_type: &'static str,
}

/// Rejects of one mapping and reason, for reports (numbers only, never values).
#[derive(Debug, Clone, Serialize)]
pub struct RejectGroup {
    pub mapping: String,
    pub reason_code: String,
    pub outcome: String,
    pub count: i64,
    pub example_reason: String,
    pub first_rows: Vec<i64>,
}

/// An unmapped code with its count.
#[derive(Debug, Clone, Serialize)]
pub struct Unmapped {
    pub mapping: String,
    pub concept_map: String,
    pub source_code: String,
    pub occurrences: i64,
    pub last_seen: String,
}

/// How many pseudonyms and persons one key and domain has, per identifier type.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUsage {
    pub key_id: String,
    pub domain: String,
    pub identifier_type: String,
    pub pseudonyms: i64,
    pub persons: i64,
}

/// The registry's bookkeeping statements, for one run.
pub struct Ledger {
    pub run_id: i64,
}

impl Ledger {
    pub fn new(run_id: i64) -> Self {
        Self { run_id }
    }

    // ---- source files ----------------------------------------------------------------------

    /// What the ledger knows of `f` (under a record key, an unchanged file is still skipped,
    /// but an older series member is not: its records decide one by one).
    pub fn prior(
        &self,
        db: &mut impl GenericClient,
        f: &FileIdentity,
        replace: Replace,
    ) -> Result<Prior> {
        let unchanged = db.query_opt(
            "SELECT run_id FROM registry.source_file
              WHERE locator_hash = $1 AND content_sha256 = $2 AND status = 'loaded'
                AND mapping_sha256 IS NOT DISTINCT FROM $3
              ORDER BY source_file_id LIMIT 1",
            &[&f.locator_hash, &f.content_sha256, &f.mapping_sha256],
        )?;
        if let Some(r) = unchanged {
            return Ok(Prior::Unchanged {
                since_run: r.get(0),
            });
        }
        if let (Some(s), Replace::Series) = (&f.series, replace) {
            let newer = db.query_opt(
                "SELECT 1 FROM registry.source_file
                  WHERE series_hash = $1 AND status = 'loaded' AND version_key > $2 LIMIT 1",
                &[&s.series_hash, &s.version_key],
            )?;
            if newer.is_some() {
                return Ok(Prior::OlderSeriesMember);
            }
        }
        Ok(Prior::New)
    }

    /// Record a unit skipped (nothing to load), with its reason.
    pub fn record_skipped(
        &self,
        db: &mut impl GenericClient,
        f: &FileIdentity,
        code: &str,
        reason: &str,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO registry.source_file (source_kind, source_name, locator_hash, content_sha256, byte_size,
                    mapping_name, mapping_sha256, series_hash, version_key, run_id, status, reason_code, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'skipped', $11, $12)",
            &[
                &f.kind.as_str(), &f.source, &f.locator_hash, &f.content_sha256, &(f.size as i64),
                &f.mapping, &f.mapping_sha256, &f.series.as_ref().map(|s| &s.series_hash),
                &f.series.as_ref().map(|s| &s.version_key), &self.run_id, &code, &reason,
            ],
        )?;
        Ok(())
    }

    /// Record a unit rejected as a whole, in its own transaction, with its audit entry.
    pub fn reject_file(
        &self,
        client: &mut postgres::Client,
        key_id: &str,
        f: &FileIdentity,
        code: &'static str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = client.transaction()?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO registry.source_file (source_kind, source_name, locator_hash, content_sha256, byte_size,
                        mapping_name, mapping_sha256, series_hash, version_key, run_id, status, reason_code, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'rejected', $11, $12) RETURNING source_file_id",
                &[
                    &f.kind.as_str(), &f.source, &f.locator_hash, &f.content_sha256, &(f.size as i64),
                    &f.mapping, &f.mapping_sha256, &f.series.as_ref().map(|s| &s.series_hash),
                    &f.series.as_ref().map(|s| &s.version_key), &self.run_id, &code, &reason,
                ],
            )?
            .get(0);
        tx.execute(
            "INSERT INTO registry.reject (run_id, source_file_id, reason_code, reason, outcome)
             VALUES ($1, $2, $3, $4, 'file_rejected')",
            &[&self.run_id, &id, &code, &reason],
        )?;
        audit::append(
            &mut tx,
            &audit::Record {
                action: audit::action::REJECTED,
                run_id: Some(self.run_id),
                locator_hash: Some(&f.locator_hash),
                key_id: Some(key_id),
                detail: serde_json::json!({
                    "source": f.source, "mapping": f.mapping, "reason_code": code,
                    "reason": reason, "content_sha256": f.content_sha256,
                }),
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Start loading a unit; returns its `source_file_id`.
    pub fn begin(&self, tx: &mut impl GenericClient, f: &FileIdentity) -> Result<i64> {
        Ok(tx
            .query_one(
                "INSERT INTO registry.source_file (source_kind, source_name, locator_hash, content_sha256, byte_size,
                        mapping_name, mapping_sha256, series_hash, version_key, run_id, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'loading') RETURNING source_file_id",
                &[
                    &f.kind.as_str(), &f.source, &f.locator_hash, &f.content_sha256, &(f.size as i64),
                    &f.mapping, &f.mapping_sha256, &f.series.as_ref().map(|s| &s.series_hash),
                    &f.series.as_ref().map(|s| &s.version_key), &self.run_id,
                ],
            )?
            .get(0))
    }

    /// Replace what `f` replaces (see [`Replace`]): delete the rows of those files and mark
    /// them superseded. Returns the cdm rows deleted.
    pub fn supersede(
        &self,
        tx: &mut impl GenericClient,
        f: &FileIdentity,
        replace: Replace,
    ) -> Result<i64> {
        let legacy = f.legacy_locator.clone().unwrap_or_default();
        let previous: Vec<i64> = match (replace, &f.series) {
            (Replace::Records, _) => return Ok(0),
            (Replace::Series, Some(s)) => tx
                .query(
                    "SELECT source_file_id FROM registry.source_file
                      WHERE status = 'loaded'
                        AND ((series_hash = $1 AND version_key <= $2) OR locator_hash = $3 OR locator_hash = $4)",
                    &[&s.series_hash, &s.version_key, &f.locator_hash, &legacy],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            _ => tx
                .query(
                    "SELECT source_file_id FROM registry.source_file
                      WHERE status = 'loaded' AND (locator_hash = $1 OR locator_hash = $2)",
                    &[&f.locator_hash, &legacy],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut replaced = 0;
        for id in &previous {
            replaced += self.delete_file_rows(tx, *id)?;
            tx.execute(
                "UPDATE registry.source_file SET status = 'superseded' WHERE source_file_id = $1",
                &[id],
            )?;
        }
        Ok(replaced)
    }

    /// Mark a unit loaded, with its counts.
    pub fn finish(&self, tx: &mut impl GenericClient, file_id: i64, c: &UnitCounts) -> Result<()> {
        tx.execute(
            "UPDATE registry.source_file SET status = 'loaded', rows_in = $2, rows_loaded = $3,
                    rows_rejected = $4, rows_skipped = $5, rows_unchanged = $6, cells_nulled = $7,
                    records_added = $8, records_updated = $9, records_unchanged = $10, records_deleted = $11
              WHERE source_file_id = $1",
            &[
                &file_id, &c.rows_in, &c.rows_loaded, &c.rows_rejected, &c.rows_skipped,
                &c.rows_unchanged, &c.cells_nulled, &c.records_added, &c.records_updated,
                &c.records_unchanged, &c.records_deleted,
            ],
        )?;
        Ok(())
    }

    /// The newest version key among the loaded files of a source.
    pub fn newest_version(
        &self,
        db: &mut impl GenericClient,
        source: &str,
    ) -> Result<Option<String>> {
        Ok(db
            .query_one(
                "SELECT max(version_key) FROM registry.source_file
                  WHERE source_name = $1 AND status = 'loaded'",
                &[&source],
            )?
            .get(0))
    }

    // ---- rows ------------------------------------------------------------------------------

    /// Delete every cdm row (and its lineage) a source file produced; returns rows deleted.
    pub fn delete_file_rows(
        &self,
        tx: &mut impl GenericClient,
        source_file_id: i64,
    ) -> Result<i64> {
        delete_by_lineage(tx, "source_file_id = $1", &source_file_id)
    }

    /// Delete every cdm row (and its lineage) produced earlier by the records with these keyed
    /// hashes; returns rows deleted.
    pub fn delete_rows_by_keys(&self, tx: &mut impl GenericClient, keys: &[String]) -> Result<i64> {
        if keys.is_empty() {
            return Ok(0);
        }
        delete_by_lineage(tx, "source_key = ANY($1)", &keys)
    }

    /// Write lineage rows with binary COPY.
    pub fn copy_lineage<'a>(
        &self,
        tx: &mut impl GenericClient,
        file_id: i64,
        rows: impl Iterator<Item = LineageRow<'a>>,
    ) -> Result<()> {
        let sink = tx.copy_in(
            "COPY registry.lineage (cdm_table, cdm_row_id, source_file_id, source_row, run_id, source_key, person_id, emit)
             FROM STDIN (FORMAT binary)",
        )?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::INT4,
                Type::INT2,
            ],
        );
        for r in rows {
            w.write(&[
                &r.table,
                &r.row_id,
                &file_id,
                &r.source_row,
                &self.run_id,
                &r.source_key,
                &r.person_id,
                &r.emit,
            ])?;
        }
        w.finish().context("could not write the lineage")?;
        Ok(())
    }

    /// Write reject records with binary COPY.
    pub fn copy_rejects(
        &self,
        tx: &mut impl GenericClient,
        file_id: Option<i64>,
        mapping_file: Option<&str>,
        rows: &[RejectRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sink = tx.copy_in(
            "COPY registry.reject (run_id, source_file_id, row_number, column_name, field, mapping_file,
                    mapping_line, reason_code, reason, outcome) FROM STDIN (FORMAT binary)",
        )?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
        );
        for r in rows {
            let file = r.field.as_ref().and(mapping_file);
            w.write(&[
                &self.run_id,
                &file_id,
                &r.row,
                &r.column,
                &r.field,
                &file,
                &r.mapping_line,
                &r.code,
                &r.reason,
                &r.outcome.as_str(),
            ])?;
        }
        w.finish().context("could not write the rejects")?;
        Ok(())
    }

    /// Persons with a row from `emit` of `source`'s loaded files, with the record that owns it.
    pub fn persons_with_rows(
        &self,
        tx: &mut impl GenericClient,
        source: &str,
        emit: i16,
    ) -> Result<HashMap<i32, Option<String>>> {
        Ok(tx
            .query(
                "SELECT l.person_id, l.source_key FROM registry.lineage l
                   JOIN registry.source_file f USING (source_file_id)
                  WHERE f.source_name = $1 AND f.status = 'loaded' AND l.emit = $2
                    AND l.person_id IS NOT NULL",
                &[&source, &emit],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Persons with a row in a table keyed by person (`person`, `death`), with the record
    /// that owns it.
    pub fn persons_in_table(
        &self,
        tx: &mut impl GenericClient,
        table: &str,
    ) -> Result<HashMap<i32, Option<String>>> {
        Ok(tx
            .query(
                &format!(
                    "SELECT t.person_id, l.source_key FROM cdm.{} t
                       LEFT JOIN registry.lineage l ON l.cdm_table = $1 AND l.cdm_row_id = t.person_id",
                    crate::db::quote_ident(table)
                ),
                &[&table],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    // ---- records ---------------------------------------------------------------------------

    /// The stored state of these records (absent ones are new).
    pub fn record_states(
        &self,
        db: &mut impl GenericClient,
        hashes: &[String],
    ) -> Result<HashMap<String, RecordState>> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(db
            .query(
                "SELECT record_hash, content_hash, version_key, deleted FROM registry.source_record
                  WHERE record_hash = ANY($1)",
                &[&hashes],
            )?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    RecordState {
                        content: r.get(1),
                        version: r.get(2),
                        deleted: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Record what a unit did to its records.
    pub fn write_records(
        &self,
        tx: &mut impl GenericClient,
        source: &str,
        file_id: i64,
        version: &str,
        rows: &[RecordWrite],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // New records (a first load: nearly all) go by binary COPY.
        if rows.iter().any(|r| !r.stored) {
            let sink = tx.copy_in(
                "COPY registry.source_record (record_hash, source_name, content_hash, version_key, deleted, source_file_id, run_id)
                 FROM STDIN (FORMAT binary)",
            )?;
            let mut w = postgres::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::BOOL,
                    Type::INT8,
                    Type::INT8,
                ],
            );
            for r in rows.iter().filter(|r| !r.stored) {
                w.write(&[
                    &r.hash,
                    &source,
                    &r.content,
                    &version,
                    &r.deleted,
                    &file_id,
                    &self.run_id,
                ])?;
            }
            w.finish().context("could not write the records")?;
        }
        let rows: Vec<&RecordWrite> = rows.iter().filter(|r| r.stored).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let hashes: Vec<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
        let contents: Vec<i64> = rows.iter().map(|r| r.content).collect();
        let deleted: Vec<bool> = rows.iter().map(|r| r.deleted).collect();
        tx.execute(
            "INSERT INTO registry.source_record (record_hash, source_name, content_hash, version_key, deleted, source_file_id, run_id)
             SELECT h, $4, c, $5, d, $6, $7 FROM unnest($1::text[], $2::int8[], $3::bool[]) AS u(h, c, d)
             ON CONFLICT (record_hash) DO UPDATE
                SET content_hash = EXCLUDED.content_hash, version_key = EXCLUDED.version_key,
                    deleted = EXCLUDED.deleted, source_file_id = EXCLUDED.source_file_id,
                    run_id = EXCLUDED.run_id, source_name = EXCLUDED.source_name",
            &[&hashes, &contents, &deleted, &source, &version, &file_id, &self.run_id],
        )?;
        Ok(())
    }

    /// Snapshot: mark deleted every live record of `source` (up to `version`) that the unit did
    /// not hold, and return their hashes (their rows are deleted by the caller).
    pub fn snapshot_missing(
        &self,
        tx: &mut impl GenericClient,
        source: &str,
        file_id: i64,
        version: &str,
        seen: &[String],
    ) -> Result<Vec<String>> {
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS registrar_seen_record (h text) ON COMMIT DROP",
        )?;
        tx.batch_execute("TRUNCATE registrar_seen_record")?;
        let sink = tx.copy_in("COPY registrar_seen_record (h) FROM STDIN (FORMAT binary)")?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(sink, &[Type::TEXT]);
        for h in seen {
            w.write(&[h])?;
        }
        w.finish()?;
        tx.batch_execute("ANALYZE registrar_seen_record")?;
        Ok(tx
            .query(
                "UPDATE registry.source_record r
                    SET deleted = true, version_key = $3, source_file_id = $2, run_id = $4
                  WHERE r.source_name = $1 AND NOT r.deleted AND r.version_key <= $3
                    AND NOT EXISTS (SELECT 1 FROM registrar_seen_record s WHERE s.h = r.record_hash)
                  RETURNING r.record_hash",
                &[&source, &file_id, &version, &self.run_id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    // ---- unmapped codes --------------------------------------------------------------------

    /// Count unmapped codes of a mapping.
    pub fn add_unmapped(
        &self,
        tx: &mut impl GenericClient,
        mapping: &str,
        lookup: &str,
        code: &str,
        n: i64,
    ) -> Result<()> {
        tx.execute(
            "INSERT INTO registry.unmapped_code (mapping_name, concept_map, source_code, occurrences, last_run_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (mapping_name, concept_map, source_code)
             DO UPDATE SET occurrences = registry.unmapped_code.occurrences + EXCLUDED.occurrences,
                           last_seen = now(), last_run_id = EXCLUDED.last_run_id",
            &[&mapping, &lookup, &code, &n, &self.run_id],
        )?;
        Ok(())
    }

    /// Unmapped codes, most frequent first (`run`: only those seen by these runs).
    pub fn unmapped(
        db: &mut impl GenericClient,
        mapping: Option<&str>,
        runs: Option<&[i64]>,
    ) -> Result<Vec<Unmapped>> {
        Ok(db
            .query(
                "SELECT mapping_name, concept_map, source_code, occurrences, to_char(last_seen, 'YYYY-MM-DD')
                   FROM registry.unmapped_code
                  WHERE ($1::text IS NULL OR mapping_name = $1) AND ($2::int8[] IS NULL OR last_run_id = ANY($2))
                  ORDER BY occurrences DESC, mapping_name, concept_map, source_code",
                &[&mapping, &runs],
            )?
            .iter()
            .map(|r| Unmapped {
                mapping: r.get(0),
                concept_map: r.get(1),
                source_code: r.get(2),
                occurrences: r.get(3),
                last_seen: r.get(4),
            })
            .collect())
    }

    // ---- reports ---------------------------------------------------------------------------

    /// Rejects of these runs, grouped by mapping, reason and outcome.
    pub fn reject_groups(db: &mut impl GenericClient, runs: &[i64]) -> Result<Vec<RejectGroup>> {
        Ok(db
            .query(
                "SELECT coalesce(f.mapping_name, f.source_name, '-'), r.reason_code, r.outcome, count(*)::int8, min(r.reason),
                        coalesce((array_agg(r.row_number ORDER BY r.row_number) FILTER (WHERE r.row_number IS NOT NULL))[1:5], '{}')
                   FROM registry.reject r LEFT JOIN registry.source_file f USING (source_file_id)
                  WHERE r.run_id = ANY($1) GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2",
                &[&runs],
            )?
            .iter()
            .map(|r| RejectGroup {
                mapping: r.get(0),
                reason_code: r.get(1),
                outcome: r.get(2),
                count: r.get(3),
                example_reason: r.get(4),
                first_rows: r.get(5),
            })
            .collect())
    }

    // ---- FHIR watermarks -------------------------------------------------------------------

    pub fn watermark(
        &self,
        db: &mut impl GenericClient,
        endpoint_hash: &str,
        resource_type: &str,
        mapping: &str,
    ) -> Result<Option<String>> {
        Ok(db
            .query_opt(
                "SELECT last_updated FROM registry.fhir_watermark
                  WHERE endpoint_hash = $1 AND resource_type = $2 AND mapping_name = $3",
                &[&endpoint_hash, &resource_type, &mapping],
            )?
            .map(|r| r.get(0)))
    }

    pub fn set_watermark(
        &self,
        db: &mut impl GenericClient,
        endpoint_hash: &str,
        resource_type: &str,
        mapping: &str,
        last_updated: &str,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO registry.fhir_watermark (endpoint_hash, resource_type, mapping_name, last_updated, run_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (endpoint_hash, resource_type, mapping_name)
             DO UPDATE SET last_updated = EXCLUDED.last_updated, run_id = EXCLUDED.run_id, updated_at = now()",
            &[&endpoint_hash, &resource_type, &mapping, &last_updated, &self.run_id],
        )?;
        Ok(())
    }

    // ---- person map ------------------------------------------------------------------------

    /// The whole person map: pseudonym -> person_id.
    pub fn person_map(db: &mut impl GenericClient) -> Result<HashMap<String, i32>> {
        Ok(db
            .query("SELECT pseudonym, person_id FROM registry.person_map", &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// The person_id of one pseudonym.
    pub fn person_of(db: &mut impl GenericClient, pseudonym: &str) -> Result<Option<i32>> {
        Ok(db
            .query_opt(
                "SELECT person_id FROM registry.person_map WHERE pseudonym = $1",
                &[&pseudonym],
            )?
            .map(|r| r.get(0)))
    }

    /// The person_ids of several pseudonyms.
    pub fn persons_of(
        db: &mut impl GenericClient,
        pseudonyms: &[String],
    ) -> Result<HashMap<String, i32>> {
        Ok(db
            .query(
                "SELECT pseudonym, person_id FROM registry.person_map WHERE pseudonym = ANY($1)",
                &[&pseudonyms],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Add one person-map row (no-op when the pseudonym is known).
    pub fn add_person(
        db: &mut impl GenericClient,
        row: &PersonMapRow,
        key_id: &str,
        domain: &str,
        run_id: Option<i64>,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO registry.person_map (pseudonym, person_id, identifier_type, key_id, domain, first_run_id)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pseudonym) DO NOTHING",
            &[&row.pseudonym, &row.person_id, &row.identifier_type, &key_id, &domain, &run_id],
        )
        .context("could not write the person map")?;
        Ok(())
    }

    /// Write new person-map rows with binary COPY.
    pub fn copy_persons(
        &self,
        tx: &mut impl GenericClient,
        key_id: &str,
        domain: &str,
        rows: &[PersonMapRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let sink = tx.copy_in(
            "COPY registry.person_map (pseudonym, person_id, identifier_type, key_id, domain, first_run_id) FROM STDIN (FORMAT binary)",
        )?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
            ],
        );
        for p in rows {
            w.write(&[
                &p.pseudonym,
                &p.person_id,
                &p.identifier_type,
                &key_id,
                &domain,
                &self.run_id,
            ])?;
        }
        w.finish().context("could not write the person map")?;
        Ok(())
    }

    /// Pseudonyms and persons per key id, domain and identifier type, for `key status`.
    pub fn person_map_by_key(db: &mut impl GenericClient) -> Result<Vec<KeyUsage>> {
        Ok(db
            .query(
                "SELECT key_id, domain, identifier_type, count(*)::int8, count(DISTINCT person_id)::int8
                   FROM registry.person_map GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[],
            )?
            .iter()
            .map(|r| KeyUsage {
                key_id: r.get(0),
                domain: r.get(1),
                identifier_type: r.get(2),
                pseudonyms: r.get(3),
                persons: r.get(4),
            })
            .collect())
    }

    /// The registry's current key and domain, and its previous ones.
    pub fn registry_keys(db: &mut impl GenericClient) -> Result<Vec<(String, String, bool)>> {
        Ok(db
            .query(
                "SELECT key_id, domain, status = 'current' FROM registry.registry_key ORDER BY since",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Make `key_id` (in `domain`) the registry's current key; the current one becomes
    /// previous.
    pub fn set_registry_key(db: &mut impl GenericClient, key_id: &str, domain: &str) -> Result<()> {
        db.execute(
            "UPDATE registry.registry_key SET status = 'previous'
              WHERE status = 'current' AND (key_id, domain) <> ($1, $2)",
            &[&key_id, &domain],
        )?;
        db.execute(
            "INSERT INTO registry.registry_key (key_id, domain, status) VALUES ($1, $2, 'current')
             ON CONFLICT (key_id, domain) DO UPDATE SET status = 'current', since = now()",
            &[&key_id, &domain],
        )?;
        Ok(())
    }

    /// Persons in the map, and how many of them have a pseudonym under `key_id`.
    pub fn persons_under_key(db: &mut impl GenericClient, key_id: &str) -> Result<(i64, i64)> {
        let r = db.query_one(
            "SELECT count(DISTINCT person_id)::int8,
                    count(DISTINCT person_id) FILTER (WHERE key_id = $1)::int8
               FROM registry.person_map",
            &[&key_id],
        )?;
        Ok((r.get(0), r.get(1)))
    }
}

/// Delete the cdm rows whose lineage matches `filter` (SQL over registry.lineage with one
/// parameter, `$1`), then that lineage; returns the cdm rows deleted.
fn delete_by_lineage(
    tx: &mut impl GenericClient,
    filter: &str,
    param: &(dyn ToSql + Sync),
) -> Result<i64> {
    let tables: Vec<String> = tx
        .query(
            &format!("SELECT DISTINCT cdm_table FROM registry.lineage WHERE {filter}"),
            &[param],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut n = 0;
    for t in tables {
        let key = crate::mapping::check::id_column(&t).unwrap_or_else(|| "person_id".to_string());
        if t == "episode" {
            tx.execute(
                &format!(
                    "DELETE FROM cdm.episode_event WHERE episode_id IN
                       (SELECT cdm_row_id FROM registry.lineage WHERE {filter} AND cdm_table = 'episode')"
                ),
                &[param],
            )?;
        }
        n += tx.execute(
            &format!(
                "DELETE FROM cdm.{} WHERE {key} IN
                   (SELECT cdm_row_id FROM registry.lineage WHERE {filter} AND cdm_table = $2)",
                crate::db::quote_ident(&t)
            ),
            &[param, &t],
        )? as i64;
    }
    tx.execute(
        &format!("DELETE FROM registry.lineage WHERE {filter}"),
        &[param],
    )?;
    Ok(n)
}
