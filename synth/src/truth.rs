//! The truth file: what was generated, per patient, so that tests can check an import.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::cohort::{Patient, Sex, Tnm};
use crate::dicom::DicomTruth;
use crate::dirt::DirtEvent;
use crate::study::Enrolled;

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[derive(Serialize)]
pub(crate) struct TnmTruth {
    t: &'static str,
    n: &'static str,
    m: &'static str,
    stage: &'static str,
    date: String,
}

impl From<&Tnm> for TnmTruth {
    fn from(t: &Tnm) -> TnmTruth {
        TnmTruth {
            t: t.t,
            n: t.n,
            m: t.m,
            stage: t.stage,
            date: iso(t.date),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct RecurrenceTruth {
    #[serde(rename = "type")]
    kind: &'static str,
    date: String,
    site: &'static str,
}

/// One line of `truth.jsonl`.
#[derive(Serialize)]
pub(crate) struct PatientTruth<'a> {
    patient_number: u64,
    /// The cBioPortal export's patient id (`SYN-nnnnnn`).
    cbio_patient_id: String,
    /// The patient's subject number in the trial export, if the patient is in it.
    pub(crate) trial_pid: Option<u64>,
    patient_nr: &'a str,
    fhir_patient_id: String,
    sex: &'static str,
    birth_date: String,
    subtype: &'static str,
    er_pct: u8,
    pr_pct: u8,
    her2_ihc: String,
    her2_ish: Option<&'static str>,
    her2_status: &'static str,
    ki67: u8,
    grade: u8,
    diagnosis_date: String,
    laterality: &'static str,
    icd10: &'static str,
    morphology: &'static str,
    age_at_diagnosis: i32,
    ctnm: TnmTruth,
    neoadjuvant: bool,
    pcr: Option<bool>,
    yptnm: Option<TnmTruth>,
    surgery_date: Option<String>,
    surgery: Option<&'static str>,
    chemotherapy: bool,
    anti_her2: bool,
    endocrine: bool,
    radiotherapy: bool,
    recurrence: Option<RecurrenceTruth>,
    /// Days from surgery to the first of recurrence, death or the cut-off.
    rfs_days: Option<i64>,
    /// True when `rfs_days` ends with a recurrence or death (false: censored at cut-off).
    rfs_event: Option<bool>,
    death_date: Option<String>,
    /// RT Structure Sets written for this patient (0 without radiotherapy or DICOM).
    structure_sets: u32,
    /// The patient's DICOM radiotherapy set, when written.
    dicom: Option<DicomTruth>,
    has_name_in_comment: bool,
    comment_names: Vec<&'static str>,
    studies: Vec<Enrolled>,
    /// Rows (CSV) or resources (ndjson) written for this patient, per file.
    rows: BTreeMap<&'static str, u64>,
    dirt: Vec<DirtEvent>,
}

pub(crate) fn patient_truth<'a>(
    p: &'a Patient,
    fhir_patient_id: String,
    studies: Vec<Enrolled>,
    rows: BTreeMap<&'static str, u64>,
    dirt: Vec<DirtEvent>,
    dicom: Option<DicomTruth>,
) -> PatientTruth<'a> {
    use crate::codes::{CARB, CYCL, DOCE, DOXO, LETR, PACL, PERT, TAMO, TRAS};
    let her2 = p.her2_positive();
    let rfs = p.surgery.as_ref().map(|s| {
        let end = [
            p.recurrence.as_ref().map(|r| r.date),
            p.death.as_ref().map(|d| d.date),
        ]
        .into_iter()
        .flatten()
        .min();
        match end {
            Some(e) => ((e - s.date).num_days(), true),
            None => ((crate::cohort::cutoff_date() - s.date).num_days(), false),
        }
    });
    let mut comment_names: Vec<&'static str> = Vec::new();
    for e in [&p.neoadj_study, &p.boost_study].into_iter().flatten() {
        for n in &e.comment_names {
            if !comment_names.contains(n) {
                comment_names.push(n);
            }
        }
    }
    PatientTruth {
        patient_number: p.number,
        cbio_patient_id: format!("SYN-{:06}", p.number),
        trial_pid: None,
        patient_nr: &p.mrn,
        fhir_patient_id,
        sex: if p.sex == Sex::Female { "F" } else { "M" },
        birth_date: iso(p.birth_date),
        subtype: p.subtype.as_str(),
        er_pct: p.er,
        pr_pct: p.pr,
        her2_ihc: if p.her2_ihc == 0 {
            "0".to_string()
        } else {
            format!("{}+", p.her2_ihc)
        },
        her2_ish: p.her2_ish.map(|x| if x { "positive" } else { "negative" }),
        her2_status: if her2 { "positive" } else { "negative" },
        ki67: p.ki67,
        grade: p.grade,
        diagnosis_date: iso(p.dx_date),
        laterality: if p.left { "left" } else { "right" },
        icd10: p.icd10,
        morphology: p.morphology,
        age_at_diagnosis: p.age_at_dx,
        ctnm: (&p.ctnm).into(),
        neoadjuvant: p.neoadjuvant,
        pcr: p.pcr,
        yptnm: p.yptnm.as_ref().map(Into::into),
        surgery_date: p.surgery.as_ref().map(|s| iso(s.date)),
        surgery: p.surgery.as_ref().map(|s| {
            if s.mastectomy {
                "mastectomy"
            } else {
                "breast_conserving"
            }
        }),
        chemotherapy: p
            .admins
            .iter()
            .any(|a| [DOXO, CYCL, PACL, DOCE, CARB].contains(&a.drug)),
        anti_her2: p.admins.iter().any(|a| [TRAS, PERT].contains(&a.drug)),
        endocrine: p.admins.iter().any(|a| [TAMO, LETR].contains(&a.drug)),
        radiotherapy: !p.rt.is_empty(),
        recurrence: p.recurrence.as_ref().map(|r| RecurrenceTruth {
            kind: r.kind,
            date: iso(r.date),
            site: r.site,
        }),
        rfs_days: rfs.map(|r| r.0),
        rfs_event: rfs.map(|r| r.1),
        death_date: p.death.as_ref().map(|d| iso(d.date)),
        structure_sets: dicom.as_ref().map_or(0, |d| d.structure_sets.len() as u32),
        dicom,
        has_name_in_comment: !comment_names.is_empty(),
        comment_names,
        studies,
        rows,
        dirt,
    }
}
