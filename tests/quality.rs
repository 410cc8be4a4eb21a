//! `registrar check`: a clean import passes; each injected failure is caught.

use crate::support::{import_hospital, new_key, synth, text, TestDb};

fn failed(db: &TestDb) -> (Option<i32>, Vec<String>) {
    let out = db.registrar(&["check", "--format", "json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let ids = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["passed"] == false)
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    (out.status.code(), ids)
}

#[test]
fn data_quality_checks_catch_each_injected_failure() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 60, 9, 0.0);
    let key = new_key(dir.path(), "k");
    import_hospital(&db, &key, &src);
    let (code, ids) = failed(&db);
    assert_eq!(code, Some(0), "a clean synthetic import passes: {ids:?}");
    assert!(ids.is_empty(), "{ids:?}");

    // Facts by concept (the checks read the research views' concept roles, not source
    // codes): ER % (registrar local 2000000101), Nottingham grade (2000000110), pathological
    // T0 (1635740).
    db.client()
        .batch_execute(
            "WITH p AS (SELECT person_id FROM cdm.person ORDER BY person_id LIMIT 1)
             INSERT INTO cdm.measurement (measurement_id, person_id, measurement_concept_id, measurement_date, measurement_type_concept_id, measurement_source_value, value_as_number)
             SELECT -1, person_id, 0, date '1901-01-01', 32817, 'HB', 12 FROM p
             UNION ALL SELECT -2, person_id, 2000000101, date '2020-01-01', 32817, 'ER %', 150 FROM p
             UNION ALL SELECT -3, person_id, 2000000110, date '2020-01-01', 32817, 'grade', 5 FROM p;
             INSERT INTO cdm.person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id)
             VALUES (-10, 8532, 1849, 0, 0), (-11, 8532, 1960, 0, 0);
             INSERT INTO cdm.measurement (measurement_id, person_id, measurement_concept_id, measurement_date, measurement_type_concept_id, measurement_source_value, value_as_number, value_source_value)
             VALUES (-4, -11, 2000000101, '2020-01-01', 32817, 'ER %', 50, NULL), (-5, -11, 1635740, '2020-05-01', 32817, 'ypT', NULL, 'T0');
             INSERT INTO cdm.observation (observation_id, person_id, observation_concept_id, observation_date, observation_type_concept_id)
             VALUES (-6, -999, 0, '2020-01-01', 32817);
             INSERT INTO cdm.episode_event (episode_id, event_id, episode_event_field_concept_id) VALUES (-7, 1, 0);
             INSERT INTO registry.lineage (cdm_table, cdm_row_id, source_file_id, source_row, run_id) VALUES ('measurement', -1, -1, 1, 1);",
        )
        .unwrap();
    let (code, ids) = failed(&db);
    assert_eq!(code, Some(1), "a fatal failure gives exit code 1");
    for want in [
        "plausibility.event_before_birth",
        "plausibility.receptor_percent_range",
        "plausibility.grade_range",
        "plausibility.year_of_birth",
        "completeness.receptor_without_diagnosis",
        "completeness.pcr_without_surgery",
        "conformance.observation_person_orphan",
        "conformance.episode_event_orphan",
        "conformance.lineage_orphan",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} not caught: {ids:?}");
    }
    let out = db.registrar(&["check", "--format", "html"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("<tr class=\"fail\">"));
    let out = db.registrar(&["check"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAIL"),
        "{}",
        text(&out)
    );
}
