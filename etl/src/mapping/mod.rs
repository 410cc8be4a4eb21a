//! Mapping files: how one source shape becomes OMOP rows, written by a data manager in TOML.
//! `mappings/README.md` is the reference (every key, with an example); this module parses
//! them ([`Mapping`]), `check` validates and compiles them against the catalog, `eval`
//! evaluates a row, `expr` compiles and evaluates expressions, `dates` reads dates strictly,
//! `conceptmap` loads concept maps, `guard` is the leak guard, `lint` the OMOP lint of
//! `mapping check`, `sample` `mapping check --sample`.
//!
//! A field takes its value from a `column`, an `expr` (an expression over the row's columns
//! and the emit's other fields, see [`expr`]), a `const`, the source `row_number`, or the id
//! of another emit of the same row (`id_of`), then optionally translates it through `values` (a
//! value map), `bins` (numeric ranges) and `lookup` (a concept map); a value neither
//! translates is rejected unless the field has a `default` (`"pass"`, `"null"` or a
//! constant). The target column's type decides how text is parsed: dates with `date_formats`
//! (a whole cell in a declared format; workbook cells typed as dates are read as dates;
//! `excel` reads day serial numbers; FHIR dates without formats), numbers strictly in the
//! source's notation (with a decimal comma when asked). Each failing cell is recorded with its
//! column and the field's line; `on_error = "null"` (optional columns) loads the row without
//! the cell. Dates of a person are shifted by the person's keyed shift. `person_id`, the
//! table's own id and `person_source_value` (the pseudonym) are filled in by registrar; any
//! text target other than a `*_source_value` code must say `free_text = true`, so free text
//! never reaches the registry by accident.

pub mod check;
pub mod conceptmap;
pub mod dates;
pub mod eval;
pub mod expr;
pub mod guard;
pub mod lint;
pub mod sample;

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub path: PathBuf,
    pub text: String,
    pub spec: MappingSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub source: SourceSpec,
    pub person: PersonSpec,
    #[serde(default)]
    pub concept_maps: BTreeMap<String, Spanned<PathBuf>>,
    #[serde(default)]
    pub emit: Vec<Spanned<Emit>>,
    /// FHIR mappings: the resource and its columns.
    pub fhir: Option<Spanned<FhirSpec>>,
    /// The source's rows are records with a logical identity.
    pub record: Option<Spanned<RecordSpec>>,
    /// Plausibility limits for this source, overriding the registry's.
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// `[record]`: what identifies a row of the source across files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// The columns whose values together identify a record (kept only as a keyed hash).
    pub key: Vec<String>,
    /// Each file holds the full current state: records missing from the newest file of the
    /// source are deleted.
    #[serde(default)]
    pub snapshot: bool,
}

/// `[limits]`: plausibility limits of this source (see `registrar limits`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub min_birth_year: Option<i32>,
    pub min_event_year: Option<i32>,
}

/// The `[fhir]` section of a FHIR mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSpec {
    /// The resource type, e.g. `Observation`.
    pub resource: String,
    /// Path to the reference of the Patient the resource is about.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Identifiers of the Patient (by system) that become columns.
    #[serde(default)]
    pub patient_identifiers: Vec<PatientIdentifierSpec>,
    /// Column name -> path.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

fn default_subject() -> String {
    "subject.reference".into()
}

/// One identifier of the referenced Patient, as a column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientIdentifierSpec {
    /// The identifier's `system` (a hospital's MRN naming system).
    #[serde(default)]
    pub system: Option<String>,
    /// Or its `type`: a code of `type.coding`, as `system|code` or a bare code (`MR`, the
    /// HL7 v2-0203 medical record number, as US Core and mCODE patients carry it).
    #[serde(default, rename = "type")]
    pub id_type: Option<String>,
    pub column: String,
}

impl FhirSpec {
    /// The columns a FHIR source yields, in order: the path columns, then the patient
    /// identifier columns.
    pub fn header(&self) -> Vec<String> {
        self.columns
            .keys()
            .cloned()
            .chain(self.patient_identifiers.iter().map(|p| p.column.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Xlsx,
    Fhir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    Auto,
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
    #[serde(rename = "latin-1", alias = "iso-8859-1", alias = "latin1")]
    Latin1,
}

fn default_delimiter() -> char {
    ','
}
fn default_quote() -> char {
    '"'
}
fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    pub format: Format,
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default = "default_quote")]
    pub quote: char,
    #[serde(default)]
    pub encoding: Encoding,
    /// 1-based row of the header.
    #[serde(default = "one")]
    pub header_row: usize,
    /// xlsx: the sheet to read.
    pub sheet: Option<String>,
    /// xlsx: the last column letter to read (e.g. "H"); columns right of it are ignored.
    pub last_column: Option<String>,
    /// Date formats tried in order (see [`dates`]); a cell must match one exactly. There is
    /// no default: a mapping that reads dates from text declares how they are written.
    pub date_formats: Option<Vec<String>>,
    /// Two-digit years (`%y`): `yy` is the year in `pivot_year ..= pivot_year + 99`.
    pub pivot_year: Option<i32>,
    /// Files whose name matches this pattern (one `*`, e.g. `rott2_*.csv`) are versions of one
    /// export: the part the `*` matches (a date or a number, ordered naturally) orders them,
    /// and the newest supersedes the older ones.
    pub series: Option<String>,
    /// Numbers use a decimal comma ("12,5").
    #[serde(default)]
    pub decimal_comma: bool,
    /// The file must load whole: any rejected row rejects the file.
    #[serde(default)]
    pub complete: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonSpec {
    /// Identifiers, the primary one (which keys the date shift) first.
    pub identifiers: Vec<Spanned<IdentifierSpec>>,
    /// Columns holding the person's names: never stored, never mapped; the leak guard
    /// refuses any text value of the row that holds one of their words.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSpec {
    pub column: Option<String>,
    /// Use the data row number (1 = first data row) as the identifier, for study
    /// spreadsheets whose subject number is the row.
    #[serde(default)]
    pub row_number: bool,
    /// Prepended to the value before pseudonymisation (e.g. a study name), so subject 12 of
    /// one study is not subject 12 of another.
    pub prefix: Option<String>,
    #[serde(rename = "type")]
    pub id_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emit {
    pub table: Spanned<String>,
    /// Name other emits of the same row use in `id_of`.
    pub name: Option<String>,
    /// Emit only when this holds: an expression (`when = "er == 'pos' and pct != ''"`) or a
    /// test of one column (`when = { column = "x", not_empty = true }`).
    pub when: Option<Spanned<When>>,
    /// Emit at most one row per person and source file (person, death).
    #[serde(default)]
    pub once_per_person: bool,
    pub fields: BTreeMap<String, Spanned<Expr>>,
}

/// An emit's condition: an expression (see [`expr`]) or a table testing one column.
#[derive(Debug, Clone)]
pub enum When {
    Expr(String),
    Table(Condition),
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = When;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an expression in quotes, or a table with column and not_empty, equals, in or not_in",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<When, E> {
                Ok(When::Expr(v.to_string()))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, m: M) -> Result<When, M::Error> {
                Condition::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(When::Table)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Emit only when the condition holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub column: String,
    #[serde(default)]
    pub not_empty: bool,
    pub equals: Option<String>,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<String>>,
    pub not_in: Option<Vec<String>>,
}

/// What a failing cell does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Reject,
    Null,
}

/// A field expression.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expr {
    pub column: Option<String>,
    /// An expression over the row's columns and the emit's other fields (see [`expr`]).
    pub expr: Option<Spanned<String>>,
    #[serde(rename = "const")]
    pub constant: Option<toml::Value>,
    #[serde(default)]
    pub row_number: bool,
    /// The id of the row another emit (by `name`) produced from the same source row.
    pub id_of: Option<String>,
    /// Value map: source text (trimmed, case-insensitive) -> value.
    pub values: Option<BTreeMap<String, toml::Value>>,
    /// Numeric bins, `[[low, high, value], ...]`: a number from `low` to `high` (both
    /// included; `-inf` and `inf` for open ends) becomes `value`. Tried after `values`.
    pub bins: Option<Vec<toml::Value>>,
    /// What a value that `values` and `bins` do not translate becomes: `"pass"` keeps it,
    /// `"null"` empties the cell, anything else replaces it. Without one, the row is rejected.
    pub default: Option<toml::Value>,
    /// The older spelling of a constant `default`.
    pub otherwise: Option<toml::Value>,
    /// Concept map lookup (name from `[concept_maps]`).
    pub lookup: Option<String>,
    /// Which concept-map column to return (default `target_concept_id`).
    pub field: Option<String>,
    /// Date formats for this field (default: the source's).
    pub date_formats: Option<Vec<String>>,
    /// Multiply a number (e.g. unit conversion), then add `offset`.
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// Take one part of a date: `year`, `month` or `day` (after the date shift).
    pub part: Option<String>,
    /// Allows a free-text target column.
    #[serde(default)]
    pub free_text: bool,
    /// What a cell that cannot be read does: `reject` the row (default), or `null` the cell
    /// (optional columns only; the cell is recorded in `registry.reject` all the same).
    pub on_error: Option<OnError>,
    /// The value may be empty (NULL) even if... default: empty source gives NULL.
    #[serde(default)]
    pub required: bool,
}

impl Mapping {
    /// Read and parse a mapping file (syntax errors carry file, line and column).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read mapping {}", path.display()))?;
        let spec: MappingSpec = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", line_of(&text, s.start)))
                .unwrap_or_default();
            anyhow::anyhow!("{}{line}: {}", path.display(), e.message())
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
            spec,
        })
    }

    /// 1-based line of a byte offset in the mapping text.
    pub fn line(&self, offset: usize) -> usize {
        line_of(&self.text, offset)
    }

    /// A path named in the mapping, relative to the mapping file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}
