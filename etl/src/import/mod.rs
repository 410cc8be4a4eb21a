//! The one import path every source shares: a unit (a file, a FHIR search page, an ndjson
//! file) through a compiled mapping into the cdm tables, in one transaction.
//!
//! 1. Identity ([`identity`], [`crate::ledger`]): a unit is its source plus its path relative
//!    to the import root (never its bare name). An unchanged unit (same identity, content and
//!    mapping) is skipped; an older member of a declared series is skipped; otherwise the
//!    unit replaces what it replaces ([`Replace`]): earlier versions of the same file, the
//!    older members of its series, or, for sources with a record key, nothing file-wise.
//! 2. Records: with a record key (`[record] key = [...]`, or a FHIR resource's type and id)
//!    each row is a record, identified by a keyed hash. A record seen before with the same
//!    content (and mapping) costs nothing; a changed one replaces its earlier rows; an older
//!    version never replaces a newer one; with `snapshot = true` the newest file's missing
//!    records are deleted. Every unit reports added, updated, unchanged and deleted records.
//! 3. Rows: persons are resolved from the pseudonymised identifiers, the mapping is
//!    evaluated ([`crate::mapping::eval`]), and batches of typed rows go to a writer thread
//!    that COPYs them with their lineage, rejects, new person-map rows and records
//!    ([`crate::load::batch`]) while the next batch is built.
//! 4. At the end: the ledger, unmapped codes and one audit entry, then commit. A unit loads
//!    whole or not at all; every row ends loaded, rejected, skipped or unchanged (counted,
//!    with reasons), and every failing cell is recorded, with its source column and the
//!    mapping's file and line, never its value.

pub mod identity;

use crate::ledger::{
    DigestKeys, FileIdentity, FileStatus, KeyMap, Ledger, Prior, RecordIndex, RecordKey,
    RecordWrite, RejectOutcome, RejectRow, Replace, RowOrigin, SeriesMember, UnitCounts, UnitKind,
};
use crate::load::batch::{self, Batch, IdPool, Pending};
use crate::load::copy::{TableLayout, Value};
use crate::mapping::check::{check_header, referenced_columns, Compiled, CompiledEmit, IdSource};
use crate::mapping::eval::{Evaluator, Limits, Lookup};
use crate::mapping::{Format, OnError};
use crate::privacy::audit;
use crate::privacy::keys::Keys;
use crate::privacy::persons::{PersonResolver, PERSON_MAP_LOCK};
use crate::sources::csv::{choose_decoder, sniff, CsvSource};
use crate::sources::{FileError, RowResult, RowSource, SourceRow};
use anyhow::{Context, Result};
use chrono::NaiveDate;
use identity::FileInput;
use registrar_anonymizer::dateshift::DatePolicy;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Purpose of the keyed hash of a record's identity (`registry.lineage.source_key`).
pub const ROW_KEY_PURPOSE: &str = "source-record";

/// Options of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub policy: DatePolicy,
    /// Dates after this are refused (today).
    pub today: NaiveDate,
    /// Source rows per COPY batch.
    pub batch_rows: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            policy: DatePolicy::default(),
            today: chrono::Local::now().date_naive(),
            batch_rows: 10_000,
        }
    }
}

/// Everything an import needs, for one run.
pub struct ImportContext<'a> {
    pub client: &'a mut postgres::Client,
    /// A second connection: sequences and record lookups, outside the unit's transaction.
    pub seq: &'a mut postgres::Client,
    pub keys: &'a Keys,
    pub ledger: Ledger,
    pub opts: &'a ImportOptions,
    /// The registry's plausibility limits.
    pub limits: Limits,
    pub progress: indicatif::ProgressBar,
    /// The records of the source last imported (kept between its units).
    pub records: Option<(String, RecordIndex)>,
    /// Rows of mappings that write no `person` row are rejected when their person has no
    /// row in cdm.person (`person_without_row`): set for FHIR sources, whose facts must not
    /// outlive a rejected Patient. Holds the persons known to have a row.
    pub person_rows: Option<PersonRows>,
    /// FHIR pulls: what the server offered and what the pull used (its CapabilityStatement,
    /// how deletions are found), added to each unit's audit entry.
    pub audit_fhir: Option<serde_json::Value>,
}

/// The persons known to have a row in cdm.person (read once, then asked per miss: a
/// Patient loaded by an earlier unit of the run is found).
#[derive(Debug, Default)]
pub struct PersonRows {
    known: Option<std::collections::HashSet<i32>>,
}

impl PersonRows {
    fn contains(&mut self, db: &mut postgres::Client, person_id: i32) -> Result<bool> {
        if self.known.is_none() {
            let all = db
                .query("SELECT person_id FROM cdm.person", &[])?
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect();
            self.known = Some(all);
        }
        let known = self.known.as_mut().expect("read above");
        if known.contains(&person_id) {
            return Ok(true);
        }
        let found = db
            .query_opt(
                "SELECT 1 FROM cdm.person WHERE person_id = $1",
                &[&person_id],
            )?
            .is_some();
        if found {
            known.insert(person_id);
        }
        Ok(found)
    }
}

/// The stored identity of a record with source key `key` (the first 128 bits of its keyed
/// hash).
pub fn record_key(keys: &Keys, key: &str) -> RecordKey {
    let d = keys.current.keyed_digest(ROW_KEY_PURPOSE, key.as_bytes());
    d[..16].try_into().expect("16 bytes")
}

impl<'a> ImportContext<'a> {
    pub fn new(
        client: &'a mut postgres::Client,
        seq: &'a mut postgres::Client,
        keys: &'a Keys,
        run_id: i64,
        opts: &'a ImportOptions,
    ) -> Result<Self> {
        let limits = read_limits(client, opts.today)?;
        Ok(Self {
            client,
            seq,
            keys,
            ledger: Ledger::new(run_id),
            opts,
            limits,
            progress: indicatif::ProgressBar::hidden(),
            records: None,
            person_rows: None,
            audit_fhir: None,
        })
    }

    pub fn run_id(&self) -> i64 {
        self.ledger.run_id
    }

    fn key_id(&self) -> &str {
        self.keys.current.key_id().as_str()
    }

    /// Record `unit` rejected as a whole and say so.
    fn reject(
        &mut self,
        unit: &Unit,
        mut out: UnitOutcome,
        code: &'static str,
        reason: String,
    ) -> Result<UnitOutcome> {
        let key_id = self.keys.current.key_id().as_str().to_string();
        self.ledger
            .reject_file(self.client, &key_id, &unit.ident, code, &reason)?;
        out.status = FileStatus::Rejected;
        out.reason_code = Some(code.to_string());
        out.reason = Some(reason);
        // Nothing of it loaded: every row it held is rejected with it.
        out.counts.rows_rejected = out.counts.rows_in;
        out.counts.rows_skipped = 0;
        out.counts.rows_loaded = 0;
        out.counts.rows_unchanged = 0;
        out.counts.cells_nulled = 0;
        out.counts.records_added = 0;
        out.counts.records_updated = 0;
        out.counts.records_deleted = 0;
        out.counts.records_unchanged = 0;
        out.tables.clear();
        Ok(out)
    }

    /// When the ledger says `unit` needs no loading, record it skipped and say why.
    pub fn skip_if_known(&mut self, unit: &Unit) -> Result<Option<UnitOutcome>> {
        let (code, reason) = match self.ledger.prior(self.client, &unit.ident, unit.replace)? {
            Prior::New => return Ok(None),
            Prior::Unchanged { since_run } => {
                ("unchanged", format!("unchanged since run {since_run}"))
            }
            Prior::OlderSeriesMember => (
                "older_version",
                "an older version of its series: a newer member is loaded".to_string(),
            ),
        };
        self.ledger
            .record_skipped(self.client, &unit.ident, code, &reason)?;
        Ok(Some(UnitOutcome {
            file: unit.label.clone(),
            status: FileStatus::Skipped,
            reason_code: Some(code.into()),
            reason: Some(reason),
            ..Default::default()
        }))
    }
}

/// The registry's plausibility limits (`registry.plausibility`).
pub fn read_limits(db: &mut impl postgres::GenericClient, today: NaiveDate) -> Result<Limits> {
    let r = db.query_one(
        "SELECT min_birth_year, min_event_year, max_age_years FROM registry.plausibility",
        &[],
    )?;
    Ok(Limits {
        min_birth_year: r.get(0),
        min_event_year: r.get(1),
        max_age_years: r.get(2),
        today,
    })
}

/// What happened to one unit.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UnitOutcome {
    /// How the terminal names the unit (never stored).
    pub file: String,
    pub status: FileStatus,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    #[serde(flatten)]
    pub counts: UnitCounts,
    /// cdm rows of earlier versions this unit replaced.
    pub replaced_rows: i64,
    /// cdm rows written, per table.
    pub tables: BTreeMap<String, i64>,
}

/// One unit of input as the ledger knows it.
pub struct Unit {
    pub ident: FileIdentity,
    /// How messages on the terminal name it (never stored).
    pub label: String,
    pub replace: Replace,
    /// Its version among its source's units (a series member's key); `None`: the order of
    /// import.
    pub version: Option<String>,
}

/// The date policy as recorded in the audit log.
pub fn date_policy_text(p: &DatePolicy) -> String {
    match p {
        DatePolicy::KeepTrueDates => "keep true dates".into(),
        DatePolicy::Shift(w) => format!("shift {}..{} days per person", w.min_days, w.max_days),
    }
}

/// Import one file through a compiled mapping: its identity, the ledger's verdict, then the
/// load path.
pub fn import_file(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    input: &FileInput,
) -> Result<UnitOutcome> {
    let spec = &c.mapping.spec;
    let kind = match spec.source.format {
        Format::Csv => UnitKind::Csv,
        Format::Xlsx => UnitKind::Xlsx,
        Format::Fhir => anyhow::bail!(
            "{}: a FHIR mapping reads resources, not files: use `registrar import fhir` or `registrar import fhir-bulk`",
            c.file_name
        ),
    };
    let rel = input.relative_path()?;
    let sn = sniff(&input.path).with_context(|| format!("cannot read {}", input.label))?;
    let k = &ctx.keys.current;
    let name = rel.rsplit('/').next().unwrap_or(&rel);
    let mut series = None;
    let mut bad_label = false;
    if let Some(pattern) = &spec.source.series {
        if let Some(label) = identity::series_label(pattern, name) {
            if identity::valid_label(label) {
                series = Some(SeriesMember {
                    series_hash: k.locator_hash(&format!(
                        "series:{}/{}/{pattern}",
                        input.source,
                        identity::folder_of(&rel)
                    )),
                    version_key: identity::natural_key(label),
                });
            } else {
                bad_label = true;
            }
        }
    }
    let replace = if c.record.is_some() {
        Replace::Records
    } else if series.is_some() {
        Replace::Series
    } else {
        Replace::EarlierVersions
    };
    let version = series.as_ref().map(|s| s.version_key.clone());
    let unit = Unit {
        ident: FileIdentity {
            kind,
            source: input.source.clone(),
            mapping: Some(c.name().to_string()),
            locator_hash: k.locator_hash(&identity::locator(&input.source, &rel)),
            legacy_locator: Some(k.locator_hash(&identity::legacy_locator(c.name(), &rel))),
            content_sha256: sn.sha256.clone(),
            size: sn.size,
            mapping_sha256: Some(c.fingerprint.clone()),
            series,
        },
        label: input.label.clone(),
        replace,
        version,
    };
    let out = UnitOutcome {
        file: input.label.clone(),
        ..Default::default()
    };
    if bad_label {
        return ctx.reject(
            &unit,
            out,
            "series_label",
            "the file belongs to the mapping's series, but the part of its name that the series \
             pattern's `*` matches is not a date or a number, so it cannot be ordered"
                .into(),
        );
    }
    if let Some(skipped) = ctx.skip_if_known(&unit)? {
        return Ok(skipped);
    }
    if sn.size == 0 {
        return ctx.reject(
            &unit,
            out,
            "empty_file",
            "the file is empty (0 bytes)".into(),
        );
    }
    match open_file(c, &input.path, &sn, input.max_cell_bytes) {
        Ok(source) => load_unit(ctx, c, &unit, source),
        Err(e) => ctx.reject(&unit, out, e.code, e.reason),
    }
}

/// A reader for a file in the mapping's format (`sn`: what [`sniff`] found; a row with a cell
/// larger than `max_cell` bytes is rejected).
pub fn open_file(
    c: &Compiled,
    path: &std::path::Path,
    sn: &crate::sources::csv::Sniff,
    max_cell: u64,
) -> Result<Box<dyn RowSource + Send>, FileError> {
    let spec = &c.mapping.spec;
    Ok(match spec.source.format {
        Format::Csv => {
            let d = choose_decoder(spec.source.encoding, sn)?;
            Box::new(CsvSource::open(
                path,
                spec.source.delimiter,
                spec.source.quote,
                spec.source.header_row,
                d,
                sn.bom && d == crate::sources::csv::Decoder::Utf8,
                max_cell,
            )?)
        }
        Format::Xlsx => Box::new(crate::sources::xlsx::XlsxSource::open(
            path,
            &spec.source,
            sn.zip,
            max_cell,
        )?),
        Format::Fhir => {
            return Err(FileError::new(
                "a FHIR mapping reads resources, not files".into(),
            ))
        }
    })
}

/// Hashing for keys that are already uniformly random (digests): use them as they are.
#[derive(Default, Clone, Copy)]
struct BuildPassThrough;

#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::hash::BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Debug)]
struct FileErrorMarker(FileError);
impl std::fmt::Display for FileErrorMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.reason)
    }
}
impl std::error::Error for FileErrorMarker {}

/// The keyed hashes of records' identities, computed next to the reading of rows.
struct RecordHasher<'a> {
    keys: &'a Keys,
    /// Records keyed by the mapping's `[record] key` columns (else only rows that carry their
    /// own key, such as FHIR resources).
    keyed_by_mapping: bool,
    key_cols: Vec<usize>,
    source: &'a str,
}

impl RecordHasher<'_> {
    /// The keyed hash of a row's record (its first 128 bits), if the source has records.
    fn hash(&self, r: &RowResult) -> Option<RecordKey> {
        match r {
            RowResult::Deleted { key, .. } => Some(record_key(self.keys, key)),
            RowResult::Gone { record, .. } => Some(*record),
            RowResult::Row(row) if row.key.is_some() => {
                Some(record_key(self.keys, row.key.as_deref().unwrap_or("")))
            }
            RowResult::Row(row) if self.keyed_by_mapping => {
                if self
                    .key_cols
                    .iter()
                    .all(|&i| row.fields[i].trim().is_empty())
                {
                    return None;
                }
                let mut k = String::with_capacity(64);
                k.push_str(self.source);
                for &i in &self.key_cols {
                    k.push('\u{1f}');
                    k.push_str(row.fields[i].trim());
                }
                Some(record_key(self.keys, &k))
            }
            _ => None,
        }
    }
}

/// Rows handed from the reading thread to the mapping one at a time.
const HANDOFF: usize = 1024;

/// The reading half of a unit's load: rows in, batches out.
struct Reader<'a> {
    c: &'a Compiled,
    ev: Evaluator<'a>,
    resolver: PersonResolver<'a>,
    pools: Vec<Option<IdPool>>,
    /// Per emit with `once_per_person`: persons that already have its row, with the origin
    /// (unit, row) of that row.
    once: Vec<Option<HashMap<i32, Option<RowOrigin>>>>,
    /// The source's records before this unit.
    index: &'a RecordIndex,
    /// This unit's version key.
    version: &'a str,
    file_id: i64,
    /// What this unit does to its records (written as its record set at the end).
    writes: Vec<RecordWrite>,
    keyed_by_mapping: bool,
    ref_cols: Vec<usize>,
    seen_rows: HashMap<u64, u32, BuildPassThrough>,
    /// Records met in this unit that loaded (or were unchanged): first row, content hash.
    seen_keys: KeyMap<(u64, i64)>,
    /// Snapshot mappings: every record the unit holds.
    snapshot_seen: Option<std::collections::HashSet<RecordKey, DigestKeys>>,
    /// The keyed hash of contents: SipHash-2-4 under a key-derived secret, with the
    /// mapping's fingerprint in it. A stored content hash cannot be checked against guessed
    /// contents without the key.
    content: siphasher::sip::SipHasher24,
    batch: Batch,
    buffered: usize,
    counts: UnitCounts,
    tables: BTreeMap<String, i64>,
    progress: &'a indicatif::ProgressBar,
    /// Set when rows of persons without a cdm.person row are rejected.
    person_rows: Option<PersonRows>,
}

impl Reader<'_> {
    fn reject(&mut self, row: i64, code: &'static str, reason: impl Into<String>) {
        self.batch.rejects.push(RejectRow::row(
            row,
            code,
            reason,
            RejectOutcome::RowRejected,
        ));
        self.counts.rows_rejected += 1;
    }

    fn skip(&mut self, row: i64, code: &'static str, reason: impl Into<String>) {
        self.batch
            .rejects
            .push(RejectRow::row(row, code, reason, RejectOutcome::RowSkipped));
        self.counts.rows_skipped += 1;
    }

    fn unchanged(&mut self) {
        self.counts.rows_unchanged += 1;
        self.counts.records_unchanged += 1;
    }

    /// 64 bits of the keyed hash of what the mapping reads of a row, and of the mapping.
    fn content_hash(&self, row: &SourceRow) -> i64 {
        use std::hash::Hasher;
        let mut h = self.content;
        for &i in &self.ref_cols {
            let f = &row.fields[i];
            h.write_u64(f.len() as u64);
            h.write(f.as_bytes());
            let typed = row.typed_dates.contains(&(i as u32));
            let error = row.cell_errors.iter().any(|(ci, _)| *ci == i);
            h.write_u8(u8::from(typed) | (u8::from(error) << 1));
        }
        if let Some(k) = &row.key {
            h.write(k.as_bytes());
        }
        h.finish() as i64
    }

    fn row(
        &mut self,
        r: RowResult,
        key: Option<RecordKey>,
        seq: &mut postgres::Client,
    ) -> Result<()> {
        self.counts.rows_in += 1;
        if self.counts.rows_in % 4096 == 0 {
            self.progress.inc(4096);
        }
        match r {
            RowResult::Bad {
                number,
                code,
                reason,
                ..
            } => {
                self.reject(number as i64, code, reason);
                Ok(())
            }
            RowResult::Deleted { number, .. } | RowResult::Gone { number, .. } => {
                let k = key.expect("a deletion has a key");
                let number = number as i64;
                if self.seen_keys.insert(k, (number as u64, 0)).is_some() {
                    self.skip(
                        number,
                        "skipped_duplicate",
                        "the same record appears earlier in this unit",
                    );
                    return Ok(());
                }
                match self.index.get(&k).copied() {
                    Some(s) if !s.deleted => {
                        self.batch.replaced.push(s.origin);
                        self.writes.push(RecordWrite {
                            hash: k,
                            content: s.content,
                            row: number,
                            deleted: true,
                        });
                        self.counts.records_deleted += 1;
                        self.skip(
                            number,
                            "skipped_deleted",
                            "deleted at the source: the rows it produced are removed",
                        );
                    }
                    _ => self.skip(
                        number,
                        "skipped_deleted",
                        "deleted at the source (nothing of it was loaded)",
                    ),
                }
                Ok(())
            }
            RowResult::Row(row) => self.source_row(row, key, seq),
        }
    }

    fn source_row(
        &mut self,
        row: SourceRow,
        key: Option<RecordKey>,
        seq: &mut postgres::Client,
    ) -> Result<()> {
        let number = row.number as i64;
        let keyed = self.keyed_by_mapping || row.key.is_some();
        if keyed && key.is_none() {
            self.reject(
                number,
                "record_key_empty",
                format!(
                    "the record key column(s) {} are empty",
                    self.c
                        .record
                        .as_ref()
                        .map(|r| r.key.join(", "))
                        .unwrap_or_default()
                ),
            );
            return Ok(());
        }
        // Exact duplicates of an earlier row (sources without records): skipped.
        if !keyed {
            let mut h = Sha256::new();
            for f in &row.fields {
                h.update((f.len() as u64).to_le_bytes());
                h.update(f.as_bytes());
            }
            let d = h.finalize();
            let digest = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
            if let Some(first) = self.seen_rows.get(&digest) {
                let first = *first;
                self.skip(
                    number,
                    "skipped_duplicate",
                    format!("duplicate of row {first}"),
                );
                return Ok(());
            }
            self.seen_rows
                .insert(digest, u32::try_from(row.number).unwrap_or(u32::MAX));
        }
        // The stored state of a record this row replaces.
        let mut existed: Option<RowOrigin> = None;
        let mut content = 0i64;
        if let Some(k) = &key {
            content = self.content_hash(&row);
            if let Some(&(first, first_content)) = self.seen_keys.get(k) {
                if first_content == content {
                    self.skip(
                        number,
                        "skipped_duplicate",
                        format!("duplicate of row {first}"),
                    );
                } else {
                    self.reject(
                        number,
                        "duplicate_record",
                        format!(
                            "row {first} of this unit has the same record key with other values; \
                             that row is the one loaded"
                        ),
                    );
                }
                return Ok(());
            }
            // Held until the row turns out rejected (a later row of the same record may then
            // load).
            self.seen_keys.insert(*k, (number as u64, content));
            if let Some(seen) = self.snapshot_seen.as_mut() {
                seen.insert(*k);
            }
            match self.index.get(k) {
                Some(s) if self.index.newer(s, self.version) => {
                    // A newer version of the record is loaded: this one changes nothing.
                    self.unchanged();
                    return Ok(());
                }
                Some(s) if !s.deleted && s.content == content => {
                    self.unchanged();
                    return Ok(());
                }
                Some(s) if !s.deleted => existed = Some(s.origin),
                _ => {}
            }
        }

        // Who is it about?
        let mut idvals = Vec::with_capacity(self.c.identifiers.len());
        for id in &self.c.identifiers {
            let v = match &id.source {
                IdSource::Column(col) => self.ev.raw(&row, col).to_string(),
                IdSource::RowNumber => row.number.to_string(),
            };
            let v = if v.trim().is_empty() {
                v
            } else {
                format!("{}{}", id.prefix.as_deref().unwrap_or(""), v.trim())
            };
            idvals.push((id.id_type, v));
        }
        let ids: Vec<_> = idvals.iter().map(|(t, v)| (*t, v.as_str())).collect();
        let person = match self.resolver.resolve(seq, &ids) {
            Ok(p) => p,
            Err(crate::privacy::persons::ResolveError::Db(e)) => return Err(e),
            Err(e) => {
                let mut reason = e.to_string();
                if existed.is_some() {
                    reason.push_str("; the record's earlier version stays loaded");
                }
                if let Some(k) = &key {
                    self.seen_keys.remove(k);
                }
                self.reject(number, "person", reason);
                return Ok(());
            }
        };
        if let Some(pr) = self.person_rows.as_mut() {
            if !pr.contains(seq, person.person_id)? {
                if let Some(k) = &key {
                    self.seen_keys.remove(k);
                }
                self.reject(
                    number,
                    "person_without_row",
                    "the person has no row in cdm.person: their Patient was rejected or has not \
                     been imported (a full pull loads this record once the Patient is loaded)",
                );
                return Ok(());
            }
        }

        // Every emit of the row, or none; every failing cell is recorded.
        let c = self.c;
        let mut row_out: Vec<Pending> = Vec::new();
        let mut emitted_ids: Vec<Option<i32>> = vec![None; c.emits.len()];
        let mut failures: Vec<RejectRow> = Vec::new();
        let mut nulled: Vec<RejectRow> = Vec::new();
        for (ei, e) in c.emits.iter().enumerate() {
            let e: &CompiledEmit = e;
            if let Some(w) = &e.when {
                match self.ev.condition_holds(&row, w) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        failures.push(RejectRow {
                            row: Some(number),
                            column: err.column,
                            field: Some(format!("{}.when", e.table)),
                            mapping_line: Some(e.when_line as i32),
                            code: err.code,
                            reason: err.reason,
                            outcome: RejectOutcome::RowRejected,
                        });
                        continue;
                    }
                }
            }
            if let Some(Some(owner)) = self.once[ei].as_ref().map(|s| s.get(&person.person_id)) {
                // The person's row is this record's earlier version (replaced below): not
                // "already there".
                let own_record = owner.is_some() && *owner == existed;
                if !own_record {
                    continue;
                }
            }
            let layout: &TableLayout = &c.layouts[e.layout];
            let mut values = vec![Value::Null; layout.columns.len()];
            for (ci, x) in &e.fields {
                match self.ev.field(
                    &row,
                    &layout.columns[*ci],
                    x,
                    &emitted_ids,
                    person.shift_days,
                ) {
                    Ok(v) => values[*ci] = v,
                    Err(err) => {
                        if err.code == "missing_reference" && !failures.is_empty() {
                            continue; // a consequence of a failure already recorded
                        }
                        let rec = RejectRow {
                            row: Some(number),
                            column: err.column.or_else(|| x.column().map(str::to_string)),
                            field: Some(x.field.clone()),
                            mapping_line: Some(x.line as i32),
                            code: err.code,
                            reason: err.reason,
                            outcome: RejectOutcome::RowRejected,
                        };
                        // One record per failing cell: a cell read by several fields is
                        // recorded once.
                        let list = if x.on_error == OnError::Null {
                            &mut nulled
                        } else {
                            &mut failures
                        };
                        let seen = rec.column.is_some()
                            && list
                                .iter()
                                .any(|r| r.column == rec.column && r.code == rec.code);
                        if !seen {
                            let outcome = if x.on_error == OnError::Null {
                                RejectOutcome::CellNulled
                            } else {
                                RejectOutcome::RowRejected
                            };
                            list.push(RejectRow { outcome, ..rec });
                        }
                    }
                }
            }
            if !failures.is_empty() {
                continue;
            }
            if let Some(pc) = e.person_col {
                values[pc] = Value::Int4(person.person_id);
            }
            if let Some(pc) = e.pseudonym_col {
                values[pc] = Value::Text(person.pseudonym.as_str().to_string());
            }
            let id = match (e.id_col, self.pools[ei].as_mut()) {
                (Some(ic), Some(pool)) => {
                    let id = pool.next(seq)?;
                    values[ic] = Value::Int4(id);
                    Some(id)
                }
                _ => None,
            };
            emitted_ids[ei] = id;
            row_out.push(Pending {
                layout: e.layout,
                values,
                id,
                person_id: person.person_id,
                source_row: number,
                emit: ei as i16,
            });
        }
        if !failures.is_empty() {
            if existed.is_some() {
                failures[0]
                    .reason
                    .push_str("; the record's earlier version stays loaded");
            }
            self.batch.rejects.extend(failures);
            self.counts.rows_rejected += 1;
            if let Some(k) = &key {
                self.seen_keys.remove(k);
            }
            return Ok(());
        }
        if let Some(k) = &key {
            if let Some(origin) = existed {
                self.batch.replaced.push(origin);
                self.counts.records_updated += 1;
            } else {
                self.counts.records_added += 1;
            }
            self.writes.push(RecordWrite {
                hash: *k,
                content,
                row: number,
                deleted: false,
            });
        }
        if row_out.is_empty() {
            self.skip(number, "skipped_no_emit", "no emit applies to this row");
            return Ok(());
        }
        self.counts.cells_nulled += nulled.len() as i64;
        self.batch.rejects.extend(nulled);
        for p in &row_out {
            if let Some(set) = self.once[p.emit as usize].as_mut() {
                set.insert(person.person_id, Some((self.file_id, number)));
            }
            *self
                .tables
                .entry(c.layouts[p.layout].table.clone())
                .or_default() += 1;
        }
        self.counts.rows_loaded += 1;
        self.batch.pending.extend(row_out);
        self.buffered += 1;
        Ok(())
    }

    /// The batch so far, with the new person-map rows.
    fn take_batch(&mut self) -> Batch {
        self.buffered = 0;
        let mut b = std::mem::take(&mut self.batch);
        b.persons = self.resolver.take_new();
        b
    }
}

/// Load the rows of one unit through a compiled mapping in one transaction: the path every
/// source shares (see the module documentation). `unit` has passed [`ImportContext::skip_if_known`].
pub fn load_unit(
    ctx: &mut ImportContext<'_>,
    c: &Compiled,
    unit: &Unit,
    mut source: Box<dyn RowSource + Send + '_>,
) -> Result<UnitOutcome> {
    let mut out = UnitOutcome {
        file: unit.label.clone(),
        ..Default::default()
    };
    let header: Vec<String> = source.header().to_vec();
    let missing = check_header(c, &header);
    if !missing.is_empty() {
        return ctx.reject(
            unit,
            out,
            "missing_columns",
            format!(
                "the header lacks column(s) the mapping reads: {}",
                missing.join(", ")
            ),
        );
    }
    let keys = ctx.keys;
    let opts = ctx.opts;
    let source_name = unit.ident.source.clone();
    let key_id = ctx.key_id().to_string();
    let domain = keys.current.domain().to_string();
    let ledger = Ledger::new(ctx.run_id());
    let limits = ctx.limits;
    let progress = ctx.progress.clone();
    let mut tx = ctx.client.transaction()?;
    // One import at a time resolves persons (see PERSON_MAP_LOCK).
    tx.batch_execute(PERSON_MAP_LOCK)?;
    // The source's records (kept from the previous unit of the source when nobody else
    // imported it since, else folded from its record sets) are read on the second connection
    // while the unit's bookkeeping starts on the first.
    let keyed = unit.replace == Replace::Records;
    let cached = ctx.records.take();
    let seq_conn = &mut *ctx.seq;
    let src = source_name.as_str();
    type Setup<'k> = (
        Option<String>,
        i64,
        i64,
        Vec<Option<HashMap<i32, Option<RowOrigin>>>>,
        PersonResolver<'k>,
    );
    let (index, setup) = std::thread::scope(|scope| {
        let loader = scope.spawn(move || -> Result<RecordIndex> {
            if !keyed {
                return Ok(RecordIndex::default());
            }
            let stamp = Ledger::record_stamp(seq_conn, src)?;
            Ok(match cached {
                Some((s, idx)) if s == src && idx.stamp == stamp => idx,
                _ => Ledger::record_index(seq_conn, src)?,
            })
        });
        let setup = (|| -> Result<Setup<'_>> {
            let newest = ledger.newest_version(&mut tx, src)?;
            let replaced = ledger.supersede(&mut tx, &unit.ident, unit.replace)?;
            let file_id = ledger.begin(&mut tx, &unit.ident)?;
            let mut once: Vec<Option<HashMap<i32, Option<RowOrigin>>>> =
                Vec::with_capacity(c.emits.len());
            let mut by_table: HashMap<String, HashMap<i32, Option<RowOrigin>>> = HashMap::new();
            for (ei, e) in c.emits.iter().enumerate() {
                if !e.once_per_person {
                    once.push(None);
                } else if matches!(e.table.as_str(), "person" | "death") {
                    // One row per person in the whole table (its key).
                    if !by_table.contains_key(&e.table) {
                        let m = ledger.persons_in_table(&mut tx, &e.table)?;
                        by_table.insert(e.table.clone(), m);
                    }
                    once.push(Some(by_table[&e.table].clone()));
                } else {
                    once.push(Some(ledger.persons_with_rows(&mut tx, src, ei as i16)?));
                }
            }
            let mut resolver = PersonResolver::new(keys, opts.policy, Some(ledger.run_id));
            resolver.preload(&mut tx)?;
            Ok((newest, replaced, file_id, once, resolver))
        })();
        (loader.join().expect("the record loader panicked"), setup)
    });
    let index = index?;
    let (newest, replaced, file_id, once, resolver) = setup?;
    out.replaced_rows = replaced;
    let version = unit
        .version
        .clone()
        .unwrap_or_else(|| identity::import_order_key(file_id));
    let col = |name: &str| header.iter().position(|h| h == name);
    let ref_cols: Vec<usize> = referenced_columns(c).into_iter().filter_map(&col).collect();
    let key_cols: Vec<usize> = c
        .record
        .as_ref()
        .map(|r| r.key.iter().filter_map(|k| col(k)).collect())
        .unwrap_or_default();
    let snapshot = c.record.as_ref().is_some_and(|r| r.snapshot)
        && newest.as_deref().is_none_or(|n| version.as_str() >= n);
    let hasher = RecordHasher {
        keys,
        keyed_by_mapping: c.record.is_some(),
        key_cols,
        source: &source_name,
    };
    let mut reader = Reader {
        c,
        ev: Evaluator::new(c, &header, limits),
        resolver,
        pools: c
            .emits
            .iter()
            .map(|e| e.id_col.map(|_| IdPool::new(&e.table)))
            .collect(),
        once,
        index: &index,
        version: &version,
        file_id,
        writes: Vec::new(),
        keyed_by_mapping: c.record.is_some(),
        ref_cols,
        seen_rows: HashMap::default(),
        seen_keys: KeyMap::with_capacity_and_hasher(index.len(), DigestKeys),
        snapshot_seen: snapshot.then(Default::default),
        content: {
            use std::hash::Hasher;
            let k = keys.current.keyed_digest("record-content", b"");
            let mut h =
                siphasher::sip::SipHasher24::new_with_key(&k[..16].try_into().expect("16 bytes"));
            h.write(c.fingerprint.as_bytes());
            h
        },
        batch: Batch::default(),
        buffered: 0,
        counts: UnitCounts::default(),
        tables: BTreeMap::new(),
        progress: &progress,
        person_rows: if c.emits.iter().any(|e| e.table == "person") {
            None
        } else {
            ctx.person_rows.take()
        },
    };
    let target = batch::Target {
        ledger: &ledger,
        layouts: &c.layouts,
        file_id,
        mapping_file: Some(&c.file_name),
        key_id: &key_id,
        domain: &domain,
    };
    let seq = &mut *ctx.seq;

    // The reader (this thread) parses, pseudonymises and maps rows into batches; a writer
    // thread owns the transaction and COPYs each batch while the next one is built.
    // Sequences and record states are read on the separate `seq` connection (committed
    // state; sequences are not transactional).
    let writer_tx = &mut tx;
    let result = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Batch>(2);
        let target = &target;
        let writer = scope.spawn(move || -> Result<()> {
            for b in receiver {
                batch::write(writer_tx, target, &b)?;
            }
            Ok(())
        });
        let send = |b: Batch| -> Result<()> {
            if b.is_empty() {
                return Ok(());
            }
            sender
                .send(b)
                .map_err(|_| anyhow::anyhow!("the database writer stopped"))
        };
        // The rows are read and their records' keys hashed on a thread of their own, so that
        // a re-export whose records are mostly unchanged costs little more than its reading.
        // Reading, hashing and mapping are three stages of a pipeline.
        type Chunk = Result<Vec<(RowResult, Option<RecordKey>)>>;
        let (read_tx, read_rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
        let (rows_tx, rows_rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
        let hasher = &hasher;
        let source = &mut source;
        let producer = scope.spawn(move || {
            let mut chunk = Vec::with_capacity(HANDOFF);
            loop {
                match source.next_row() {
                    Ok(Some(r)) => {
                        chunk.push((r, None));
                        if chunk.len() == HANDOFF {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(HANDOFF));
                            if read_tx.send(Ok(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = read_tx.send(Err(anyhow::anyhow!(FileErrorMarker(e))));
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = read_tx.send(Ok(chunk));
            }
        });
        let hashing = scope.spawn(move || {
            for chunk in read_rx {
                let chunk = chunk.map(|mut rows| {
                    for (r, k) in rows.iter_mut() {
                        *k = hasher.hash(r);
                    }
                    rows
                });
                if rows_tx.send(chunk).is_err() {
                    return;
                }
            }
        });
        let result: Result<()> = (|| {
            for chunk in rows_rx.iter() {
                for (r, k) in chunk? {
                    reader.row(r, k, seq)?;
                    // Full batches, and now and then whatever a mostly unchanged file has
                    // changed, so the writer works while the reading goes on.
                    if reader.buffered >= opts.batch_rows
                        || (reader.counts.rows_in % 65_536 == 0 && !reader.batch.is_empty())
                    {
                        send(reader.take_batch())?;
                    }
                }
            }
            send(reader.take_batch())?;
            Ok(())
        })();
        // A reader that stopped early lets the producer stop too.
        drop(rows_rx);
        producer.join().expect("the row reader panicked");
        hashing.join().expect("the record hasher panicked");
        drop(sender);
        // A writer error is the cause of a reader's "writer stopped".
        writer
            .join()
            .expect("the writer thread panicked")
            .and(result)
    });
    out.counts = reader.counts;
    out.tables = std::mem::take(&mut reader.tables);
    if reader.person_rows.is_some() {
        ctx.person_rows = reader.person_rows.take();
    }

    if let Err(e) = result {
        drop(tx);
        if let Some(FileErrorMarker(fe)) = e.downcast_ref::<FileErrorMarker>() {
            let (code, reason) = (fe.code, fe.reason.clone());
            return ctx.reject(unit, out, code, reason);
        }
        return Err(e.context(format!("importing {}", unit.label)));
    }
    if let Some((column, (n, first))) = reader.ev.order_evidence.iter().next() {
        let (column, n, first) = (column.clone(), *n, *first);
        drop(tx);
        return ctx.reject(
            unit,
            out,
            "date_order",
            format!(
                "column `{column}`: {n} value(s), the first in row {first}, are dates only with day \
                 and month swapped, so the column is not in its declared date format and none of \
                 its dates can be trusted; fix date_formats (nothing of the file was loaded)"
            ),
        );
    }
    if c.mapping.spec.source.complete && out.counts.rows_rejected > 0 {
        drop(tx);
        let n = out.counts.rows_rejected;
        return ctx.reject(
            unit,
            out,
            "incomplete_file",
            format!("{n} row(s) rejected and the mapping says the file must load complete"),
        );
    }
    let mut writes = std::mem::take(&mut reader.writes);
    if let Some(seen) = reader.snapshot_seen.take() {
        // Snapshot: the live records (up to this version) the file does not hold are gone.
        let mut origins = Vec::new();
        for (k, s) in index.iter() {
            if !s.deleted && !index.newer(s, &version) && !seen.contains(k) {
                origins.push(s.origin);
                writes.push(RecordWrite {
                    hash: *k,
                    content: s.content,
                    row: 0,
                    deleted: true,
                });
                out.counts.records_deleted += 1;
            }
        }
        ledger.delete_rows_of(&mut tx, &origins)?;
    }
    ledger.write_record_set(&mut tx, &source_name, file_id, &version, &writes)?;
    ledger.finish(&mut tx, file_id, &out.counts)?;
    for ((at, code), n) in &reader.ev.unmapped {
        let label = match at {
            Lookup::ConceptMap(mi) => c.concept_maps[*mi].name.clone(),
            Lookup::ValueMap(field) => format!("value map {field}"),
        };
        ledger.add_unmapped(&mut tx, c.name(), &label, code, *n)?;
    }
    let read = referenced_columns(c);
    let dropped: Vec<&String> = header
        .iter()
        .filter(|h| !read.contains(h.as_str()))
        .collect();
    let rc = reader.resolver.counts;
    audit::append(
        &mut tx,
        &audit::Record {
            action: audit::action::IMPORT_BATCH,
            run_id: Some(ledger.run_id),
            locator_hash: Some(&unit.ident.locator_hash),
            key_id: Some(&key_id),
            detail: serde_json::json!({
                "source": source_name,
                "mapping": c.name(),
                "mapping_sha256": c.fingerprint,
                "content_sha256": unit.ident.content_sha256,
                "rows": {
                    "in": out.counts.rows_in, "loaded": out.counts.rows_loaded,
                    "rejected": out.counts.rows_rejected, "skipped": out.counts.rows_skipped,
                    "unchanged": out.counts.rows_unchanged, "cells_nulled": out.counts.cells_nulled,
                },
                "records": {
                    "added": out.counts.records_added, "updated": out.counts.records_updated,
                    "unchanged": out.counts.records_unchanged, "deleted": out.counts.records_deleted,
                },
                "replaced_rows": out.replaced_rows,
                "dates": date_policy_text(&opts.policy),
                "domain": domain,
                "columns_not_read": dropped,
                "rules": {
                    "identifiers_pseudonymised": rc.identifiers_pseudonymised,
                    "persons_created": rc.persons_created,
                    "bridged_from_previous_key": rc.bridged_from_previous_key,
                    "dates_shifted": reader.ev.dates_shifted,
                    "columns_dropped": dropped.len() as i64 * out.counts.rows_in,
                },
                "fhir": ctx.audit_fhir,
            }),
        },
    )?;
    tx.commit().context("could not commit the file")?;
    crate::failpoint::hit(&format!("unit:{source_name}"));
    drop(reader);
    if unit.replace == Replace::Records {
        let mut index = index;
        if !writes.is_empty() {
            index.apply(file_id, &version, &writes);
            index.stamp = (index.stamp.0 + 1, file_id);
        }
        ctx.records = Some((source_name.clone(), index));
    }
    debug_assert!(out.counts.balanced(), "{:?}", out.counts);
    out.status = FileStatus::Loaded;
    Ok(out)
}
