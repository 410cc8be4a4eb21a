//! The study nurse's workbook (`study/study_nurse.xlsx`): one sheet per study, a header block
//! above the table, dates typed as dates or as text, a formula column and free-text comments.
//!
//! Worksheets run in `rust_xlsxwriter`'s constant-memory mode (rows stream to temp files), so
//! memory stays flat whatever the number of enrolled patients.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use rust_xlsxwriter::{
    DocProperties, ExcelDateTime, Format, FormatAlign, Formula, Workbook, Worksheet,
};

use crate::codes::{STUDY_HEADER_ROW, STUDY_SHEETS};
use crate::cohort::{cutoff_date, Enrolment, Patient};

pub(crate) const NEOADJ: usize = 0;
pub(crate) const BOOST: usize = 1;

/// Column headers of the two sheets.
pub const NEOADJ_COLUMNS: &[&str] = &[
    "Subject",
    "Patient nr",
    "Consent date",
    "Randomisation date",
    "Arm",
    "Weight (kg)",
    "Height (cm)",
    "BMI",
    "Comments",
];
/// Column headers of the RT-BOOST sheet.
pub const BOOST_COLUMNS: &[&str] = &[
    "Subject",
    "Patient nr",
    "Consent date",
    "Randomisation date",
    "Arm",
    "Weight (kg)",
    "Height (cm)",
    "BMI",
    "Boost dose (Gy)",
    "Comments",
];

struct SheetInfo {
    title: &'static str,
    sponsor: &'static str,
    prefix: &'static str,
    columns: &'static [&'static str],
}

const SHEETS: [SheetInfo; 2] = [
    SheetInfo {
        title: "NEOADJ-2019 - Neoadjuvant chemotherapy schedules - subject log",
        sponsor: "Belgian Breast Trials Consortium (fictitious)",
        prefix: "NA19",
        columns: NEOADJ_COLUMNS,
    },
    SheetInfo {
        title: "RT-BOOST - Tumour-bed boost after breast-conserving surgery - subject log",
        sponsor: "Groupe Radiothérapie Sein (fictitious)",
        prefix: "RTB",
        columns: BOOST_COLUMNS,
    },
];

fn excel_date(d: NaiveDate) -> Result<ExcelDateTime> {
    Ok(ExcelDateTime::from_ymd(
        d.year() as u16,
        d.month() as u8,
        d.day() as u8,
    )?)
}

/// Where one patient landed in the workbook.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Enrolled {
    pub study: &'static str,
    pub subject: String,
    /// 1-based Excel row.
    pub excel_row: u32,
    pub randomisation_as_text: bool,
}

pub(crate) struct Study {
    workbook: Workbook,
    next_row: [u32; 2],
    pub subjects: [u64; 2],
    date: Format,
    bmi: Format,
}

impl Study {
    pub(crate) fn create(institution: &str) -> Result<Study> {
        let mut workbook = Workbook::new();
        // A fixed creation time keeps the file byte-identical between runs.
        let created = excel_date(cutoff_date())?;
        workbook.set_properties(
            &DocProperties::new()
                .set_title("Study nurse subject logs")
                .set_author("Study nurse")
                .set_company(institution)
                .set_creation_datetime(&created),
        );
        let date = Format::new()
            .set_num_format("dd/mm/yyyy")
            .set_align(FormatAlign::Left);
        let bmi = Format::new().set_num_format("0.0");
        let title = Format::new()
            .set_bold()
            .set_font_size(14)
            .set_align(FormatAlign::Center);
        let bold = Format::new().set_bold();
        let header = Format::new()
            .set_bold()
            .set_background_color(0xD9E1F2)
            .set_border_bottom(rust_xlsxwriter::FormatBorder::Thin);
        for (i, info) in SHEETS.iter().enumerate() {
            let sheet = workbook.add_worksheet_with_constant_memory()?;
            sheet.set_name(STUDY_SHEETS[i])?;
            let last = info.columns.len() as u16 - 1;
            for (c, w) in [14.0, 13.0, 14.0, 18.0, 10.0, 11.0, 11.0, 8.0]
                .iter()
                .enumerate()
            {
                sheet.set_column_width(c as u16, *w)?;
            }
            sheet.set_column_width(last, 48.0)?;
            sheet.merge_range(0, 0, 0, last, info.title, &title)?;
            sheet.write_string_with_format(1, 0, "Study:", &bold)?;
            sheet.write_string(1, 1, STUDY_SHEETS[i])?;
            sheet.write_string_with_format(1, 2, "Sponsor:", &bold)?;
            sheet.write_string(1, 3, info.sponsor)?;
            sheet.write_string_with_format(1, 4, "Export date:", &bold)?;
            sheet.write_datetime_with_format(1, 5, &created, &date)?;
            sheet.write_string_with_format(1, 6, "Site:", &bold)?;
            sheet.write_string(1, 7, institution)?;
            // Row 2 stays empty (spacer).
            for (c, name) in info.columns.iter().enumerate() {
                sheet.write_string_with_format(STUDY_HEADER_ROW, c as u16, *name, &header)?;
            }
        }
        Ok(Study {
            workbook,
            next_row: [STUDY_HEADER_ROW + 1; 2],
            subjects: [0; 2],
            date,
            bmi,
        })
    }

    fn sheet(&mut self, i: usize) -> Result<&mut Worksheet> {
        Ok(self.workbook.worksheet_from_index(i)?)
    }

    /// Adds the patient's rows; returns where they went.
    pub(crate) fn write_patient(&mut self, p: &Patient) -> Result<Vec<Enrolled>> {
        let mut out = Vec::new();
        for (i, enrolment) in [(NEOADJ, &p.neoadj_study), (BOOST, &p.boost_study)] {
            if let Some(e) = enrolment {
                out.push(self.write_row(i, p, e)?);
            }
        }
        Ok(out)
    }

    fn write_row(&mut self, i: usize, p: &Patient, e: &Enrolment) -> Result<Enrolled> {
        let row = self.next_row[i];
        self.next_row[i] += 1;
        self.subjects[i] += 1;
        let subject = format!("{}-{:04}", SHEETS[i].prefix, self.subjects[i]);
        let date = self.date.clone();
        let bmi_format = self.bmi.clone();
        let excel_row = row + 1;
        let weight = p.weight10 as f64 / 10.0;
        let height = p.height_cm as f64;
        let bmi = weight / ((height / 100.0) * (height / 100.0));
        let consent = excel_date(e.consent)?;
        let randomisation = excel_date(e.randomisation)?;
        let sheet = self.sheet(i)?;
        sheet.write_string(row, 0, &subject)?;
        sheet.write_string(row, 1, &p.mrn)?;
        sheet.write_datetime_with_format(row, 2, &consent, &date)?;
        if e.randomisation_as_text {
            sheet.write_string(row, 3, e.randomisation.format("%d/%m/%Y").to_string())?;
        } else {
            sheet.write_datetime_with_format(row, 3, &randomisation, &date)?;
        }
        sheet.write_string(row, 4, e.arm)?;
        sheet.write_number(row, 5, weight)?;
        sheet.write_number(row, 6, height)?;
        let formula = format!("=F{excel_row}/(G{excel_row}/100)^2");
        sheet.write_formula_with_format(
            row,
            7,
            Formula::new(formula).set_result(format!("{bmi}")),
            &bmi_format,
        )?;
        let mut col = 8;
        if i == BOOST {
            let boost =
                p.rt.iter()
                    .find(|c| c.target == "TUMOUR_BED")
                    .map_or(0.0, |c| f64::from(c.dose_cgy) / 100.0);
            sheet.write_number(row, 8, boost)?;
            col = 9;
        }
        if !e.comment.is_empty() {
            sheet.write_string(row, col, &e.comment)?;
        }
        Ok(Enrolled {
            study: STUDY_SHEETS[i],
            subject,
            excel_row,
            randomisation_as_text: e.randomisation_as_text,
        })
    }

    pub(crate) fn finish(mut self, out: &Path) -> Result<()> {
        let dir = out.join("study");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.workbook
            .save(dir.join("study_nurse.xlsx"))
            .context("cannot write the study workbook")?;
        Ok(())
    }
}
