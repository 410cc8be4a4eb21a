//! `registrar demo`: the whole nightly pipeline on synthetic sample data, in the embedded
//! registry unless DATABASE_URL is set.
//!
//! The first run generates, next to the embedded cluster, a synthetic hospital (`registrar
//! synth`, 500 patients, a little dirt so the report has rejects to show: HIS CSV export and
//! study workbook) and a second institution (200 patients: a FHIR Bulk Data export and DICOM
//! RT sets), writes the bundled mappings and a `registrar.toml` for all of it, creates a demo
//! key, and runs `registrar nightly`; later runs find everything unchanged and skip it. It
//! prints where the report is.

use crate::config::Config;
use crate::db::{self, DbOptions};
use anyhow::{Context, Result};
use registrar_anonymizer::key::Key;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The mappings shipped in the binary, by their path in the repository.
const MAPPINGS: &[(&str, &str)] = &[
    (
        "mappings/gbsg2/gbsg2.toml",
        include_str!("../../mappings/gbsg2/gbsg2.toml"),
    ),
    (
        "mappings/hospital/concept_maps/drugs.csv",
        include_str!("../../mappings/hospital/concept_maps/drugs.csv"),
    ),
    (
        "mappings/hospital/concept_maps/icd10_condition.csv",
        include_str!("../../mappings/hospital/concept_maps/icd10_condition.csv"),
    ),
    (
        "mappings/hospital/concept_maps/lab_codes.csv",
        include_str!("../../mappings/hospital/concept_maps/lab_codes.csv"),
    ),
    (
        "mappings/hospital/concept_maps/pathology_codes.csv",
        include_str!("../../mappings/hospital/concept_maps/pathology_codes.csv"),
    ),
    (
        "mappings/hospital/concept_maps/procedures.csv",
        include_str!("../../mappings/hospital/concept_maps/procedures.csv"),
    ),
    (
        "mappings/hospital/concept_maps/death_causes.csv",
        include_str!("../../mappings/hospital/concept_maps/death_causes.csv"),
    ),
    (
        "mappings/hospital/concept_maps/morphology.csv",
        include_str!("../../mappings/hospital/concept_maps/morphology.csv"),
    ),
    (
        "mappings/hospital/concept_maps/radiotherapy_targets.csv",
        include_str!("../../mappings/hospital/concept_maps/radiotherapy_targets.csv"),
    ),
    (
        "mappings/hospital/concept_maps/stage.csv",
        include_str!("../../mappings/hospital/concept_maps/stage.csv"),
    ),
    (
        "mappings/hospital/concept_maps/tnm_clinical.csv",
        include_str!("../../mappings/hospital/concept_maps/tnm_clinical.csv"),
    ),
    (
        "mappings/hospital/concept_maps/tnm_pathological.csv",
        include_str!("../../mappings/hospital/concept_maps/tnm_pathological.csv"),
    ),
    (
        "mappings/hospital/concept_maps/units.csv",
        include_str!("../../mappings/hospital/concept_maps/units.csv"),
    ),
    (
        "mappings/hospital/deaths.toml",
        include_str!("../../mappings/hospital/deaths.toml"),
    ),
    (
        "mappings/hospital/diagnoses.toml",
        include_str!("../../mappings/hospital/diagnoses.toml"),
    ),
    (
        "mappings/hospital/measurements.toml",
        include_str!("../../mappings/hospital/measurements.toml"),
    ),
    (
        "mappings/hospital/pathology.toml",
        include_str!("../../mappings/hospital/pathology.toml"),
    ),
    (
        "mappings/hospital/patients.toml",
        include_str!("../../mappings/hospital/patients.toml"),
    ),
    (
        "mappings/hospital/radiotherapy.toml",
        include_str!("../../mappings/hospital/radiotherapy.toml"),
    ),
    (
        "mappings/hospital/recurrences.toml",
        include_str!("../../mappings/hospital/recurrences.toml"),
    ),
    (
        "mappings/hospital/study_neoadj-2019.toml",
        include_str!("../../mappings/hospital/study_neoadj-2019.toml"),
    ),
    (
        "mappings/hospital/study_rt-boost.toml",
        include_str!("../../mappings/hospital/study_rt-boost.toml"),
    ),
    (
        "mappings/hospital/surgery.toml",
        include_str!("../../mappings/hospital/surgery.toml"),
    ),
    (
        "mappings/hospital/systemic_therapy.toml",
        include_str!("../../mappings/hospital/systemic_therapy.toml"),
    ),
    (
        "mappings/hospital/tnm.toml",
        include_str!("../../mappings/hospital/tnm.toml"),
    ),
    (
        "mappings/fhir/patient.toml",
        include_str!("../../mappings/fhir/patient.toml"),
    ),
    (
        "mappings/fhir/condition.toml",
        include_str!("../../mappings/fhir/condition.toml"),
    ),
    (
        "mappings/fhir/observation.toml",
        include_str!("../../mappings/fhir/observation.toml"),
    ),
    (
        "mappings/fhir/procedure.toml",
        include_str!("../../mappings/fhir/procedure.toml"),
    ),
    (
        "mappings/fhir/medication_administration.toml",
        include_str!("../../mappings/fhir/medication_administration.toml"),
    ),
];

/// The FHIR mappings the demo's bulk export is read with.
pub const FHIR_MAPPINGS: &[&str] = &[
    "patient",
    "condition",
    "observation",
    "procedure",
    "medication_administration",
];
const GBSG2_DATA: &str = include_str!("../../tests/data/gbsg2.csv");
/// The tables of the hospital information system export, as `registrar synth` writes them
/// and `mappings/hospital/<table>.toml` maps them.
pub const HIS_TABLES: &[&str] = &[
    "patients",
    "diagnoses",
    "pathology",
    "tnm",
    "surgery",
    "systemic_therapy",
    "radiotherapy",
    "recurrences",
    "deaths",
    "measurements",
];

/// Which files of the HIS export folder a table's source reads: its file, the archive's file
/// of the same name in a subfolder (patients), or its dated re-exports (pathology).
pub fn his_pattern(table: &str) -> String {
    match table {
        "patients" => "**/patients.csv".into(),
        "pathology" => "pathology*.csv".into(),
        t => format!("{t}.csv"),
    }
}

/// The study workbook sheets and their mappings (`mappings/hospital/<name>.toml`).
pub const STUDY_SHEETS: &[&str] = &["study_neoadj-2019", "study_rt-boost"];

/// `[[source]]` blocks of a registrar.toml for a hospital export in `his`, a study workbook
/// in `study`, mapped by the mappings in `mappings` (paths as written into the file).
pub fn hospital_sources_toml(his: &str, study: &str, mappings: &str) -> String {
    let mut t = String::new();
    for table in HIS_TABLES {
        t.push_str(&format!(
            "[[source]]\nname = \"his-{table}\"\nkind = \"csv\"\nfolder = \"{his}\"\npattern = \"{}\"\nmapping = \"{mappings}/{table}.toml\"\n\n",
            his_pattern(table)
        ));
    }
    for sheet in STUDY_SHEETS {
        t.push_str(&format!(
            "[[source]]\nname = \"{sheet}\"\nkind = \"xlsx\"\nfolder = \"{study}\"\npattern = \"*.xlsx\"\nmapping = \"{mappings}/{sheet}.toml\"\n\n"
        ));
    }
    t
}

fn demo_dir(opts: &DbOptions) -> PathBuf {
    let data = opts
        .data_dir
        .clone()
        .unwrap_or_else(db::embedded::default_data_dir);
    data.parent()
        .map(|p| p.join("demo"))
        .unwrap_or_else(|| PathBuf::from("registrar-demo"))
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Prepare the demo folder: sources, mappings, key and configuration.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in MAPPINGS {
        write_if_changed(&dir.join(path), text)?;
    }
    write_if_changed(&dir.join("gbsg2/gbsg2.csv"), GBSG2_DATA)?;
    let src = dir.join("src");
    if !src.join("truth.jsonl").exists() {
        let _ = std::fs::remove_dir_all(&src);
        let mut o = registrar_synth::SynthOptions::new(500, 2026, src.clone());
        o.dirt = 0.01;
        o.dicom = false;
        eprintln!(
            "registrar: generating a synthetic cohort of 500 patients in {}",
            src.display()
        );
        registrar_synth::generate(&o, &|_| {})?;
    }
    // The second institution: a FHIR Bulk Data export (one folder per export) and DICOM.
    let src_b = dir.join("src-b");
    let export = dir.join("fhir-exports/2026-11-26");
    if !src_b.join("truth.jsonl").exists() || !export.exists() {
        let _ = std::fs::remove_dir_all(&src_b);
        let _ = std::fs::remove_dir_all(dir.join("fhir-exports"));
        let mut o = registrar_synth::SynthOptions::new(200, 2027, src_b.clone());
        o.first_patient_number = 100_001;
        o.dicom = true;
        // 3 mm pixels and slices: inter-observer surface distances to the millimetre, in a
        // few hundred megabytes.
        o.dicom_slices = 54;
        o.dicom_matrix = 160;
        eprintln!(
            "registrar: generating a second institution of 200 patients (FHIR export, DICOM) in {}",
            src_b.display()
        );
        registrar_synth::generate(&o, &|_| {})?;
        std::fs::create_dir_all(dir.join("fhir-exports"))?;
        std::fs::rename(src_b.join("fhir"), &export)
            .with_context(|| format!("cannot move the FHIR export to {}", export.display()))?;
    }
    let key = dir.join("demo.key");
    if !key.exists() {
        Key::write_new(&key).context("cannot create the demo key")?;
    }
    let mut t = String::from("# registrar demo configuration (written by `registrar demo`)\n[registry]\nkey_file = \"demo.key\"\nreport_dir = \"reports\"\n\n");
    t.push_str(&hospital_sources_toml(
        "src/his",
        "src/study",
        "mappings/hospital",
    ));
    t.push_str("[[source]]\nname = \"gbsg2-trial\"\nkind = \"csv\"\nfolder = \"gbsg2\"\npattern = \"gbsg2.csv\"\nmapping = \"mappings/gbsg2/gbsg2.toml\"\n\n");
    let fhir: Vec<String> = FHIR_MAPPINGS
        .iter()
        .map(|m| format!("\"mappings/fhir/{m}.toml\""))
        .collect();
    t.push_str(&format!(
        "[[source]]\nname = \"fhir-exports\"\nkind = \"fhir-bulk\"\nfolder = \"fhir-exports\"\nmappings = [{}]\n\n",
        fhir.join(", ")
    ));
    t.push_str("[[source]]\nname = \"rt-dicom\"\nkind = \"dicom\"\nfolder = \"src-b/dicom\"\noutput = \"dicom-pseudonymised\"\n");
    let cfg = dir.join("registrar.toml");
    write_if_changed(&cfg, &t)?;
    Ok(cfg)
}

/// Run the demo.
pub fn run(opts: &DbOptions, json: bool) -> Result<ExitCode> {
    let dir = demo_dir(opts);
    let cfg_path = prepare(&dir)?;
    let cfg = Config::load(&cfg_path)?;
    // The vocabulary subset shipped with registrar, unless a vocabulary is loaded already
    // (an Athena download stays).
    {
        let target = opts.resolve()?;
        crate::db::migrate(&mut target.diesel()?)?;
        if let Some(v) = crate::vocab::load_shipped_if_empty(&mut target.client()?)? {
            let rows: u64 = v.tables.iter().map(|t| t.rows).sum();
            eprintln!("registrar: loaded the shipped vocabulary subset ({rows} rows)");
        }
    }
    let report = crate::nightly::run(&cfg, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for s in &report.sources {
            println!(
                "{:<22} {:<8} {} rows loaded, {} rejected, {} skipped{}",
                s.name,
                s.status.as_str(),
                s.counts.rows_loaded,
                s.counts.rows_rejected,
                s.counts.rows_skipped,
                if s.files_skipped > 0 {
                    " (unchanged since the last run)"
                } else {
                    ""
                }
            );
        }
        println!();
        for t in &report.cdm_rows {
            println!("  cdm.{:<24} {:>10}", t.table, t.rows);
        }
        println!("\n{}", report.research_marts);
        println!("nightly report: {}", report.report_html.display());
        println!("configuration:  {}", cfg_path.display());
        let target = opts.resolve()?;
        println!("connect with:   psql \"{}\"", target.conninfo());
        println!(
            "try:            SELECT pillar, count(*) FROM research.modeling_cohort GROUP BY 1;"
        );
    }
    // Rejects in the sample data are expected (it carries some dirt on purpose).
    Ok(if report.exit_code >= 2 {
        ExitCode::from(report.exit_code)
    } else {
        ExitCode::SUCCESS
    })
}
