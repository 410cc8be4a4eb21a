//! Concept maps: local codes -> OMOP concepts, in the style of OMOP's
//! `source_to_concept_map`. A CSV (comma-separated, UTF-8) with at least the columns
//! `source_code` and `target_concept_id`; optional `source_concept_id`, `source_vocabulary_id`,
//! `source_code_description`, and any extra integer columns a mapping may select with
//! `field` (e.g. `unit_concept_id`, `value_as_concept_id`). Codes match trimmed and
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
        })
    }

    /// Index of a concept column, if the map has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
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
