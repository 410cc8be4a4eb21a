//! FHIR endpoint pulls against a second, independent server implementation: Medplum's FHIR
//! router (tests/support/medplum/), which keeps no type-level `_history`, writes no next
//! links of its own, and is shown here with offset and HAPI-style `_getpages` paging.

use crate::fhir::{cohort_rows, mapping_args, mapping_outcome, of_types, pull, rows_in, TYPES};
use crate::support::medplum_server::{MedplumServer, Paging};
use crate::support::{new_key, synth, text, TestDb};
use serde_json::{json, Value};

/// The same cohort from a bulk import of the same export (the reference).
fn bulk_cohort(key: &std::path::Path, export: &std::path::Path) -> Vec<String> {
    let bulk = TestDb::new();
    let mut args = vec![
        "--key-file".to_string(),
        key.to_str().unwrap().into(),
        "import".into(),
        "fhir-bulk".into(),
    ];
    args.extend(mapping_args());
    args.push("--".into());
    args.push(export.to_str().unwrap().into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = bulk.registrar(&refs);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    cohort_rows(&bulk)
}

fn deletions(v: &Value, ty: &str) -> String {
    mapping_outcome(v, ty)["deletions"]["method"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_server_without_history_is_pulled_night_after_night_and_deletions_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 20, 5, 0.0);
    let server = MedplumServer::start(Paging::Offset);
    let all = server.load_synth(&src.join("fhir"));
    std::thread::sleep(std::time::Duration::from_millis(3200));

    let db = TestDb::new();
    let (code, v, t) = pull(&db, &key, &server.base, &[]);
    assert_eq!(code, Some(0), "{t}");
    let total: i64 = TYPES
        .iter()
        .map(|ty| rows_in(mapping_outcome(&v, ty)))
        .sum();
    assert_eq!(total as usize, of_types(&all), "{t}");
    for ty in TYPES {
        let m = mapping_outcome(&v, ty);
        assert_eq!(m["history_type"], "no", "{ty}: read from /metadata: {m}");
        assert_eq!(deletions(&v, ty), "full_pull", "{ty}");
    }
    assert_eq!(cohort_rows(&db), bulk_cohort(&key, &src.join("fhir")));

    // Night 2 and 3: incremental, nothing failing, the sweep not due yet.
    for night in 2..=3 {
        let (code, v, t) = pull(&db, &key, &server.base, &[]);
        assert_eq!(code, Some(0), "night {night}: {t}");
        for ty in TYPES {
            assert_eq!(rows_in(mapping_outcome(&v, ty)), 0, "{ty}: {t}");
            assert_eq!(deletions(&v, ty), "sweep_not_due", "{ty}: {t}");
        }
        let due = &mapping_outcome(&v, "Procedure")["deletions"]["next_due"];
        assert!(due.as_str().is_some_and(|d| d.len() == 10), "{due}");
    }

    // A surgery is deleted at the source: the next sweep removes it, and only it.
    let procedures = db.count("SELECT count(*) FROM cdm.procedure_occurrence");
    let gone = all
        .iter()
        .find(|r| r["resourceType"] == "Procedure")
        .unwrap();
    server.delete("Procedure", gone["id"].as_str().unwrap());
    let (code, v, t) = pull(&db, &key, &server.base, &["--id-sweep-days", "0"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(deletions(&v, "Procedure"), "sweep");
    assert_eq!(mapping_outcome(&v, "Procedure")["deleted"], json!(1), "{t}");
    assert_eq!(
        mapping_outcome(&v, "Observation")["deleted"],
        json!(0),
        "{t}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.procedure_occurrence"),
        procedures - 1
    );
    let (code, v, t) = pull(&db, &key, &server.base, &["--id-sweep-days", "0"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(mapping_outcome(&v, "Procedure")["deleted"], json!(0), "{t}");
    // What the server offered is in the audit entries of the pages.
    assert!(
        db.count(
            "SELECT count(*) FROM registry.audit_log
              WHERE detail::jsonb -> 'fhir' ->> 'history_type' = 'no'
                AND detail::jsonb -> 'fhir' ->> 'capability_statement' = 'true'"
        ) > 0
    );
    let out = db.registrar(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_search_that_ends_early_fails_loudly_and_keeps_its_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 12, 9, 0.0);
    // Medplum's own Bundles: a total, and no next link.
    let server = MedplumServer::start(Paging::None);
    let all = server.load_synth(&src.join("fhir"));
    let observations = all
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .count() as u64;
    assert!(observations > 50);
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let db = TestDb::new();
    for night in 1..=2 {
        let (code, v, t) = pull(&db, &key, &server.base, &[]);
        assert_eq!(code, Some(2), "night {night}: the type failed: {t}");
        let obs = mapping_outcome(&v, "Observation");
        assert_eq!(obs["announced"], json!(observations), "{obs}");
        assert_eq!(obs["missing"], json!(observations - 50), "{obs}");
        assert!(t.contains("ended early"), "{t}");
        assert_eq!(
            db.count(
                "SELECT count(*) FROM registry.fhir_watermark WHERE resource_type = 'Observation'"
            ),
            0,
            "night {night}: the watermark does not move past what was never received"
        );
        // The Patients fit one page: complete, loaded, watermarked.
        assert_eq!(mapping_outcome(&v, "Patient")["missing"], Value::Null);
    }
    // One page holds everything: complete.
    let (code, v, t) = pull(&db, &key, &server.base, &["--count", "1000"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(
        rows_in(mapping_outcome(&v, "Observation")) as u64,
        observations,
        "{t}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM registry.fhir_watermark WHERE resource_type = 'Observation'"
        ),
        1
    );
}

#[test]
fn opaque_getpages_links_are_followed_to_the_same_registry() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 10, 4, 0.0);
    let server = MedplumServer::start(Paging::GetPages);
    let all = server.load_synth(&src.join("fhir"));
    let db = TestDb::new();
    let (code, v, t) = pull(&db, &key, &server.base, &["--count", "13"]);
    assert_eq!(code, Some(0), "{t}");
    let total: i64 = TYPES
        .iter()
        .map(|ty| rows_in(mapping_outcome(&v, ty)))
        .sum();
    assert_eq!(total as usize, of_types(&all), "{t}");
    assert!(
        mapping_outcome(&v, "Observation")["units"]
            .as_array()
            .unwrap()
            .len()
            > 3
    );
    assert_eq!(cohort_rows(&db), bulk_cohort(&key, &src.join("fhir")));
}
