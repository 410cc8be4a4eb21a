//! What a file and a record are, and values parsed strictly: the cases real exports showed
//! (second sites' files of the same name, dated re-exports with corrections, US and truncated
//! dates, pre-1900 births, one-per-person emits across sources, one bad cell in a row).

use crate::support::{new_key, registry_fingerprint, repo_file, text, TestDb};
use std::path::{Path, PathBuf};

/// `registrar --json import csv --mapping M FILES... [extra...]`: (exit code, JSON, log).
fn import(
    db: &TestDb,
    key: &Path,
    mapping: &Path,
    inputs: &[&Path],
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let (code, v, t) = crate::support::import_json(db, key, "csv", mapping, inputs, extra);
    // Every file's rows add up, and so do its records.
    for f in v["files"].as_array().into_iter().flatten() {
        let n = |k: &str| f[k].as_i64().unwrap_or(0);
        assert_eq!(
            n("rows_in"),
            n("rows_loaded") + n("rows_rejected") + n("rows_skipped") + n("rows_unchanged"),
            "rows add up: {t}"
        );
        if n("records_added") + n("records_updated") + n("records_unchanged") > 0 {
            assert!(
                n("records_added") + n("records_updated") + n("records_unchanged") <= n("rows_in"),
                "{t}"
            );
        }
    }
    (code, v, t)
}

fn write(path: &Path, body: &str) -> PathBuf {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, body).unwrap();
    path.to_path_buf()
}

#[test]
fn two_sites_files_of_the_same_name_are_two_files() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let mapping = repo_file("mappings/gbsg2/gbsg2.toml");
    let all = std::fs::read_to_string(repo_file("tests/data/gbsg2.csv")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let (header, rows) = (lines[0], &lines[1..]);
    let a = write(
        &dir.path().join("siteA/gbsg2.csv"),
        &format!("{header}\n{}\n", rows[..300].join("\n")),
    );
    let b = write(
        &dir.path().join("siteB/gbsg2.csv"),
        &format!("{header}\n{}\n", rows[300..].join("\n")),
    );
    let (code, v, t) = import(&db, &k, &mapping, &[&a], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 300, "{t}");
    let (code, v, t) = import(&db, &k, &mapping, &[&b], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 386, "{t}");
    assert_eq!(v["files"][0]["replaced_rows"], 0, "{t}");
    // Both files' facts are there; nothing was superseded.
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 686 * 5);
    assert_eq!(
        db.count("SELECT count(*) FROM registry.source_file WHERE status = 'superseded'"),
        0
    );
    // Relative to a root, as a nightly source folder: the same two files, again two.
    let db2 = TestDb::new();
    let root = dir.path().to_str().unwrap();
    let (code, _, t) = import(&db2, &k, &mapping, &[&a, &b], &["--root", root]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(db2.count("SELECT count(*) FROM cdm.measurement"), 686 * 5);
    // A file outside the root is refused, not given a made-up identity.
    let outside = write(&dir.path().join("../elsewhere-gbsg2.csv"), &all);
    let (code, _, t) = import(
        &db2,
        &k,
        &mapping,
        &[&outside],
        &["--root", dir.path().join("siteA").to_str().unwrap()],
    );
    assert_eq!(code, Some(3), "{t}");
    assert!(t.contains("outside the import root"), "{t}");
    let _ = std::fs::remove_file(outside);
}

const ROTT2: &str = r#"
# A trial export re-issued every month (the same patients, corrections included).
[source]
name = "rott2"
format = "csv"
date_formats = ["%Y-%m-%d"]
SERIES

[person]
identifiers = [{ column = "pid", type = "study-subject", prefix = "ROTT2-" }]

RECORD

[[emit]]
table = "person"
[emit.fields]
gender_concept_id = { const = 8532 }
year_of_birth = { column = "birth_date", part = "year" }
race_concept_id = { const = 0 }
ethnicity_concept_id = { const = 0 }

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { const = 4112853 }
condition_start_date = { column = "surgery_date" }
condition_type_concept_id = { const = 32879 }
condition_source_value = { const = "C50.9" }

[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "grade" }
measurement_date = { column = "surgery_date" }
measurement_type_concept_id = { const = 32879 }
value_as_number = { column = "grade" }
"#;

fn rott2_mapping(dir: &Path, series: bool, record: bool) -> PathBuf {
    let text = ROTT2
        .replace(
            "SERIES",
            if series {
                "series = \"rott2_*.csv\""
            } else {
                ""
            },
        )
        .replace(
            "RECORD",
            if record {
                "[record]\nkey = [\"pid\"]"
            } else {
                ""
            },
        );
    write(&dir.join(format!("rott2-{series}-{record}.toml")), &text)
}

/// A month's export of `n` patients; patient 7's grade was corrected in the second.
fn rott2_export(dir: &Path, month: &str, n: usize, corrected: bool) -> PathBuf {
    let mut s = String::from("pid,birth_date,surgery_date,grade\n");
    for i in 1..=n {
        let grade = if i == 7 && corrected { 3 } else { 1 + i % 3 };
        s.push_str(&format!(
            "{i},19{:02}-0{}-1{},1990-0{}-1{},{grade}\n",
            30 + i % 60,
            1 + i % 9,
            i % 10,
            1 + i % 9,
            i % 10
        ));
    }
    write(&dir.join(format!("exports/rott2_{month}.csv")), &s)
}

#[test]
fn dated_re_exports_update_records_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = rott2_mapping(dir.path(), true, true);
    let nov = rott2_export(dir.path(), "2026-11", 40, false);
    let dec = rott2_export(dir.path(), "2026-12", 40, true);

    let db = TestDb::new();
    let (code, v, t) = import(&db, &k, &m, &[&nov], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["records_added"], 40, "{t}");
    let (code, v, t) = import(&db, &k, &m, &[&dec], &[]);
    assert_eq!(code, Some(0), "{t}");
    let f = &v["files"][0];
    assert_eq!(
        (
            f["records_added"].as_i64(),
            f["records_updated"].as_i64(),
            f["records_unchanged"].as_i64(),
            f["rows_unchanged"].as_i64()
        ),
        (Some(0), Some(1), Some(39), Some(39)),
        "one corrected patient: {t}"
    );
    // Nothing doubled; the correction reached the registry.
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.condition_occurrence"),
        40
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 40);
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 40);
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE value_as_number = 3"),
        40 / 3 + 1,
        "patient 7 now has grade 3"
    );
    let clean = registry_fingerprint(&db);

    // The other order: the older export changes nothing.
    let db2 = TestDb::new();
    for f in [&dec, &nov] {
        let (code, _, t) = import(&db2, &k, &m, &[f], &[]);
        assert_eq!(code, Some(0), "{t}");
    }
    assert_eq!(registry_fingerprint(&db2), clean, "order does not matter");
    // Again and again, in one command: the same registry.
    let (code, v, t) = import(&db2, &k, &m, &[&nov, &dec, &nov], &[]);
    assert_eq!(code, Some(0), "{t}");
    for f in v["files"].as_array().unwrap() {
        assert_eq!(f["status"], "skipped", "{t}");
    }
    assert_eq!(registry_fingerprint(&db2), clean);

    // Without a record key, a declared series: the newest member replaces the older ones
    // whole, and an older member loaded later is skipped.
    let ms = rott2_mapping(dir.path(), true, false);
    let db3 = TestDb::new();
    let (code, _, t) = import(&db3, &k, &ms, &[&nov, &dec], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(db3.count("SELECT count(*) FROM cdm.measurement"), 40);
    assert_eq!(
        db3.count("SELECT count(*) FROM registry.source_file WHERE status = 'superseded'"),
        1
    );
    let (code, v, t) = import(&db3, &k, &ms, &[&nov], &[]);
    assert_eq!(code, Some(0), "{t}");
    // The same older file re-issued with other content: still older than what is loaded.
    let nov2 = rott2_export(dir.path(), "2026-11", 39, false);
    let (code, v2, t2) = import(&db3, &k, &ms, &[&nov2], &[]);
    assert_eq!(code, Some(0), "{t2}");
    assert_eq!(v["files"][0]["status"], "skipped", "{t}");
    assert_eq!(v["files"][0]["reason_code"], "older_version", "{t}");
    assert_eq!(v2["files"][0]["reason_code"], "older_version", "{t2}");
    let cdm = |fp: std::collections::BTreeMap<String, Vec<String>>| {
        fp.into_iter()
            .filter(|(k, _)| k.starts_with("cdm."))
            .collect::<Vec<_>>()
    };
    assert_eq!(cdm(registry_fingerprint(&db3)), cdm(clean.clone()));

    // With neither, two dated files are two files: the data manager must say what replaces
    // what, and nothing is deleted behind their back.
    let mp = rott2_mapping(dir.path(), false, false);
    let nov = rott2_export(dir.path(), "2026-11", 40, false);
    let db4 = TestDb::new();
    let (code, _, t) = import(&db4, &k, &mp, &[&nov, &dec], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(db4.count("SELECT count(*) FROM cdm.measurement"), 80);
}

#[test]
fn a_file_dropped_back_to_an_earlier_content_loads_again() {
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = rott2_mapping(dir.path(), false, true);
    let f = dir.path().join("drop/rott2.csv");
    let a = std::fs::read_to_string(rott2_export(dir.path(), "a", 30, false)).unwrap();
    let b = std::fs::read_to_string(rott2_export(dir.path(), "b", 30, true)).unwrap();
    let db = TestDb::new();
    for (content, grade3) in [(&a, 10), (&b, 11), (&a, 10), (&b, 11)] {
        write(&f, content);
        let (code, v, t) = import(&db, &k, &m, &[&f], &[]);
        assert_eq!(code, Some(0), "{t}");
        assert_eq!(v["files"][0]["status"], "loaded", "{t}");
        assert_eq!(
            db.count("SELECT count(*) FROM cdm.measurement WHERE value_as_number = 3"),
            grade3,
            "{t}"
        );
        assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 30);
    }
}

#[test]
fn snapshots_delete_records_missing_from_the_newest_file() {
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let text = std::fs::read_to_string(rott2_mapping(dir.path(), true, true))
        .unwrap()
        .replace("key = [\"pid\"]", "key = [\"pid\"]\nsnapshot = true");
    let m = write(&dir.path().join("snap.toml"), &text);
    let nov = rott2_export(dir.path(), "2026-11", 40, false);
    let dec = rott2_export(&dir.path().join("b"), "2026-12", 35, true);
    let db = TestDb::new();
    let (code, _, t) = import(&db, &k, &m, &[&nov], &[]);
    assert_eq!(code, Some(0), "{t}");
    let (code, v, t) = import(&db, &k, &m, &[&dec], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["records_deleted"], 5, "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 35);
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 35);
    // The older file, loaded again later, brings nothing back.
    let nov_again = rott2_export(&dir.path().join("c"), "2026-11", 40, false);
    let (code, v, t) = import(&db, &k, &m, &[&nov_again], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_unchanged"], 40, "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.measurement"), 35);
}

#[test]
fn a_killed_import_ends_in_the_same_registry_after_one_more_run() {
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = rott2_mapping(dir.path(), true, true);
    let nov = rott2_export(dir.path(), "2026-11", 20_000, false);
    let dec = rott2_export(dir.path(), "2026-12", 20_000, true);
    let clean = TestDb::new();
    let (code, _, t) = import(&clean, &k, &m, &[&nov, &dec], &[]);
    assert_eq!(code, Some(0), "{t}");
    let want = registry_fingerprint(&clean);
    for delay_ms in [150u64, 600, 1500] {
        let db = TestDb::new();
        let mut child = crate::support::registrar_cmd()
            .arg("--database-url")
            .arg(db.database_url_arg())
            .args([
                "--key-file",
                k.to_str().unwrap(),
                "import",
                "csv",
                "--mapping",
            ])
            .arg(&m)
            .arg(&nov)
            .arg(&dec)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (code, _, t) = import(&db, &k, &m, &[&dec, &nov], &[]);
        assert_eq!(code, Some(0), "after a kill at {delay_ms} ms: {t}");
        assert_eq!(
            registry_fingerprint(&db),
            want,
            "after a kill at {delay_ms} ms the registry differs from a clean run"
        );
    }
}

const DATES: &str = r#"
[source]
name = "dates"
format = "csv"
FORMATS

[person]
identifiers = [{ column = "mrn", type = "mrn" }]

[[emit]]
table = "observation"
[emit.fields]
observation_concept_id = { const = 0 }
observation_date = { column = "d" }
observation_type_concept_id = { const = 32817 }
observation_source_value = { const = "visit" }
"#;

fn dates_mapping(dir: &Path, name: &str, formats: &str) -> PathBuf {
    write(&dir.join(name), &DATES.replace("FORMATS", formats))
}

#[test]
fn dates_match_a_declared_format_exactly_or_are_rejected() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    // No declared format: the mapping is refused, with the line and what to write.
    let none = dates_mapping(dir.path(), "none.toml", "");
    let out = db.registrar(&["mapping", "check", none.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("none.toml:14:") && text(&out).contains("date_formats"),
        "{}",
        text(&out)
    );

    let dm = dates_mapping(dir.path(), "dm.toml", "date_formats = [\"%d/%m/%Y\"]");
    let f = write(
        &dir.path().join("visits.csv"),
        "mrn,d\nA1,07/01/1989\nA2,1/7/1989\nA3,01/07/89\nA4,31/04/1990\nA5,07/01/1989 x\n",
    );
    let (code, v, t) = import(&db, &k, &dm, &[&f], &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 1, "{t}");
    let codes: Vec<(i64, String)> = db
        .client()
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
            (2, "date_format".to_string()),
            (3, "date_two_digit_year".to_string()),
            (4, "date_invalid".to_string()),
            (5, "date_format".to_string()),
        ],
        "{t}"
    );
    // The declared day-first order: 7 January, shifted like every date (never guessed).
    assert_eq!(db.count("SELECT count(*) FROM cdm.observation WHERE extract(month FROM observation_date + 400) BETWEEN 1 AND 12"), 1);

    // Truncated ISO dates are not dates.
    let iso = dates_mapping(dir.path(), "iso.toml", "date_formats = [\"%Y-%m-%d\"]");
    let f = write(
        &dir.path().join("iso.csv"),
        "mrn,d\nB1,1993-08-2\nB2,1993-08-02\n",
    );
    let (code, v, t) = import(&db, &k, &iso, &[&f], &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(v["files"][0]["rows_rejected"], 1, "{t}");

    // Two-digit years only with %y and a pivot year.
    let yy = dates_mapping(
        dir.path(),
        "yy.toml",
        "date_formats = [\"%d/%m/%y\"]\npivot_year = 1920",
    );
    let f = write(
        &dir.path().join("yy.csv"),
        "mrn,d\nC1,01/07/89\nC2,01/07/19\n",
    );
    let (code, v, t) = import(&db, &k, &yy, &[&f], &["--keep-true-dates"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 2, "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.observation WHERE observation_date IN ('1989-07-01', '2019-07-01')"),
        2
    );
    let nopivot = dates_mapping(dir.path(), "nopivot.toml", "date_formats = [\"%d/%m/%y\"]");
    let out = db.registrar(&["mapping", "check", nopivot.to_str().unwrap()]);
    assert!(text(&out).contains("pivot_year"), "{}", text(&out));

    // A column that proves the other day/month order is rejected as a whole.
    let before = db.count("SELECT count(*) FROM cdm.observation");
    let us = write(
        &dir.path().join("us.csv"),
        "mrn,d\nD1,07/01/1989\nD2,12/25/1989\nD3,03/04/1990\n",
    );
    let (code, v, t) = import(&db, &k, &dm, &[&us], &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(v["files"][0]["status"], "rejected", "{t}");
    assert_eq!(v["files"][0]["reason_code"], "date_order", "{t}");
    let reason = v["files"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("column `d`") && reason.contains("row 2"),
        "{reason}"
    );
    assert!(!reason.contains("12/25"), "{reason}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.observation"), before);

    // `mapping check --sample` says which format matches how many values.
    let out = db.registrar(&[
        "mapping",
        "check",
        dm.to_str().unwrap(),
        "--sample",
        us.to_str().unwrap(),
    ]);
    let s = text(&out);
    assert!(
        s.contains("format %d/%m/%Y: matches 2 value(s)") && s.contains("swapped"),
        "{s}"
    );
    assert!(!s.contains("12/25"), "{s}");
}

const BIRTHS: &str = r#"
[source]
name = "births"
format = "csv"
date_formats = ["%Y-%m-%d"]
LIMITS

[person]
identifiers = [{ column = "mrn", type = "mrn" }]

[[emit]]
table = "person"
[emit.fields]
gender_concept_id = { const = 8532 }
year_of_birth = { column = "born", part = "year" }
month_of_birth = { column = "born", part = "month" }
race_concept_id = { const = 0 }
ethnicity_concept_id = { const = 0 }

[[emit]]
table = "condition_occurrence"
[emit.fields]
condition_concept_id = { const = 4112853 }
condition_start_date = { column = "diagnosed" }
condition_type_concept_id = { const = 32817 }
"#;

#[test]
fn births_before_1900_load_and_the_limits_are_one_policy() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = write(
        &dir.path().join("births.toml"),
        &BIRTHS.replace("LIMITS", ""),
    );
    let f = write(
        &dir.path().join("old.csv"),
        "mrn,born,diagnosed\nE1,1892-05-03,1981-02-01\nE2,1899-12-30,1986-06-15\nE3,1849-01-01,1935-01-01\nE4,1950-01-01,1899-03-01\n",
    );
    let (code, v, t) = import(&db, &k, &m, &[&f], &["--keep-true-dates"]);
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(
        v["files"][0]["rows_loaded"], 2,
        "patients born in the 1890s load: {t}"
    );
    let codes: Vec<String> = db
        .client()
        .query(
            "SELECT reason_code FROM registry.reject ORDER BY row_number",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(codes, ["implausible_birth", "implausible_date"], "{t}");
    // One policy: `registrar limits` shows and sets it (audited), imports apply it.
    let out = db.registrar(&["limits"]);
    assert!(text(&out).contains("births from 1850"), "{}", text(&out));
    let out = db.registrar(&[
        "limits",
        "--min-birth-year",
        "1840",
        "--min-event-year",
        "1890",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("births from 1840"), "{}", text(&out));
    let f2 = write(
        &dir.path().join("again/old.csv"),
        &std::fs::read_to_string(&f).unwrap(),
    );
    let (code, v, t) = import(&db, &k, &m, &[&f2], &["--keep-true-dates"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 4, "{t}");
    // A mapping can set its own limit.
    let db2 = TestDb::new();
    let m2 = write(
        &dir.path().join("births2.toml"),
        &BIRTHS.replace("LIMITS", "").replace(
            "[person]",
            "[limits]\nmin_birth_year = 1800\nmin_event_year = 1850\n\n[person]",
        ),
    );
    let (code, v, t) = import(&db2, &k, &m2, &[&f], &["--keep-true-dates"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(v["files"][0]["rows_loaded"], 4, "{t}");
    // `registrar check` reads the same policy.
    let out = db2.registrar(&["--json", "check"]);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let yob = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "plausibility.year_of_birth")
        .unwrap();
    assert_eq!(yob["violating"], 1, "1849 is before the registry's 1850");
}

#[test]
fn once_per_person_is_per_source_not_per_table() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let patients = write(
        &dir.path().join("patients.toml"),
        r#"
[source]
name = "patients"
format = "csv"
date_formats = ["%Y-%m-%d"]
[person]
identifiers = [{ column = "mrn", type = "mrn" }]
[[emit]]
table = "person"
[emit.fields]
gender_concept_id = { const = 8532 }
year_of_birth = { column = "born", part = "year" }
race_concept_id = { const = 0 }
ethnicity_concept_id = { const = 0 }
[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "height" }
measurement_date = { column = "seen" }
measurement_type_concept_id = { const = 32817 }
value_as_number = { column = "height" }
"#,
    );
    let samples = write(
        &dir.path().join("samples.toml"),
        r#"
[source]
name = "samples"
format = "csv"
date_formats = ["%Y-%m-%d"]
[person]
identifiers = [{ column = "mrn", type = "mrn" }]
# The first sample of a person gives her receptor status.
[[emit]]
table = "measurement"
once_per_person = true
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "ER_PCT" }
measurement_date = { column = "taken" }
measurement_type_concept_id = { const = 32817 }
value_as_number = { column = "er" }
"#,
    );
    let pf = write(
        &dir.path().join("p.csv"),
        "mrn,born,seen,height\nP1,1960-01-01,2020-01-01,160\nP2,1961-01-01,2020-01-01,170\n",
    );
    let sf = write(
        &dir.path().join("s.csv"),
        "mrn,taken,er\nP1,2020-02-01,90\nP1,2020-03-01,80\nP2,2020-02-01,0\n",
    );
    let (code, _, t) = import(&db, &k, &patients, &[&pf], &[]);
    assert_eq!(code, Some(0), "{t}");
    let (code, v, t) = import(&db, &k, &samples, &[&sf], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE measurement_source_value = 'ER_PCT'"),
        2,
        "one receptor row per person from the sample source, whatever else the table holds: {t}"
    );
    assert_eq!(v["files"][0]["rows_skipped"], 1, "{t}");
    // Another file of the same source: still one per person and source.
    let sf2 = write(
        &dir.path().join("s2.csv"),
        "mrn,taken,er\nP1,2021-02-01,70\n",
    );
    let (code, _, t) = import(&db, &k, &samples, &[&sf2], &[]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE measurement_source_value = 'ER_PCT'"),
        2,
        "{t}"
    );
}

const CELLS: &str = r#"
[source]
name = "labs"
format = "csv"
date_formats = ["%Y-%m-%d"]

[person]
identifiers = [{ column = "mrn", type = "mrn" }]

[[emit]]
table = "measurement"
[emit.fields]
measurement_concept_id = { const = 0 }
measurement_source_value = { const = "KI67_PCT" }
measurement_date = { column = "date" }
measurement_type_concept_id = { const = 32817 }
value_as_number = { column = "ki67" }
range_high = { column = "upper", on_error = "null" }

[[emit]]
table = "observation"
when = { column = "grade", not_empty = true }
[emit.fields]
observation_concept_id = { const = 0 }
observation_source_value = { const = "grade" }
observation_date = { column = "date" }
observation_type_concept_id = { const = 32817 }
value_as_number = { column = "grade", values = { I = 1, II = 2, III = 3 } }
"#;

#[test]
fn every_failing_cell_is_recorded_with_its_column_and_line_and_can_be_nulled() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let k = new_key(dir.path(), "k");
    let m = write(&dir.path().join("labs.toml"), CELLS);
    let f = write(
        &dir.path().join("labs.csv"),
        "mrn,date,ki67,upper,grade\n\
         L1,2020-01-05,12,100,II\n\
         L2,2020-01-32,twelve,100,II\n\
         L3,2020-01-05,15,n/a,III\n\
         L4,2020-01-05,15,100,IV\n",
    );
    let (code, v, t) = import(&db, &k, &m, &[&f], &[]);
    assert_eq!(code, Some(1), "{t}");
    let file = &v["files"][0];
    assert_eq!(
        (
            file["rows_loaded"].as_i64(),
            file["rows_rejected"].as_i64(),
            file["cells_nulled"].as_i64()
        ),
        (Some(2), Some(2), Some(1)),
        "{t}"
    );
    let rows: Vec<(i64, String, String, String, i32, String, String)> = db
        .client()
        .query(
            "SELECT row_number, column_name, field, mapping_file, mapping_line, reason_code, outcome
               FROM registry.reject ORDER BY row_number, reject_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    let want = |row: i64, col: &str, field: &str, line: i32, code: &str, outcome: &str| {
        (
            row,
            col.to_string(),
            field.to_string(),
            "labs.toml".to_string(),
            line,
            code.to_string(),
            outcome.to_string(),
        )
    };
    assert_eq!(
        rows,
        vec![
            // Row 2: both bad cells, not only the first.
            want(
                2,
                "date",
                "measurement.measurement_date",
                15,
                "date_invalid",
                "row_rejected"
            ),
            want(
                2,
                "ki67",
                "measurement.value_as_number",
                17,
                "unparseable",
                "row_rejected"
            ),
            // Row 3: the optional cell is nulled, the row loads.
            want(
                3,
                "upper",
                "measurement.range_high",
                18,
                "unparseable",
                "cell_nulled"
            ),
            // Row 4: a value the value map does not know.
            want(
                4,
                "grade",
                "observation.value_as_number",
                28,
                "value_not_mapped",
                "row_rejected"
            ),
        ],
        "{t}"
    );
    let reasons: String = db
        .client()
        .query_one("SELECT string_agg(reason, ' | ') FROM registry.reject", &[])
        .unwrap()
        .get(0);
    for v in ["2020-01-32", "twelve", "n/a", "IV"] {
        assert!(!reasons.contains(v), "`{v}` in {reasons}");
    }
    // `mapping unmapped` covers value maps.
    let out = db.registrar(&["mapping", "unmapped"]);
    assert!(
        text(&out).contains("value map observation.value_as_number") && text(&out).contains("IV"),
        "{}",
        text(&out)
    );
}
