//! Clinical imports through mapping files.

use crate::support::{new_key, repo_file, text, TestDb};
use std::path::{Path, PathBuf};

fn key(dir: &Path) -> PathBuf {
    new_key(dir, "registry.key")
}

fn import(
    db: &TestDb,
    key: &Path,
    kind: &str,
    mapping: &Path,
    inputs: &[&Path],
) -> (Option<i32>, serde_json::Value, String) {
    crate::support::import_json(db, key, kind, mapping, inputs, &[])
}

#[test]
fn gbsg2_trial_spreadsheet_loads_all_686_patients_once() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path());
    let mapping = repo_file("mappings/gbsg2/gbsg2.toml");
    // The trial's file as dropped in a folder (its identity is where it lies).
    let data = dir.path().join("gbsg2.csv");
    std::fs::copy(repo_file("tests/data/gbsg2.csv"), &data).unwrap();
    let (code, v, t) = import(&db, &k, "csv", &mapping, &[&data]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 686, "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 686);
    assert_eq!(
        db.count("SELECT count(DISTINCT person_id) FROM registry.person_map"),
        686
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 686 * 5);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM cdm.observation WHERE observation_source_value = 'rfs_days'"
        ),
        686
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.observation WHERE observation_source_value = 'rfs_event' AND value_as_number = 1"), 299);
    assert_eq!(db.count("SELECT count(*) FROM registry.lineage"), 686 * 10);
    // Dates are shifted per person; never the nominal date itself.
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE measurement_date = '1985-07-01'"),
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.person WHERE length(person_source_value) = 43"),
        686
    );
    // Audit: one entry for the file, with the policy and counts.
    let detail: String = db
        .client()
        .query_one(
            "SELECT detail FROM registry.audit_log WHERE action = 'import batch pseudonymised'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        detail.contains("\"identifiers_pseudonymised\":686") && detail.contains("shift -365..-30"),
        "{detail}"
    );

    assert_eq!(
        db.count("SELECT count(*) FROM registry.audit_log WHERE action = 'configuration change'"),
        1
    );

    // Unchanged file: skipped, nothing duplicated.
    let (code, v, t) = import(&db, &k, "csv", &mapping, &[&data]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["status"], "skipped", "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 686 * 5);

    // A re-export with one patient fewer, dropped at the same place, replaces the earlier
    // version's rows.
    let short = dir.path().join("gbsg2.csv");
    let text_in = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text_in.lines().collect();
    std::fs::write(&short, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let (code, _, t) = import(&db, &k, "csv", &mapping, &[&short]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 685 * 5);
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 685);
    assert_eq!(
        db.count("SELECT count(*) FROM registry.source_file WHERE status = 'superseded'"),
        1
    );
}

const MAP: &str = r#"
[source]
name = "lab"
format = "csv"
delimiter = ";"
encoding = "ENCODING"
date_formats = ["%d/%m/%Y"]
decimal_comma = true

[person]
identifiers = [{ column = "patient_nr", type = "mrn" }, { column = "niss", type = "niss" }]

[concept_maps]
lab = "lab.csv"

[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { column = "code", lookup = "lab" }
measurement_source_value = { column = "code" }
measurement_date = { column = "date" }
measurement_type_concept_id = { const = 32817 }
value_as_number = { column = "value" }
"#;

fn lab_mapping(dir: &Path, encoding: &str) -> PathBuf {
    std::fs::write(
        dir.join("lab.csv"),
        "source_code,target_concept_id,source_vocabulary_id\nHB,0,local\nER_PCT,0,local\n",
    )
    .unwrap();
    let p = dir.join(format!("lab-{encoding}.toml"));
    std::fs::write(&p, MAP.replace("ENCODING", encoding)).unwrap();
    p
}

#[test]
fn bad_rows_are_rejected_with_reasons_and_bad_files_load_nothing() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path());
    let m = lab_mapping(dir.path(), "windows-1252");
    let f = dir.path().join("lab.csv.txt");
    // Windows-1252, CRLF; row 2 bad date, row 3 ragged, row 4 duplicate of 1, row 5 unknown
    // code (loaded with concept 0, counted as unmapped), row 6 future date, row 7 invalid NISS.
    let body: &[u8] = b"patient_nr;niss;code;date;value;comment\r\n\
MRN1;85.07.30-033.28;HB;01/02/2020;12,5;Mme D\xe9sir\xe9e\r\n\
MRN1;85.07.30-033.28;HB;31/02/2020;12,5;x\r\n\
MRN1;85.07.30-033.28;HB;01/02/2020;12,5;x;extra\r\n\
MRN1;85.07.30-033.28;HB;01/02/2020;12,5;Mme D\xe9sir\xe9e\r\n\
MRN2;;XYZ;03/02/2020;1;\r\n\
MRN2;;HB;03/02/2999;1;\r\n\
MRN3;85.07.30-033.29;HB;03/02/2020;1;\r\n";
    std::fs::write(&f, body).unwrap();
    let (code, v, t) = import(&db, &k, "csv", &m, &[&f]);
    assert_eq!(code, Some(1), "rejects give exit 1: {t}");
    let file = &v["files"][0];
    assert_eq!(
        (
            file["rows_in"].as_i64(),
            file["rows_loaded"].as_i64(),
            file["rows_rejected"].as_i64(),
            file["rows_skipped"].as_i64()
        ),
        (Some(7), Some(2), Some(4), Some(1)),
        "{t}"
    );
    let mut c = db.client();
    let codes: Vec<(i64, String, Option<String>)> = c
        .query(
            "SELECT row_number, reason_code, column_name FROM registry.reject ORDER BY row_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, "date_invalid".into(), Some("date".into())),
            (3, "ragged_row".into(), None),
            (4, "skipped_duplicate".into(), None),
            (6, "date_in_future".into(), Some("date".into())),
            (7, "person".into(), None),
        ]
    );
    // Each cell-level reason names the field and the mapping line, never the value.
    let (field, file, line): (String, String, i32) = c
        .query_one(
            "SELECT field, mapping_file, mapping_line FROM registry.reject WHERE row_number = 2",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(
        (field.as_str(), file.as_str(), line),
        ("measurement.measurement_date", "lab-windows-1252.toml", 21)
    );
    let reasons: String = c
        .query_one("SELECT string_agg(reason, ' | ') FROM registry.reject", &[])
        .unwrap()
        .get(0);
    assert!(
        !reasons.contains("MRN") && !reasons.contains("85.07") && !reasons.contains("2999"),
        "{reasons}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE value_as_number = 12.5"),
        1
    );
    let out = db.registrar(&["mapping", "unmapped"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("XYZ"),
        "{}",
        text(&out)
    );
    // The free-text comment never reached the registry.
    let dump: String = c
        .query_one(
            "SELECT coalesce(string_agg(m::text, '|'), '') FROM cdm.measurement m",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!dump.contains("sir"), "{dump}");

    // Whole-file problems: nothing loaded, a clear reason.
    let before = db.count("SELECT count(*) FROM cdm.measurement");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("empty.csv", vec![], "windows-1252", "empty"),
        ("bom.csv", b"\xEF\xBB\xBFpatient_nr;niss;code;date;value\r\nMRN9;;HB;01/02/2020;1\r\n".to_vec(), "windows-1252", "byte-order mark"),
        ("latin1.csv", b"patient_nr;niss;code;date;value\r\nMRN9;;HB;01/02/2020;1\r\nMRN\xe9;;HB;01/02/2020;1\r\n".to_vec(), "utf-8", "not UTF-8"),
        ("dup.csv", b"patient_nr;niss;code;date;date\r\n".to_vec(), "windows-1252", "appears twice"),
        ("missing.csv", b"patient_nr;niss;code;value\r\n".to_vec(), "windows-1252", "lacks column"),
        ("zip.csv", b"PK\x03\x04rest".to_vec(), "windows-1252", "zip archive"),
    ];
    for (name, content, enc, expect) in cases {
        let m = lab_mapping(dir.path(), enc);
        let f = dir.path().join(name);
        std::fs::write(&f, content).unwrap();
        let (code, v, t) = import(&db, &k, "csv", &m, &[&f]);
        assert_eq!(code, Some(1), "{name}: {t}");
        assert_eq!(v["files"][0]["status"], "rejected", "{name}: {t}");
        assert!(
            v["files"][0]["reason"].as_str().unwrap().contains(expect),
            "{name}: {t}"
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), before);
    assert_eq!(
        db.count("SELECT count(*) FROM registry.audit_log WHERE action = 'rejected'"),
        6
    );
}

#[test]
fn mapping_check_reports_every_error_with_its_line() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        r#"[source]
name = "x"
format = "csv"

[person]
identifiers = [{ column = "id", type = "passport" }]

[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { column = "code", lookup = "nope" }
measurement_dat = { column = "d" }
value_as_string = { column = "comment" }
measurement_type_concept_id = { const = 32817 }
[[emit]]
table = "observation"
[emit.fields]
observation_concept_id = { const = 0 }
observation_date = { column = "d" }
observation_type_concept_id = { const = 32817 }
value_as_string = { column = "comment" }
observation_source_value = { column = "id" }
"#,
    )
    .unwrap();
    let out = db.registrar(&["mapping", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    for (line, what) in [
        (6, "passport"),
        (11, "no concept map named `nope`"),
        (12, "no column `measurement_dat`"),
        (13, "no column `value_as_string`"),
        (21, "free_text = true"),
        (22, "identifies the person"),
        (8, "required column `measurement_date`"),
    ] {
        assert!(
            s.contains(&format!("bad.toml:{line}: ")) && s.contains(what),
            "line {line} {what}: {s}"
        );
    }
    let out = db.registrar(&[
        "mapping",
        "check",
        repo_file("mappings/gbsg2/gbsg2.toml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

const PATIENTS_MAP: &str = r#"
[source]
name = "his-patients"
format = "csv"
delimiter = ";"
encoding = "windows-1252"
date_formats = ["%d/%m/%Y"]

[person]
identifiers = [{ column = "patient_nr", type = "mrn" }, { column = "niss", type = "niss" }]

[[emit]]
table = "person"
[emit.fields]
gender_concept_id = { column = "sex", values = { F = 8532, M = 8507 } }
year_of_birth = { column = "birth_date", part = "year" }
month_of_birth = { column = "birth_date", part = "month" }
day_of_birth = { column = "birth_date", part = "day" }
race_concept_id = { const = 0 }
ethnicity_concept_id = { const = 0 }
gender_source_value = { column = "sex" }

[[emit]]
table = "observation_period"
[emit.fields]
observation_period_start_date = { column = "first_visit" }
observation_period_end_date = { column = "last_visit" }
period_type_concept_id = { const = 32817 }
"#;

#[test]
fn a_dump_of_the_registry_and_all_output_hold_no_identifier_name_or_true_date() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path());
    let m = dir.path().join("patients.toml");
    std::fs::write(&m, PATIENTS_MAP).unwrap();
    // Names with accents (Windows-1252), valid NISS, MRNs, true dates years apart.
    let rows: &[[&str; 8]] = &[
        [
            "MRN0001234",
            "85.07.30-033.28",
            "Lef\u{e8}vre",
            "Ana\u{ef}s",
            "30/07/1985",
            "F",
            "14/03/2011",
            "02/09/2019",
        ],
        [
            "MRN0005678",
            "62.11.05-132.30",
            "Peeters",
            "H\u{e9}l\u{e8}ne",
            "05/11/1962",
            "F",
            "21/06/2008",
            "17/01/2016",
        ],
    ];
    let mut body = String::from(
        "patient_nr;niss;last_name;first_name;birth_date;sex;first_visit;last_visit\r\n",
    );
    for r in rows {
        body.push_str(
            &(r.join(";")
                + "
"),
        );
    }
    let bytes: Vec<u8> = body.chars().map(|c| c as u32 as u8).collect();
    let f = dir.path().join("patients.csv");
    std::fs::write(&f, bytes).unwrap();
    let (code, v, log1) = import(&db, &k, "csv", &m, &[&f]);
    assert_eq!(code, Some(0), "{log1}");
    assert_eq!(v["files"][0]["rows_loaded"], 2, "{log1}");
    let out = db.registrar(&["audit", "report", "--format", "json"]);
    let log2 = text(&out);
    let out = db.registrar(&[
        "--key-file",
        k.to_str().unwrap(),
        "pseudonym",
        "lookup",
        "--identifier",
        "MRN0001234",
        "--type",
        "mrn",
        "--why",
        "dump test",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log3 = text(&out);

    let dump = std::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(db.database_url_arg())
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", text(&dump));
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(dump.contains("COPY cdm.person"), "the dump holds the data");
    let everything = format!("{dump}\n{log1}\n{log2}\n{log3}");
    for r in rows {
        let niss_digits: String = r[1].chars().filter(|c| c.is_ascii_digit()).collect();
        let iso = |d: &str| {
            let p: Vec<&str> = d.split('/').collect();
            format!("{}-{}-{}", p[2], p[1], p[0])
        };
        for needle in [
            r[0].to_string(),
            r[1].to_string(),
            niss_digits,
            r[2].to_string(),
            r[3].to_string(),
            r[4].to_string(),
            iso(r[4]),
            iso(r[6]),
            iso(r[7]),
            r[6].to_string(),
            r[7].to_string(),
        ] {
            assert!(
                !everything.contains(&needle),
                "`{needle}` leaked into the dump or the output"
            );
        }
    }
    // Shifted, not dropped: the person rows and periods are there.
    assert_eq!(db.count("SELECT count(*) FROM cdm.observation_period"), 2);
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.person WHERE gender_concept_id = 8532"),
        2
    );
}

const GUARDED: &str = r#"
[source]
name = "diagnoses"
format = "csv"
delimiter = ";"
encoding = "utf-8"
date_formats = ["%Y-%m-%d"]

[person]
identifiers = [{ column = "patient_nr", type = "mrn" }]
names = ["last_name", "first_name"]

[concept_maps]
lab = "lab.csv"

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { const = 0 }
condition_source_value = { column = "icd10" }
condition_start_date = { column = "date" }
condition_type_concept_id = { const = 32817 }

[[emit]]
table = "measurement"
when = { column = "lab", not_empty = true }
[emit.fields]
measurement_concept_id = { column = "lab", lookup = "lab" }
measurement_date = { column = "date" }
measurement_type_concept_id = { const = 32817 }
"#;

/// The hostile tester's cells: a name, the person's own MRN, anybody's NISS and a sentence in
/// code columns are refused (`identifier_in_text`, `not_code_shaped`) before anything is
/// stored or counted as an unmapped code; the reasons quote nothing.
#[test]
fn identifiers_and_names_in_code_columns_never_reach_the_registry() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = key(dir.path());
    std::fs::write(
        dir.path().join("lab.csv"),
        "source_code,target_concept_id,source_vocabulary_id\nHB,0,local\n",
    )
    .unwrap();
    let m = dir.path().join("diagnoses.toml");
    std::fs::write(&m, GUARDED).unwrap();
    let f = dir.path().join("diagnoses.csv");
    std::fs::write(
        &f,
        "patient_nr;last_name;first_name;icd10;lab;date\n\
         MRN0001234;Martinou;Claire;C50.9;HB;2020-01-02\n\
         MRN0001234;Martinou;Claire;C50 Martinou Claire;;2020-01-03\n\
         MRN0001234;Martinou;Claire;C50 MRN-000-1234;;2020-01-04\n\
         MRN0005678;Müller;Hélène;C50 85.01.02-125.55;;2020-01-05\n\
         MRN0005678;Müller;Hélène;C50.4 MULLER;;2020-01-06\n\
         MRN0005678;Müller;Hélène;C50.4;MUELLER HELENE;2020-01-07\n\
         MRN0005678;Müller;Hélène;Invasive ductal carcinoma of the left breast, upper outer quadrant;;2020-01-08\n\
         MRN0005678;Müller;Hélène;C50.4;XYZ;2020-01-09\n",
    )
    .unwrap();
    let (code, v, t) = import(&db, &k, "csv", &m, &[&f]);
    assert_eq!(code, Some(1), "{t}");
    let file = &v["files"][0];
    assert_eq!(
        (
            file["rows_in"].as_i64(),
            file["rows_loaded"].as_i64(),
            file["rows_rejected"].as_i64()
        ),
        (Some(8), Some(2), Some(6)),
        "{t}"
    );
    let mut c = db.client();
    let codes: Vec<(i64, String)> = c
        .query(
            "SELECT row_number, reason_code FROM registry.reject ORDER BY row_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, "identifier_in_text".into()),
            (3, "identifier_in_text".into()),
            (4, "identifier_in_text".into()),
            (5, "identifier_in_text".into()),
            (6, "identifier_in_text".into()),
            (7, "not_code_shaped".into()),
        ]
    );
    let everything: String = c
        .query_one(
            "SELECT concat_ws('|',
                (SELECT string_agg(x::text, '|') FROM cdm.condition_occurrence x),
                (SELECT string_agg(x::text, '|') FROM cdm.measurement x),
                (SELECT string_agg(x::text, '|') FROM registry.unmapped_code x),
                (SELECT string_agg(x::text, '|') FROM registry.reject x))",
            &[],
        )
        .unwrap()
        .get(0);
    let lower = everything.to_lowercase();
    for needle in [
        "martinou", "claire", "müller", "muller", "hélène", "0001234", "85.01", "ductal",
    ] {
        assert!(!lower.contains(needle), "{needle} in {everything}");
    }
    let out = db.registrar(&["mapping", "unmapped"]);
    let s = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(s.contains("xyz") && !s.contains("martinou"), "{s}");

    // A mapping cannot copy a name column anywhere.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        GUARDED.replace(
            "condition_source_value = { column = \"icd10\" }",
            "condition_source_value = { column = \"last_name\" }",
        ),
    )
    .unwrap();
    let out = db.registrar(&["mapping", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("a name column"), "{}", text(&out));
}
