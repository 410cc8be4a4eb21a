//! Concept maps: local codes -> OMOP concepts, in the style of OMOP's
//! `source_to_concept_map`. A CSV (comma-separated, UTF-8) with at least the columns
//! `source_code` and `target_concept_id`; optional `source_concept_id`, `source_vocabulary_id`,
//! `source_code_description`, and any extra columns a mapping may select with `field`:
//! concept columns (named `*concept_id`, integers, e.g. `unit_concept_id`) and code columns
//! (any other name, text, e.g. `target_code` holding an ICD-O-3 code). Codes match trimmed and
//! case-insensitively.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// A loaded concept map.
#[derive(Debug, Clone)]
pub struct ConceptMap {
    pub name: String,
    pub columns: Vec<String>,
    rows: HashMap<String, Vec<Option<i32>>>,
    /// The text of every column, for code columns.
    texts: HashMap<String, Vec<String>>,
}

impl ConceptMap {
    pub fn load(name: &str, path: &Path) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .with_context(|| format!("cannot read concept map {}", path.display()))?;
        let headers: Vec<String> = rdr
            .headers()
            .with_context(|| format!("{}: no header", path.display()))?
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let Some(code_ix) = headers.iter().position(|h| h == "source_code") else {
            bail!("{}: the header has no source_code column", path.display());
        };
        if !headers.iter().any(|h| h == "target_concept_id") {
            bail!(
                "{}: the header has no target_concept_id column",
                path.display()
            );
        }
        let mut rows = HashMap::new();
        let mut texts = HashMap::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
            let code = rec.get(code_ix).unwrap_or("").to_uppercase();
            let mut vals = Vec::with_capacity(headers.len());
            for (j, h) in headers.iter().enumerate() {
                let v = rec.get(j).unwrap_or("");
                let parsed = if h.ends_with("concept_id") && !v.is_empty() {
                    Some(v.parse::<i32>().with_context(|| {
                        format!("{}: line {}: {h} is not an integer", path.display(), i + 2)
                    })?)
                } else {
                    None
                };
                vals.push(parsed);
            }
            texts.insert(
                code.clone(),
                (0..headers.len())
                    .map(|j| rec.get(j).unwrap_or("").to_string())
                    .collect(),
            );
            if rows.insert(code.clone(), vals).is_some() {
                bail!(
                    "{}: line {}: source_code {code} appears twice",
                    path.display(),
                    i + 2
                );
            }
        }
        Ok(Self {
            name: name.to_string(),
            columns: headers,
            rows,
            texts,
        })
    }

    /// Index of a concept column, if the map has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Whether column `col` holds concept ids (else codes as text).
    pub fn is_concept(&self, col: usize) -> bool {
        self.columns[col].ends_with("concept_id")
    }

    /// The text of code column `col` for `code`: `None` when the code is not mapped,
    /// `Some(None)` when its cell is empty.
    pub fn get_text(&self, code: &str, col: usize) -> Option<Option<&str>> {
        self.texts
            .get(&code.trim().to_uppercase())
            .map(|v| v.get(col).map(String::as_str).filter(|s| !s.is_empty()))
    }

    /// The value of column `col` for `code`: `None` when the code is not mapped.
    pub fn get(&self, code: &str, col: usize) -> Option<Option<i32>> {
        self.rows
            .get(&code.trim().to_uppercase())
            .map(|v| v.get(col).copied().flatten())
    }

    /// Every value of column `col` (each mapped code's concept, once per code).
    pub fn values(&self, col: usize) -> impl Iterator<Item = Option<i32>> + '_ {
        self.rows
            .values()
            .map(move |v| v.get(col).copied().flatten())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
