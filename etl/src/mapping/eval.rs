//! Evaluating a compiled mapping on one source row: conditions, and each field into its
//! target column's type. Values are parsed strictly or refused, never guessed: dates must
//! match a declared format ([`super::dates`]), numbers must be numbers in the source's
//! notation, and the plausibility limits (birth years, event years, future dates) apply to
//! the true date, before the date shift. A refusal is a [`CellError`]: a reason code and a
//! message naming the field, never the value.

use super::check::{Compiled, CompiledExpr, CompiledWhen, Fallback, Src};
use super::dates::{DateError, DateFormats};
use super::expr::{self, V};
use crate::load::copy::{parse_cell, ColumnDef, PgType, Value};
use crate::sources::SourceRow;
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use registrar_anonymizer::dateshift::{checked_shift_date, checked_shift_datetime};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// Plausibility limits in force for one import (the registry's policy, with the mapping's
/// `[limits]` over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub min_birth_year: i32,
    pub min_event_year: i32,
    pub max_age_years: i32,
    /// Dates after this day are refused.
    pub today: NaiveDate,
}

impl Limits {
    /// The registry's defaults (`registry.plausibility` starts with them).
    pub fn defaults(today: NaiveDate) -> Self {
        Self {
            min_birth_year: 1850,
            min_event_year: 1900,
            max_age_years: 120,
            today,
        }
    }

    /// These limits with a mapping's overrides.
    pub fn with(mut self, spec: &super::LimitsSpec) -> Self {
        if let Some(y) = spec.min_birth_year {
            self.min_birth_year = y;
        }
        if let Some(y) = spec.min_event_year {
            self.min_event_year = y;
        }
        self
    }
}

/// Why a cell could not be used (the message never holds the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub code: &'static str,
    pub reason: String,
    /// The source column whose cell failed, when an expression reading several says which.
    pub column: Option<String>,
}

impl CellError {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            column: None,
        }
    }
}

/// Where an unmapped value was looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lookup {
    /// A concept map, by index in [`Compiled::concept_maps`].
    ConceptMap(usize),
    /// A field's value map (`table.column`).
    ValueMap(String),
}

/// Stands for an unmapped value that does not look like a code (it could be anything, a
/// name included: it is counted, never stored).
pub const NOT_CODE_SHAPED: &str = "(not code-shaped: value not stored)";

/// Whether an unmapped source value may be stored as a code for the data manager: short,
/// and made of the characters codes are made of.
pub fn code_shaped(s: &str) -> bool {
    let n = s.chars().count();
    (1..=40).contains(&n)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-+/()%<>=:,#*".contains(c))
}

/// Formats of dates typed as dates in a workbook (the reader writes them ISO).
fn typed_dates() -> &'static DateFormats {
    static F: std::sync::OnceLock<DateFormats> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        DateFormats::compile(&["%Y-%m-%d".into(), "%Y-%m-%d %H:%M:%S".into()], None)
            .expect("ISO formats")
    })
}

/// Per-unit state of the evaluation.
pub struct Evaluator<'a> {
    c: &'a Compiled,
    cols: HashMap<&'a str, usize>,
    /// Header index of each expression column ([`Compiled::expr_columns`]).
    expr_slots: Vec<Option<usize>>,
    limits: Limits,
    decimal_comma: bool,
    /// Values a concept map or value map did not know, with counts.
    pub unmapped: BTreeMap<(Lookup, String), i64>,
    pub dates_shifted: i64,
    /// Source columns with values that are dates only with day and month swapped: (count,
    /// first row).
    pub order_evidence: BTreeMap<String, (i64, u64)>,
    guard: super::guard::Guard,
}

impl<'a> Evaluator<'a> {
    pub fn new(c: &'a Compiled, header: &'a [String], limits: Limits) -> Self {
        let cols: HashMap<&str, usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let expr_slots = c
            .expr_columns
            .0
            .iter()
            .map(|n| cols.get(n.as_str()).copied())
            .collect();
        Self {
            c,
            guard: super::guard::Guard::new(c, &cols),
            cols,
            expr_slots,
            limits: limits.with(&c.limits),
            decimal_comma: c.mapping.spec.source.decimal_comma,
            unmapped: BTreeMap::new(),
            dates_shifted: 0,
            order_evidence: BTreeMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Index of a source column.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.cols.get(name).copied()
    }

    /// The raw text of a column ("" when absent).
    pub fn raw<'r>(&self, row: &'r SourceRow, name: &str) -> &'r str {
        self.cols
            .get(name)
            .map(|&i| row.fields[i].as_str())
            .unwrap_or("")
    }

    fn expr_row<'r, 's>(&'s self, row: &'r SourceRow) -> expr::Row<'r, 's>
    where
        'r: 's,
    {
        expr::Row {
            cells: &row.fields,
            slots: &self.expr_slots,
            names: &self.c.expr_columns.0,
            number: row.number,
            cell_errors: &row.cell_errors,
            typed_dates: &row.typed_dates,
            decimal_comma: self.decimal_comma,
        }
    }

    fn expr_error(&self, e: expr::EvalError, what: &str) -> CellError {
        CellError {
            code: e.code,
            reason: format!("{what}: {}", e.reason),
            column: e.column.map(|i| self.c.expr_columns.0[i as usize].clone()),
        }
    }

    /// Whether an emit's condition holds for a row (an expression that is null does not); an
    /// expression that cannot be evaluated (a cell that is not a number, say) is an error.
    pub fn condition_holds(&self, row: &SourceRow, w: &CompiledWhen) -> Result<bool, CellError> {
        let c = match w {
            CompiledWhen::Table(c) => c,
            CompiledWhen::Expr(p) => {
                return match p.eval(&self.expr_row(row)) {
                    Ok(v) => Ok(v == V::Bool(true)),
                    Err(e) => Err(self.expr_error(e, "the emit's condition")),
                }
            }
        };
        let v = self.raw(row, &c.column).trim();
        if c.not_empty && v.is_empty() {
            return Ok(false);
        }
        if let Some(e) = &c.equals {
            if !v.eq_ignore_ascii_case(e) {
                return Ok(false);
            }
        }
        if let Some(list) = &c.one_of {
            if !list.iter().any(|x| x.eq_ignore_ascii_case(v)) {
                return Ok(false);
            }
        }
        if let Some(list) = &c.not_in {
            if list.iter().any(|x| x.eq_ignore_ascii_case(v)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn note_unmapped(&mut self, at: Lookup, code: &str) {
        let code = code.trim().to_uppercase();
        let code = if code_shaped(&code) {
            code
        } else {
            NOT_CODE_SHAPED.to_string()
        };
        *self.unmapped.entry((at, code)).or_default() += 1;
    }

    fn check_date(&self, d: NaiveDate, x: &CompiledExpr) -> Result<(), CellError> {
        if x.birth && d.year() < self.limits.min_birth_year {
            return Err(CellError::new(
                "implausible_birth",
                format!(
                    "{}: a birth before {} (the plausibility limit; see `registrar limits`, or `[limits] min_birth_year` in the mapping)",
                    x.field, self.limits.min_birth_year
                ),
            ));
        }
        if !x.birth && d.year() < self.limits.min_event_year {
            return Err(CellError::new(
                "implausible_date",
                format!(
                    "{}: a date before {} (the plausibility limit; see `registrar limits`, or `[limits] min_event_year` in the mapping)",
                    x.field, self.limits.min_event_year
                ),
            ));
        }
        if d > self.limits.today {
            return Err(CellError::new(
                "date_in_future",
                format!("{}: a date in the future", x.field),
            ));
        }
        Ok(())
    }

    fn parse_date(
        &mut self,
        row: &SourceRow,
        text: &str,
        x: &CompiledExpr,
    ) -> Result<NaiveDateTime, CellError> {
        let typed = match &x.src {
            Src::Column(c) => self
                .index(c)
                .is_some_and(|i| row.typed_dates.contains(&(i as u32))),
            _ => false,
        };
        let formats = if typed {
            typed_dates()
        } else {
            x.dates.as_ref().ok_or_else(|| {
                CellError::new(
                    "date_format",
                    format!("{}: no date format is declared", x.field),
                )
            })?
        };
        formats.parse(text).map_err(|e| {
            if e == DateError::DayMonthOrder {
                if let Src::Column(c) = &x.src {
                    let ev = self
                        .order_evidence
                        .entry(c.clone())
                        .or_insert((0, row.number));
                    ev.0 += 1;
                }
            }
            CellError::new(
                e.code(),
                format!("{}: {}", x.field, e.describe(&formats.describe())),
            )
        })
    }

    /// Evaluate one field into the target column's type. `ids` are the ids the row's earlier
    /// emits produced; `shift` is the person's date shift in days.
    pub fn field(
        &mut self,
        row: &SourceRow,
        target: &ColumnDef,
        x: &CompiledExpr,
        ids: &[Option<i32>],
        shift: i32,
    ) -> Result<Value, CellError> {
        let translates = x.values.is_some() || !x.bins.is_empty() || x.lookup.is_some();
        // Text that could be stored (a text column, or an unmapped code kept for the data
        // manager) must not hold the person's identifiers or names.
        let stored = target.ty == PgType::Text || translates;
        let mut text: String = match &x.src {
            Src::Const(v) => return Ok(v.clone()),
            Src::IdOf(i) => {
                return ids[*i].map(Value::Int4).ok_or_else(|| {
                    CellError::new(
                        "missing_reference",
                        format!("{}: the referenced emit produced no row", x.field),
                    )
                })
            }
            Src::RowNumber => row.number.to_string(),
            Src::ConstText(s) => s.clone(),
            Src::Expr(p) => match p.eval(&self.expr_row(row)) {
                Err(e) => return Err(self.expr_error(e, &x.field)),
                Ok(V::Null) => String::new(),
                Ok(V::Text(t)) => {
                    if stored && self.guard.hits(row, &t) {
                        return Err(self.leak(x));
                    }
                    t.into_owned()
                }
                Ok(V::Num(n)) if !translates && target.ty != PgType::Text => {
                    return self.number_value(n, target, x)
                }
                Ok(V::Num(n)) => n.normalize().to_string(),
                Ok(V::Date(d)) => return self.date_value(d, target, x, shift),
                Ok(V::Bool(_)) => {
                    return Err(CellError::new(
                        "unparseable",
                        format!("{}: true or false cannot fill a column", x.field),
                    ))
                }
            },
            Src::Column(c) => {
                let Some(i) = self.index(c) else {
                    return Err(CellError::new(
                        "missing_column",
                        format!("{}: the file has no column `{c}`", x.field),
                    ));
                };
                if let Some((_, reason)) = row.cell_errors.iter().find(|(ci, _)| *ci == i) {
                    return Err(CellError::new(
                        "error_cell",
                        format!("{}: {reason}", x.field),
                    ));
                }
                let text = row.fields[i].trim();
                if stored && !text.is_empty() && self.guard.hits(row, text) {
                    return Err(self.leak(x));
                }
                text.to_string()
            }
        };
        let read = matches!(x.src, Src::Column(_) | Src::Expr(_));
        if (x.values.is_some() || !x.bins.is_empty()) && read && !text.is_empty() {
            let mapped = x
                .values
                .as_ref()
                .and_then(|values| values.get(&text.to_lowercase()))
                .or_else(|| {
                    let n = parse_number(&text, self.decimal_comma)?.to_f64()?;
                    x.bins
                        .iter()
                        .find(|b| b.lo <= n && n <= b.hi)
                        .map(|b| &b.value)
                });
            match (mapped, &x.fallback) {
                (Some(v), _) => text = v.clone(),
                (None, Fallback::Pass) => {}
                (None, Fallback::Null) => text.clear(),
                (None, Fallback::Value(v)) => text = v.clone(),
                (None, Fallback::Reject) => {
                    self.note_unmapped(Lookup::ValueMap(x.field.clone()), &text);
                    let what = match (x.values.is_some(), x.bins.is_empty()) {
                        (true, true) => "not in the field's value map",
                        (false, _) => "in none of the field's bins",
                        (true, false) => "neither in the field's value map nor in its bins",
                    };
                    return Err(CellError::new(
                        "value_not_mapped",
                        format!("{}: the value is {what}", x.field),
                    ));
                }
            }
        }
        if let (Some((mi, ci)), true) = (x.lookup, read) {
            if !text.is_empty() {
                let map = &self.c.concept_maps[mi];
                if !map.is_concept(ci) {
                    match map.get_text(&text, ci) {
                        Some(v) => text = v.unwrap_or_default().to_string(),
                        None => {
                            self.note_unmapped(Lookup::ConceptMap(mi), &text);
                            text.clear();
                        }
                    }
                } else {
                    match map.get(&text, ci) {
                        Some(v) => text = v.map(|i| i.to_string()).unwrap_or_default(),
                        None => {
                            let zero = map.columns[ci] == "target_concept_id";
                            self.note_unmapped(Lookup::ConceptMap(mi), &text);
                            text = if zero { "0".into() } else { String::new() };
                        }
                    }
                }
            }
        }
        if text.is_empty() {
            if x.required || target.not_null {
                return Err(CellError::new(
                    "required_empty",
                    format!("{} is required but the source value is empty", x.field),
                ));
            }
            return Ok(Value::Null);
        }
        if x.part.is_some() {
            let d = self.parse_date(row, &text, x)?;
            return self.date_value(d, target, x, shift);
        }
        match target.ty {
            PgType::Date | PgType::Timestamp => {
                let d = self.parse_date(row, &text, x)?;
                self.date_value(d, target, x, shift)
            }
            PgType::Int4 | PgType::Int8 | PgType::Numeric => {
                let n = parse_number(&text, self.decimal_comma).ok_or_else(|| {
                    CellError::new(
                        "unparseable",
                        format!(
                            "{}: not {}",
                            x.field,
                            if self.decimal_comma {
                                "a number (decimal comma)"
                            } else {
                                "a number"
                            }
                        ),
                    )
                })?;
                self.number_value(n, target, x)
            }
            PgType::Text => {
                if x.code && !super::guard::code_like(&text) {
                    return Err(CellError::new(
                        "not_code_shaped",
                        format!(
                            "{}: a code column, but the value is not code-shaped (at most 50 \
                             letters, digits and code punctuation; not stored)",
                            x.field
                        ),
                    ));
                }
                parse_cell(target, &text).map_err(|e| CellError::new("too_long", e))
            }
        }
    }

    fn leak(&self, x: &CompiledExpr) -> CellError {
        CellError::new(
            "identifier_in_text",
            format!(
                "{}: the value holds an identifier or a name of the person (not stored)",
                x.field
            ),
        )
    }

    /// A date (before the shift) into the target: the plausibility limits, the person's
    /// shift, then the column's type or the field's `part`.
    fn date_value(
        &mut self,
        d: NaiveDateTime,
        target: &ColumnDef,
        x: &CompiledExpr,
        shift: i32,
    ) -> Result<Value, CellError> {
        let bad = |what: &str| CellError::new("unparseable", format!("{}: not {what}", x.field));
        self.check_date(d.date(), x)?;
        self.dates_shifted += (shift != 0) as i64;
        if let Some(part) = &x.part {
            let d = checked_shift_date(d.date(), shift).ok_or_else(|| bad("a shiftable date"))?;
            return Ok(Value::Int4(match part.as_str() {
                "year" => d.year(),
                "month" => d.month() as i32,
                _ => d.day() as i32,
            }));
        }
        match target.ty {
            PgType::Date => checked_shift_date(d.date(), shift)
                .map(Value::Date)
                .ok_or_else(|| bad("a shiftable date")),
            PgType::Timestamp => checked_shift_datetime(d, shift)
                .map(Value::Timestamp)
                .ok_or_else(|| bad("a shiftable date/time")),
            _ => Err(bad("a value for this column (a date was given)")),
        }
    }

    /// A number into the target: `scale` and `offset`, the column's type, and the birth-year
    /// limits for a year of birth.
    fn number_value(
        &self,
        mut n: Decimal,
        target: &ColumnDef,
        x: &CompiledExpr,
    ) -> Result<Value, CellError> {
        let bad = |what: &str| CellError::new("unparseable", format!("{}: not {what}", x.field));
        if x.scale.is_some() || x.offset.is_some() {
            let f = n.to_f64().ok_or_else(|| bad("a number"))? * x.scale.unwrap_or(1.0)
                + x.offset.unwrap_or(0.0);
            n = Decimal::from_f64(f).ok_or_else(|| bad("a finite number"))?;
        }
        let v = match target.ty {
            PgType::Numeric => Value::Numeric(n.normalize()),
            PgType::Int4 => {
                if n.fract() != Decimal::ZERO {
                    return Err(bad("a whole number"));
                }
                Value::Int4(n.to_i32().ok_or_else(|| bad("a 32-bit integer"))?)
            }
            PgType::Int8 => {
                if n.fract() != Decimal::ZERO {
                    return Err(bad("a whole number"));
                }
                Value::Int8(n.to_i64().ok_or_else(|| bad("an integer"))?)
            }
            _ => return Err(bad("a value for this column (a number was given)")),
        };
        if x.birth && x.field.ends_with(".year_of_birth") {
            if let Value::Int4(y) = v {
                if y < self.limits.min_birth_year {
                    return Err(CellError::new(
                        "implausible_birth",
                        format!(
                            "{}: a birth before {} (the plausibility limit)",
                            x.field, self.limits.min_birth_year
                        ),
                    ));
                }
                if y > self.limits.today.year() {
                    return Err(CellError::new(
                        "date_in_future",
                        format!("{}: a year of birth in the future", x.field),
                    ));
                }
            }
        }
        Ok(v)
    }
}

/// A number in the source's notation, strictly: `-12.5`, `1e3`; with a decimal comma
/// `-12,5` or `1.234,5` (dots only as thousands separators, in groups of three).
pub fn parse_number(raw: &str, decimal_comma: bool) -> Option<Decimal> {
    let t = raw.trim();
    let (sign, body) = match t.as_bytes().first() {
        Some(b'-') => ("-", &t[1..]),
        Some(b'+') => ("", &t[1..]),
        _ => ("", t),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if decimal_comma {
        let (int, frac) = match body.split_once(',') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let int = if int.contains('.') {
            let groups: Vec<&str> = int.split('.').collect();
            let ok = (1..=3).contains(&groups[0].len())
                && all_digits(groups[0])
                && groups[1..].iter().all(|g| g.len() == 3 && all_digits(g));
            if !ok {
                return None;
            }
            groups.concat()
        } else if all_digits(int) {
            int.to_string()
        } else {
            return None;
        };
        let s = match frac {
            Some(f) if all_digits(f) => format!("{sign}{int}.{f}"),
            Some(_) => return None,
            None => format!("{sign}{int}"),
        };
        return Decimal::from_str(&s).ok();
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let ok_mantissa = match mantissa.split_once('.') {
        Some((i, f)) => all_digits(i) && all_digits(f),
        None => all_digits(mantissa),
    };
    if !ok_mantissa {
        return None;
    }
    match exp {
        None => Decimal::from_str(&format!("{sign}{mantissa}")).ok(),
        Some(e) => {
            let e_digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !all_digits(e_digits) {
                return None;
            }
            Decimal::from_scientific(&format!("{sign}{mantissa}e{e}")).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict() {
        let n = |s: &str, c: bool| parse_number(s, c).map(|d| d.normalize().to_string());
        assert_eq!(n("12.5", false).as_deref(), Some("12.5"));
        assert_eq!(n("-12", false).as_deref(), Some("-12"));
        assert_eq!(n("1e3", false).as_deref(), Some("1000"));
        assert_eq!(n("12,5", false), None);
        assert_eq!(n("12.5.1", false), None);
        assert_eq!(n("12 mm", false), None);
        assert_eq!(n("", false), None);
        assert_eq!(n("12,5", true).as_deref(), Some("12.5"));
        assert_eq!(n("1.234,5", true).as_deref(), Some("1234.5"));
        assert_eq!(n("1.234.567", true).as_deref(), Some("1234567"));
        assert_eq!(n("12.5", true), None, "a dot is not a decimal comma");
        assert_eq!(n("1.23,4", true), None);
        assert_eq!(n("-0,5", true).as_deref(), Some("-0.5"));
    }

    #[test]
    fn codes() {
        assert!(code_shaped("ER_PCT"));
        assert!(code_shaped("C50.9"));
        assert!(code_shaped("2+"));
        assert!(!code_shaped(
            "Martinou Claire 85.01.02-125.55 xxxxxxxxxxxxxxxxxx"
        ));
        assert!(!code_shaped("Hélène"));
        assert!(!code_shaped(""));
    }
}
