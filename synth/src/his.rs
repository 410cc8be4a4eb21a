//! The hospital information system export: `;`-separated CSV, Windows-1252, CRLF, Belgian
//! dates (`dd/mm/yyyy`) and decimal commas, one file per table, streamed row by row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use encoding_rs::WINDOWS_1252;
use serde_json::json;

use crate::codes::{
    self, BAD_DATES, DRUGS, HIS_TABLES, MEASUREMENT_CODES, SURGERY_CODES, UNKNOWN_DRUG_CODES,
    UNKNOWN_LAB_CODES,
};
use crate::cohort::{Patient, Sex};
use crate::dirt::{DirtCounts, DirtEvent, DirtKind, PatientDirt};
use crate::names::transliterate;

/// The bytes a file is really written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Windows1252,
    /// UTF-8 starting with a byte order mark.
    Utf8Bom,
    /// ISO-8859-1 (declared UTF-8 in the manifest).
    Latin1,
}

impl Encoding {
    fn declared(self) -> &'static str {
        match self {
            Encoding::Windows1252 => "windows-1252",
            Encoding::Utf8Bom | Encoding::Latin1 => "utf-8",
        }
    }

    fn actual(self) -> &'static str {
        match self {
            Encoding::Windows1252 => "windows-1252",
            Encoding::Utf8Bom => "utf-8 with BOM",
            Encoding::Latin1 => "iso-8859-1",
        }
    }
}

/// Characters that Windows-1252 maps into 0x80..=0x9F.
const CP1252_EXTRA: &[char] = &[
    '€', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 'Ž', '‘', '’', '“', '”', '•', '–',
    '—', '˜', '™', 'š', '›', 'œ', 'ž', 'Ÿ',
];

fn in_cp1252(c: char) -> bool {
    (c as u32) < 0x80 || (0xA0..=0xFF).contains(&(c as u32)) || CP1252_EXTRA.contains(&c)
}

/// One row being built: the fields concatenated, with their end offsets.
#[derive(Debug, Default)]
pub(crate) struct Row {
    buf: String,
    ends: Vec<usize>,
}

impl Row {
    pub(crate) fn clear(&mut self) -> &mut Row {
        self.buf.clear();
        self.ends.clear();
        self
    }

    fn end(&mut self) -> &mut Row {
        debug_assert!(
            !self.buf[self.ends.last().copied().unwrap_or(0)..].contains([';', '\r', '\n', '"'])
        );
        self.ends.push(self.buf.len());
        self
    }

    pub(crate) fn s(&mut self, v: &str) -> &mut Row {
        self.buf.push_str(v);
        self.end()
    }

    pub(crate) fn int(&mut self, v: i64) -> &mut Row {
        use std::fmt::Write as _;
        let _ = write!(self.buf, "{v}");
        self.end()
    }

    /// `value / 10^decimals` with a decimal comma (`128, 1` -> `12,8`).
    pub(crate) fn dec(&mut self, value: i64, decimals: u8) -> &mut Row {
        push_decimal(&mut self.buf, value, decimals);
        self.end()
    }

    pub(crate) fn date(&mut self, d: NaiveDate) -> &mut Row {
        push_date(&mut self.buf, d);
        self.end()
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

pub(crate) fn push_decimal(buf: &mut String, value: i64, decimals: u8) {
    use std::fmt::Write as _;
    if decimals == 0 {
        let _ = write!(buf, "{value}");
        return;
    }
    let scale = 10i64.pow(u32::from(decimals));
    let sign = if value < 0 { "-" } else { "" };
    let v = value.abs();
    let _ = write!(
        buf,
        "{sign}{},{:0width$}",
        v / scale,
        v % scale,
        width = decimals as usize
    );
}

/// `dd/mm/yyyy`.
pub(crate) fn push_date(buf: &mut String, d: NaiveDate) {
    use std::fmt::Write as _;
    let _ = write!(buf, "{:02}/{:02}/{:04}", d.day(), d.month(), d.year());
}

/// Which faults a table may carry.
struct Spec {
    file: &'static str,
    date_cols: &'static [usize],
    code_col: Option<(usize, &'static [&'static str])>,
    /// Only exact duplicates (a broken patient row would orphan all the patient's rows).
    duplicates_only: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        file: "patients.csv",
        date_cols: &[4],
        code_col: None,
        duplicates_only: true,
    },
    Spec {
        file: "diagnoses.csv",
        date_cols: &[1],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "pathology.csv",
        date_cols: &[2],
        code_col: Some((3, UNKNOWN_LAB_CODES)),
        duplicates_only: false,
    },
    Spec {
        file: "tnm.csv",
        date_cols: &[1],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "surgery.csv",
        date_cols: &[1],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "systemic_therapy.csv",
        date_cols: &[1],
        code_col: Some((2, UNKNOWN_DRUG_CODES)),
        duplicates_only: false,
    },
    Spec {
        file: "radiotherapy.csv",
        date_cols: &[1, 2],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "recurrences.csv",
        date_cols: &[1],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "deaths.csv",
        date_cols: &[1],
        code_col: None,
        duplicates_only: false,
    },
    Spec {
        file: "measurements.csv",
        date_cols: &[1],
        code_col: Some((2, UNKNOWN_LAB_CODES)),
        duplicates_only: false,
    },
];

/// Table indices, in [`HIS_TABLES`] order.
pub(crate) const PATIENTS: usize = 0;
pub(crate) const DIAGNOSES: usize = 1;
pub(crate) const PATHOLOGY: usize = 2;
pub(crate) const TNM: usize = 3;
pub(crate) const SURGERY: usize = 4;
pub(crate) const SYSTEMIC: usize = 5;
pub(crate) const RADIOTHERAPY: usize = 6;
pub(crate) const RECURRENCES: usize = 7;
pub(crate) const DEATHS: usize = 8;
pub(crate) const MEASUREMENTS: usize = 9;

/// Files that may carry the byte order mark (ASCII content) or be written in Latin-1
/// (content with accents, so that the false declaration shows).
pub(crate) const BOM_CANDIDATES: &[usize] = &[DIAGNOSES, TNM, RADIOTHERAPY, RECURRENCES];
pub(crate) const LATIN1_CANDIDATES: &[usize] = &[SURGERY, SYSTEMIC];

/// Relative path of the 0-byte file written when dirt is on.
pub const EMPTY_FILE: &str = "his/empty_export.csv";

/// With dirt, the pathology export comes as two dated exports of the same records: an earlier
/// one (some patients not reported yet, some grades not yet corrected) and the final one.
pub const PATHOLOGY_EARLIER: &str = "his/pathology_2025-05.csv";
pub const PATHOLOGY_FINAL: &str = "his/pathology_2025-06.csv";
/// With dirt, the patients of a merged hospital's archive: a file of the same name as
/// `his/patients.csv` in another folder, patients born before 1900.
pub const ARCHIVE_PATIENTS: &str = "his/archive/patients.csv";

/// Tables whose dates may be written month first (the `us_dates` dirt), in order of
/// preference: files with many dates (so that a day above 12 shows) whose loss leaves the
/// research views their staging and outcomes.
pub(crate) const US_DATE_CANDIDATES: &[usize] = &[RADIOTHERAPY, TNM];

/// Rows written and dirt injected in one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileStats {
    pub rows: u64,
    pub dirt: DirtCounts,
}

/// A second, earlier export of the same table (see [`PATHOLOGY_EARLIER`]).
pub(crate) struct Shadow {
    pub path: &'static str,
    out: BufWriter<File>,
    pub stats: FileStats,
    /// Rows whose value differs from the final export (corrected later).
    pub corrected: u64,
    /// Patients not in it yet.
    pub late: u64,
}

/// What the earlier export holds of a row.
pub(crate) enum InShadow<'a> {
    /// Nothing (the patient was reported later).
    No,
    /// The same line.
    Same,
    /// The line with this result (field 4), corrected in the final export.
    Uncorrected(&'a str),
}

pub(crate) struct Table {
    /// Path relative to the output directory (`his/<file>`).
    pub path: &'static str,
    /// Index in [`HIS_TABLES`].
    pub index: usize,
    spec: &'static Spec,
    header: &'static [&'static str],
    pub encoding: Encoding,
    out: BufWriter<File>,
    pub stats: FileStats,
    /// Dates written month first (the `us_dates` dirt).
    pub us_dates: bool,
    /// A month-first date with a day above 12 was written (the order shows).
    pub us_dates_show: bool,
    pub shadow: Option<Shadow>,
    line: String,
    scratch: String,
    bytes: Vec<u8>,
}

const PATHS: &[&str] = &[
    "his/patients.csv",
    "his/diagnoses.csv",
    "his/pathology.csv",
    "his/tnm.csv",
    "his/surgery.csv",
    "his/systemic_therapy.csv",
    "his/radiotherapy.csv",
    "his/recurrences.csv",
    "his/deaths.csv",
    "his/measurements.csv",
];

impl Table {
    fn create(
        dir: &Path,
        index: usize,
        encoding: Encoding,
        dated: bool,
        us_dates: bool,
    ) -> Result<Table> {
        let (file, header) = HIS_TABLES[index];
        let spec = &SPECS[index];
        debug_assert_eq!(spec.file, file);
        let dated = dated && index == PATHOLOGY;
        let path = if dated { PATHOLOGY_FINAL } else { PATHS[index] };
        let root = dir.parent().expect("his/ has a parent");
        let full = root.join(path);
        let f = File::create(&full).with_context(|| format!("cannot create {}", full.display()))?;
        let shadow = if dated {
            let full = root.join(PATHOLOGY_EARLIER);
            let f =
                File::create(&full).with_context(|| format!("cannot create {}", full.display()))?;
            Some(Shadow {
                path: PATHOLOGY_EARLIER,
                out: BufWriter::with_capacity(1 << 16, f),
                stats: FileStats::default(),
                corrected: 0,
                late: 0,
            })
        } else {
            None
        };
        let mut t = Table {
            path,
            index,
            spec,
            header,
            encoding,
            out: BufWriter::with_capacity(1 << 16, f),
            stats: FileStats::default(),
            us_dates,
            us_dates_show: false,
            shadow,
            line: String::with_capacity(256),
            scratch: String::with_capacity(256),
            bytes: Vec::with_capacity(256),
        };
        if encoding == Encoding::Utf8Bom {
            t.out.write_all(b"\xEF\xBB\xBF")?;
        }
        t.line = header.join(";");
        t.emit(true)?;
        if t.shadow.is_some() {
            t.emit(false)?;
        }
        Ok(t)
    }

    /// Encodes and writes `self.line` with CRLF, to the file or (`main` false) its shadow.
    fn emit(&mut self, main: bool) -> Result<()> {
        let out: &mut BufWriter<File> = if main {
            &mut self.out
        } else {
            &mut self.shadow.as_mut().expect("a shadow").out
        };
        match self.encoding {
            Encoding::Utf8Bom => out.write_all(self.line.as_bytes())?,
            _ if self.line.is_ascii() => out.write_all(self.line.as_bytes())?,
            Encoding::Windows1252 => {
                self.scratch.clear();
                for c in self.line.chars() {
                    if in_cp1252(c) {
                        self.scratch.push(c);
                    } else {
                        self.scratch.push_str(transliterate(c));
                    }
                }
                let (bytes, _, unmappable) = WINDOWS_1252.encode(&self.scratch);
                debug_assert!(!unmappable);
                out.write_all(&bytes)?;
            }
            Encoding::Latin1 => {
                self.bytes.clear();
                for c in self.line.chars() {
                    if (c as u32) < 0x100 {
                        self.bytes.push(c as u32 as u8);
                    } else {
                        self.bytes.extend(transliterate(c).bytes());
                    }
                }
                out.write_all(&self.bytes)?;
            }
        }
        out.write_all(b"\r\n")?;
        Ok(())
    }

    /// Writes one data row, maybe spoiled, and records what was injected.
    pub(crate) fn write(&mut self, row: &Row, dirt: &mut PatientDirt) -> Result<()> {
        self.write_in(row, dirt, InShadow::Same)
    }

    /// [`Table::write`], saying what the earlier export holds of the row (if there is one).
    pub(crate) fn write_in(
        &mut self,
        row: &Row,
        dirt: &mut PatientDirt,
        shadow: InShadow<'_>,
    ) -> Result<()> {
        debug_assert_eq!(row.len(), self.header.len(), "{}", self.path);
        let spec = self.spec;
        let kind = if spec.duplicates_only {
            dirt.roll(&[DirtKind::DuplicateRow])
        } else if spec.code_col.is_some() {
            dirt.roll(&[
                DirtKind::DuplicateRow,
                DirtKind::BadDate,
                DirtKind::UnknownCode,
                DirtKind::ExtraField,
                DirtKind::IdentifierInText,
            ])
        } else {
            dirt.roll(&[
                DirtKind::DuplicateRow,
                DirtKind::BadDate,
                DirtKind::ExtraField,
            ])
        };
        let mut replace: Option<(usize, std::borrow::Cow<'_, str>)> = None;
        let mut extra_after = None;
        let mut column = None;
        match kind {
            Some(DirtKind::BadDate) => {
                let col = *dirt.rng.pick(spec.date_cols);
                replace = Some((col, (*dirt.rng.pick(BAD_DATES)).into()));
                column = Some(self.header[col]);
            }
            Some(DirtKind::UnknownCode) => {
                let (col, codes) = spec.code_col.expect("code column");
                replace = Some((col, (*dirt.rng.pick(codes)).into()));
                column = Some(self.header[col]);
            }
            Some(DirtKind::IdentifierInText) => {
                let (col, _) = spec.code_col.expect("code column");
                replace = Some((col, format!("{} {}", row.field(col), dirt.niss).into()));
                column = Some(self.header[col]);
            }
            Some(DirtKind::ExtraField) => {
                let col = dirt.rng.range(1, self.header.len() as i64 - 1) as usize;
                extra_after = Some(col);
                column = Some(self.header[col]);
            }
            _ => {}
        }
        let us = self.us_dates;
        let build = |line: &mut String, us_show: &mut bool, result: Option<&str>| {
            line.clear();
            for i in 0..row.len() {
                if i > 0 {
                    line.push(';');
                }
                match replace {
                    Some((col, ref v)) if col == i => line.push_str(v),
                    _ if i == 4 && result.is_some() => line.push_str(result.unwrap_or("")),
                    _ if us && spec.date_cols.contains(&i) => {
                        // dd/mm/yyyy -> mm/dd/yyyy
                        let f = row.field(i);
                        let b = f.as_bytes();
                        if b.len() == 10 && b[2] == b'/' && b[5] == b'/' {
                            *us_show |= &f[..2] > "12";
                            line.push_str(&f[3..5]);
                            line.push('/');
                            line.push_str(&f[..2]);
                            line.push_str(&f[5..]);
                        } else {
                            line.push_str(f);
                        }
                    }
                    _ => line.push_str(row.field(i)),
                }
                if extra_after == Some(i) {
                    line.push(';');
                }
            }
        };
        let mut line = std::mem::take(&mut self.line);
        let mut show = self.us_dates_show;
        build(&mut line, &mut show, None);
        self.us_dates_show = show;
        self.line = line;
        let copies = if kind == Some(DirtKind::DuplicateRow) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.emit(true)?;
            self.stats.rows += 1;
        }
        if self.shadow.is_some() {
            let write = match shadow {
                InShadow::No => false,
                InShadow::Same => true,
                InShadow::Uncorrected(v) => {
                    let mut line = std::mem::take(&mut self.line);
                    let mut show = false;
                    build(&mut line, &mut show, Some(v));
                    self.line = line;
                    self.shadow.as_mut().expect("shadow").corrected += 1;
                    true
                }
            };
            if write {
                for _ in 0..copies {
                    self.emit(false)?;
                }
                let sh = self.shadow.as_mut().expect("shadow");
                sh.stats.rows += copies;
                if let Some(kind) = kind {
                    sh.stats.dirt.add(kind, 1);
                }
            }
        }
        if let Some(kind) = kind {
            self.stats.dirt.add(kind, 1);
            dirt.events.push(DirtEvent {
                file: self.path,
                row: self.stats.rows,
                kind,
                column,
            });
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush()?;
        if let Some(s) = self.shadow.as_mut() {
            s.out.flush()?;
        }
        Ok(())
    }
}

/// All HIS tables of one run.
pub(crate) struct His {
    pub tables: Vec<Table>,
    /// The run's whole-file dirt (the empty file, the dated re-export, the archive).
    pub dirty: bool,
    row: Row,
    tmp: String,
}

/// Which whole-file faults a run's HIS export carries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileDirt {
    pub bom: Option<usize>,
    pub latin1: Option<usize>,
    pub us_dates: Option<usize>,
    /// The empty file, the dated pathology re-export and the archive's patients.
    pub dirty: bool,
}

impl His {
    pub(crate) fn create(out: &Path, d: FileDirt) -> Result<His> {
        let dir = out.join("his");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tables = Vec::new();
        for index in 0..HIS_TABLES.len() {
            let encoding = if d.bom == Some(index) {
                Encoding::Utf8Bom
            } else if d.latin1 == Some(index) {
                Encoding::Latin1
            } else {
                Encoding::Windows1252
            };
            tables.push(Table::create(
                &dir,
                index,
                encoding,
                d.dirty,
                d.us_dates == Some(index),
            )?);
        }
        if d.dirty {
            File::create(out.join(EMPTY_FILE)).context("cannot create the empty export")?;
        }
        Ok(His {
            tables,
            dirty: d.dirty,
            row: Row::default(),
            tmp: String::new(),
        })
    }

    fn put(&mut self, table: usize, dirt: &mut PatientDirt) -> Result<()> {
        self.tables[table].write(&self.row, dirt)
    }

    /// Writes every HIS row of one patient.
    pub(crate) fn write_patient(&mut self, p: &Patient, dirt: &mut PatientDirt) -> Result<()> {
        let mrn = p.mrn.as_str();
        let lat = if p.left { "L" } else { "R" };

        self.tmp.clear();
        self.tmp.push_str(&crate::niss::format_niss(&p.niss));
        self.row
            .clear()
            .s(mrn)
            .s(&self.tmp)
            .s(p.last_name)
            .s(p.first_name)
            .date(p.birth_date);
        self.row
            .s(if p.sex == Sex::Female { "F" } else { "M" })
            .s(p.postcode)
            .s(p.city);
        self.put(PATIENTS, dirt)?;

        self.row
            .clear()
            .s(mrn)
            .date(p.dx_date)
            .s(p.icd10)
            .s(lat)
            .s(p.morphology)
            .s(p.icd10);
        self.put(DIAGNOSES, dirt)?;

        let pathology: [(&str, Option<String>, &str); 8] = [
            ("ER_PCT", Some(p.er.to_string()), "%"),
            ("PR_PCT", Some(p.pr.to_string()), "%"),
            ("ER_ALLRED", p.er_allred.map(|v| v.to_string()), ""),
            ("PR_ALLRED", p.pr_allred.map(|v| v.to_string()), ""),
            (
                "HER2_IHC",
                Some(if p.her2_ihc == 0 {
                    "0".to_string()
                } else {
                    format!("{}+", p.her2_ihc)
                }),
                "",
            ),
            (
                "HER2_ISH",
                p.her2_ish.map(|_| p.her2_ish_label.to_string()),
                "",
            ),
            ("KI67_PCT", Some(p.ki67.to_string()), "%"),
            ("GRADE", Some(p.grade.to_string()), ""),
        ];
        // The earlier export: a patient reported later is not in it; a grade corrected later
        // has its first value there.
        let dated = self.tables[PATHOLOGY].shadow.is_some();
        let late = dated && dirt.rng.chance(0.05);
        if late {
            if let Some(s) = self.tables[PATHOLOGY].shadow.as_mut() {
                s.late += 1;
            }
        }
        for (code, value, unit) in pathology {
            if let Some(value) = value {
                debug_assert!(codes::PATHOLOGY_CODES.contains(&code));
                self.row
                    .clear()
                    .s(mrn)
                    .s(&p.sample_id)
                    .date(p.dx_date)
                    .s(code)
                    .s(&value)
                    .s(unit);
                let first = (code == "GRADE" && dated && !late && dirt.rng.chance(0.1))
                    .then(|| (p.grade % 3 + 1).to_string());
                let in_shadow = match (&first, late) {
                    (_, true) => InShadow::No,
                    (Some(v), false) => InShadow::Uncorrected(v),
                    (None, false) => InShadow::Same,
                };
                self.tables[PATHOLOGY].write_in(&self.row, dirt, in_shadow)?;
            }
        }

        for (kind, tnm) in [("c", Some(&p.ctnm)), ("yp", p.yptnm.as_ref())] {
            if let Some(tnm) = tnm {
                self.row
                    .clear()
                    .s(mrn)
                    .date(tnm.date)
                    .s(kind)
                    .s(tnm.t)
                    .s(tnm.n)
                    .s(tnm.m)
                    .s(tnm.stage);
                self.put(TNM, dirt)?;
            }
        }

        if let Some(s) = &p.surgery {
            let (code, label) = SURGERY_CODES[usize::from(s.mastectomy)];
            self.row
                .clear()
                .s(mrn)
                .date(s.date)
                .s(code)
                .s(label)
                .s(lat)
                .s(s.axilla);
            self.put(SURGERY, dirt)?;
        }

        for a in &p.admins {
            let d = &DRUGS[a.drug];
            self.row
                .clear()
                .s(mrn)
                .date(a.date)
                .s(d.code)
                .s(d.label)
                .dec(a.dose10, 1)
                .s("mg")
                .s(d.route);
            self.row.int(i64::from(a.cycle)).s(a.setting).s(a.regimen);
            self.put(SYSTEMIC, dirt)?;
        }

        for c in &p.rt {
            self.row
                .clear()
                .s(mrn)
                .date(c.start)
                .date(c.end)
                .s(c.target)
                .s(lat);
            self.row
                .dec(i64::from(c.dose_cgy), 2)
                .int(i64::from(c.fractions));
            self.put(RADIOTHERAPY, dirt)?;
        }

        if let Some(r) = &p.recurrence {
            self.row.clear().s(mrn).date(r.date).s(r.kind).s(r.site);
            self.put(RECURRENCES, dirt)?;
        }

        if let Some(d) = &p.death {
            self.row.clear().s(mrn).date(d.date).s(d.cause);
            self.put(DEATHS, dirt)?;
        }

        for l in &p.labs {
            let (code, unit) = MEASUREMENT_CODES[l.code];
            self.row
                .clear()
                .s(mrn)
                .date(l.date)
                .s(code)
                .dec(l.value, l.decimals)
                .s(unit);
            self.put(MEASUREMENTS, dirt)?;
        }
        Ok(())
    }

    /// Flushes the tables and writes `his/_manifest.json`; returns per-file stats.
    pub(crate) fn finish(
        &mut self,
        out: &Path,
        institution: &str,
    ) -> Result<Vec<(&'static str, FileStats, Encoding)>> {
        let mut files = Vec::new();
        let mut stats = Vec::new();
        for t in &mut self.tables {
            t.finish()?;
            let (file, header) = HIS_TABLES[t.index];
            files.push(json!({
                "file": t.path.trim_start_matches("his/"),
                "table": file.trim_end_matches(".csv"),
                "encoding": t.encoding.declared(),
                "columns": header,
            }));
            stats.push((t.path, t.stats.clone(), t.encoding));
            if let Some(s) = &t.shadow {
                files.push(json!({
                    "file": s.path.trim_start_matches("his/"),
                    "table": file.trim_end_matches(".csv"),
                    "encoding": t.encoding.declared(),
                    "columns": header,
                }));
                stats.push((s.path, s.stats.clone(), t.encoding));
            }
        }
        if self.dirty {
            files.push(json!({
                "file": ARCHIVE_PATIENTS.trim_start_matches("his/"),
                "table": "patients",
                "encoding": "windows-1252",
                "columns": HIS_TABLES[PATIENTS].1,
            }));
        }
        if self.dirty {
            files.push(json!({
                "file": "empty_export.csv",
                "table": "empty_export",
                "encoding": "windows-1252",
                "columns": null,
            }));
        }
        let manifest = json!({
            "source": "HIS export",
            "institution": institution,
            "exported_at": "2025-06-30T18:00:00+02:00",
            "delimiter": ";",
            "line_ending": "CRLF",
            "header": true,
            "date_format": "dd/mm/yyyy",
            "decimal_separator": ",",
            "files": files,
        });
        let path = out.join("his/_manifest.json");
        let mut w = BufWriter::new(File::create(&path).context("cannot create the HIS manifest")?);
        serde_json::to_writer_pretty(&mut w, &manifest)?;
        w.write_all(b"\n")?;
        w.flush()?;
        Ok(stats)
    }
}

/// Writes [`ARCHIVE_PATIENTS`]: `n` patients of a merged hospital's archive, born between 1892
/// and 1899, with their archive MRN (`ARCH-nnnnnn`) and no national number. Returns the rows.
pub(crate) fn write_archive(out: &Path, n: u64, rng: &mut crate::rng::Rng) -> Result<u64> {
    let path = out.join(ARCHIVE_PATIENTS);
    std::fs::create_dir_all(path.parent().expect("a folder"))
        .context("cannot create the archive folder")?;
    let mut text = HIS_TABLES[PATIENTS].1.join(";");
    text.push_str("\r\n");
    for i in 0..n {
        let born = NaiveDate::from_ymd_opt(1892, 1, 1).expect("date")
            + chrono::Duration::days(rng.range(0, 8 * 365 - 1));
        let mut date = String::new();
        push_date(&mut date, born);
        let (postcode, city) = *rng.pick(crate::names::PLACES);
        text.push_str(&format!(
            "ARCH-{:06};;{};{};{date};F;{postcode};{city}\r\n",
            i + 1,
            rng.pick(crate::names::LAST_NAMES),
            rng.pick(crate::names::FEMALE_FIRST_NAMES),
        ));
    }
    let mut bytes = Vec::new();
    for c in text.chars() {
        if in_cp1252(c) {
            let mut b = [0u8; 4];
            let (enc, _, _) = WINDOWS_1252.encode(c.encode_utf8(&mut b));
            bytes.extend_from_slice(&enc);
        } else {
            bytes.extend(transliterate(c).bytes());
        }
    }
    std::fs::write(&path, bytes).context("cannot write the archive's patients")?;
    Ok(n)
}

/// What the manifest says versus what the bytes are, for the truth summary.
pub(crate) fn encoding_note(e: Encoding) -> (&'static str, &'static str) {
    (e.declared(), e.actual())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_dates() {
        let mut s = String::new();
        push_decimal(&mut s, 128, 1);
        s.push(' ');
        push_decimal(&mut s, 5, 2);
        s.push(' ');
        push_decimal(&mut s, 4005, 2);
        s.push(' ');
        push_decimal(&mut s, 250, 0);
        s.push(' ');
        push_date(&mut s, NaiveDate::from_ymd_opt(2019, 3, 7).unwrap());
        assert_eq!(s, "12,8 0,05 40,05 250 07/03/2019");
    }

    #[test]
    fn cp1252_repertoire() {
        assert!(in_cp1252('é') && in_cp1252('Š') && in_cp1252('€') && in_cp1252('ü'));
        assert!(!in_cp1252('ọ') && !in_cp1252('Ż') && !in_cp1252('ł'));
    }
}
