//! Roles: researchers see the curated views only; auditors the audit log only.

use crate::support::{text, TestDb};

#[test]
fn researchers_read_views_only_and_auditors_the_audit_log_only() {
    let db = TestDb::new();
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = db.registrar(&["roles", "apply"]);
    assert!(out.status.success(), "idempotent: {}", text(&out));
    let dbname = db.target.dbname();
    let (alice, bob) = (format!("{dbname}_alice"), format!("{dbname}_bob"));
    let mut admin = db.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {alice} LOGIN; GRANT registrar_researcher TO {alice};
             CREATE ROLE {bob} LOGIN; GRANT registrar_auditor TO {bob};"
        ))
        .unwrap();
    let mut r = db.connect_as(&alice);
    for ok in [
        "SELECT count(*) FROM research.modeling_cohort",
        "SELECT count(*) FROM research.subtype",
    ] {
        r.query(ok, &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for denied in [
        "SELECT * FROM registry.person_map",
        "SELECT * FROM registry.audit_log",
        "SELECT * FROM registry.lineage",
        "SELECT * FROM registry.reject",
        "SELECT * FROM cdm.person",
        "INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id) VALUES (1, 0, 1, 0, 0)",
        "CREATE TABLE research.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ] {
        let e = r.batch_execute(denied).expect_err(denied);
        assert!(format!("{e:?}").contains("permission denied"), "{denied}: {e:?}");
    }
    let mut a = db.connect_as(&bob);
    a.query("SELECT count(*) FROM registry.audit_log", &[])
        .unwrap();
    for denied in [
        "SELECT * FROM registry.person_map",
        "SELECT * FROM cdm.person",
        "SELECT * FROM research.subtype",
        "DELETE FROM registry.audit_log",
    ] {
        assert!(a.batch_execute(denied).is_err(), "{denied}");
    }
    // Optionally researchers may read cdm.
    let out = db.registrar(&["roles", "apply", "--researcher-reads-cdm"]);
    assert!(out.status.success(), "{}", text(&out));
    r.query("SELECT count(*) FROM cdm.person", &[]).unwrap();
    assert!(r
        .batch_execute("SELECT * FROM registry.person_map")
        .is_err());
    drop((r, a));
    admin
        .batch_execute(&format!(
            "DROP OWNED BY {alice}, {bob}; DROP ROLE {alice}; DROP ROLE {bob};"
        ))
        .unwrap();
}
