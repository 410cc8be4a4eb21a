//! The ledger: everything registrar records about what came in, and the only place that
//! writes it. Source files (`registry.source_file`) with their identity, series and status;
//! records (`registry.record_set`: one set per unit, folded into a [`RecordIndex`]); lineage (every
//! cdm row back to its file, record and person); rejects (rows, cells and whole files, with
//! reasons); unmapped codes; FHIR watermarks; the person map; and the persons whose cdm facts
//! changed since the research marts were refreshed (`registry.changed_person`, written with
//! every lineage write and delete). Statuses are enums here and strings only in the database.
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

/// A FHIR endpoint type's pull state (`registry.fhir_watermark`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// Resources updated after this instant are asked for next time.
    pub last_updated: String,
    /// When the server's ids were last compared with the registry's records.
    pub swept_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A record's identity: the first 128 bits of the keyed hash of its key.
pub type RecordKey = [u8; 16];

/// Where a cdm row came from: (unit, source row). A record's rows are found by it.
pub type RowOrigin = (i64, i64);

/// The stored state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordState {
    pub content: i64,
    /// The unit and row whose lineage holds the record's cdm rows.
    pub origin: RowOrigin,
    pub deleted: bool,
    /// Index of the version key in [`RecordIndex`].
    version: u32,
}

/// A record as a unit leaves it (an entry of the unit's record set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordWrite {
    pub hash: RecordKey,
    pub content: i64,
    /// The unit's row holding the record (for a deletion: the row that said so).
    pub row: i64,
    pub deleted: bool,
}

const ENTRY: usize = 33;

impl RecordWrite {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.content.to_le_bytes());
        out.extend_from_slice(&self.row.to_le_bytes());
        out.push(u8::from(self.deleted));
    }

    fn decode(b: &[u8]) -> Self {
        RecordWrite {
            hash: b[..16].try_into().expect("16 bytes"),
            content: i64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            row: i64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
            deleted: b[32] == 1,
        }
    }
}

/// Hashing for keys that are already uniformly random (keyed digests): their first bytes
/// are the hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestKeys;

/// The hasher of [`DigestKeys`].
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() >= 8 {
            self.0 ^= u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        } else {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
    fn write_usize(&mut self, _: usize) {
        // Lengths (the slice prefix of a key) carry nothing.
    }
}

impl std::hash::BuildHasher for DigestKeys {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// A map keyed by record keys.
pub type KeyMap<V> = HashMap<RecordKey, V, DigestKeys>;

/// The records of one source: their stored states, folded from the record sets of its
/// loaded units in version order (see `migrations/*_import_identity`).
#[derive(Debug, Clone, Default)]
pub struct RecordIndex {
    versions: Vec<String>,
    map: KeyMap<RecordState>,
    /// What the index was built from: (record sets, newest unit id), to notice another
    /// process's imports of the same source.
    pub stamp: (i64, i64),
}

impl RecordIndex {
    pub fn get(&self, k: &RecordKey) -> Option<&RecordState> {
        self.map.get(k)
    }

    /// Whether the stored version of `s` is newer than `version`.
    pub fn newer(&self, s: &RecordState, version: &str) -> bool {
        self.versions[s.version as usize].as_str() > version
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every record with its state.
    pub fn iter(&self) -> impl Iterator<Item = (&RecordKey, &RecordState)> {
        self.map.iter()
    }

    /// Add a unit's record set on top.
    pub fn apply(&mut self, file_id: i64, version: &str, writes: &[RecordWrite]) {
        let vi = match self.versions.iter().position(|v| v == version) {
            Some(i) => i,
            None => {
                self.versions.push(version.to_string());
                self.versions.len() - 1
            }
        } as u32;
        for w in writes {
            self.map.insert(
                w.hash,
                RecordState {
                    content: w.content,
                    origin: (file_id, w.row),
                    deleted: w.deleted,
                    version: vi,
                },
            );
        }
    }
}

/// One lineage row.
pub struct LineageRow<'a> {
    pub table: &'a str,
    pub row_id: i64,
    pub source_row: Option<i64>,
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
        // The newest loaded version of the file decides (with records, older versions stay
        // loaded: A, B, then A again must load A again).
        let last = db.query_opt(
            "SELECT run_id, content_sha256 = $2 AND mapping_sha256 IS NOT DISTINCT FROM $3
               FROM registry.source_file
              WHERE locator_hash = $1 AND status = 'loaded'
              ORDER BY source_file_id DESC LIMIT 1",
            &[&f.locator_hash, &f.content_sha256, &f.mapping_sha256],
        )?;
        if let Some(r) = last {
            if r.get::<_, bool>(1) {
                return Ok(Prior::Unchanged {
                    since_run: r.get(0),
                });
            }
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
        delete_by_lineage(tx, "source_file_id = $1", &[&source_file_id])
    }

    /// Delete every cdm row (and its lineage) loaded from these (unit, source row) origins:
    /// the earlier versions of records. Returns rows deleted.
    pub fn delete_rows_of(
        &self,
        tx: &mut impl GenericClient,
        origins: &[RowOrigin],
    ) -> Result<i64> {
        if origins.is_empty() {
            return Ok(0);
        }
        let files: Vec<i64> = origins.iter().map(|o| o.0).collect();
        let rows: Vec<i64> = origins.iter().map(|o| o.1).collect();
        // One pass over lineage by its (unit, row) index, then the cdm rows by id.
        let gone = tx.query(
            "WITH gone AS (
                DELETE FROM registry.lineage l USING unnest($1::int8[], $2::int8[]) AS u(f, r)
                 WHERE l.source_file_id = u.f AND l.source_row = u.r
                RETURNING l.cdm_table, l.cdm_row_id, l.person_id)
             SELECT cdm_table, array_agg(cdm_row_id),
                    array_agg(DISTINCT person_id) FILTER (WHERE person_id IS NOT NULL)
               FROM gone GROUP BY 1",
            &[&files, &rows],
        )?;
        let mut n = 0;
        for r in gone {
            let t: String = r.get(0);
            let ids: Vec<i64> = r.get(1);
            let mut persons: Vec<i32> = r.get::<_, Option<Vec<i32>>>(2).unwrap_or_default();
            mark_changed(tx, &mut persons)?;
            let key =
                crate::mapping::check::id_column(&t).unwrap_or_else(|| "person_id".to_string());
            if t == "episode" {
                tx.execute(
                    "DELETE FROM cdm.episode_event WHERE episode_id = ANY($1::int8[])",
                    &[&ids],
                )?;
            }
            n += tx.execute(
                &format!(
                    "DELETE FROM cdm.{} WHERE {key} = ANY($1::int8[])",
                    crate::db::quote_ident(&t)
                ),
                &[&ids],
            )? as i64;
        }
        Ok(n)
    }

    /// Write lineage rows with binary COPY.
    pub fn copy_lineage<'a>(
        &self,
        tx: &mut impl GenericClient,
        file_id: i64,
        rows: impl Iterator<Item = LineageRow<'a>>,
    ) -> Result<()> {
        let sink = tx.copy_in(
            "COPY registry.lineage (cdm_table, cdm_row_id, source_file_id, source_row, run_id, person_id, emit)
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
                Type::INT4,
                Type::INT2,
            ],
        );
        let mut persons = Vec::new();
        for r in rows {
            w.write(&[
                &r.table,
                &r.row_id,
                &file_id,
                &r.source_row,
                &self.run_id,
                &r.person_id,
                &r.emit,
            ])?;
            if let Some(p) = r.person_id {
                if persons.last() != Some(&p) {
                    persons.push(p);
                }
            }
        }
        w.finish().context("could not write the lineage")?;
        mark_changed(tx, &mut persons)
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
    ) -> Result<HashMap<i32, Option<RowOrigin>>> {
        Ok(tx
            .query(
                "SELECT l.person_id, l.source_file_id, l.source_row FROM registry.lineage l
                   JOIN registry.source_file f USING (source_file_id)
                  WHERE f.source_name = $1 AND f.status = 'loaded' AND l.emit = $2
                    AND l.person_id IS NOT NULL",
                &[&source, &emit],
            )?
            .iter()
            .map(|r| (r.get(0), origin_of(r.get(1), r.get(2))))
            .collect())
    }

    /// Persons with a row in a table keyed by person (`person`, `death`), with the record
    /// that owns it.
    pub fn persons_in_table(
        &self,
        tx: &mut impl GenericClient,
        table: &str,
    ) -> Result<HashMap<i32, Option<RowOrigin>>> {
        Ok(tx
            .query(
                &format!(
                    "SELECT t.person_id, l.source_file_id, l.source_row FROM cdm.{} t
                       LEFT JOIN registry.lineage l ON l.cdm_table = $1 AND l.cdm_row_id = t.person_id",
                    crate::db::quote_ident(table)
                ),
                &[&table],
            )?
            .iter()
            .map(|r| (r.get(0), origin_of(r.get(1), r.get(2))))
            .collect())
    }

    // ---- records ---------------------------------------------------------------------------

    /// How many record sets a source has and its newest unit: an index built at this stamp
    /// is current.
    pub fn record_stamp(db: &mut impl GenericClient, source: &str) -> Result<(i64, i64)> {
        let r = db.query_one(
            "SELECT count(*)::int8, coalesce(max(r.source_file_id), 0)
               FROM registry.record_set r JOIN registry.source_file f USING (source_file_id)
              WHERE r.source_name = $1 AND f.status = 'loaded'",
            &[&source],
        )?;
        Ok((r.get(0), r.get(1)))
    }

    /// The records of a source: its loaded units' record sets, folded in version order.
    pub fn record_index(db: &mut postgres::Client, source: &str) -> Result<RecordIndex> {
        use postgres::fallible_iterator::FallibleIterator;
        let stamp = Self::record_stamp(db, source)?;
        let mut index = RecordIndex::default();
        let entries: i64 = db
            .query_one(
                "SELECT coalesce(sum(entries), 0)::int8 FROM registry.record_set WHERE source_name = $1",
                &[&source],
            )?
            .get(0);
        index.map.reserve(entries.clamp(0, 1 << 26) as usize);
        let params: [&(dyn ToSql + Sync); 1] = [&source];
        let mut sets = db.query_raw(
            "SELECT r.source_file_id, r.version_key, r.records
               FROM registry.record_set r JOIN registry.source_file f USING (source_file_id)
              WHERE r.source_name = $1 AND f.status = 'loaded'
              ORDER BY r.version_key, r.source_file_id",
            params,
        )?;
        let mut writes = Vec::new();
        while let Some(r) = sets.next()? {
            let file_id: i64 = r.get(0);
            let version: String = r.get(1);
            let bytes: &[u8] = r.get(2);
            writes.clear();
            writes.extend(bytes.chunks_exact(ENTRY).map(RecordWrite::decode));
            index.apply(file_id, &version, &writes);
        }
        index.stamp = stamp;
        Ok(index)
    }

    /// Write a unit's record set (what it added, changed or deleted).
    pub fn write_record_set(
        &self,
        tx: &mut impl GenericClient,
        source: &str,
        file_id: i64,
        version: &str,
        writes: &[RecordWrite],
    ) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(writes.len() * ENTRY);
        for w in writes {
            w.encode(&mut bytes);
        }
        tx.execute(
            "INSERT INTO registry.record_set (source_file_id, source_name, version_key, entries, records)
             VALUES ($1, $2, $3, $4, $5)",
            &[&file_id, &source, &version, &(writes.len() as i64), &bytes],
        )
        .context("could not write the record set")?;
        Ok(())
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

    /// How far a (endpoint, type, mapping) has been pulled, and when its ids were last
    /// swept; `None` before its first complete pull.
    pub fn watermark(
        &self,
        db: &mut impl GenericClient,
        endpoint_hash: &str,
        resource_type: &str,
        mapping: &str,
    ) -> Result<Option<Watermark>> {
        Ok(db
            .query_opt(
                "SELECT last_updated, swept_at FROM registry.fhir_watermark
                  WHERE endpoint_hash = $1 AND resource_type = $2 AND mapping_name = $3",
                &[&endpoint_hash, &resource_type, &mapping],
            )?
            .map(|r| Watermark {
                last_updated: r.get(0),
                swept_at: r.get(1),
            }))
    }

    /// Advance a watermark after a complete pull; `swept`: the pull also compared the ids the
    /// server holds with the registry's records (an id sweep, or a full pull).
    pub fn set_watermark(
        &self,
        db: &mut impl GenericClient,
        endpoint_hash: &str,
        resource_type: &str,
        mapping: &str,
        last_updated: &str,
        swept: bool,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO registry.fhir_watermark (endpoint_hash, resource_type, mapping_name, last_updated, run_id, swept_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
             ON CONFLICT (endpoint_hash, resource_type, mapping_name)
             DO UPDATE SET last_updated = EXCLUDED.last_updated, run_id = EXCLUDED.run_id, updated_at = now(),
                           swept_at = coalesce(EXCLUDED.swept_at, registry.fhir_watermark.swept_at)",
            &[&endpoint_hash, &resource_type, &mapping, &last_updated, &self.run_id, &swept],
        )?;
        Ok(())
    }

    /// The units a mapping's pulls of one endpoint type loaded (by their locator).
    pub fn units_of_locator(db: &mut impl GenericClient, locator_hash: &str) -> Result<Vec<i64>> {
        Ok(db
            .query(
                "SELECT source_file_id FROM registry.source_file WHERE locator_hash = $1",
                &[&locator_hash],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
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

fn origin_of(file: Option<i64>, row: Option<i64>) -> Option<RowOrigin> {
    Some((file?, row?))
}

/// Note persons whose cdm facts changed, for the next research mart refresh
/// (`registry.changed_person`, read by `mart.refresh`).
fn mark_changed(tx: &mut impl GenericClient, persons: &mut Vec<i32>) -> Result<()> {
    if persons.is_empty() {
        return Ok(());
    }
    persons.sort_unstable();
    persons.dedup();
    tx.execute(
        "INSERT INTO registry.changed_person SELECT unnest($1::int4[]) ON CONFLICT DO NOTHING",
        &[&*persons],
    )
    .context("could not note the changed persons")?;
    Ok(())
}

/// Delete the cdm rows whose lineage matches `filter` (SQL over registry.lineage with the
/// parameters `params`, `$1`...), then that lineage; returns the cdm rows deleted.
fn delete_by_lineage(
    tx: &mut impl GenericClient,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<i64> {
    let tables: Vec<String> = tx
        .query(
            &format!("SELECT DISTINCT cdm_table FROM registry.lineage WHERE {filter}"),
            params,
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO registry.changed_person
             SELECT DISTINCT person_id FROM registry.lineage WHERE {filter} AND person_id IS NOT NULL
             ON CONFLICT DO NOTHING"
        ),
        params,
    )?;
    let table_param = format!("${}", params.len() + 1);
    let mut n = 0;
    for t in tables {
        let key = crate::mapping::check::id_column(&t).unwrap_or_else(|| "person_id".to_string());
        let mut with_table: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        with_table.push(&t);
        if t == "episode" {
            tx.execute(
                &format!(
                    "DELETE FROM cdm.episode_event WHERE episode_id IN
                       (SELECT cdm_row_id FROM registry.lineage WHERE {filter} AND cdm_table = 'episode')"
                ),
                params,
            )?;
        }
        n += tx.execute(
            &format!(
                "DELETE FROM cdm.{} WHERE {key} IN
                   (SELECT cdm_row_id FROM registry.lineage WHERE {filter} AND cdm_table = {table_param})",
                crate::db::quote_ident(&t)
            ),
            &with_table,
        )? as i64;
    }
    tx.execute(
        &format!("DELETE FROM registry.lineage WHERE {filter}"),
        params,
    )?;
    Ok(n)
}
