//! Validating a mapping against the migrated schema and its concept maps, and compiling it
//! into the form the importer executes. Every problem is reported, each with file and line.

use super::conceptmap::ConceptMap;
use super::dates::DateFormats;
use super::expr::{self, Columns, Node, Program, Ty};
use super::{Condition, Emit, Expr, LimitsSpec, Mapping, OnError, When};
use crate::load::copy::{PgType, TableLayout, Value};
use anyhow::Result;
use registrar_anonymizer::pseudonym::IdentifierType;
use std::collections::HashMap;

/// Tables a mapping may write.
pub const EMIT_TABLES: &[&str] = &[
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
    "observation",
    "drug_exposure",
    "procedure_occurrence",
    "specimen",
    "death",
    "episode",
    "episode_event",
];

/// Where an identifier comes from.
#[derive(Debug, Clone)]
pub enum IdSource {
    Column(String),
    RowNumber,
}

#[derive(Debug, Clone)]
pub struct CompiledId {
    pub source: IdSource,
    pub prefix: Option<String>,
    pub id_type: IdentifierType,
}

/// Where a field's raw value comes from.
#[derive(Debug, Clone)]
pub enum Src {
    Column(String),
    Const(Value),
    ConstText(String),
    RowNumber,
    IdOf(usize),
    /// An expression (its columns are the mapping's [`Compiled::expr_columns`]).
    Expr(Box<Program>),
}

/// What a value that the field's value map and bins do not translate becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The row is rejected (`value_not_mapped`), and the value counted as unmapped.
    Reject,
    /// The value goes on as it was.
    Pass,
    /// The cell becomes empty.
    Null,
    /// The value is replaced.
    Value(String),
}

/// A numeric bin: `lo ..= hi` becomes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct CompiledExpr {
    pub src: Src,
    pub values: Option<HashMap<String, String>>,
    pub bins: Vec<Bin>,
    pub fallback: Fallback,
    /// (concept map index, column index)
    pub lookup: Option<(usize, usize)>,
    /// How dates are read, when the value becomes a date (a date column or `part`).
    pub dates: Option<DateFormats>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub part: Option<String>,
    pub required: bool,
    pub on_error: OnError,
    /// `table.column`, for messages and `registry.reject.field`.
    pub field: String,
    /// Line of the field in the mapping file.
    pub line: usize,
    /// A person's birth (year, month, day or date of birth): birth-year limits apply.
    pub birth: bool,
    /// The target is a code column (`*_source_value`): its text must look like a code.
    pub code: bool,
}

impl CompiledExpr {
    /// The source column the value is read from, if any.
    pub fn column(&self) -> Option<&str> {
        match &self.src {
            Src::Column(c) => Some(c),
            _ => None,
        }
    }

    /// Every source column the value is read from.
    pub fn reads<'a>(&'a self, columns: &'a Columns) -> Vec<&'a str> {
        match &self.src {
            Src::Column(c) => vec![c.as_str()],
            Src::Expr(p) => p
                .reads
                .iter()
                .map(|&i| columns.0[i as usize].as_str())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// `file:line:column` of a position in an expression written as a one-line string in the
/// mapping (`span` is the string's, quotes included); `file:line` and the position in the
/// expression otherwise.
fn expr_at(mapping: &Mapping, span: std::ops::Range<usize>, text: &str, pos: usize) -> String {
    let file = mapping.path.display();
    let raw = mapping.text.get(span.clone()).unwrap_or("");
    let plain = raw.len() == text.len() + 2 && raw.get(1..raw.len() - 1) == Some(text);
    if plain {
        let at = span.start + 1 + pos.min(text.len());
        let line_start = mapping.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let col = mapping.text[line_start..at].chars().count() + 1;
        format!("{file}:{}:{col}", mapping.line(at))
    } else {
        let ch = text[..pos.min(text.len())].chars().count() + 1;
        format!(
            "{file}:{} (character {ch} of the expression)",
            mapping.line(span.start)
        )
    }
}

/// `@name` in an expression: the value of another field of the same emit, compiled in
/// place. A field that translates its value (values, bins, lookup, scale, part) cannot be
/// referred to; a field that refers back to itself is refused.
#[allow(clippy::too_many_arguments)]
fn field_ref(
    fields: &std::collections::BTreeMap<String, toml::Spanned<Expr>>,
    name: &str,
    columns: &mut Columns,
    source_dates: Option<&DateFormats>,
    pivot: Option<i32>,
    stack: &mut Vec<String>,
) -> Result<(Node, Ty), String> {
    if stack.iter().any(|s| s == name) {
        return Err(format!(
            "`@{name}` refers back to itself (through {})",
            stack.join(", @")
        ));
    }
    let Some(f) = fields.get(name) else {
        return Err(format!("this emit has no field `{name}`"));
    };
    let x = f.get_ref();
    if x.values.is_some()
        || x.bins.is_some()
        || x.lookup.is_some()
        || x.scale.is_some()
        || x.offset.is_some()
        || x.part.is_some()
    {
        return Err(format!(
            "`@{name}` translates its value (values, bins, lookup, scale, offset or part): refer to its column, or compute it here"
        ));
    }
    if let Some(text) = &x.expr {
        let own;
        let dates = match &x.date_formats {
            Some(f) => {
                own = DateFormats::compile(f, pivot)
                    .map_err(|e| format!("`@{name}`: date_formats: {e}"))?;
                Some(&own)
            }
            None => source_dates,
        };
        stack.push(name.to_string());
        let r = {
            let mut resolve =
                |n: &str, c: &mut Columns| field_ref(fields, n, c, source_dates, pivot, stack);
            let mut env = expr::Env {
                columns,
                dates,
                pivot,
                field: &mut resolve,
            };
            expr::compile(text.get_ref(), None, &mut env)
        };
        stack.pop();
        return r
            .map(|p| (p.node, p.ty))
            .map_err(|e| format!("in `@{name}`: {}", e.msg));
    }
    if let Some(c) = &x.column {
        return Ok((Node::Col(columns.intern(c)), Ty::Text));
    }
    if x.row_number {
        return Ok((Node::RowNumber, Ty::Number));
    }
    match &x.constant {
        Some(toml::Value::Integer(i)) => Ok((Node::Lit(expr::Lit::Num((*i).into())), Ty::Number)),
        Some(toml::Value::Float(f)) => rust_decimal::Decimal::try_from(*f)
            .map(|d| (Node::Lit(expr::Lit::Num(d)), Ty::Number))
            .map_err(|_| format!("`@{name}` is not a finite number")),
        Some(toml::Value::Boolean(b)) => Ok((Node::Lit(expr::Lit::Bool(*b)), Ty::Bool)),
        Some(other) => Ok((Node::Lit(expr::Lit::Text(toml_text(other))), Ty::Text)),
        None => Err(format!(
            "`@{name}` is the id of another emit: refer to it with id_of"
        )),
    }
}

/// `[record]`, compiled.
#[derive(Debug, Clone)]
pub struct CompiledRecord {
    pub key: Vec<String>,
    pub snapshot: bool,
}

/// An emit's condition, compiled.
#[derive(Debug, Clone)]
pub enum CompiledWhen {
    Table(Condition),
    Expr(Box<Program>),
}

impl CompiledWhen {
    /// The source columns the condition reads (names in `columns` for an expression).
    pub fn reads<'a>(&'a self, columns: &'a Columns) -> Vec<&'a str> {
        match self {
            CompiledWhen::Table(c) => vec![c.column.as_str()],
            CompiledWhen::Expr(p) => p
                .reads
                .iter()
                .map(|&i| columns.0[i as usize].as_str())
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompiledEmit {
    pub table: String,
    pub layout: usize,
    pub when: Option<CompiledWhen>,
    /// Line of the emit's `when`.
    pub when_line: usize,
    pub once_per_person: bool,
    /// (layout column index, expression)
    pub fields: Vec<(usize, CompiledExpr)>,
    pub id_col: Option<usize>,
    pub person_col: Option<usize>,
    pub pseudonym_col: Option<usize>,
    pub line: usize,
}

/// A mapping ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub mapping: Mapping,
    pub identifiers: Vec<CompiledId>,
    pub emits: Vec<CompiledEmit>,
    pub layouts: Vec<TableLayout>,
    pub concept_maps: Vec<ConceptMap>,
    pub record: Option<CompiledRecord>,
    /// SHA-256 of the mapping text and its concept maps: a file or record loaded under
    /// another version of the mapping is loaded again.
    pub fingerprint: String,
    /// The mapping file's name (no folder), for reject records.
    pub file_name: String,
    /// This source's plausibility limits (override the registry's).
    pub limits: LimitsSpec,
    /// `[person] names`: columns holding the person's names, read only by the leak guard
    /// (see [`super::guard`]), never stored.
    pub name_columns: Vec<String>,
    /// The source columns the mapping's expressions read ([`Src::Expr`], [`CompiledWhen`]).
    pub expr_columns: Columns,
}

impl Compiled {
    /// The mapping's name (`[source] name`).
    pub fn name(&self) -> &str {
        &self.mapping.spec.source.name
    }
}

/// Columns of the person table that hold a birth.
const BIRTH_COLUMNS: &[&str] = &[
    "year_of_birth",
    "month_of_birth",
    "day_of_birth",
    "birth_datetime",
];

/// The id column a mapping allocates for a cdm table, if any. `person` has none: its
/// person_id is the resolved person's, and its rows (like `death`) are keyed by person_id.
pub fn id_column(table: &str) -> Option<String> {
    match table {
        "person" | "death" | "episode_event" => None,
        "observation_period" => Some("observation_period_id".into()),
        t => Some(format!("{t}_id")),
    }
}

/// `[[low, high, value], ...]`: numbers (or `-inf`/`inf`) with low <= high, in ascending order
/// without overlap.
fn compile_bins(bins: &[toml::Value]) -> Result<Vec<Bin>, String> {
    let num = |v: &toml::Value| match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) if !f.is_nan() => Some(*f),
        _ => None,
    };
    let mut out: Vec<Bin> = Vec::new();
    for (i, b) in bins.iter().enumerate() {
        let shape = || {
            format!(
                "bin {} must be [low, high, value] with numbers low <= high (`-inf`, `inf` for open ends)",
                i + 1
            )
        };
        let toml::Value::Array(a) = b else {
            return Err(shape());
        };
        let [lo, hi, value] = a.as_slice() else {
            return Err(shape());
        };
        let (Some(lo), Some(hi)) = (num(lo), num(hi)) else {
            return Err(shape());
        };
        if lo > hi || matches!(value, toml::Value::Array(_) | toml::Value::Table(_)) {
            return Err(shape());
        }
        if let Some(prev) = out.last() {
            if lo <= prev.hi {
                return Err(format!(
                    "bin {} starts at {lo}, inside or before bin {} (up to {}): bins go up without overlap",
                    i + 1,
                    i,
                    prev.hi
                ));
            }
        }
        out.push(Bin {
            lo,
            hi,
            value: toml_text(value),
        });
    }
    if out.is_empty() {
        return Err("bins is empty".into());
    }
    Ok(out)
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Validate `mapping` against the schema (through `db`) and compile it. Returns every error.
pub fn compile(
    mapping: Mapping,
    db: &mut impl postgres::GenericClient,
) -> Result<Compiled, Vec<String>> {
    let mut errors = Vec::new();
    let file = mapping.path.display().to_string();
    let at = |line: usize, msg: String| format!("{file}:{line}: {msg}");
    let spec = &mapping.spec;

    let mut concept_maps = Vec::new();
    let mut map_index = HashMap::new();
    let mut fingerprint = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(mapping.text.as_bytes());
        h
    };
    for (name, path) in &spec.concept_maps {
        let line = mapping.line(path.span().start);
        if let Ok(bytes) = std::fs::read(mapping.resolve(path.get_ref())) {
            use sha2::Digest;
            fingerprint.update(name.as_bytes());
            fingerprint.update((bytes.len() as u64).to_le_bytes());
            fingerprint.update(&bytes);
        }
        match ConceptMap::load(name, &mapping.resolve(path.get_ref())) {
            Ok(m) => {
                map_index.insert(name.clone(), concept_maps.len());
                concept_maps.push(m);
            }
            Err(e) => errors.push(at(line, format!("concept map `{name}`: {e:#}"))),
        }
    }

    // The registry's declared identifier types, beside the built-in ones.
    let declared = match crate::privacy::identifiers::load(db) {
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("{file}: the declared identifier types: {e:#}"));
            Vec::new()
        }
    };
    let mut identifiers = Vec::new();
    if spec.person.identifiers.is_empty() {
        errors.push(format!("{file}: [person] needs at least one identifier"));
    }
    for id in &spec.person.identifiers {
        let line = mapping.line(id.span().start);
        let i = id.get_ref();
        let id_type = match i.id_type.parse::<IdentifierType>() {
            Ok(t) => t,
            Err(_) => {
                let names: Vec<&str> = IdentifierType::ALL
                    .iter()
                    .chain(&declared)
                    .map(|t| t.as_str())
                    .collect();
                errors.push(at(
                    line,
                    format!(
                        "unknown identifier type `{}` (the registry knows {}; declare another with `registrar identifiers declare`)",
                        i.id_type,
                        names.join(", ")
                    ),
                ));
                continue;
            }
        };
        let source = match (&i.column, i.row_number) {
            (Some(c), false) => IdSource::Column(c.clone()),
            (None, true) => IdSource::RowNumber,
            _ => {
                errors.push(at(
                    line,
                    "an identifier takes either `column` or `row_number = true`".into(),
                ));
                continue;
            }
        };
        identifiers.push(CompiledId {
            source,
            prefix: i.prefix.clone(),
            id_type,
        });
    }

    let is_fhir = spec.source.format == super::Format::Fhir;
    let source_dates = match &spec.source.date_formats {
        Some(f) => match DateFormats::compile(f, spec.source.pivot_year) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{file}: [source] date_formats: {e}"));
                None
            }
        },
        None if is_fhir => Some(DateFormats::fhir()),
        None => None,
    };
    if let Some(p) = spec.source.pivot_year {
        if !(1800..=2100).contains(&p) {
            errors.push(format!(
                "{file}: [source] pivot_year {p} is not a year between 1800 and 2100"
            ));
        }
    }
    let iso = DateFormats::compile(&["%Y-%m-%d".into()], None).expect("ISO date");
    let identifier_columns: Vec<&str> = spec
        .person
        .identifiers
        .iter()
        .filter_map(|i| i.get_ref().column.as_deref())
        .collect();
    let pivot = spec.source.pivot_year;
    let mut expr_columns = Columns::default();
    let mut layouts: Vec<TableLayout> = Vec::new();
    let mut emits = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (ei, emit) in spec.emit.iter().enumerate() {
        let line = mapping.line(emit.span().start);
        let e: &Emit = emit.get_ref();
        let table = e.table.get_ref().clone();
        let tline = mapping.line(e.table.span().start);
        if !EMIT_TABLES.contains(&table.as_str()) {
            errors.push(at(
                tline,
                format!(
                    "table `{table}` cannot be written by a mapping (allowed: {})",
                    EMIT_TABLES.join(", ")
                ),
            ));
            continue;
        }
        let li = match layouts.iter().position(|l| l.table == table) {
            Some(i) => i,
            None => match TableLayout::read(db, "cdm", &table) {
                Ok(l) => {
                    layouts.push(l);
                    layouts.len() - 1
                }
                Err(err) => {
                    errors.push(at(tline, format!("{err:#}")));
                    continue;
                }
            },
        };
        let layout = &layouts[li];
        let id_col = id_column(&table).and_then(|c| layout.index_of(&c));
        let person_col = layout.index_of("person_id");
        let pseudonym_col = if table == "person" {
            layout.index_of("person_source_value")
        } else {
            None
        };
        let auto: Vec<usize> = [id_col, person_col, pseudonym_col]
            .into_iter()
            .flatten()
            .collect();
        let mut fields = Vec::new();
        // Columns with a field, compiled or refused (a refused one is not also "missing").
        let mut written: Vec<usize> = Vec::new();
        for (fname, expr) in &e.fields {
            let fline = mapping.line(expr.span().start);
            let Some(ci) = layout.index_of(fname) else {
                errors.push(at(fline, format!("cdm.{table} has no column `{fname}`")));
                continue;
            };
            written.push(ci);
            if auto.contains(&ci) && table != "episode_event" {
                errors.push(at(
                    fline,
                    format!("`{fname}` is filled in by registrar; remove it from the mapping"),
                ));
                continue;
            }
            let col = &layout.columns[ci];
            let x: &Expr = expr.get_ref();
            if col.ty == PgType::Text
                && !fname.ends_with("_source_value")
                && !x.free_text
                && (x.column.is_some() || x.expr.is_some())
                && x.values.is_none()
                && x.bins.is_none()
            {
                errors.push(at(fline, format!("`{fname}` is a free-text column: copying a source column into it needs `free_text = true` (free text is dropped unless allowed)")));
            }
            let sources = [
                x.column.is_some(),
                x.expr.is_some(),
                x.constant.is_some(),
                x.row_number,
                x.id_of.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                errors.push(at(
                    fline,
                    format!(
                        "`{fname}` needs exactly one of column, expr, const, row_number, id_of"
                    ),
                ));
                continue;
            }
            if let Some(c) = &x.column {
                if spec.person.names.contains(c) {
                    errors.push(at(
                        fline,
                        format!(
                            "`{fname}` reads `{c}`, a name column ([person] names): names never \
                             reach the registry; they only serve the leak guard"
                        ),
                    ));
                    continue;
                }
                if identifier_columns.contains(&c.as_str()) {
                    errors.push(at(
                        fline,
                        format!(
                            "`{fname}` reads `{c}`, a column that identifies the person ([person]): \
                             it would reach the registry in clear; identifiers are only pseudonymised"
                        ),
                    ));
                    continue;
                }
            }
            let src = if let Some(c) = &x.column {
                Src::Column(c.clone())
            } else if let Some(t) = &x.expr {
                let translates = x.values.is_some() || x.bins.is_some() || x.lookup.is_some();
                let want = if translates {
                    None
                } else if x.part.is_some() {
                    Some(Ty::Date)
                } else {
                    match col.ty {
                        PgType::Date | PgType::Timestamp => Some(Ty::Date),
                        PgType::Int4 | PgType::Int8 | PgType::Numeric => Some(Ty::Number),
                        PgType::Text => None,
                    }
                };
                let own;
                let dates = match &x.date_formats {
                    Some(f) => match DateFormats::compile(f, pivot) {
                        Ok(d) => {
                            own = d;
                            Some(&own)
                        }
                        Err(_) => None, // reported with the field's dates below
                    },
                    None => source_dates.as_ref(),
                };
                let compiled = {
                    let mut stack = vec![fname.clone()];
                    let mut resolve = |n: &str, c: &mut Columns| {
                        field_ref(&e.fields, n, c, source_dates.as_ref(), pivot, &mut stack)
                    };
                    let mut env = expr::Env {
                        columns: &mut expr_columns,
                        dates,
                        pivot,
                        field: &mut resolve,
                    };
                    expr::compile(t.get_ref(), want, &mut env)
                };
                let mut p = match compiled {
                    Ok(p) => p,
                    Err(er) => {
                        errors.push(format!(
                            "{}: `{fname}`: {}",
                            expr_at(&mapping, t.span(), t.get_ref(), er.pos),
                            er.msg
                        ));
                        continue;
                    }
                };
                if want.is_none() {
                    match p.ty {
                        Ty::Text | Ty::Null => {}
                        Ty::Number => {
                            p.node = Node::F1(expr::F1::NumText, Box::new(p.node));
                            p.ty = Ty::Text;
                        }
                        other => {
                            errors.push(at(
                                fline,
                                format!(
                                    "`{fname}`: the expression gives {}, but {} text",
                                    other.name(),
                                    if translates {
                                        "values, bins and lookup translate"
                                    } else {
                                        "the column holds"
                                    }
                                ),
                            ));
                            continue;
                        }
                    }
                }
                let mut refused = false;
                for &ri in &p.reads {
                    let c = &expr_columns.0[ri as usize];
                    if spec.person.names.contains(c) {
                        errors.push(at(fline, format!("`{fname}` reads `{c}`, a name column ([person] names): names never reach the registry; they only serve the leak guard")));
                        refused = true;
                    } else if identifier_columns.contains(&c.as_str()) {
                        errors.push(at(fline, format!("`{fname}` reads `{c}`, a column that identifies the person ([person]): it would reach the registry in clear; identifiers are only pseudonymised")));
                        refused = true;
                    }
                }
                if refused {
                    continue;
                }
                Src::Expr(Box::new(p))
            } else if let Some(v) = &x.constant {
                match v {
                    toml::Value::Integer(i) if col.ty == PgType::Int4 => match i32::try_from(*i) {
                        Ok(i) => Src::Const(Value::Int4(i)),
                        Err(_) => {
                            errors.push(at(
                                fline,
                                format!("`{fname}`: {i} does not fit an integer column"),
                            ));
                            continue;
                        }
                    },
                    other => Src::ConstText(toml_text(other)),
                }
            } else if x.row_number {
                Src::RowNumber
            } else {
                let target = x.id_of.clone().unwrap();
                match names.get(&target) {
                    Some(&i) => Src::IdOf(i),
                    None => {
                        errors.push(at(fline, format!("`{fname}`: id_of `{target}` names no earlier emit (give that emit `name = \"{target}\"` and put it first)")));
                        continue;
                    }
                }
            };
            if (x.values.is_some() || x.bins.is_some() || x.lookup.is_some())
                && x.column.is_none()
                && x.expr.is_none()
            {
                errors.push(at(
                    fline,
                    format!("`{fname}`: values, bins and lookup translate a column or an expr"),
                ));
            }
            let bins = match &x.bins {
                None => Vec::new(),
                Some(b) => match compile_bins(b) {
                    Ok(b) => b,
                    Err(e) => {
                        errors.push(at(fline, format!("`{fname}`: {e}")));
                        Vec::new()
                    }
                },
            };
            let fallback = match (&x.default, &x.otherwise) {
                (Some(_), Some(_)) => {
                    errors.push(at(
                        fline,
                        format!(
                            "`{fname}`: default and otherwise say the same thing; keep default"
                        ),
                    ));
                    Fallback::Reject
                }
                (Some(toml::Value::String(s)), None) if s == "pass" => Fallback::Pass,
                (Some(toml::Value::String(s)), None) if s == "null" => Fallback::Null,
                (Some(v), None) | (None, Some(v)) => Fallback::Value(toml_text(v)),
                (None, None) => Fallback::Reject,
            };
            if fallback != Fallback::Reject && x.values.is_none() && x.bins.is_none() {
                errors.push(at(
                    fline,
                    format!("`{fname}`: default applies to a value that values or bins do not translate; the field has neither"),
                ));
            }
            let lookup = match &x.lookup {
                None => None,
                Some(m) => match map_index.get(m) {
                    None => {
                        errors.push(at(
                            fline,
                            format!("`{fname}`: no concept map named `{m}` in [concept_maps]"),
                        ));
                        None
                    }
                    Some(&mi) => {
                        let field = x
                            .field
                            .clone()
                            .unwrap_or_else(|| "target_concept_id".into());
                        match concept_maps[mi].column(&field) {
                            Some(c) => Some((mi, c)),
                            None => {
                                errors.push(at(
                                    fline,
                                    format!("`{fname}`: concept map `{m}` has no column `{field}`"),
                                ));
                                None
                            }
                        }
                    }
                },
            };
            if let Some(p) = &x.part {
                if !["year", "month", "day"].contains(&p.as_str()) {
                    errors.push(at(
                        fline,
                        format!("`{fname}`: part must be year, month or day"),
                    ));
                }
            }
            let is_date = x.part.is_some() || matches!(col.ty, PgType::Date | PgType::Timestamp);
            let dates = match (&src, is_date) {
                (_, false) => None,
                (Src::ConstText(v), true) => {
                    // A constant date is written YYYY-MM-DD.
                    if iso.parse(v.trim()).is_err() {
                        errors.push(at(
                            fline,
                            format!("`{fname}`: the constant date must be written YYYY-MM-DD"),
                        ));
                    }
                    Some(iso.clone())
                }
                (Src::Column(_) | Src::Expr(_), true) => match &x.date_formats {
                    Some(f) => match DateFormats::compile(f, spec.source.pivot_year) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            errors.push(at(fline, format!("`{fname}`: date_formats: {e}")));
                            None
                        }
                    },
                    None if source_dates.is_some() => source_dates.clone(),
                    None if x.expr.is_some() => None,
                    None => {
                        errors.push(at(
                            fline,
                            format!(
                                "`{fname}` reads a date: declare how the export writes dates, \
                                 `date_formats = [\"%d/%m/%Y\"]` in [source] or on the field \
                                 (`mapping check --sample FILE` shows which formats match)"
                            ),
                        ));
                        None
                    }
                },
                (_, true) => None,
            };
            let on_error = x.on_error.unwrap_or_default();
            if on_error == OnError::Null && (col.not_null || x.required) {
                errors.push(at(
                    fline,
                    format!(
                        "`{fname}`: on_error = \"null\" needs an optional column (cdm.{table}.{fname} is required)"
                    ),
                ));
            }
            fields.push((
                ci,
                CompiledExpr {
                    src,
                    values: x.values.as_ref().map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.trim().to_lowercase(), toml_text(v)))
                            .collect()
                    }),
                    bins,
                    fallback,
                    lookup,
                    dates,
                    scale: x.scale,
                    offset: x.offset,
                    part: x.part.clone(),
                    required: x.required,
                    on_error,
                    field: format!("{table}.{fname}"),
                    line: fline,
                    birth: table == "person" && BIRTH_COLUMNS.contains(&fname.as_str()),
                    code: col.ty == PgType::Text
                        && fname.ends_with("_source_value")
                        && !x.free_text,
                },
            ));
        }
        for (ci, c) in layout.columns.iter().enumerate() {
            if c.not_null && !auto.contains(&ci) && !written.contains(&ci) {
                errors.push(at(
                    line,
                    format!(
                        "emit into cdm.{table}: required column `{}` has no field",
                        c.name
                    ),
                ));
            }
        }
        if let Some(n) = &e.name {
            names.insert(n.clone(), ei);
        }
        let when = match &e.when {
            None => None,
            Some(w) => match w.get_ref() {
                When::Table(c) => Some(CompiledWhen::Table(c.clone())),
                When::Expr(t) => {
                    let mut resolve = |n: &str, _: &mut Columns| -> Result<(Node, Ty), String> {
                        Err(format!(
                            "`@{n}`: a condition reads the row's columns, not an emit's fields"
                        ))
                    };
                    let mut env = expr::Env {
                        columns: &mut expr_columns,
                        dates: source_dates.as_ref(),
                        pivot,
                        field: &mut resolve,
                    };
                    match expr::compile(t, Some(Ty::Bool), &mut env) {
                        Ok(p) => Some(CompiledWhen::Expr(Box::new(p))),
                        Err(er) => {
                            errors.push(format!(
                                "{}: emit into cdm.{table}: when: {}",
                                expr_at(&mapping, w.span(), t, er.pos),
                                er.msg
                            ));
                            None
                        }
                    }
                }
            },
        };
        let when_line = e
            .when
            .as_ref()
            .map_or(line, |w| mapping.line(w.span().start));
        emits.push(CompiledEmit {
            table,
            layout: li,
            when,
            when_line,
            once_per_person: e.once_per_person
                || matches!(e.table.get_ref().as_str(), "person" | "death"),
            fields,
            id_col,
            person_col,
            pseudonym_col,
            line,
        });
    }
    if spec.emit.is_empty() {
        errors.push(format!("{file}: the mapping has no [[emit]]"));
    }
    if spec.source.format == super::Format::Xlsx && spec.source.sheet.is_none() {
        errors.push(format!("{file}: an xlsx source needs `sheet`"));
    }
    match (&spec.fhir, spec.source.format) {
        (None, super::Format::Fhir) => {
            errors.push(format!("{file}: a fhir source needs a [fhir] section"))
        }
        (Some(f), super::Format::Fhir) => {
            let line = mapping.line(f.span().start);
            let f = f.get_ref();
            if !f
                .resource
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
                || !f.resource.chars().all(|c| c.is_ascii_alphanumeric())
            {
                errors.push(format!(
                    "{file}:{line}: `{}` is not a FHIR resource type",
                    f.resource
                ));
            }
            for (name, path) in f
                .columns
                .iter()
                .map(|(n, p)| (n.as_str(), p.as_str()))
                .chain(std::iter::once(("subject", f.subject.as_str())))
            {
                if let Err(e) = registrar_fhir::path::Path::parse(path) {
                    errors.push(format!("{file}:{line}: column `{name}`: {e}"));
                }
            }
            for p in &f.patient_identifiers {
                if p.system.is_some() == p.id_type.is_some() {
                    errors.push(format!(
                        "{file}:{line}: patient identifier `{}`: give its `system` or its `type`, one of them",
                        p.column
                    ));
                }
            }
            let header = f.header();
            for (i, h) in header.iter().enumerate() {
                if header[..i].contains(h) {
                    errors.push(format!("{file}:{line}: column `{h}` is defined twice"));
                }
            }
            let mut missing: Vec<&str> = Vec::new();
            for id in &identifiers {
                if let IdSource::Column(c) = &id.source {
                    if !header.contains(c) {
                        missing.push(c);
                    }
                }
            }
            for e in &emits {
                for (_, x) in &e.fields {
                    for c in x.reads(&expr_columns) {
                        if !header.iter().any(|h| h == c) {
                            missing.push(c);
                        }
                    }
                }
                if let Some(w) = &e.when {
                    for c in w.reads(&expr_columns) {
                        if !header.iter().any(|h| h == c) {
                            missing.push(c);
                        }
                    }
                }
            }
            missing.sort_unstable();
            missing.dedup();
            for m in missing {
                errors.push(format!(
                    "{file}:{line}: column `{m}` is read but [fhir.columns] does not define it"
                ));
            }
        }
        (Some(f), _) => errors.push(format!(
            "{file}:{}: [fhir] only belongs in a mapping with format = \"fhir\"",
            mapping.line(f.span().start)
        )),
        (None, _) => {}
    }
    let record = match &spec.record {
        None => None,
        Some(r) => {
            let line = mapping.line(r.span().start);
            let r = r.get_ref();
            if r.key.is_empty() {
                errors.push(at(line, "[record] key needs at least one column".into()));
            }
            for (i, k) in r.key.iter().enumerate() {
                if r.key[..i].contains(k) {
                    errors.push(at(line, format!("[record] key names `{k}` twice")));
                }
            }
            if is_fhir {
                errors.push(at(
                    line,
                    "[record] is for files: a FHIR resource is identified by its type and id"
                        .into(),
                ));
            }
            Some(CompiledRecord {
                key: r.key.clone(),
                snapshot: r.snapshot,
            })
        }
    };
    if let Some(p) = &spec.source.series {
        if p.matches('*').count() != 1 || p.contains('/') {
            errors.push(format!(
                "{file}: [source] series `{p}` needs exactly one `*` (the version part, e.g. `rott2_*.csv`) and no folder"
            ));
        }
    }
    for (what, v) in [
        ("min_birth_year", spec.limits.min_birth_year),
        ("min_event_year", spec.limits.min_event_year),
    ] {
        if let Some(y) = v {
            if !(1000..=2100).contains(&y) {
                errors.push(format!(
                    "{file}: [limits] {what} {y} is not a plausible year"
                ));
            }
        }
    }
    let file_name = mapping
        .path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    if errors.is_empty() {
        use sha2::Digest;
        Ok(Compiled {
            limits: spec.limits.clone(),
            name_columns: spec.person.names.clone(),
            expr_columns,
            mapping,
            identifiers,
            emits,
            layouts,
            concept_maps,
            record,
            fingerprint: hex::encode(fingerprint.finalize()),
            file_name,
        })
    } else {
        Err(errors)
    }
}

/// Check that every column the mapping reads exists in a file's header.
pub fn check_header(c: &Compiled, header: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    let mut need = |name: &str| {
        if !header.iter().any(|h| h == name) && !missing.contains(&name.to_string()) {
            missing.push(name.to_string());
        }
    };
    for id in &c.identifiers {
        if let IdSource::Column(col) = &id.source {
            need(col);
        }
    }
    for n in &c.name_columns {
        need(n);
    }
    for e in &c.emits {
        if let Some(w) = &e.when {
            for col in w.reads(&c.expr_columns) {
                need(col);
            }
        }
        for (_, x) in &e.fields {
            for col in x.reads(&c.expr_columns) {
                need(col);
            }
        }
    }
    if let Some(r) = &c.record {
        for k in &r.key {
            need(k);
        }
    }
    missing
}

/// Every source column the mapping reads (identifiers, conditions, fields, record key).
pub fn referenced_columns(c: &Compiled) -> std::collections::BTreeSet<&str> {
    let mut s = std::collections::BTreeSet::new();
    for id in &c.identifiers {
        if let IdSource::Column(col) = &id.source {
            s.insert(col.as_str());
        }
    }
    s.extend(c.name_columns.iter().map(String::as_str));
    for e in &c.emits {
        if let Some(w) = &e.when {
            s.extend(w.reads(&c.expr_columns));
        }
        for (_, x) in &e.fields {
            s.extend(x.reads(&c.expr_columns));
        }
    }
    if let Some(r) = &c.record {
        s.extend(r.key.iter().map(String::as_str));
    }
    s
}
