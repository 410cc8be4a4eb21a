//! The command line as a user meets it.

use crate::support::{registrar_cmd, text, TestDb};

#[test]
fn help_texts_explain_the_commands() {
    let out = registrar_cmd().arg("--help").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["db", "vocab", "demo", "DATABASE_URL", "embedded"] {
        assert!(s.contains(word), "--help mentions {word}: {s}");
    }
    let out = registrar_cmd()
        .args(["db", "reset", "--help"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("--yes") && s.contains("data is lost"), "{s}");
}

#[test]
fn db_reset_refuses_without_yes_and_resets_with_it() {
    let db = TestDb::new();
    db.client()
        .batch_execute("INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id) VALUES (1, 8532, 1960, 0, 0)")
        .unwrap();
    let out = db.registrar(&["db", "reset"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 1);

    let out = db.registrar(&["db", "reset", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 0);
}

#[test]
fn db_migrate_and_status_report_the_schema() {
    let db = TestDb::empty();
    let out = db.registrar(&["db", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pending"),
        "{}",
        text(&out)
    );

    let out = db.registrar(&["db", "migrate"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = db.registrar(&["--json", "db", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cdm_tables"], 41);
    assert!(v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["applied"] == true));
    let out = db.registrar(&["db", "migrate"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let out = registrar_cmd()
        .args(["--database-url", "mysql://x@y/z", "db", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgres://"),
        "{}",
        text(&out)
    );
}
