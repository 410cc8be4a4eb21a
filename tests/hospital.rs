//! The synthetic hospital export and study workbook through the shipped mappings.

use crate::support::{import_hospital, new_key, synth, TestDb};

fn truth(src: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(src.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_clean_hospital_export_and_workbook_load_completely() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 120, 11, 0.0);
    let key = new_key(dir.path(), "k");
    let runs = import_hospital(&db, &key, &src);
    for (mapping, v) in &runs {
        let f = &v["files"][0];
        assert_eq!(f["status"], "loaded", "{mapping}: {v}");
        assert_eq!(
            f["rows_in"], f["rows_loaded"],
            "{mapping}: every row loads: {v}"
        );
        assert_eq!(f["rows_rejected"], 0, "{mapping}: {v}");
    }
    let t = truth(&src);
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 120);
    assert_eq!(
        db.count("SELECT count(DISTINCT person_id) FROM registry.person_map"),
        120,
        "every source's MRN resolves to a patient of patients.csv"
    );
    let deaths = t.iter().filter(|p| !p["death_date"].is_null()).count() as i64;
    assert_eq!(db.count("SELECT count(*) FROM cdm.death"), deaths);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM cdm.condition_occurrence WHERE condition_concept_id = 4112853"
        ),
        120
    );
    let women = t.iter().filter(|p| p["sex"] == "F").count() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.person WHERE gender_concept_id = 8532"),
        women
    );
    let enrolled: i64 = t
        .iter()
        .map(|p| p["studies"].as_array().map(|a| a.len()).unwrap_or(0) as i64)
        .sum();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM cdm.observation WHERE observation_source_value = 'study_consent'"
        ),
        enrolled
    );
    // Study subjects are linked to their person through a pseudonymised subject number.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM registry.person_map WHERE identifier_type = 'study-subject'"
        ),
        enrolled
    );
    // Every person's dates move together: the diagnosis-to-surgery interval is the true one.
    let keys = crate::support::registry_keys(&key);
    let days = |a: &serde_json::Value, b: &serde_json::Value| {
        let d = |v: &serde_json::Value| {
            chrono::NaiveDate::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d").unwrap()
        };
        (d(b) - d(a)).num_days()
    };
    let mut c = db.client();
    let mut checked = 0;
    for p in t.iter().filter(|p| !p["surgery_date"].is_null()).take(10) {
        let pseudo = keys
            .current
            .person(
                registrar_anonymizer::pseudonym::IdentifierType::Mrn,
                p["patient_nr"].as_str().unwrap(),
            )
            .unwrap();
        let row = c
            .query_one(
                "SELECT (min(s.procedure_date) - min(c.condition_start_date))::int8, min(c.condition_start_date)::text
                   FROM registry.person_map m
                   JOIN cdm.condition_occurrence c ON c.person_id = m.person_id
                   JOIN cdm.procedure_occurrence s ON s.person_id = m.person_id AND s.procedure_source_value LIKE 'CHIR-%'
                  WHERE m.pseudonym = $1",
                &[&pseudo.as_str()],
            )
            .unwrap();
        assert_eq!(
            row.get::<_, i64>(0),
            days(&p["diagnosis_date"], &p["surgery_date"])
        );
        assert_ne!(
            row.get::<_, String>(1),
            p["diagnosis_date"].as_str().unwrap(),
            "dates are shifted"
        );
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn a_dirty_export_accounts_for_every_row() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 150, 5, 0.05);
    let key = new_key(dir.path(), "k");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("truth_summary.json")).unwrap())
            .unwrap();
    let bom_file = summary["file_dirt"]["bom"].as_str().unwrap().to_string();
    let us_file = summary["patterns"]["us_dates"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    let us_detectable = summary["patterns"]["us_dates"]["detectable"] == true;
    let runs = import_hospital(&db, &key, &src);
    let mut c = db.client();
    let mut seen_files = Vec::new();
    for (mapping, v) in &runs {
        if mapping.starts_with("study") {
            continue;
        }
        let f = &v["files"][0];
        let file = std::path::Path::new(f["file"].as_str().unwrap())
            .strip_prefix(&src)
            .unwrap()
            .display()
            .to_string();
        seen_files.push(file.clone());
        if file == bom_file {
            // Declared Windows-1252 by the mapping, but UTF-8 with a BOM: rejected whole.
            assert_eq!(f["status"], "rejected", "{mapping}: {v}");
            assert!(
                f["reason"].as_str().unwrap().contains("byte-order mark"),
                "{v}"
            );
            continue;
        }
        if file == us_file && us_detectable {
            // Dates month first in a day-first column: the whole file, not half of it.
            assert_eq!(f["status"], "rejected", "{mapping}: {v}");
            assert_eq!(f["reason_code"], "date_order", "{v}");
            continue;
        }
        assert_eq!(f["status"], "loaded", "{mapping} {file}: {v}");
        let n = |k: &str| f[k].as_i64().unwrap();
        assert_eq!(
            n("rows_in"),
            n("rows_loaded") + n("rows_rejected") + n("rows_skipped") + n("rows_unchanged"),
            "{mapping}: {v}"
        );
        let dirt = &summary["files"][&file]["dirt"];
        let rows = summary["files"][&file]["rows"].as_i64().unwrap();
        assert_eq!(n("rows_in"), rows, "{file}: rows read = rows written");
        let sf: i64 = c
            .query_one(
                "SELECT source_file_id FROM registry.source_file WHERE run_id = $1",
                &[&v["run_id"].as_i64().unwrap()],
            )
            .unwrap()
            .get(0);
        let mut count = |code: &str| -> i64 {
            c.query_one("SELECT count(*) FROM registry.reject WHERE source_file_id = $1 AND reason_code = $2", &[&sf, &code]).unwrap().get(0)
        };
        assert_eq!(
            count("skipped_duplicate"),
            dirt["duplicate_row"].as_i64().unwrap(),
            "{file}"
        );
        assert_eq!(
            count("ragged_row"),
            dirt["extra_field"].as_i64().unwrap(),
            "{file}"
        );
        assert_eq!(
            count("date_format") + count("date_invalid") + count("date_two_digit_year"),
            dirt["bad_date"].as_i64().unwrap(),
            "{file}"
        );
        assert_eq!(
            count("identifier_in_text"),
            dirt["identifier_in_text"].as_i64().unwrap_or(0),
            "{file}: a national number pasted into a code cell is refused"
        );
    }
    // The patterns real exports have: every file was read as its own file.
    for p in [
        summary["patterns"]["archive_patients"]["file"]
            .as_str()
            .unwrap(),
        summary["patterns"]["dated_reexport"]["earlier"]
            .as_str()
            .unwrap(),
        summary["patterns"]["dated_reexport"]["final"]
            .as_str()
            .unwrap(),
    ] {
        assert!(
            seen_files.iter().any(|f| f == p),
            "{p} imported: {seen_files:?}"
        );
    }
    // The archive's patients born before 1900 are persons of the registry.
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.person WHERE year_of_birth < 1900"),
        summary["patterns"]["archive_patients"]["born_before_1900"]
            .as_i64()
            .unwrap()
    );
    // The final pathology export corrected grades: once each, never doubled.
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT person_id FROM cdm.measurement WHERE measurement_source_value = 'GRADE' GROUP BY person_id HAVING count(*) > 1) d"),
        0,
        "a dated re-export does not double the grades"
    );
    // Unknown local codes were loaded with concept 0 and listed for the data manager.
    let unknown: i64 = c
        .query_one(
            "SELECT coalesce(sum(occurrences), 0)::int8 FROM registry.unmapped_code",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(unknown > 0);
}

#[test]
fn after_a_full_synthetic_import_a_dump_holds_no_identifier_name_or_birth_date() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 80, 23, 0.0);
    let key = new_key(dir.path(), "k");
    let runs = import_hospital(&db, &key, &src);
    let log: String = runs.iter().map(|(_, v)| v.to_string()).collect();
    let report = db.registrar(&["audit", "report", "--format", "json"]);
    let log = format!(
        "{log}\n{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    let dump = std::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(db.database_url_arg())
        .output()
        .unwrap();
    assert!(dump.status.success());
    let everything = format!("{}\n{log}", String::from_utf8_lossy(&dump.stdout));
    assert!(everything.contains("COPY cdm.measurement"));

    let bytes = std::fs::read(src.join("his/patients.csv")).unwrap();
    let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
    let mut needles = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(';').collect();
        let (mrn, niss, last, first, birth) = (f[0], f[1], f[2], f[3], f[4]);
        needles.push(mrn.to_string());
        needles.push(niss.to_string());
        needles.push(niss.chars().filter(|c| c.is_ascii_digit()).collect());
        needles.push(format!("{first} {last}"));
        needles.push(format!("{last}^{first}"));
        if last.chars().count() >= 6 {
            needles.push(last.to_string());
        }
        needles.push(birth.to_string());
        let p: Vec<&str> = birth.split('/').collect();
        needles.push(format!("{}-{}-{}", p[2], p[1], p[0]));
    }
    for l in std::fs::read_to_string(src.join("truth.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for n in v["comment_names"].as_array().unwrap() {
            let n = n.as_str().unwrap();
            if n.chars().count() >= 6 {
                needles.push(n.to_string());
            }
        }
    }
    assert!(needles.len() > 80 * 6);
    for n in &needles {
        assert!(
            !everything.contains(n.as_str()),
            "`{n}` leaked into the dump or the output"
        );
    }
}
