//! `registrar mapping check --sample FILE`: run a mapping on the first rows of a file without
//! writing anything, and say per field how many values parsed, were empty, were nulled or
//! failed (with the reasons), and for date fields which declared formats match how many
//! values. Values are never printed.

use super::check::Compiled;
use super::eval::{Evaluator, Limits};
use super::OnError;
use crate::load::copy::Value;
use crate::sources::{FileError, RowResult};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One field of the mapping on the sample.
#[derive(Debug, Clone, Serialize)]
pub struct FieldReport {
    /// `table.column`.
    pub field: String,
    pub column: Option<String>,
    pub line: usize,
    /// Rows where the field's emit applied.
    pub evaluated: u64,
    pub parsed: u64,
    pub empty: u64,
    pub nulled: u64,
    pub failed: u64,
    /// Reason code -> (count, the first reason).
    pub reasons: BTreeMap<String, (u64, String)>,
    /// Date fields: (format, values it parses).
    pub formats: Vec<(String, u64)>,
}

/// What the sample showed.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub rows_read: u64,
    /// Rows the reader refused (ragged rows, ...), by reason code.
    pub bad_rows: BTreeMap<String, u64>,
    pub fields: Vec<FieldReport>,
    /// Emit conditions that could not be evaluated on a row (the row is rejected):
    /// `cdm.table (line N)` -> code -> (rows, reason).
    pub conditions: BTreeMap<String, BTreeMap<String, (u64, String)>>,
    /// Columns with dates that parse only with day and month swapped: (column, count).
    pub day_month_order: Vec<(String, i64)>,
}

/// Run `c` on the first `rows` rows of `path`.
pub fn run(c: &Compiled, path: &Path, rows: usize, limits: Limits) -> Result<SampleReport> {
    let sn = crate::sources::csv::sniff(path).context("cannot read the sample file")?;
    let mut source = crate::import::open_file(c, path, &sn, crate::sources::DEFAULT_MAX_CELL_BYTES)
        .map_err(|e: FileError| anyhow::anyhow!("the sample file cannot be read: {e}"))?;
    let header = source.header().to_vec();
    let missing = super::check::check_header(c, &header);
    if !missing.is_empty() {
        anyhow::bail!(
            "the sample's header lacks column(s) the mapping reads: {}",
            missing.join(", ")
        );
    }
    let mut ev = Evaluator::new(c, &header, limits);
    let mut fields: Vec<FieldReport> = Vec::new();
    let mut index: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (ei, e) in c.emits.iter().enumerate() {
        for (fi, (_, x)) in e.fields.iter().enumerate() {
            index.insert((ei, fi), fields.len());
            fields.push(FieldReport {
                field: x.field.clone(),
                column: Some(x.reads(&c.expr_columns).join("`, `")).filter(|s| !s.is_empty()),
                line: x.line,
                evaluated: 0,
                parsed: 0,
                empty: 0,
                nulled: 0,
                failed: 0,
                reasons: BTreeMap::new(),
                formats: x
                    .dates
                    .as_ref()
                    .filter(|_| x.column().is_some())
                    .map(|d| {
                        d.formats
                            .iter()
                            .map(|f| (f.text().to_string(), 0))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    let mut report = SampleReport {
        rows_read: 0,
        bad_rows: BTreeMap::new(),
        conditions: BTreeMap::new(),
        fields: Vec::new(),
        day_month_order: Vec::new(),
    };
    let ids: Vec<Option<i32>> = vec![Some(1); c.emits.len()];
    while (report.rows_read as usize) < rows {
        let next = source
            .next_row()
            .map_err(|e: FileError| anyhow::anyhow!("the sample file cannot be read: {e}"))?;
        let Some(next) = next else { break };
        report.rows_read += 1;
        let row = match next {
            RowResult::Row(r) => r,
            RowResult::Bad { code, .. } => {
                *report.bad_rows.entry(code.to_string()).or_default() += 1;
                continue;
            }
            RowResult::Deleted { .. } | RowResult::Gone { .. } => continue,
        };
        for (ei, e) in c.emits.iter().enumerate() {
            if let Some(w) = &e.when {
                match ev.condition_holds(&row, w) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        let r = report
                            .conditions
                            .entry(format!("cdm.{} (line {})", e.table, e.when_line))
                            .or_default()
                            .entry(err.code.to_string())
                            .or_insert((0, err.reason.clone()));
                        r.0 += 1;
                        continue;
                    }
                }
            }
            let layout = &c.layouts[e.layout];
            for (fi, (ci, x)) in e.fields.iter().enumerate() {
                let f = &mut fields[index[&(ei, fi)]];
                f.evaluated += 1;
                if let (Some(dates), Some(col)) = (&x.dates, x.column()) {
                    let text = ev.raw(&row, col).trim().to_string();
                    if !text.is_empty() {
                        if let Some(i) = dates.which(&text) {
                            f.formats[i].1 += 1;
                        }
                    }
                }
                match ev.field(&row, &layout.columns[*ci], x, &ids, 0) {
                    Ok(Value::Null) => f.empty += 1,
                    Ok(_) => f.parsed += 1,
                    Err(err) => {
                        if x.on_error == OnError::Null {
                            f.nulled += 1;
                        } else {
                            f.failed += 1;
                        }
                        let r = f
                            .reasons
                            .entry(err.code.to_string())
                            .or_insert((0, err.reason.clone()));
                        r.0 += 1;
                    }
                }
            }
        }
    }
    report.day_month_order = ev
        .order_evidence
        .iter()
        .map(|(c, (n, _))| (c.clone(), *n))
        .collect();
    report.fields = fields;
    Ok(report)
}

/// The report as text.
pub fn render(r: &SampleReport) -> String {
    let mut s = format!("sample: {} row(s) read\n", r.rows_read);
    for (code, n) in &r.bad_rows {
        s.push_str(&format!("  {n} row(s) refused by the reader: {code}\n"));
    }
    for f in &r.fields {
        if f.evaluated == 0 {
            s.push_str(&format!(
                "  {} (line {}): no row applied\n",
                f.field, f.line
            ));
            continue;
        }
        s.push_str(&format!(
            "  {}{} (line {}): {} parsed, {} empty, {} nulled, {} failed\n",
            f.field,
            f.column
                .as_deref()
                .map(|c| format!(" <- `{c}`"))
                .unwrap_or_default(),
            f.line,
            f.parsed,
            f.empty,
            f.nulled,
            f.failed
        ));
        for (fmt, n) in &f.formats {
            s.push_str(&format!("      format {fmt}: matches {n} value(s)\n"));
        }
        for (code, (n, reason)) in &f.reasons {
            s.push_str(&format!("      {n} x {code}: {reason}\n"));
        }
    }
    for (emit, codes) in &r.conditions {
        for (code, (n, reason)) in codes {
            s.push_str(&format!(
                "  when of the emit into {emit}: {n} row(s) rejected, {code}: {reason}\n"
            ));
        }
    }
    for (c, n) in &r.day_month_order {
        s.push_str(&format!(
            "  column `{c}`: {n} value(s) are dates only with day and month swapped: the file would be rejected\n"
        ));
    }
    s
}
