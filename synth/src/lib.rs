//! Deterministic synthetic breast-cancer sources in the shapes hospitals hand over
//! (`registrar synth`).
//!
//! # What it writes
//!
//! One consistent cohort of fictitious patients, written to every source at once under `--out`:
//!
//! - `his/`: a hospital information system export, one CSV per table (`patients`, `diagnoses`,
//!   `pathology`, `tnm`, `surgery`, `systemic_therapy`, `radiotherapy`, `recurrences`,
//!   `deaths`, `measurements`), `;`-separated, Windows-1252, CRLF, header row, `dd/mm/yyyy`
//!   dates and decimal commas, plus `his/_manifest.json` giving each file's *declared* encoding
//!   and columns. Characters outside Windows-1252 (`ọ`, `Ż` …) are transliterated, as such
//!   systems do. `measurements.csv` is the high-volume lab export (about 100 rows per patient).
//!   Headers: [`codes::HIS_TABLES`].
//! - `study/study_nurse.xlsx`: a study nurse's workbook with one sheet per study
//!   ([`codes::STUDY_SHEETS`]): a merged title, a study/sponsor/export-date line, an empty spacer
//!   row, then the table ([`study::NEOADJ_COLUMNS`], [`study::BOOST_COLUMNS`]) from row
//!   [`codes::STUDY_HEADER_ROW`] (0-based). Consent dates are Excel dates; randomisation dates
//!   are dates in some rows and text `dd/mm/yyyy` in others; BMI is a formula with its cached
//!   result; comments are free text that sometimes names a clinician or the patient.
//! - `fhir/`: a FHIR R4 Bulk Data export, `<ResourceType>.ndjson` for each of
//!   [`codes::FHIR_TYPES`] and the Bulk Data `manifest.json`. Patients carry their national
//!   number ([`codes::SSIN_SYSTEM`]) and MRN; resource ids are opaque UUIDs. Standard codes
//!   (SNOMED CT, LOINC, ATC, ICD-10, ICD-O-3) are used only where they are certain; the rest
//!   are local codes under the hospital's own `https://<hospital>.example/fhir/CodeSystem/`.
//! - `dicom/P<nnnnnn>/`: for every patient with radiotherapy, a DICOM radiotherapy set
//!   (Part 10 files, Explicit VR Little Endian): a planning CT series (`CT0001.dcm` …,
//!   `--dicom-slices` axial slices of `--dicom-matrix`² 16-bit pixels of a thorax phantom whose
//!   treated breast is denser), one or more RT Structure Sets (`RS1.dcm` …; 2 to 4 observers
//!   for about one patient in five, with ROI names as each observer types them and
//!   inter-observer variability that shrinks for sets dated 2016 or later), and per course
//!   one RT Plan (`RP<n>.dcm`: two tangential beams, the course's dose and fractions,
//!   referencing the treating observer's structure set) and one RT Dose (`RD<n>.dcm`,
//!   referencing its plan). The folder is an opaque counter of the export; the files carry the
//!   patient's name, MRN (as Patient ID, the national number too for some), birth date, sex,
//!   and the institution, physicians, operators, observers, stations, accession numbers and
//!   study ids a pseudonymiser must remove. UIDs are `2.25.` UUID-derived and deterministic;
//!   the planning CT's study and series UIDs are those of the FHIR ImagingStudy. `--no-dicom`
//!   skips them.
//! - `cbioportal/data_clinical_patient.txt` and `trial/rotterdam.csv`: the same cohort in two
//!   published formats registrar did not invent (see [`exports`]): a cBioPortal clinical
//!   patient file (ages, the year of diagnosis, days and months since diagnosis, `NA` among
//!   numbers) and a Rotterdam-style trial CSV (year of surgery, age, months from surgery).
//! - `truth.jsonl`: one JSON object per patient: identifiers (with the cBioPortal patient id
//!   and the trial subject number), subtype and receptor values,
//!   dates, treatment flags, pCR, recurrence, RFS, death, study enrolments, whether a study
//!   comment names someone (`has_name_in_comment`, `comment_names`), rows written per file, and
//!   every fault injected into that patient's rows (`dirt`: file, 1-based data row, kind,
//!   column); with DICOM, `structure_sets` (how many) and `dicom`: folder, UIDs, CT geometry,
//!   per structure set the observer (an index, never the name), date and per ROI its name,
//!   intended TG-263 name, type and volume in cc computed from the polygons (area × slice
//!   spacing, summed), and per plan its dose, fractions and files.
//! - `truth_summary.json`: per file, the rows (or resources) written and how many are dirty by
//!   design (so a test can assert `loaded + rejected + skipped`), declared versus actual
//!   encodings, counts per dirt kind, which file carries each file-level fault, cohort
//!   counts, and `dicom`: files written per kind (`null` with `--no-dicom`).
//!
//! # Determinism and memory
//!
//! A seed gives byte-identical files: the crate has its own xoshiro256** generator seeded
//! through splitmix64 (no `rand`, so a dependency update never changes the output), uses no
//! clock and no platform maths, and fixes the workbook's creation time. Each patient is a pure
//! function of `(seed, patient number)`; unique identifiers (national number, MRN, sample id)
//! come from keyed permutations of the patient number, so nothing is remembered between
//! patients. Patients are generated and written one at a time through buffered writers (the
//! workbook streams through `rust_xlsxwriter`'s constant-memory mode), so memory does not grow
//! with `--patients`. Runs with the same seed and disjoint `first_patient_number` ranges give
//! disjoint patients (for several institutions). The clinical content does not depend on
//! `--dirt`: dirt has its own random streams.
//!
//! # Clinical model
//!
//! Women (≈99 %), 30–85 years at diagnosis, diagnosed 2008–2024, followed up to the cut-off
//! 2025-06-30. The subtype is drawn first (luminal A-like 40 %, luminal B-like 25 % of which
//! a third HER2+, HER2-enriched 15 %, triple negative 20 %) and ER/PR/HER2/Ki-67 are drawn to
//! match it by the St Gallen surrogate rules ([`classify`]). Then grade, cTNM and AJCC stage,
//! neoadjuvant chemotherapy (≈35 %, more for HER2+ and TNBC) with pCR by subtype and ypTNM,
//! surgery, systemic therapy administrations by regimen (AC-T, AC-TCb, TCHP, AC-TH, TH, H/HP,
//! tamoxifen/letrozole; anti-HER2 drugs only for HER2+), radiotherapy (40.05 Gy/15 or
//! 50 Gy/25, boosts), recurrences and deaths. Events after death or the cut-off do not exist.
//!
//! # Dirt
//!
//! With `--dirt RATE` (0 by default), each eligible row is spoiled with probability `RATE`,
//! by one fault drawn uniformly among those that apply to its file, see [`DirtKind`]:
//! `bad_date` (unparseable date), `unknown_code` (lab or drug code nobody maps),
//! `duplicate_row` (exact copy; the copy is the dirty row), `extra_field` (a stray `;`).
//! `patients.csv` only gets duplicates, so that no patient is lost to dirt. And once per run:
//! a UTF-8 byte order mark at the start of one CSV (that file is UTF-8 and declared so), one
//! CSV written in ISO-8859-1 but declared UTF-8 in `his/_manifest.json`, a 0-byte
//! `his/empty_export.csv`, one CSV with its dates month first (`mm/dd/yyyy`) although
//! declared day first (`us_dates`), the pathology export as two dated exports of the same
//! records (`his/pathology_2025-05.csv`, with some patients not reported yet and some grades
//! not yet corrected, and the final `his/pathology_2025-06.csv`, instead of
//! `his/pathology.csv`), a merged hospital's archive of patients born before 1900 in
//! `his/archive/patients.csv` (the same name as `his/patients.csv`, another folder), in FHIR
//! one Observation with `status: "finalised"` and one
//! Patient with `gender: "femme"`, and in `dicom/` one file cut short (in the middle of a CT
//! slice's pixel data or of an RT Structure Set's ROI Contour Sequence) and one file that is not
//! DICOM (`dicom/README.txt` or a JPEG in a patient folder); both are named in
//! `truth_summary.json` (`file_dirt`, and `patterns` for the re-export, the archive and the
//! month-first file). Dirty rows stay rows (right quoting, CRLF), so an importer can reject
//! just them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

pub mod codes;
mod cohort;
mod dicom;
mod dirt;
pub mod exports;
mod fhir;
mod his;
mod names;
mod niss;
mod rng;
pub mod study;
mod truth;

pub use cohort::{classify, cutoff_date, her2_positive, stage_group, Subtype};
pub use dicom::{
    CT_IMAGE_STORAGE, DEFAULT_MATRIX, DEFAULT_SLICES, MATRIX_RANGE, RT_DOSE_STORAGE,
    RT_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE, SLICES_RANGE,
};
pub use dirt::{DirtCounts, DirtKind};
pub use his::{ARCHIVE_PATIENTS, EMPTY_FILE, PATHOLOGY_EARLIER, PATHOLOGY_FINAL};
pub use niss::{format_niss, niss_digits, niss_is_male, niss_is_valid};

use cohort::{Cohort, STREAM_DIRT, STREAM_RUN};
use dirt::PatientDirt;
use rng::Rng;

/// Default (fictitious) institution name.
pub const DEFAULT_INSTITUTION: &str = "Hôpital Sainte-Élise";

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Number of patients.
    pub patients: u64,
    /// Seed: the same options give byte-identical files.
    pub seed: u64,
    /// Output directory (created; must be empty if it exists).
    pub out: PathBuf,
    /// Probability that a row gets a row-level fault, in `[0, 1]`.
    pub dirt: f64,
    /// Institution name written into the data (workbook, FHIR, manifests, URLs).
    pub institution: String,
    /// Number of the first patient; runs with disjoint ranges have disjoint patients.
    pub first_patient_number: u64,
    /// Write the DICOM radiotherapy sets (`dicom/`).
    pub dicom: bool,
    /// CT slices per patient ([`SLICES_RANGE`]).
    pub dicom_slices: u32,
    /// CT rows and columns ([`MATRIX_RANGE`]).
    pub dicom_matrix: u32,
}

impl SynthOptions {
    /// Options with no dirt, the default institution, patients numbered from 1, and DICOM
    /// sets of [`DEFAULT_SLICES`] slices of [`DEFAULT_MATRIX`]².
    pub fn new(patients: u64, seed: u64, out: impl Into<PathBuf>) -> SynthOptions {
        SynthOptions {
            patients,
            seed,
            out: out.into(),
            dirt: 0.0,
            institution: DEFAULT_INSTITUTION.to_string(),
            first_patient_number: 1,
            dicom: true,
            dicom_slices: DEFAULT_SLICES,
            dicom_matrix: DEFAULT_MATRIX,
        }
    }
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("the dirt rate must be between 0 and 1, not {v}"))
    }
}

/// Generate a synthetic breast-cancer cohort as hospital sources (HIS CSV export, study
/// nurse workbook, FHIR bulk export, DICOM radiotherapy sets) plus a truth file,
/// deterministically from a seed.
// The arguments of `registrar synth`; the doc comment above is its `--help` text.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Number of patients to generate (one consistent cohort across all sources).
    #[arg(long, value_name = "N")]
    pub patients: u64,
    /// Seed of the generator: the same seed and options give byte-identical files.
    #[arg(long, value_name = "S")]
    pub seed: u64,
    /// Output directory; created if missing, and must be empty if it exists.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Fault rate: probability that a row is spoiled (by a bad date, an unknown code, a
    /// duplicate or an extra field). Any rate above 0 also adds the per-run faults (BOM,
    /// mis-declared encoding, empty file, invalid FHIR codes). Every fault is recorded in
    /// truth.jsonl and truth_summary.json.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub dirt: f64,
    /// Institution name written into the data.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTITUTION)]
    pub institution: String,
    /// Number of the first patient; give runs for several institutions disjoint ranges (same
    /// seed) to get disjoint patients.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub first_patient_number: u64,
    /// CT slices per patient in the DICOM radiotherapy sets (4 to 512).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SLICES,
          value_parser = clap::value_parser!(u32).range(4..=512))]
    pub dicom_slices: u32,
    /// CT rows and columns in the DICOM radiotherapy sets (16 to 1024).
    #[arg(long, value_name = "M", default_value_t = DEFAULT_MATRIX,
          value_parser = clap::value_parser!(u32).range(16..=1024))]
    pub dicom_matrix: u32,
    /// Do not write the DICOM radiotherapy sets.
    #[arg(long)]
    pub no_dicom: bool,
}

impl SynthArgs {
    /// The options these arguments ask for.
    pub fn to_options(&self) -> SynthOptions {
        SynthOptions {
            patients: self.patients,
            seed: self.seed,
            out: self.out.clone(),
            dirt: self.dirt,
            institution: self.institution.clone(),
            first_patient_number: self.first_patient_number,
            dicom: !self.no_dicom,
            dicom_slices: self.dicom_slices,
            dicom_matrix: self.dicom_matrix,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    /// Patients generated.
    pub patients: u64,
    /// Every file written, relative to the output directory, with its count: data rows (CSV,
    /// header excluded), resources (ndjson), enrolled subjects (workbook), patients
    /// (`truth.jsonl`), or 1 for single JSON documents; the DICOM tree is one entry, `dicom`,
    /// with its number of DICOM files.
    pub files: Vec<(PathBuf, u64)>,
    /// Faults injected, per kind.
    pub dirt: DirtCounts,
}

fn check_out_dir(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("the output path exists and is not a directory");
        }
        if std::fs::read_dir(out)?.next().is_some() {
            bail!("the output directory is not empty");
        }
    }
    std::fs::create_dir_all(out).context("cannot create the output directory")
}

#[derive(Default)]
struct Tally {
    subtypes: BTreeMap<&'static str, u64>,
    men: u64,
    neoadjuvant: u64,
    pcr: u64,
    surgery: u64,
    radiotherapy: u64,
    recurrences: u64,
    deaths: u64,
    names_in_comments: u64,
    text_dates: u64,
}

/// Generates the sources. `progress` is called with the number of patients done.
pub fn generate(opts: &SynthOptions, progress: &dyn Fn(u64)) -> Result<SynthReport> {
    if !(0.0..=1.0).contains(&opts.dirt) {
        bail!("the dirt rate must be between 0 and 1");
    }
    if opts.dicom && !SLICES_RANGE.contains(&opts.dicom_slices) {
        bail!("the CT must have 4 to 512 slices");
    }
    if opts.dicom && !MATRIX_RANGE.contains(&opts.dicom_matrix) {
        bail!("the CT matrix must be 16 to 1024");
    }
    let cohort = Cohort::new(opts.seed);
    let end = opts.first_patient_number.checked_add(opts.patients);
    if end.is_none_or(|e| e > cohort.max_patient_number()) {
        bail!(
            "patient numbers must stay below {}",
            cohort.max_patient_number()
        );
    }
    check_out_dir(&opts.out)?;
    let out = opts.out.as_path();
    let dirty = opts.dirt > 0.0;
    let seed = cohort.seed();
    let mut run = Rng::stream(seed, u64::MAX, STREAM_RUN);
    let bom = dirty.then(|| *run.pick(his::BOM_CANDIDATES));
    let latin1 = dirty.then(|| *run.pick(his::LATIN1_CANDIDATES));
    let us_dates = if dirty {
        his::US_DATE_CANDIDATES
            .iter()
            .copied()
            .find(|c| Some(*c) != bom)
    } else {
        None
    };
    let plan = if dirty && opts.patients > 0 {
        fhir::FhirDirtPlan {
            observation_status: Some(opts.first_patient_number + run.below(opts.patients)),
            patient_gender: Some(opts.first_patient_number + run.below(opts.patients)),
        }
    } else {
        fhir::FhirDirtPlan::default()
    };
    let slug = names::slug(&opts.institution);

    let mut his = his::His::create(
        out,
        his::FileDirt {
            bom,
            latin1,
            us_dates,
            dirty,
        },
    )?;
    let mut fhir = fhir::Fhir::create(out, seed, &opts.institution, &slug, plan)?;
    let mut study = study::Study::create(&opts.institution)?;
    let mut exports = exports::Exports::create(out)?;
    let mut dicom = if opts.dicom {
        Some(dicom::Dicom::create(
            out,
            seed,
            opts.dicom_slices,
            opts.dicom_matrix,
            &opts.institution,
            &slug,
            dirty,
        )?)
    } else {
        None
    };
    let truth_path = out.join("truth.jsonl");
    let mut truth = BufWriter::with_capacity(
        1 << 16,
        File::create(&truth_path).context("cannot create truth.jsonl")?,
    );
    let mut tally = Tally::default();
    let mut line = Vec::with_capacity(4096);

    for i in 0..opts.patients {
        let number = opts.first_patient_number + i;
        let mut p = cohort.patient(number);
        if opts.dicom {
            // The FHIR ImagingStudy of the planning CT describes the series written.
            for im in p.imaging.iter_mut().filter(|im| im.modality == "CT") {
                im.instances = opts.dicom_slices;
            }
        }
        let mut dirt = PatientDirt::new(
            Rng::stream(seed, number, STREAM_DIRT),
            opts.dirt,
            crate::niss::format_niss(&p.niss),
        );
        let his_before: Vec<u64> = his.tables.iter().map(|t| t.stats.rows).collect();
        let fhir_before = fhir.counts.clone();
        his.write_patient(&p, &mut dirt)?;
        fhir.write_patient(&p, &mut dirt)?;
        let enrolled = study.write_patient(&p)?;
        let trial_pid = exports.write_patient(&p)?;
        let dicom_truth = match dicom.as_mut() {
            Some(d) => d.write_patient(&p, i + 1)?,
            None => None,
        };

        let mut rows = BTreeMap::new();
        for (t, before) in his.tables.iter().zip(his_before) {
            if t.stats.rows > before {
                rows.insert(t.path, t.stats.rows - before);
            }
        }
        for ((path, now), before) in fhir::PATHS.iter().zip(&fhir.counts).zip(fhir_before) {
            if *now > before {
                rows.insert(*path, now - before);
            }
        }
        tally.text_dates += enrolled.iter().filter(|e| e.randomisation_as_text).count() as u64;
        let mut t = truth::patient_truth(
            &p,
            fhir::patient_id(seed, number),
            enrolled,
            rows,
            dirt.events,
            dicom_truth,
        );
        t.trial_pid = trial_pid;
        line.clear();
        serde_json::to_writer(&mut line, &t)?;
        line.push(b'\n');
        truth.write_all(&line)?;

        *tally.subtypes.entry(p.subtype.as_str()).or_default() += 1;
        tally.men += u64::from(p.sex == cohort::Sex::Male);
        tally.neoadjuvant += u64::from(p.neoadjuvant);
        tally.pcr += u64::from(p.pcr == Some(true));
        tally.surgery += u64::from(p.surgery.is_some());
        tally.radiotherapy += u64::from(!p.rt.is_empty());
        tally.recurrences += u64::from(p.recurrence.is_some());
        tally.deaths += u64::from(p.death.is_some());
        tally.names_in_comments += u64::from(
            [&p.neoadj_study, &p.boost_study]
                .into_iter()
                .flatten()
                .any(|e| !e.comment_names.is_empty()),
        );
        progress(i + 1);
    }
    truth.flush()?;

    // Finish every file and gather the bookkeeping.
    let mut total = DirtCounts::default();
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let mut summary_files = serde_json::Map::new();
    let his_stats = his.finish(out, &opts.institution)?;
    for (path, stats, encoding) in his_stats {
        let (declared, actual) = his::encoding_note(encoding);
        // The earlier export repeats faults of the final one: counted once in the totals.
        if path != his::PATHOLOGY_EARLIER {
            total.merge(&stats.dirt);
        }
        files.push((PathBuf::from(path), stats.rows));
        summary_files.insert(
            path.to_string(),
            json!({
                "rows": stats.rows,
                "dirty": stats.dirt.dirty_rows(),
                "dirt": stats.dirt,
                "declared_encoding": declared,
                "actual_encoding": actual,
            }),
        );
    }
    let mut file_dirt = json!({"bom": null, "latin1_declared_utf8": null, "empty_file": null});
    if let Some(b) = bom {
        total.add(DirtKind::Bom, 1);
        file_dirt["bom"] = json!(his.tables[b].path);
        summary_files[his.tables[b].path]["dirt"]["bom"] = json!(1);
    }
    if let Some(l) = latin1 {
        total.add(DirtKind::Latin1DeclaredUtf8, 1);
        file_dirt["latin1_declared_utf8"] = json!(his.tables[l].path);
        summary_files[his.tables[l].path]["dirt"]["latin1_declared_utf8"] = json!(1);
    }
    let mut patterns = json!({"dated_reexport": null, "archive_patients": null, "us_dates": null});
    if let Some(u) = us_dates {
        let t = &his.tables[u];
        total.add(DirtKind::UsDates, 1);
        file_dirt["us_dates"] = json!(t.path);
        summary_files[t.path]["dirt"]["us_dates"] = json!(1);
        patterns["us_dates"] = json!({
            "file": t.path,
            // Whether a day above 12 makes the month-first order visible.
            "detectable": t.us_dates_show,
        });
    }
    if let Some(s) = &his.tables[his::PATHOLOGY].shadow {
        patterns["dated_reexport"] = json!({
            "earlier": s.path,
            "final": his.tables[his::PATHOLOGY].path,
            "record_key": ["sample_id", "lab_code"],
            "corrected_rows": s.corrected,
            "patients_reported_late": s.late,
        });
    }
    if dirty {
        let n = (opts.patients / 100).max(1);
        let rows = his::write_archive(out, n, &mut run)?;
        files.push((PathBuf::from(his::ARCHIVE_PATIENTS), rows));
        summary_files.insert(
            his::ARCHIVE_PATIENTS.to_string(),
            json!({"rows": rows, "dirty": 0, "dirt": DirtCounts::default(),
                   "declared_encoding": "windows-1252", "actual_encoding": "windows-1252"}),
        );
        patterns["archive_patients"] = json!({
            "file": his::ARCHIVE_PATIENTS,
            "same_name_as": "his/patients.csv",
            "rows": rows,
            "born_before_1900": rows,
        });
    }
    if dirty {
        total.add(DirtKind::EmptyFile, 1);
        file_dirt["empty_file"] = json!(EMPTY_FILE);
        files.push((PathBuf::from(EMPTY_FILE), 0));
        let mut empty = DirtCounts::default();
        empty.add(DirtKind::EmptyFile, 1);
        summary_files.insert(
            EMPTY_FILE.to_string(),
            json!({"rows": 0, "dirty": 0, "dirt": empty, "declared_encoding": "windows-1252", "actual_encoding": "empty"}),
        );
    }
    files.push((PathBuf::from("his/_manifest.json"), 1));
    let mut fhir_invalid = Vec::new();
    for (path, n, d) in fhir.finish(out)? {
        total.merge(&d);
        if d.fhir_invalid_code > 0 {
            fhir_invalid.push(path);
        }
        files.push((PathBuf::from(path), n));
        summary_files.insert(
            path.to_string(),
            json!({"rows": n, "dirty": d.dirty_rows(), "dirt": d}),
        );
    }
    file_dirt["fhir_invalid_code"] = json!(fhir_invalid);
    files.push((PathBuf::from("fhir/manifest.json"), 1));
    let subjects = study.subjects;
    study.finish(out)?;
    let (cbio_rows, trial_rows) = exports.finish()?;
    for (path, rows) in [
        (exports::CBIO_PATIENTS, cbio_rows),
        (exports::TRIAL, trial_rows),
    ] {
        files.push((PathBuf::from(path), rows));
        summary_files.insert(
            path.to_string(),
            json!({"rows": rows, "dirty": 0, "dirt": DirtCounts::default(),
                   "declared_encoding": "utf-8", "actual_encoding": "utf-8"}),
        );
    }
    let enrolled: u64 = subjects.iter().sum();
    files.push((PathBuf::from("study/study_nurse.xlsx"), enrolled));
    summary_files.insert(
        "study/study_nurse.xlsx".to_string(),
        json!({
            "rows": enrolled,
            "dirty": 0,
            "sheets": {codes::STUDY_SHEETS[0]: subjects[0], codes::STUDY_SHEETS[1]: subjects[1]},
        }),
    );
    let mut dicom_summary = Value::Null;
    if let Some(d) = dicom {
        let counts = d.counts;
        let dd = d.finish()?;
        if dd.truncated.is_some() {
            total.add(DirtKind::DicomTruncated, 1);
        }
        if dd.not_dicom.is_some() {
            total.add(DirtKind::NotDicom, 1);
        }
        file_dirt["dicom_truncated"] = json!(dd.truncated);
        file_dirt["not_dicom"] = json!(dd.not_dicom);
        files.push((PathBuf::from("dicom"), counts.files));
        dicom_summary = json!({
            "slices": opts.dicom_slices,
            "matrix": opts.dicom_matrix,
            "patients": counts.patients,
            "files": counts.files,
            "ct": counts.ct,
            "rtstruct": counts.rtstruct,
            "rtplan": counts.rtplan,
            "rtdose": counts.rtdose,
            "truncated": dd.truncated,
            "not_dicom": dd.not_dicom,
        });
    }
    files.push((PathBuf::from("truth.jsonl"), opts.patients));
    summary_files.insert(
        "truth.jsonl".to_string(),
        json!({"rows": opts.patients, "dirty": 0}),
    );

    let summary = json!({
        "generator": concat!("registrar-synth ", env!("CARGO_PKG_VERSION")),
        "seed": opts.seed,
        "patients": opts.patients,
        "first_patient_number": opts.first_patient_number,
        "institution": opts.institution,
        "dirt_rate": opts.dirt,
        "cutoff_date": cutoff_date().format("%Y-%m-%d").to_string(),
        "files": Value::Object(summary_files),
        "dirt": total,
        "file_dirt": file_dirt,
        "patterns": patterns,
        "dicom": dicom_summary,
        "cohort": {
            "subtypes": tally.subtypes,
            "men": tally.men,
            "neoadjuvant": tally.neoadjuvant,
            "pcr": tally.pcr,
            "surgery": tally.surgery,
            "radiotherapy": tally.radiotherapy,
            "recurrences": tally.recurrences,
            "deaths": tally.deaths,
            "names_in_comments": tally.names_in_comments,
            "randomisation_dates_as_text": tally.text_dates,
        },
    });
    let mut w = BufWriter::new(
        File::create(out.join("truth_summary.json")).context("cannot create truth_summary.json")?,
    );
    serde_json::to_writer_pretty(&mut w, &summary)?;
    w.write_all(b"\n")?;
    w.flush()?;
    files.push((PathBuf::from("truth_summary.json"), 1));

    Ok(SynthReport {
        patients: opts.patients,
        files,
        dirt: total,
    })
}
