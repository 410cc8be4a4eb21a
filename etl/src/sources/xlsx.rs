//! Spreadsheets (xlsx) as study nurses keep them: a sheet by name, a header row below a title
//! block, typed dates and dates typed as text, formulas (their cached results are read),
//! merged cells and error cells (`#N/A`, `#DIV/0!`), each handled explicitly.

use super::{check_header, FileError, RowResult, RowSource, SourceRow};
use crate::mapping::SourceSpec;
use calamine::{Data, Reader, Xlsx};
use std::path::Path;

/// A data row of a sheet: its row number, cells and per-cell problems (column, reason).
type SheetRow = (u64, Vec<Data>, Vec<(usize, String)>);

/// A sheet read into memory (calamine reads whole sheets), served row by row.
pub struct XlsxSource {
    header: Vec<String>,
    rows: std::vec::IntoIter<SheetRow>,
    number: u64,
    /// The largest cell, in bytes (as text); a row with a larger one is rejected.
    max_cell: u64,
}

fn col_index(letters: &str) -> Option<usize> {
    let mut n = 0usize;
    for ch in letters.trim().chars() {
        if !ch.is_ascii_alphabetic() {
            return None;
        }
        n = n * 26 + (ch.to_ascii_uppercase() as usize - 'A' as usize + 1);
    }
    n.checked_sub(1)
}

fn col_letters(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push((b'A' + (i % 26) as u8) as char);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.iter().rev().collect()
}

/// A workbook date (days since 1899-12-30, the fraction the time of day) as ISO text.
fn iso_date(serial: f64) -> Option<String> {
    let base = chrono::NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let secs = (serial * 86_400.0).round() as i64;
    let dt = base.checked_add_signed(chrono::Duration::seconds(secs))?;
    Some(if secs % 86_400 == 0 {
        dt.format("%Y-%m-%d").to_string()
    } else {
        dt.format("%Y-%m-%d %H:%M:%S").to_string()
    })
}

/// Whether a cell is typed as a date (its text is then ISO, see [`cell_text`]).
fn is_typed_date(d: &Data) -> bool {
    match d {
        Data::DateTime(dt) => !dt.is_duration() && iso_date(dt.as_f64()).is_some(),
        Data::DateTimeIso(s) => s.len() >= 10 && s.as_bytes()[4] == b'-',
        _ => false,
    }
}

/// Cell text as the mapping sees it: typed dates as ISO dates (marked typed, see
/// [`SourceRow::typed_dates`]), numbers without trailing `.0`.
fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            }
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => {
            let f = dt.as_f64();
            match iso_date(f) {
                Some(s) if !dt.is_duration() => s,
                _ if f.fract() == 0.0 => format!("{}", f as i64),
                _ => f.to_string(),
            }
        }
        Data::DateTimeIso(s) => s.replacen('T', " ", 1),
        Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

impl XlsxSource {
    pub fn open(
        path: &Path,
        spec: &SourceSpec,
        is_zip: bool,
        max_cell: u64,
    ) -> Result<Self, FileError> {
        if !is_zip {
            return Err(FileError::new(
                "not an xlsx workbook: the file is not a zip archive (a CSV saved with an .xlsx name?)".into(),
            ));
        }
        let mut wb: Xlsx<_> = calamine::open_workbook(path)
            .map_err(|e| FileError::new(format!("cannot open the workbook: {e}")))?;
        let sheet = spec.sheet.clone().unwrap_or_default();
        if !wb.sheet_names().contains(&sheet) {
            return Err(FileError::new(format!(
                "the workbook has no sheet `{sheet}` (sheets: {})",
                wb.sheet_names().join(", ")
            )));
        }
        let range = wb
            .worksheet_range(&sheet)
            .map_err(|e| FileError::new(format!("cannot read sheet `{sheet}`: {e}")))?;
        let formulas = wb.worksheet_formula(&sheet).ok();
        let merged: Vec<calamine::Dimensions> = wb
            .merge_cells_by_sheet_name(&sheet)
            .map_err(|e| FileError::new(format!("cannot read merged cells of `{sheet}`: {e}")))?;
        let header_abs = spec.header_row.saturating_sub(1) as u32;
        let last_col = spec.last_column.as_deref().and_then(col_index);
        let width = |row: &[Data]| {
            let w = row.len();
            last_col.map(|l| w.min(l + 1)).unwrap_or(w)
        };
        // Positions are absolute (A1 = (0, 0)) whatever the used range.
        let start_row = range.start().map(|s| s.0).unwrap_or(0);
        let get =
            |r: u32, c: u32| -> Data { range.get_value((r, c)).cloned().unwrap_or(Data::Empty) };
        let end = range.end().map(|e| e.0).unwrap_or(0);
        if range.is_empty() || header_abs > end || header_abs < start_row {
            return Err(FileError::new(format!(
                "sheet `{sheet}` has no row {} for the header",
                spec.header_row
            )));
        }
        let ncols = range.end().map(|e| e.1 + 1).unwrap_or(0) as usize;
        let hdr: Vec<Data> = (0..ncols as u32).map(|c| get(header_abs, c)).collect();
        let w = width(&hdr);
        let mut header: Vec<String> = hdr[..w]
            .iter()
            .map(|d| cell_text(d).trim().to_string())
            .collect();
        while header.last().is_some_and(|h| h.is_empty()) {
            header.pop();
        }
        check_header(&header)?;
        let w = header.len();
        let mut rows = Vec::new();
        for r in header_abs + 1..=end {
            let cells: Vec<Data> = (0..w as u32).map(|c| get(r, c)).collect();
            if cells.iter().all(|d| matches!(d, Data::Empty)) {
                continue; // spacer row
            }
            let mut errs = Vec::new();
            for (ci, d) in cells.iter().enumerate() {
                let cell = format!("{}{}", col_letters(ci), r + 1);
                if let Data::Error(e) = d {
                    errs.push((ci, format!("cell {cell} holds the error {e}")));
                }
                if matches!(d, Data::Empty) {
                    if let Some(f) = &formulas {
                        if f.get_value((r, ci as u32)).is_some_and(|s| !s.is_empty()) {
                            errs.push((ci, format!("cell {cell} has a formula without a computed value (open and save the workbook in Excel)")));
                        }
                    }
                }
                if merged.iter().any(|m| {
                    m.start.0 <= r
                        && r <= m.end.0
                        && m.start.1 <= ci as u32
                        && ci as u32 <= m.end.1
                        && m.start != m.end
                }) {
                    errs.push((
                        ci,
                        format!("cell {cell} is part of merged cells; unmerge the data rows"),
                    ));
                }
            }
            rows.push((r as u64 + 1, cells, errs));
        }
        Ok(Self {
            header,
            rows: rows.into_iter(),
            number: 0,
            max_cell,
        })
    }
}

impl RowSource for XlsxSource {
    fn header(&self) -> &[String] {
        &self.header
    }

    fn next_row(&mut self) -> Result<Option<RowResult>, FileError> {
        let Some((line, cells, errs)) = self.rows.next() else {
            return Ok(None);
        };
        self.number += 1;
        let fields: Vec<String> = cells.iter().map(cell_text).collect();
        if let Some(bad) = super::cell_too_large(
            &self.header,
            fields.iter().map(String::len),
            self.max_cell,
            self.number,
            line,
            &format!("row {line}"),
        ) {
            return Ok(Some(bad));
        }
        Ok(Some(RowResult::Row(SourceRow {
            number: self.number,
            line,
            fields,
            typed_dates: cells
                .iter()
                .enumerate()
                .filter(|(_, d)| is_typed_date(d))
                .map(|(i, _)| i as u32)
                .collect(),
            cell_errors: errs,
            key: None,
        })))
    }
}
