//! `registrar vocab load DIR`: bulk-load an OHDSI Athena vocabulary download.
//!
//! Athena ships tab-delimited files with a header row, no quoting, and dates as `YYYYMMDD`.
//! Each recognised file replaces its table's contents (TRUNCATE + binary COPY), all files in
//! one transaction: a load is applied whole or not at all, and loading the same download
//! twice leaves the same tables (idempotent). A malformed line aborts the load with an error
//! naming the file and line; vocabulary is reference data and is never loaded in part.

use crate::load::copy::{parse_cell, TableLayout, Value};
use crate::progress;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The Athena files registrar loads, and their cdm tables.
pub const ATHENA_FILES: &[(&str, &str)] = &[
    ("CONCEPT.csv", "concept"),
    ("VOCABULARY.csv", "vocabulary"),
    ("DOMAIN.csv", "domain"),
    ("CONCEPT_CLASS.csv", "concept_class"),
    ("RELATIONSHIP.csv", "relationship"),
    ("CONCEPT_RELATIONSHIP.csv", "concept_relationship"),
    ("CONCEPT_ANCESTOR.csv", "concept_ancestor"),
    ("CONCEPT_SYNONYM.csv", "concept_synonym"),
    ("DRUG_STRENGTH.csv", "drug_strength"),
];

/// What one file contributed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableLoad {
    pub file: String,
    pub table: String,
    pub rows: u64,
}

/// What a vocabulary load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VocabReport {
    pub tables: Vec<TableLoad>,
    /// Files in the directory that are not Athena vocabulary tables (left alone).
    pub ignored: Vec<String>,
    /// Rows of registrar's own vocabulary merged in.
    pub registrar_rows: u64,
    /// The research marts, rebuilt for the new concept hierarchy.
    pub marts: crate::marts::Refreshed,
}

/// Where the Athena files come from.
pub enum Origin<'a> {
    /// An unzipped Athena download (or any directory in Athena's format).
    Dir(&'a Path),
    /// The subset shipped with registrar (`vocabulary/`): the concepts its mappings and
    /// views use, each traceable to a public OHDSI source (`vocabulary/SOURCES.tsv`).
    Shipped,
}

/// One Athena file to load: its name, its cdm table, and its text.
struct AthenaFile {
    name: String,
    table: &'static str,
    body: Body,
}

enum Body {
    Path(PathBuf),
    Text(&'static str),
}

impl AthenaFile {
    fn len(&self) -> u64 {
        match &self.body {
            Body::Path(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Body::Text(t) => t.len() as u64,
        }
    }

    fn reader(&self) -> Result<Box<dyn BufRead + '_>> {
        Ok(match &self.body {
            Body::Path(p) => Box::new(BufReader::with_capacity(
                1 << 20,
                File::open(p).with_context(|| format!("cannot open {}", self.name))?,
            )),
            Body::Text(t) => Box::new(t.as_bytes()),
        })
    }
}

/// The vocabulary subset shipped with registrar, in Athena's format.
const SHIPPED: &[(&str, &str, &str)] = &[
    (
        "CONCEPT.csv",
        "concept",
        include_str!("../../vocabulary/CONCEPT.csv"),
    ),
    (
        "VOCABULARY.csv",
        "vocabulary",
        include_str!("../../vocabulary/VOCABULARY.csv"),
    ),
    (
        "DOMAIN.csv",
        "domain",
        include_str!("../../vocabulary/DOMAIN.csv"),
    ),
    (
        "CONCEPT_CLASS.csv",
        "concept_class",
        include_str!("../../vocabulary/CONCEPT_CLASS.csv"),
    ),
    (
        "RELATIONSHIP.csv",
        "relationship",
        include_str!("../../vocabulary/RELATIONSHIP.csv"),
    ),
    (
        "CONCEPT_RELATIONSHIP.csv",
        "concept_relationship",
        include_str!("../../vocabulary/CONCEPT_RELATIONSHIP.csv"),
    ),
    (
        "CONCEPT_ANCESTOR.csv",
        "concept_ancestor",
        include_str!("../../vocabulary/CONCEPT_ANCESTOR.csv"),
    ),
];

/// registrar's own vocabulary (`vocabulary_id = 'registrar'`, concept ids >= 2000000000):
/// the registry's conventions that have no standard concept. It is merged into whatever
/// vocabulary is loaded, so a full Athena download keeps them.
const REGISTRAR: &[(&str, &str, &str)] = &[
    (
        "registrar/CONCEPT.csv",
        "concept",
        include_str!("../../vocabulary/registrar/CONCEPT.csv"),
    ),
    (
        "registrar/VOCABULARY.csv",
        "vocabulary",
        include_str!("../../vocabulary/registrar/VOCABULARY.csv"),
    ),
    (
        "registrar/CONCEPT_ANCESTOR.csv",
        "concept_ancestor",
        include_str!("../../vocabulary/registrar/CONCEPT_ANCESTOR.csv"),
    ),
];

/// registrar's local concepts that the code (not a mapping) writes; each is a row of
/// vocabulary/registrar/CONCEPT.csv (a test checks).
pub mod local {
    /// "DICOM series (imaging or radiotherapy object)": the procedure of an indexed series.
    pub const DICOM_SERIES: i32 = 2_000_000_502;
    /// "RT structure set region of interest": one ROI of an indexed RT Structure Set.
    pub const RT_STRUCTURE_ROI: i32 = 2_000_000_501;
    /// "Delineation agreement of two observers of one RT structure": one observer pair of an
    /// indexed structure (Dice, surface distances; `research.delineation_agreement`).
    pub const DELINEATION_AGREEMENT: i32 = 2_000_000_503;
    /// "Dose-volume metrics of one RT structure under one RT dose" (`research.dose_volume`).
    pub const DOSE_VOLUME: i32 = 2_000_000_504;
}

/// The first concept id of registrar's local concepts (OMOP reserves 2,000,000,000 and
/// above for site-local concepts).
pub const LOCAL_CONCEPT_MIN: i32 = 2_000_000_000;

fn embedded(files: &[(&str, &'static str, &'static str)]) -> Vec<AthenaFile> {
    files
        .iter()
        .map(|(n, t, b)| AthenaFile {
            name: n.to_string(),
            table: t,
            body: Body::Text(b),
        })
        .collect()
}

/// Athena files found in a directory, and the names of other files.
fn find_files(dir: &Path) -> Result<(Vec<AthenaFile>, Vec<String>)> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read vocabulary directory {}", dir.display()))?;
    let mut found = Vec::new();
    let mut ignored = Vec::new();
    for e in entries {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        match ATHENA_FILES
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(&name))
        {
            Some((_, table)) => found.push(AthenaFile {
                name,
                table,
                body: Body::Path(e.path()),
            }),
            None => ignored.push(name),
        }
    }
    found.sort_by_key(|f| ATHENA_FILES.iter().position(|(_, x)| *x == f.table));
    ignored.sort();
    if found.is_empty() {
        bail!(
            "{} holds no Athena vocabulary file (expected CONCEPT.csv, VOCABULARY.csv, ...)",
            dir.display()
        );
    }
    Ok((found, ignored))
}

/// Load a vocabulary in one transaction: every Athena file replaces its table, then
/// registrar's own vocabulary is merged in.
pub fn load(client: &mut postgres::Client, origin: Origin<'_>) -> Result<VocabReport> {
    let (files, ignored) = match origin {
        Origin::Dir(dir) => find_files(dir)?,
        Origin::Shipped => (embedded(SHIPPED), Vec::new()),
    };
    let local = embedded(REGISTRAR);
    let total_bytes: u64 = files.iter().chain(&local).map(AthenaFile::len).sum();
    let bar = progress::bytes_bar(total_bytes, "vocabulary");
    let mut tx = client.transaction()?;
    let mut tables = Vec::new();
    for f in &files {
        let rows = load_file(&mut tx, f, Replace::Table, &bar)?;
        tables.push(TableLoad {
            file: f.name.clone(),
            table: f.table.to_string(),
            rows,
        });
    }
    let mut registrar_rows = 0;
    for f in &local {
        registrar_rows += load_file(&mut tx, f, Replace::Registrar, &bar)?;
    }
    // The research views' concept sets follow concept_ancestor, and so does every person's
    // research marts.
    tx.batch_execute("SELECT research.refresh_concept_sets()")
        .context("could not refresh research.concept_set")?;
    let marts = crate::marts::refresh(&mut tx, crate::marts::Scope::Full)?;
    tx.commit()
        .context("could not commit the vocabulary load")?;
    bar.finish_and_clear();
    Ok(VocabReport {
        tables,
        ignored,
        registrar_rows,
        marts,
    })
}

/// Load the shipped subset when the registry holds no concept yet (the demo and the tests);
/// `None` when a vocabulary is loaded already.
pub fn load_shipped_if_empty(client: &mut postgres::Client) -> Result<Option<VocabReport>> {
    let any: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM cdm.concept)", &[])?
        .get(0);
    if any {
        return Ok(None);
    }
    load(client, Origin::Shipped).map(Some)
}

/// What loading a file replaces.
#[derive(Clone, Copy)]
enum Replace {
    /// The whole table (an Athena file is the table's full content).
    Table,
    /// registrar's own rows only (merged into any vocabulary).
    Registrar,
}

fn load_file(
    tx: &mut postgres::Transaction<'_>,
    file: &AthenaFile,
    replace: Replace,
    bar: &indicatif::ProgressBar,
) -> Result<u64> {
    let fname = file.name.as_str();
    let table = file.table;
    let layout = TableLayout::read(tx, "cdm", table)?;
    let mut reader = file.reader()?;
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .with_context(|| format!("{fname}: cannot read header"))?
        == 0
    {
        bail!("{fname}: the file is empty (expected a header line)");
    }
    bar.inc(line.len() as u64);
    let header: Vec<&str> = line.trim_end_matches(['\n', '\r']).split('\t').collect();
    let mut cols = Vec::with_capacity(header.len());
    for h in &header {
        let name = h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase();
        let idx = layout.index_of(&name).with_context(|| {
            format!("{fname}: header column `{name}` is not a column of cdm.{table}")
        })?;
        if cols.contains(&idx) {
            bail!("{fname}: header column `{name}` appears twice");
        }
        cols.push(idx);
    }
    for (i, c) in layout.columns.iter().enumerate() {
        if c.not_null && !cols.contains(&i) {
            bail!(
                "{fname}: required column `{}` is missing from the header",
                c.name
            );
        }
    }
    match replace {
        Replace::Table => tx.batch_execute(&format!("TRUNCATE {}", layout.qualified()))?,
        Replace::Registrar => {
            let filter = match table {
                "concept" => format!("concept_id >= {LOCAL_CONCEPT_MIN}"),
                "vocabulary" => "vocabulary_id = 'registrar'".to_string(),
                "concept_ancestor" => format!("descendant_concept_id >= {LOCAL_CONCEPT_MIN}"),
                other => bail!("registrar's vocabulary has no {other} file"),
            };
            tx.batch_execute(&format!(
                "DELETE FROM {} WHERE {filter}",
                layout.qualified()
            ))?
        }
    }
    let mut writer = layout.copy_in(tx, &cols)?;
    let mut rows = 0u64;
    let mut values: Vec<Value> = Vec::with_capacity(cols.len());
    let mut lineno = 1u64;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .with_context(|| format!("{fname}: line {}: cannot read (not UTF-8?)", lineno + 1))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        bar.inc(n as u64);
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        values.clear();
        let mut fields = text.split('\t');
        for &ci in &cols {
            let raw = fields.next().with_context(|| {
                format!(
                    "{fname}: line {lineno}: too few fields (expected {})",
                    cols.len()
                )
            })?;
            let v = parse_cell(&layout.columns[ci], raw)
                .map_err(|e| anyhow::anyhow!("{fname}: line {lineno}: {e}"))?;
            values.push(v);
        }
        if fields.next().is_some() {
            bail!(
                "{fname}: line {lineno}: too many fields (expected {})",
                cols.len()
            );
        }
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        writer
            .write(&refs)
            .with_context(|| format!("{fname}: line {lineno}: COPY failed"))?;
        rows += 1;
    }
    writer
        .finish()
        .with_context(|| format!("{fname}: COPY into cdm.{table} failed"))?;
    Ok(rows)
}
