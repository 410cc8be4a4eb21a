//! The shared import path: one file through a compiled mapping into the cdm tables.
//!
//! A file is hashed first; an unchanged file (same locator, same content) is skipped. A changed
//! file replaces, through lineage, every row its earlier version produced. Everything for one
//! file happens in one transaction: rows are pseudonymised and mapped in batches, each batch
//! written with binary COPY together with its lineage and rejects; at the end the ledger, the
//! unmapped-code counts and one audit entry are written and the transaction commits. A file
//! is loaded whole or not at all, and every source row ends loaded, rejected (with reason) or
//! skipped (with reason).

use crate::load::copy::{parse_cell, ColumnDef, PgType, TableLayout, Value};
use crate::mapping::check::{check_header, Compiled, CompiledEmit, CompiledExpr, IdSource, Src};
use crate::mapping::{Condition, Format};
use crate::privacy::audit;
use crate::privacy::keys::Keys;
use crate::privacy::persons::{NewPseudonym, PersonResolver, PERSON_MAP_LOCK};
use crate::sources::csv::{choose_decoder, sniff, CsvSource};
use crate::sources::{FileError, RowResult, RowSource, SourceRow};
use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use postgres::types::ToSql;
use registrar_anonymizer::dateshift::{checked_shift_date, checked_shift_datetime, DatePolicy};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

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

/// What happened to one file.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileOutcome {
    pub file: String,
    pub status: String,
    pub rows_in: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
    pub reason: Option<String>,
    pub tables: std::collections::BTreeMap<String, i64>,
}

struct IdPool {
    seq: String,
    ids: Vec<i32>,
}

impl IdPool {
    fn next(&mut self, db: &mut impl postgres::GenericClient) -> Result<i32> {
        if self.ids.is_empty() {
            let rows = db.query(
                "SELECT nextval($1::text::regclass)::int4 FROM generate_series(1, 10000)",
                &[&self.seq],
            )?;
            self.ids = rows.iter().rev().map(|r| r.get(0)).collect();
        }
        Ok(self.ids.pop().expect("refilled"))
    }
}

struct Pending {
    layout: usize,
    values: Vec<Value>,
    id: Option<i32>,
    source_row: i64,
    /// Keyed hash of the source row's logical identity, when it has one.
    source_key: Option<String>,
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

/// What the reader hands the writer: mapped rows, rejects, new person-map rows.
struct Batch {
    pending: Vec<Pending>,
    rejects: Vec<RejectRow>,
    persons: Vec<NewPseudonym>,
    /// Row keys (keyed hashes) whose earlier rows this batch replaces or deletes.
    replaced_keys: Vec<String>,
}

/// Purpose of the keyed hash of a row's logical identity (`SourceRow::key`).
pub const ROW_KEY_PURPOSE: &str = "source-record";

/// Delete every cdm row (and its lineage) produced earlier by the source records with these
/// keyed hashes; returns the rows deleted.
pub fn delete_rows_by_keys(tx: &mut impl postgres::GenericClient, keys: &[String]) -> Result<i64> {
    if keys.is_empty() {
        return Ok(0);
    }
    delete_by_lineage(tx, "source_key = ANY($1)", &keys)
}

/// Delete the cdm rows whose lineage matches `filter` (SQL over registry.lineage with one
/// parameter, `$1`), then that lineage; returns the cdm rows deleted.
fn delete_by_lineage(
    tx: &mut impl postgres::GenericClient,
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
                "DELETE FROM cdm.{t} WHERE {key} IN
                   (SELECT cdm_row_id FROM registry.lineage WHERE {filter} AND cdm_table = $2)"
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

/// Write new person-map rows (bulk mode) with binary COPY.
fn write_persons(
    tx: &mut postgres::Transaction<'_>,
    keys: &Keys,
    run_id: i64,
    persons: &[NewPseudonym],
) -> Result<()> {
    if persons.is_empty() {
        return Ok(());
    }
    use postgres::types::Type;
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
    let key_id = keys.current.key_id().as_str();
    let domain = keys.current.domain();
    for p in persons {
        w.write(&[
            &p.pseudonym,
            &p.person_id,
            &p.identifier_type.as_str(),
            &key_id,
            &domain,
            &run_id,
        ])?;
    }
    w.finish().context("could not write the person map")?;
    Ok(())
}

struct RejectRow {
    row: Option<i64>,
    column: Option<String>,
    code: &'static str,
    reason: String,
}

fn condition_holds(c: &Condition, v: &str) -> bool {
    let v = v.trim();
    if c.not_empty && v.is_empty() {
        return false;
    }
    if let Some(e) = &c.equals {
        if !v.eq_ignore_ascii_case(e) {
            return false;
        }
    }
    if let Some(list) = &c.one_of {
        if !list.iter().any(|x| x.eq_ignore_ascii_case(v)) {
            return false;
        }
    }
    if let Some(list) = &c.not_in {
        if list.iter().any(|x| x.eq_ignore_ascii_case(v)) {
            return false;
        }
    }
    true
}

fn parse_date(raw: &str, formats: &[String]) -> Option<NaiveDate> {
    for f in formats {
        if let Ok(d) = NaiveDate::parse_from_str(raw, f) {
            return Some(d);
        }
        if let Ok(dt) = NaiveDateTime::parse_from_str(raw, f) {
            return Some(dt.date());
        }
    }
    iso_datetime(raw)
        .or_else(|| excel_serial(raw))
        .map(|dt| dt.date())
}

/// An ISO 8601 / FHIR date-time (`2024-05-01T10:00:00+02:00`, `...Z`, or without offset),
/// as the local time it names: OMOP keeps local date-times.
fn iso_datetime(raw: &str) -> Option<NaiveDateTime> {
    let t = raw.trim();
    if t.len() < 19 || t.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.naive_local())
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
}

fn parse_datetime(raw: &str, formats: &[String]) -> Option<NaiveDateTime> {
    for f in formats {
        if let Ok(dt) = NaiveDateTime::parse_from_str(raw, f) {
            return Some(dt);
        }
        if let Ok(d) = NaiveDate::parse_from_str(raw, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    iso_datetime(raw).or_else(|| excel_serial(raw))
}

/// Excel serial date (days since 1899-12-30, fraction = time of day).
fn excel_serial(raw: &str) -> Option<NaiveDateTime> {
    let n: f64 = raw.parse().ok()?;
    if !(1.0..2_958_466.0).contains(&n) {
        return None;
    }
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let secs = (n * 86_400.0).round() as i64;
    base.checked_add_signed(chrono::Duration::seconds(secs))
}

fn parse_number(raw: &str, decimal_comma: bool) -> Option<Decimal> {
    let t = raw.trim();
    let owned;
    let t = if decimal_comma {
        owned = t.replace('.', "").replace(',', ".");
        owned.as_str()
    } else {
        t
    };
    Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .ok()
}

/// Per-file state of the evaluator.
struct Evaluator<'a> {
    c: &'a Compiled,
    cols: HashMap<&'a str, usize>,
    opts: &'a ImportOptions,
    unmapped: HashMap<(usize, String), i64>,
    dates_shifted: i64,
}

impl Evaluator<'_> {
    fn raw<'r>(&self, row: &'r SourceRow, name: &str) -> &'r str {
        self.cols
            .get(name)
            .map(|&i| row.fields[i].as_str())
            .unwrap_or("")
    }

    /// Evaluate one field into the target column's type.
    fn field(
        &mut self,
        row: &SourceRow,
        target: &ColumnDef,
        x: &CompiledExpr,
        ids: &[Option<i32>],
        shift: i32,
    ) -> Result<Value, (&'static str, String)> {
        let text: String = match &x.src {
            Src::Const(v) => return Ok(v.clone()),
            Src::IdOf(i) => {
                return ids[*i].map(Value::Int4).ok_or((
                    "missing_reference",
                    format!("{}: the referenced emit produced no row", target.name),
                ))
            }
            Src::RowNumber => row.number.to_string(),
            Src::ConstText(s) => s.clone(),
            Src::Column(c) => self.raw(row, c).trim().to_string(),
        };
        let mut text = text;
        if let (Some(values), Src::Column(_)) = (&x.values, &x.src) {
            if !text.is_empty() {
                match values.get(&text.to_lowercase()) {
                    Some(v) => text = v.clone(),
                    None => match &x.otherwise {
                        Some(o) => text = o.clone(),
                        None => {
                            return Err((
                                "value_not_mapped",
                                format!(
                                    "{}: the value is not in the field's value map",
                                    target.name
                                ),
                            ))
                        }
                    },
                }
            }
        }
        if let (Some((mi, ci)), Src::Column(_)) = (x.lookup, &x.src) {
            if !text.is_empty() {
                let map = &self.c.concept_maps[mi];
                match map.get(&text, ci) {
                    Some(v) => text = v.map(|i| i.to_string()).unwrap_or_default(),
                    None => {
                        *self
                            .unmapped
                            .entry((mi, text.trim().to_uppercase()))
                            .or_default() += 1;
                        text = if map.columns[ci] == "target_concept_id" {
                            "0".into()
                        } else {
                            String::new()
                        };
                    }
                }
            }
        }
        if text.is_empty() {
            if x.required || target.not_null {
                return Err((
                    "required_empty",
                    format!("{} is required but the source value is empty", target.name),
                ));
            }
            return Ok(Value::Null);
        }
        let src = &self.c.mapping.spec.source;
        let bad = |what: &str| ("unparseable", format!("{}: not {what}", target.name));
        let check_date = |d: NaiveDate| -> Result<(), (&'static str, String)> {
            if d.year() < 1900 {
                return Err((
                    "date_before_1900",
                    format!("{}: date before 1900", target.name),
                ));
            }
            if d > self.opts.today {
                return Err((
                    "date_in_future",
                    format!("{}: date in the future", target.name),
                ));
            }
            Ok(())
        };
        if let Some(part) = &x.part {
            let d = parse_date(&text, &x.date_formats).ok_or_else(|| bad("a date"))?;
            check_date(d)?;
            let d = checked_shift_date(d, shift).ok_or_else(|| bad("a shiftable date"))?;
            self.dates_shifted += (shift != 0) as i64;
            let n = match part.as_str() {
                "year" => d.year(),
                "month" => d.month() as i32,
                _ => d.day() as i32,
            };
            return Ok(Value::Int4(n));
        }
        match target.ty {
            PgType::Date => {
                let d = parse_date(&text, &x.date_formats)
                    .ok_or_else(|| bad("a date in the mapping's formats"))?;
                check_date(d)?;
                self.dates_shifted += (shift != 0) as i64;
                checked_shift_date(d, shift)
                    .map(Value::Date)
                    .ok_or_else(|| bad("a shiftable date"))
            }
            PgType::Timestamp => {
                let d = parse_datetime(&text, &x.date_formats)
                    .ok_or_else(|| bad("a date/time in the mapping's formats"))?;
                check_date(d.date())?;
                self.dates_shifted += (shift != 0) as i64;
                checked_shift_datetime(d, shift)
                    .map(Value::Timestamp)
                    .ok_or_else(|| bad("a shiftable date/time"))
            }
            PgType::Int4 | PgType::Int8 | PgType::Numeric => {
                let mut n =
                    parse_number(&text, src.decimal_comma).ok_or_else(|| bad("a number"))?;
                if x.scale.is_some() || x.offset.is_some() {
                    let f = n.to_f64().ok_or_else(|| bad("a number"))? * x.scale.unwrap_or(1.0)
                        + x.offset.unwrap_or(0.0);
                    n = Decimal::from_f64(f).ok_or_else(|| bad("a finite number"))?;
                }
                match target.ty {
                    PgType::Numeric => Ok(Value::Numeric(n.normalize())),
                    PgType::Int4 => {
                        if n.fract() != Decimal::ZERO {
                            return Err(bad("a whole number"));
                        }
                        n.to_i32()
                            .map(Value::Int4)
                            .ok_or_else(|| bad("a 32-bit integer"))
                    }
                    _ => n.to_i64().map(Value::Int8).ok_or_else(|| bad("an integer")),
                }
            }
            PgType::Text => parse_cell(target, &text).map_err(|e| ("too_long", e)),
        }
    }
}

/// What identifies a source file in the ledger.
struct FileIdent<'a> {
    kind: &'a str,
    mapping: &'a str,
    locator_hash: &'a str,
    sha: &'a str,
    size: u64,
}

impl FileIdent<'_> {
    /// Record this file as rejected, in its own transaction, and say so in `out`.
    fn reject(
        &self,
        client: &mut postgres::Client,
        keys: &Keys,
        run_id: i64,
        out: &mut FileOutcome,
        code: &'static str,
        reason: String,
    ) -> Result<()> {
        reject_file(client, keys, run_id, self, code, &reason)?;
        out.status = "rejected".into();
        out.reason = Some(reason);
        Ok(())
    }
}

/// Record a file the importer could not use at all, in its own transaction.
fn reject_file(
    client: &mut postgres::Client,
    keys: &Keys,
    run_id: i64,
    f: &FileIdent<'_>,
    code: &'static str,
    reason: &str,
) -> Result<()> {
    let FileIdent {
        kind,
        mapping,
        locator_hash,
        sha,
        size,
    } = *f;
    let mut tx = client.transaction()?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO registry.source_file (source_kind, locator_hash, content_sha256, byte_size, mapping_name, run_id, status, reason)
             VALUES ($1, $2, $3, $4, $5, $6, 'rejected', $7) RETURNING source_file_id",
            &[&kind, &locator_hash, &sha, &(size as i64), &mapping, &run_id, &reason],
        )?
        .get(0);
    tx.execute(
        "INSERT INTO registry.reject (run_id, source_file_id, reason_code, reason) VALUES ($1, $2, $3, $4)",
        &[&run_id, &id, &code, &reason],
    )?;
    audit::append(
        &mut tx,
        &audit::Record {
            action: audit::action::REJECTED,
            run_id: Some(run_id),
            locator_hash: Some(locator_hash),
            key_id: Some(keys.current.key_id().as_str()),
            detail: serde_json::json!({ "mapping": mapping, "reason": reason, "content_sha256": sha }),
        },
    )?;
    tx.commit()?;
    Ok(())
}

/// Delete every cdm row (and lineage) a source file produced; returns rows deleted.
pub fn delete_file_rows(tx: &mut impl postgres::GenericClient, source_file_id: i64) -> Result<i64> {
    delete_by_lineage(tx, "source_file_id = $1", &source_file_id)
}

/// Replace the loaded earlier versions of a source (same locator): delete every row they
/// produced (through lineage) and mark them superseded. Returns the rows deleted.
pub fn supersede_previous(
    tx: &mut impl postgres::GenericClient,
    locator_hash: &str,
) -> Result<i64> {
    let previous: Vec<i64> = tx
        .query(
            "SELECT source_file_id FROM registry.source_file WHERE locator_hash = $1 AND status = 'loaded'",
            &[&locator_hash],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut replaced = 0;
    for id in &previous {
        replaced += delete_file_rows(tx, *id)?;
        tx.execute(
            "UPDATE registry.source_file SET status = 'superseded' WHERE source_file_id = $1",
            &[id],
        )?;
    }
    Ok(replaced)
}

/// Import one file through a compiled mapping.
#[allow(clippy::too_many_arguments)]
pub fn import_file(
    client: &mut postgres::Client,
    seq: &mut postgres::Client,
    c: &Compiled,
    keys: &Keys,
    run_id: i64,
    path: &Path,
    opts: &ImportOptions,
    bar: &indicatif::ProgressBar,
) -> Result<FileOutcome> {
    let spec = &c.mapping.spec;
    let mapping_name = spec.source.name.as_str();
    let kind = match spec.source.format {
        Format::Csv => "csv",
        Format::Xlsx => "xlsx",
        Format::Fhir => anyhow::bail!(
            "{}: a FHIR mapping reads resources, not files: use `registrar import fhir` or `registrar import fhir-bulk`",
            c.mapping.path.display()
        ),
    };
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut out = FileOutcome {
        file: path.display().to_string(),
        ..Default::default()
    };
    let sn = sniff(path).with_context(|| format!("cannot read {}", path.display()))?;
    let locator_hash = keys
        .current
        .locator_hash(&format!("{mapping_name}/{fname}"));

    let unit = Unit {
        kind,
        locator_hash: &locator_hash,
        sha256: &sn.sha256,
        size: sn.size,
        label: &path.display().to_string(),
        replace: Replace::EarlierVersions,
    };
    if let Some(reason) = skip_if_unchanged(client, &unit, mapping_name, run_id)? {
        out.status = "skipped".into();
        out.reason = Some(reason);
        return Ok(out);
    }

    let ident = FileIdent {
        kind,
        mapping: mapping_name,
        locator_hash: &locator_hash,
        sha: &sn.sha256,
        size: sn.size,
    };
    let fail = |client: &mut postgres::Client, out: &mut FileOutcome, code, reason| {
        ident.reject(client, keys, run_id, out, code, reason)
    };
    if sn.size == 0 {
        fail(
            client,
            &mut out,
            "empty_file",
            "the file is empty (0 bytes)".into(),
        )?;
        return Ok(out);
    }
    let source: Box<dyn RowSource> = match spec.source.format {
        Format::Csv => {
            let opened = choose_decoder(spec.source.encoding, &sn).and_then(|d| {
                CsvSource::open(
                    path,
                    spec.source.delimiter,
                    spec.source.quote,
                    spec.source.header_row,
                    d,
                    sn.bom && d == crate::sources::csv::Decoder::Utf8,
                )
            });
            match opened {
                Ok(s) => Box::new(s),
                Err(FileError(e)) => {
                    fail(client, &mut out, "unreadable_file", e)?;
                    return Ok(out);
                }
            }
        }
        Format::Fhir => anyhow::bail!("a FHIR mapping reads resources, not files"),
        Format::Xlsx => match crate::sources::xlsx::XlsxSource::open(path, &spec.source, sn.zip) {
            Ok(s) => Box::new(s),
            Err(FileError(e)) => {
                fail(client, &mut out, "unreadable_file", e)?;
                return Ok(out);
            }
        },
    };
    load_unit(client, seq, c, keys, run_id, &unit, source, opts, bar, out)
}

/// When a unit with the same locator and content was loaded before, record it as skipped
/// and return the reason.
pub fn skip_if_unchanged(
    client: &mut postgres::Client,
    unit: &Unit<'_>,
    mapping_name: &str,
    run_id: i64,
) -> Result<Option<String>> {
    let unchanged = client.query_opt(
        "SELECT run_id FROM registry.source_file
          WHERE locator_hash = $1 AND content_sha256 = $2 AND status = 'loaded' LIMIT 1",
        &[&unit.locator_hash, &unit.sha256],
    )?;
    let Some(r) = unchanged else { return Ok(None) };
    let first: i64 = r.get(0);
    let reason = format!("unchanged since run {first}");
    client.execute(
        "INSERT INTO registry.source_file (source_kind, locator_hash, content_sha256, byte_size, mapping_name, run_id, status, reason)
         VALUES ($1, $2, $3, $4, $5, $6, 'skipped', $7)",
        &[&unit.kind, &unit.locator_hash, &unit.sha256, &(unit.size as i64), &mapping_name, &run_id, &reason],
    )?;
    Ok(Some(reason))
}

/// One unit of input (a file, a page of FHIR resources) as the ledger
/// (`registry.source_file`) records it.
pub struct Unit<'a> {
    /// `csv`, `xlsx`, `fhir`, ...
    pub kind: &'a str,
    /// Keyed hash of where it came from.
    pub locator_hash: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    /// How messages name it (never stored).
    pub label: &'a str,
    pub replace: Replace,
}

/// What a loaded unit replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// The rows of earlier loaded versions of the same unit (same locator): a re-exported file.
    EarlierVersions,
    /// The rows earlier units produced from records with the same row key
    /// (`SourceRow::key`): FHIR resources that come back updated, or deleted.
    ByRowKey,
}

/// Load the rows of one unit through a compiled mapping in one transaction: the path every
/// source shares (person resolution, mapping, binary COPY with lineage, rejects, ledger,
/// unmapped codes, one audit entry).
#[allow(clippy::too_many_arguments)]
pub fn load_unit(
    client: &mut postgres::Client,
    seq: &mut postgres::Client,
    c: &Compiled,
    keys: &Keys,
    run_id: i64,
    unit: &Unit<'_>,
    mut source: Box<dyn RowSource + '_>,
    opts: &ImportOptions,
    bar: &indicatif::ProgressBar,
    mut out: FileOutcome,
) -> Result<FileOutcome> {
    let spec = &c.mapping.spec;
    let mapping_name = spec.source.name.as_str();
    let kind = unit.kind;
    let locator_hash = unit.locator_hash.to_string();
    let ident = FileIdent {
        kind,
        mapping: mapping_name,
        locator_hash: &locator_hash,
        sha: unit.sha256,
        size: unit.size,
    };
    let fail = |client: &mut postgres::Client, out: &mut FileOutcome, code, reason| {
        ident.reject(client, keys, run_id, out, code, reason)
    };
    let header: Vec<String> = source.header().to_vec();
    let missing = check_header(c, &header);
    if !missing.is_empty() {
        fail(
            client,
            &mut out,
            "missing_columns",
            format!(
                "the header lacks column(s) the mapping reads: {}",
                missing.join(", ")
            ),
        )?;
        return Ok(out);
    }

    let mut tx = client.transaction()?;
    // One import at a time resolves persons (see PERSON_MAP_LOCK).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PERSON_MAP_LOCK])?;
    // Earlier versions of this file are replaced.
    let replaced = match unit.replace {
        Replace::EarlierVersions => supersede_previous(&mut tx, &locator_hash)?,
        Replace::ByRowKey => 0,
    };
    let file_id: i64 = tx
        .query_one(
            "INSERT INTO registry.source_file (source_kind, locator_hash, content_sha256, byte_size, mapping_name, run_id, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'loading') RETURNING source_file_id",
            &[&kind, &locator_hash, &unit.sha256, &(unit.size as i64), &mapping_name, &run_id],
        )?
        .get(0);

    let mut persons_with_row: HashMap<String, HashSet<i32>> = HashMap::new();
    for e in &c.emits {
        if e.once_per_person && !persons_with_row.contains_key(&e.table) {
            let ids: HashSet<i32> = tx
                .query(
                    &format!("SELECT DISTINCT person_id FROM cdm.{}", e.table),
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            persons_with_row.insert(e.table.clone(), ids);
        }
    }
    // With row keys, a record that comes back replaces its own one-per-person row (deleted
    // by the writer before the new one is copied): that row must not count as "already
    // there". Which record produced each such row:
    let mut row_owner: HashMap<(String, i32), String> = HashMap::new();
    if unit.replace == Replace::ByRowKey {
        for table in persons_with_row.keys() {
            for r in tx.query(
                "SELECT cdm_row_id, source_key FROM registry.lineage
                  WHERE cdm_table = $1 AND source_key IS NOT NULL",
                &[table],
            )? {
                let id: i64 = r.get(0);
                row_owner.insert((table.clone(), id as i32), r.get(1));
            }
        }
    }
    let mut pools: Vec<Option<IdPool>> = c
        .emits
        .iter()
        .map(|e| {
            e.id_col.map(|_| IdPool {
                seq: format!("registry.seq_{}_id", e.table),
                ids: Vec::new(),
            })
        })
        .collect();
    let mut resolver = PersonResolver::new(keys, opts.policy, Some(run_id));
    resolver.preload(&mut tx)?;
    let mut ev = Evaluator {
        c,
        cols: header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect(),
        opts,
        unmapped: HashMap::new(),
        dates_shifted: 0,
    };
    // Exact duplicates: 64 bits of SHA-256 per row and the first row number, about 16 bytes
    // per row (10 million rows in 160 MB).
    let mut seen: HashMap<u64, u32, BuildPassThrough> = HashMap::default();
    let mut seen_keys: HashSet<String> = HashSet::new();
    let mut replaced_keys: Vec<String> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut rejects: Vec<RejectRow> = Vec::new();
    let mut tables: std::collections::BTreeMap<String, i64> = Default::default();
    let mut buffered_rows = 0usize;

    // The reader (this thread) parses, pseudonymises and maps rows into batches; a writer
    // thread owns the transaction and COPYs each batch while the next one is being built.
    // Sequences (person ids, row ids) are drawn on the separate `seq` connection: they are
    // not transactional, so that changes nothing but lets the reader run without the
    // transaction.
    let writer_tx = &mut tx;
    let result = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Batch>(2);
        let writer = scope.spawn(move || -> Result<()> {
            for mut b in receiver {
                delete_rows_by_keys(writer_tx, &b.replaced_keys)?;
                write_persons(writer_tx, keys, run_id, &b.persons)?;
                flush(
                    writer_tx,
                    c,
                    file_id,
                    run_id,
                    &mut b.pending,
                    &mut b.rejects,
                )?;
            }
            Ok(())
        });
        let send = |pending: &mut Vec<Pending>,
                    rejects: &mut Vec<RejectRow>,
                    resolver: &mut PersonResolver<'_>,
                    replaced_keys: &mut Vec<String>|
         -> Result<()> {
            let b = Batch {
                pending: std::mem::take(pending),
                rejects: std::mem::take(rejects),
                persons: resolver.take_new(),
                replaced_keys: std::mem::take(replaced_keys),
            };
            sender
                .send(b)
                .map_err(|_| anyhow::anyhow!("the database writer stopped"))
        };
        let result: Result<()> = (|| {
            loop {
                let next = match source.next_row() {
                    Ok(n) => n,
                    Err(FileError(e)) => anyhow::bail!(FileErrorMarker(e)),
                };
                let Some(next) = next else { break };
                out.rows_in += 1;
                bar.inc(1);
                let row = match next {
                    RowResult::Bad {
                        number,
                        code,
                        reason,
                        ..
                    } => {
                        rejects.push(RejectRow {
                            row: Some(number as i64),
                            column: None,
                            code,
                            reason,
                        });
                        out.rows_rejected += 1;
                        continue;
                    }
                    RowResult::Deleted { number, key } => {
                        let k = keys.current.keyed_hash(ROW_KEY_PURPOSE, key.as_bytes());
                        if seen_keys.insert(k.clone()) {
                            replaced_keys.push(k);
                        }
                        rejects.push(RejectRow {
                            row: Some(number as i64),
                            column: None,
                            code: "skipped_deleted",
                            reason: "deleted at the source: the rows it produced are removed"
                                .into(),
                        });
                        out.rows_skipped += 1;
                        continue;
                    }
                    RowResult::Row(r) => r,
                };
                if let Some((col, reason)) = row.cell_errors.first() {
                    rejects.push(RejectRow {
                        row: Some(row.number as i64),
                        column: Some(col.clone()),
                        code: "error_cell",
                        reason: reason.clone(),
                    });
                    out.rows_rejected += 1;
                    continue;
                }
                // Exact duplicates of an earlier row are skipped.
                let digest = {
                    use sha2::{Digest, Sha256};
                    let mut h = Sha256::new();
                    for f in &row.fields {
                        h.update((f.len() as u64).to_le_bytes());
                        h.update(f.as_bytes());
                    }
                    let d = h.finalize();
                    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
                };
                if let Some(first) = seen.get(&digest) {
                    rejects.push(RejectRow {
                        row: Some(row.number as i64),
                        column: None,
                        code: "skipped_duplicate",
                        reason: format!("duplicate of row {first}"),
                    });
                    out.rows_skipped += 1;
                    continue;
                }
                seen.insert(digest, u32::try_from(row.number).unwrap_or(u32::MAX));
                // A record seen twice in one unit loads once; its key replaces earlier rows.
                let row_key = match (&row.key, unit.replace) {
                    (Some(k), Replace::ByRowKey) => {
                        let k = keys.current.keyed_hash(ROW_KEY_PURPOSE, k.as_bytes());
                        if !seen_keys.insert(k.clone()) {
                            rejects.push(RejectRow {
                                row: Some(row.number as i64),
                                column: None,
                                code: "skipped_duplicate",
                                reason: "the same record appeared earlier in this batch".into(),
                            });
                            out.rows_skipped += 1;
                            continue;
                        }
                        replaced_keys.push(k.clone());
                        Some(k)
                    }
                    _ => None,
                };

                // Who is it about?
                let mut idvals: Vec<(registrar_anonymizer::pseudonym::IdentifierType, String)> =
                    Vec::new();
                for id in &c.identifiers {
                    let v = match &id.source {
                        IdSource::Column(col) => ev.raw(&row, col).to_string(),
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
                let person = match resolver.resolve(seq, &ids) {
                    Ok(p) => p,
                    Err(crate::privacy::persons::ResolveError::Db(e)) => return Err(e),
                    Err(e) => {
                        rejects.push(RejectRow {
                            row: Some(row.number as i64),
                            column: None,
                            code: "person",
                            reason: e.to_string(),
                        });
                        out.rows_rejected += 1;
                        continue;
                    }
                };

                // Every emit of the row, or none.
                let mut row_out: Vec<Pending> = Vec::new();
                let mut emitted_ids: Vec<Option<i32>> = vec![None; c.emits.len()];
                let mut failure: Option<(Option<String>, &'static str, String)> = None;
                for (ei, e) in c.emits.iter().enumerate() {
                    let e: &CompiledEmit = e;
                    if let Some(w) = &e.when {
                        if !condition_holds(w, ev.raw(&row, &w.column)) {
                            continue;
                        }
                    }
                    if e.once_per_person
                        && persons_with_row
                            .get(&e.table)
                            .is_some_and(|s| s.contains(&person.person_id))
                        && !(row_key.is_some()
                            && row_owner.get(&(e.table.clone(), person.person_id))
                                == row_key.as_ref())
                    {
                        continue;
                    }
                    let layout: &TableLayout = &c.layouts[e.layout];
                    let mut values = vec![Value::Null; layout.columns.len()];
                    for (ci, x) in &e.fields {
                        match ev.field(
                            &row,
                            &layout.columns[*ci],
                            x,
                            &emitted_ids,
                            person.shift_days,
                        ) {
                            Ok(v) => values[*ci] = v,
                            Err((code, reason)) => {
                                failure =
                                    Some((Some(layout.columns[*ci].name.clone()), code, reason));
                                break;
                            }
                        }
                    }
                    if failure.is_some() {
                        break;
                    }
                    if let Some(pc) = e.person_col {
                        values[pc] = Value::Int4(person.person_id);
                    }
                    if let Some(pc) = e.pseudonym_col {
                        values[pc] = Value::Text(person.pseudonym.as_str().to_string());
                    }
                    let id = match (e.id_col, pools[ei].as_mut()) {
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
                        source_row: row.number as i64,
                        source_key: row_key.clone(),
                    });
                }
                if let Some((column, code, reason)) = failure {
                    rejects.push(RejectRow {
                        row: Some(row.number as i64),
                        column,
                        code,
                        reason,
                    });
                    out.rows_rejected += 1;
                    continue;
                }
                if row_out.is_empty() {
                    rejects.push(RejectRow {
                        row: Some(row.number as i64),
                        column: None,
                        code: "skipped_no_emit",
                        reason: "no emit applies to this row".into(),
                    });
                    out.rows_skipped += 1;
                    continue;
                }
                for p in &row_out {
                    let e_table = &c.layouts[p.layout].table;
                    if let Some(set) = persons_with_row.get_mut(e_table) {
                        set.insert(person.person_id);
                    }
                    *tables.entry(e_table.clone()).or_default() += 1;
                }
                out.rows_loaded += 1;
                pending.extend(row_out);
                buffered_rows += 1;
                if buffered_rows >= opts.batch_rows {
                    send(
                        &mut pending,
                        &mut rejects,
                        &mut resolver,
                        &mut replaced_keys,
                    )?;
                    buffered_rows = 0;
                }
            }
            send(
                &mut pending,
                &mut rejects,
                &mut resolver,
                &mut replaced_keys,
            )?;
            Ok(())
        })();
        drop(sender);
        // A writer error is the cause of a reader's "writer stopped".
        writer
            .join()
            .expect("the writer thread panicked")
            .and(result)
    });

    if let Err(e) = result {
        drop(tx);
        if let Some(FileErrorMarker(msg)) = e.downcast_ref::<FileErrorMarker>() {
            let msg = msg.clone();
            fail(client, &mut out, "unreadable_file", msg)?;
            out.rows_loaded = 0;
            return Ok(out);
        }
        return Err(e.context(format!("importing {}", unit.label)));
    }
    if spec.source.complete && out.rows_rejected > 0 {
        drop(tx);
        let n = out.rows_rejected;
        fail(
            client,
            &mut out,
            "incomplete_file",
            format!("{n} row(s) rejected and the mapping says the file must load complete"),
        )?;
        out.rows_loaded = 0;
        return Ok(out);
    }
    tx.execute(
        "UPDATE registry.source_file SET status = 'loaded', rows_in = $2, rows_loaded = $3, rows_rejected = $4, rows_skipped = $5
          WHERE source_file_id = $1",
        &[&file_id, &out.rows_in, &out.rows_loaded, &out.rows_rejected, &out.rows_skipped],
    )?;
    for ((mi, code), n) in &ev.unmapped {
        tx.execute(
            "INSERT INTO registry.unmapped_code (mapping_name, concept_map, source_code, occurrences, last_run_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (mapping_name, concept_map, source_code)
             DO UPDATE SET occurrences = registry.unmapped_code.occurrences + EXCLUDED.occurrences,
                           last_seen = now(), last_run_id = EXCLUDED.last_run_id",
            &[&mapping_name, &c.concept_maps[*mi].name, code, n, &run_id],
        )?;
    }
    let read: HashSet<&str> = referenced_columns(c);
    let dropped: Vec<&String> = header
        .iter()
        .filter(|h| !read.contains(h.as_str()))
        .collect();
    let rc = resolver.counts;
    audit::append(
        &mut tx,
        &audit::Record {
            action: audit::action::IMPORT_BATCH,
            run_id: Some(run_id),
            locator_hash: Some(&locator_hash),
            key_id: Some(keys.current.key_id().as_str()),
            detail: serde_json::json!({
                "mapping": mapping_name,
                "content_sha256": unit.sha256,
                "rows": { "in": out.rows_in, "loaded": out.rows_loaded, "rejected": out.rows_rejected, "skipped": out.rows_skipped },
                "replaced_rows": replaced,
                "dates": date_policy_text(&opts.policy),
                "domain": keys.current.domain(),
                "columns_not_read": dropped,
                "rules": {
                    "identifiers_pseudonymised": rc.identifiers_pseudonymised,
                    "persons_created": rc.persons_created,
                    "bridged_from_previous_key": rc.bridged_from_previous_key,
                    "dates_shifted": ev.dates_shifted,
                    "columns_dropped": dropped.len() as i64 * out.rows_in,
                },
            }),
        },
    )?;
    tx.commit().context("could not commit the file")?;
    out.status = "loaded".into();
    out.tables = tables;
    Ok(out)
}

/// The date policy as recorded in the audit log.
pub fn date_policy_text(p: &DatePolicy) -> String {
    match p {
        DatePolicy::KeepTrueDates => "keep true dates".into(),
        DatePolicy::Shift(w) => format!("shift {}..{} days per person", w.min_days, w.max_days),
    }
}

fn referenced_columns(c: &Compiled) -> HashSet<&str> {
    let mut s = HashSet::new();
    for id in &c.identifiers {
        if let IdSource::Column(col) = &id.source {
            s.insert(col.as_str());
        }
    }
    for e in &c.emits {
        if let Some(w) = &e.when {
            s.insert(w.column.as_str());
        }
        for (_, x) in &e.fields {
            if let Src::Column(col) = &x.src {
                s.insert(col.as_str());
            }
        }
    }
    s
}

#[derive(Debug)]
struct FileErrorMarker(String);
impl std::fmt::Display for FileErrorMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for FileErrorMarker {}

/// Write a batch: rows per table with binary COPY, their lineage, and the rejects.
fn flush(
    tx: &mut postgres::Transaction<'_>,
    c: &Compiled,
    file_id: i64,
    run_id: i64,
    pending: &mut Vec<Pending>,
    rejects: &mut Vec<RejectRow>,
) -> Result<()> {
    for (li, layout) in c.layouts.iter().enumerate() {
        if !pending.iter().any(|p| p.layout == li) {
            continue;
        }
        let cols: Vec<usize> = (0..layout.columns.len()).collect();
        let mut w = layout.copy_in(tx, &cols)?;
        for p in pending.iter().filter(|p| p.layout == li) {
            let refs: Vec<&(dyn ToSql + Sync)> =
                p.values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            w.write(&refs)
                .with_context(|| format!("COPY into cdm.{} failed", layout.table))?;
        }
        w.finish()
            .with_context(|| format!("COPY into cdm.{} failed", layout.table))?;
    }
    if !pending.is_empty() {
        let sink = tx.copy_in(
            "COPY registry.lineage (cdm_table, cdm_row_id, source_file_id, source_row, run_id, source_key) FROM STDIN (FORMAT binary)",
        )?;
        use postgres::types::Type;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
            ],
        );
        for p in pending.iter() {
            let table = &c.layouts[p.layout].table;
            let row_id: i64 = match p.id {
                Some(id) => id as i64,
                None => {
                    if table == "episode_event" {
                        continue; // deleted with its episode
                    }
                    // person and death: keyed by person_id
                    let pi = c.layouts[p.layout]
                        .index_of("person_id")
                        .expect("person_id");
                    match p.values[pi] {
                        Value::Int4(v) => v as i64,
                        _ => continue,
                    }
                }
            };
            w.write(&[
                table,
                &row_id,
                &file_id,
                &p.source_row,
                &run_id,
                &p.source_key,
            ])?;
        }
        w.finish()?;
    }
    if !rejects.is_empty() {
        use postgres::types::Type;
        let sink = tx.copy_in(
            "COPY registry.reject (run_id, source_file_id, row_number, column_name, reason_code, reason) FROM STDIN (FORMAT binary)",
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
            ],
        );
        for r in rejects.iter() {
            w.write(&[&run_id, &file_id, &r.row, &r.column, &r.code, &r.reason])?;
        }
        w.finish().context("could not write the rejects")?;
    }
    pending.clear();
    rejects.clear();
    Ok(())
}
