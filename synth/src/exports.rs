//! Two exports in formats registrar did not invent, written from the same cohort:
//!
//! - [`CBIO_PATIENTS`]: a cBioPortal clinical patient file (tab-separated; four `#` lines of
//!   display names, descriptions, datatypes and priorities above the attribute header). As
//!   cBioPortal studies do, it has no calendar dates: an age at diagnosis in years with
//!   decimals, the year of diagnosis (`INITIAL_PATHOLOGIC_DX_YEAR`, as TCGA gives it), times
//!   in days (`DAYS_TO_*`) and months (`*_MONTHS`, days / 30.4375 to two decimals) since the
//!   diagnosis, statuses written `1:Recurred` and `0:LIVING`, and `NA` among numbers (the ER
//!   percentage of one patient in five). The patient id is an opaque study id.
//! - [`TRIAL`]: a trial's CSV in the style of the Rotterdam breast-cancer data: one row per
//!   patient operated without neoadjuvant therapy, the year of surgery and the age at
//!   surgery instead of dates, and the times to recurrence and to death (or last follow-up)
//!   in months since surgery.
//!
//! Both are deterministic functions of the patient (no random draw), so adding them changes
//! no other file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use chrono::Datelike;

use crate::codes::DRUGS;
use crate::cohort::{cutoff_date, Patient, Sex};

/// The cBioPortal clinical patient file.
pub const CBIO_PATIENTS: &str = "cbioportal/data_clinical_patient.txt";
/// The Rotterdam-style trial file.
pub const TRIAL: &str = "trial/rotterdam.csv";

/// cBioPortal attributes: (id, display name, datatype).
const CBIO_COLUMNS: &[(&str, &str, &str)] = &[
    ("PATIENT_ID", "Patient Identifier", "STRING"),
    ("SEX", "Sex", "STRING"),
    ("AGE_AT_DIAGNOSIS", "Diagnosis Age", "NUMBER"),
    ("INITIAL_PATHOLOGIC_DX_YEAR", "Year of Diagnosis", "NUMBER"),
    ("ER_STATUS", "ER Status", "STRING"),
    ("ER_PERCENT", "ER Percent Positive", "NUMBER"),
    ("PR_STATUS", "PR Status", "STRING"),
    ("PR_PERCENT", "PR Percent Positive", "NUMBER"),
    ("HER2_IHC_SCORE", "HER2 IHC Score", "STRING"),
    ("HER2_FISH_STATUS", "HER2 FISH Status", "STRING"),
    ("KI67_PERCENT", "Ki-67 Percent", "NUMBER"),
    ("GRADE", "Histologic Grade", "NUMBER"),
    ("CLINICAL_T", "Clinical T", "STRING"),
    ("CLINICAL_N", "Clinical N", "STRING"),
    ("CLINICAL_M", "Clinical M", "STRING"),
    ("NEOADJUVANT", "Neoadjuvant Therapy", "STRING"),
    ("NEOADJUVANT_AGENTS", "Neoadjuvant Agents", "STRING"),
    (
        "DAYS_TO_NEOADJUVANT",
        "Days to Neoadjuvant Therapy",
        "NUMBER",
    ),
    ("SURGERY", "Breast Surgery", "STRING"),
    ("DAYS_TO_SURGERY", "Days to Surgery", "NUMBER"),
    ("YPT", "Pathologic T after Neoadjuvant Therapy", "STRING"),
    ("YPN", "Pathologic N after Neoadjuvant Therapy", "STRING"),
    ("RFS_STATUS", "Relapse Free Status", "STRING"),
    ("RFS_MONTHS", "Relapse Free Status (Months)", "NUMBER"),
    ("RECURRENCE_TYPE", "Type of First Recurrence", "STRING"),
    ("OS_STATUS", "Overall Survival Status", "STRING"),
    ("OS_MONTHS", "Overall Survival (Months)", "NUMBER"),
];

/// The trial file's header.
pub const TRIAL_COLUMNS: &[&str] = &[
    "pid",
    "year",
    "age",
    "surgery",
    "grade",
    "er",
    "pgr",
    "her2",
    "ish",
    "ki67",
    "recur",
    "recur_site",
    "rtime",
    "death",
    "dtime",
];

/// Days as cBioPortal months (two decimals).
fn months(days: i64) -> String {
    format!("{:.2}", days as f64 / 30.4375)
}

fn na<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "NA".to_string(), |v| v.to_string())
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The open export files.
pub(crate) struct Exports {
    cbio: BufWriter<File>,
    trial: BufWriter<File>,
    pub cbio_rows: u64,
    pub trial_rows: u64,
}

fn create(out: &Path, rel: &str) -> Result<BufWriter<File>> {
    let path = out.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(BufWriter::with_capacity(
        1 << 16,
        File::create(&path).with_context(|| format!("cannot create {rel}"))?,
    ))
}

impl Exports {
    pub(crate) fn create(out: &Path) -> Result<Exports> {
        let mut cbio = create(out, CBIO_PATIENTS)?;
        let row = |f: &dyn Fn(&(&str, &str, &str)) -> String| {
            CBIO_COLUMNS.iter().map(f).collect::<Vec<_>>().join("\t")
        };
        writeln!(cbio, "#{}", row(&|c| c.1.to_string()))?;
        writeln!(cbio, "#{}", row(&|c| c.1.to_string()))?;
        writeln!(cbio, "#{}", row(&|c| c.2.to_string()))?;
        writeln!(cbio, "#{}", row(&|_| "1".to_string()))?;
        writeln!(cbio, "{}", row(&|c| c.0.to_string()))?;
        let mut trial = create(out, TRIAL)?;
        writeln!(trial, "{}", TRIAL_COLUMNS.join(","))?;
        Ok(Exports {
            cbio,
            trial,
            cbio_rows: 0,
            trial_rows: 0,
        })
    }

    /// The patient's rows; returns the trial subject number, if the patient is in the trial.
    pub(crate) fn write_patient(&mut self, p: &Patient) -> Result<Option<u64>> {
        self.write_cbio(p)?;
        self.write_trial(p)
    }

    fn write_cbio(&mut self, p: &Patient) -> Result<()> {
        let dx = p.dx_date;
        let since = |d: chrono::NaiveDate| (d - dx).num_days();
        let age = (dx - p.birth_date).num_days() as f64 / 365.25;
        let result = |pos: bool| if pos { "Positive" } else { "Negative" };
        let neo: Vec<_> = p
            .admins
            .iter()
            .filter(|a| a.setting == "neoadjuvant")
            .collect();
        let mut agents: Vec<String> = Vec::new();
        for a in &neo {
            let name = capitalised(DRUGS[a.drug].atc_display);
            if !agents.contains(&name) {
                agents.push(name);
            }
        }
        let first_neo = neo.iter().map(|a| a.date).min();
        let yp = p.yptnm.as_ref().filter(|_| p.surgery.is_some());
        let last = p.last_day();
        let (rfs_status, rfs_days, recurrence_type) = match &p.recurrence {
            Some(r) => ("1:Recurred", since(r.date), capitalised(r.kind)),
            None => ("0:Not Recurred", since(last), "NA".to_string()),
        };
        let cells: Vec<String> = vec![
            format!("SYN-{:06}", p.number),
            (if p.sex == Sex::Male { "Male" } else { "Female" }).to_string(),
            format!("{age:.2}"),
            dx.year().to_string(),
            result(p.er >= 1).to_string(),
            // One patient in five has the status without its percentage.
            na((p.number % 5 != 3).then_some(p.er)),
            result(p.pr >= 1).to_string(),
            p.pr.to_string(),
            match p.her2_ihc {
                0 => "0".to_string(),
                n => format!("{n}+"),
            },
            na(p.her2_ish.map(result)),
            p.ki67.to_string(),
            p.grade.to_string(),
            p.ctnm.t.to_string(),
            p.ctnm.n.to_string(),
            p.ctnm.m.to_string(),
            (if p.neoadjuvant { "Yes" } else { "No" }).to_string(),
            if agents.is_empty() {
                "NA".into()
            } else {
                agents.join("|")
            },
            na(first_neo.map(since)),
            na(p.surgery.as_ref().map(|s| {
                if s.mastectomy {
                    "Mastectomy"
                } else {
                    "Lumpectomy"
                }
            })),
            na(p.surgery.as_ref().map(|s| since(s.date))),
            na(yp.map(|t| t.t)),
            na(yp.map(|t| t.n)),
            rfs_status.to_string(),
            months(rfs_days),
            recurrence_type,
            (if p.death.is_some() {
                "1:DECEASED"
            } else {
                "0:LIVING"
            })
            .to_string(),
            months(since(last)),
        ];
        writeln!(self.cbio, "{}", cells.join("\t"))?;
        self.cbio_rows += 1;
        Ok(())
    }

    fn write_trial(&mut self, p: &Patient) -> Result<Option<u64>> {
        let Some(s) = p.surgery.as_ref().filter(|_| !p.neoadjuvant) else {
            return Ok(None);
        };
        self.trial_rows += 1;
        let pid = self.trial_rows;
        let since = |d: chrono::NaiveDate| months((d - s.date).num_days());
        let age = {
            let mut a = s.date.year() - p.birth_date.year();
            if (s.date.month(), s.date.day()) < (p.birth_date.month(), p.birth_date.day()) {
                a -= 1;
            }
            a
        };
        let last = p.last_day().min(cutoff_date());
        let (recur, site, rtime) = match &p.recurrence {
            Some(r) => ("1", r.kind, since(r.date)),
            None => ("0", "", since(last)),
        };
        let (death, dtime) = match &p.death {
            Some(d) => ("1", since(d.date)),
            None => ("0", since(last)),
        };
        let cells: Vec<String> = vec![
            pid.to_string(),
            s.date.year().to_string(),
            age.to_string(),
            (if s.mastectomy { "mastectomy" } else { "bcs" }).to_string(),
            p.grade.to_string(),
            p.er.to_string(),
            p.pr.to_string(),
            p.her2_ihc.to_string(),
            p.her2_ish
                .map_or("", |b| if b { "pos" } else { "neg" })
                .to_string(),
            p.ki67.to_string(),
            recur.to_string(),
            site.to_string(),
            rtime,
            death.to_string(),
            dtime,
        ];
        writeln!(self.trial, "{}", cells.join(","))?;
        Ok(Some(pid))
    }

    pub(crate) fn finish(mut self) -> Result<(u64, u64)> {
        self.cbio.flush()?;
        self.trial.flush()?;
        Ok((self.cbio_rows, self.trial_rows))
    }
}
