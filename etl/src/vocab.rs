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
}

/// Athena files found (path, cdm table), and the names of other files.
type Found = (Vec<(PathBuf, &'static str)>, Vec<String>);

fn find_files(dir: &Path) -> Result<Found> {
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
            Some((_, table)) => found.push((e.path(), *table)),
            None => ignored.push(name),
        }
    }
    found.sort_by_key(|(_, t)| ATHENA_FILES.iter().position(|(_, x)| x == t));
    ignored.sort();
    if found.is_empty() {
        bail!(
            "{} holds no Athena vocabulary file (expected CONCEPT.csv, VOCABULARY.csv, ...)",
            dir.display()
        );
    }
    Ok((found, ignored))
}

/// Load every Athena file found in `dir` in one transaction.
pub fn load_dir(client: &mut postgres::Client, dir: &Path) -> Result<VocabReport> {
    let (files, ignored) = find_files(dir)?;
    let total_bytes: u64 = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = progress::bytes_bar(total_bytes, "vocabulary");
    let mut tx = client.transaction()?;
    let mut tables = Vec::new();
    for (path, table) in &files {
        let rows = load_file(&mut tx, path, table, &bar)?;
        tables.push(TableLoad {
            file: path.file_name().unwrap().to_string_lossy().to_string(),
            table: table.to_string(),
            rows,
        });
    }
    tx.commit()
        .context("could not commit the vocabulary load")?;
    bar.finish_and_clear();
    Ok(VocabReport { tables, ignored })
}

fn load_file(
    tx: &mut postgres::Transaction<'_>,
    path: &Path,
    table: &str,
    bar: &indicatif::ProgressBar,
) -> Result<u64> {
    let fname = path.display().to_string();
    let layout = TableLayout::read(tx, "cdm", table)?;
    let mut reader = BufReader::with_capacity(
        1 << 20,
        File::open(path).with_context(|| format!("cannot open {fname}"))?,
    );
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
    tx.batch_execute(&format!("TRUNCATE {}", layout.qualified()))?;
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
