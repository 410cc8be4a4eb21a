//! FHIR endpoint pulls against a second, independent server implementation: Medplum's FHIR
//! router (tests/support/medplum/), which keeps no type-level `_history`, writes no next
//! links of its own, and is shown here with offset and HAPI-style `_getpages` paging.

use crate::fhir::{bulk_import, cohort_rows, mapping_outcome, of_types, pull, rows_in, TYPES};
use crate::support::medplum_server::{MedplumServer, Paging};
use crate::support::{new_key, synth, text, TestDb};
use serde_json::{json, Value};

/// The same cohort from a bulk import of the same export (the reference).
fn bulk_cohort(key: &std::path::Path, export: &std::path::Path) -> Vec<String> {
    let bulk = TestDb::new();
    let out = bulk_import(&bulk, key, export);
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

/// mCODE STU3-shaped resources, written from the IG's profiles (PrimaryCancerCondition,
/// TumorMarkerTest, TNM categories and stage group, CancerRelatedSurgicalProcedure,
/// CancerRelatedMedicationRequest and Administration), as a hospital's mCODE endpoint serves
/// them. The patient carries only an MR-typed identifier of the hospital's own system.
fn mcode_patient() -> Vec<Value> {
    let subject = json!({"reference": "Patient/mcode-pt-1"});
    let mcode = |p: &str| json!({"profile": [format!("http://hl7.org/fhir/us/mcode/StructureDefinition/{p}")]});
    let loinc = |c: &str| json!({"coding": [{"system": "http://loinc.org", "code": c}]});
    let snomed = |c: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": c}]});
    let ajcc = |c: &str| json!({"coding": [{"system": "http://cancerstaging.org", "code": c}]});
    let lab = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    let obs = |id: &str, profile: &str, code: Value, value: (&str, Value)| {
        let mut o = json!({"resourceType": "Observation", "id": id, "meta": mcode(profile),
            "status": "final", "category": lab.clone(), "code": code, "subject": subject.clone(),
            "effectiveDateTime": "2024-03-04"});
        o[value.0] = value.1;
        o
    };
    let cds = |id: &str, date: &str, status: &str| {
        json!({"resourceType": "Observation", "id": id, "meta": mcode("mcode-cancer-disease-status"),
            "extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-evidence-type",
                "valueCodeableConcept": snomed("363679005")}],
            "status": "final", "code": loinc("97509-4"), "subject": subject.clone(),
            "focus": [{"reference": "Condition/mcode-pcc-1"}],
            "effectiveDateTime": date, "valueCodeableConcept": snomed(status)})
    };
    vec![
        json!({"resourceType": "Patient", "id": "mcode-pt-1", "meta": mcode("mcode-cancer-patient"),
            "identifier": [{"use": "usual",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "http://hospital.example.org", "value": "m123"}],
            "name": [{"family": "Anyperson", "given": ["Jenny"]}],
            "gender": "female", "birthDate": "1965-06-11"}),
        json!({"resourceType": "Condition", "id": "mcode-pcc-1", "meta": mcode("mcode-primary-cancer-condition"),
            "extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior",
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "82711006"},
                    {"system": "http://terminology.hl7.org/CodeSystem/icd-o-3", "code": "8500/3"}]}}],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
            "bodySite": [{"extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-laterality-qualifier",
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "7771000"}]}}],
                "coding": [{"system": "http://snomed.info/sct", "code": "76752008"}]}],
            "subject": subject.clone(), "onsetDateTime": "2024-03-01", "recordedDate": "2024-03-02"}),
        obs(
            "mcode-er-1",
            "mcode-tumor-marker-test",
            loinc("85337-4"),
            ("valueCodeableConcept", snomed("10828004")),
        ),
        obs(
            "mcode-er-pct-1",
            "mcode-tumor-marker-test",
            loinc("85337-4"),
            (
                "valueQuantity",
                json!({"value": 90, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}),
            ),
        ),
        obs(
            "mcode-pr-1",
            "mcode-tumor-marker-test",
            loinc("85339-0"),
            ("valueCodeableConcept", snomed("260385009")),
        ),
        obs(
            "mcode-her2-1",
            "mcode-tumor-marker-test",
            loinc("85319-2"),
            ("valueCodeableConcept", loinc("LA11843-2")),
        ),
        obs(
            "mcode-ct-1",
            "mcode-tnm-primary-tumor-category",
            snomed("399504009"),
            ("valueCodeableConcept", ajcc("cT2")),
        ),
        // mCODE STU3's own binding: SNOMED CT's AJCC qualifier value (cN1).
        obs(
            "mcode-cn-1",
            "mcode-tnm-regional-nodes-category",
            snomed("399534004"),
            ("valueCodeableConcept", snomed("1229973008")),
        ),
        obs(
            "mcode-cm-1",
            "mcode-tnm-distant-metastases-category",
            snomed("399387003"),
            ("valueCodeableConcept", ajcc("cM0")),
        ),
        obs(
            "mcode-stage-1",
            "mcode-tnm-stage-group",
            snomed("399537006"),
            ("valueCodeableConcept", ajcc("IIB")),
        ),
        json!({"resourceType": "Procedure", "id": "mcode-surgery-1", "meta": mcode("mcode-cancer-related-surgical-procedure"),
            "status": "completed", "code": snomed("392021009"), "subject": subject.clone(),
            "performedDateTime": "2024-08-20"}),
        json!({"resourceType": "Procedure", "id": "mcode-rt-1", "meta": mcode("mcode-radiotherapy-course-summary"),
            "extension": [{"url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-procedure-intent",
                "valueCodeableConcept": snomed("373808002")}],
            "status": "completed", "category": snomed("108290001"), "code": snomed("1217123003"),
            "subject": subject.clone(), "performedPeriod": {"start": "2024-09-16", "end": "2024-10-11"}}),
        // CancerDiseaseStatus: stable after surgery, then no evidence of disease.
        cds("mcode-cds-1", "2024-12-02", "359746009"),
        cds("mcode-cds-2", "2025-06-02", "281900007"),
        json!({"resourceType": "Medication", "id": "mcode-med-paclitaxel",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "56946"}]}}),
        json!({"resourceType": "MedicationRequest", "id": "mcode-mr-1", "meta": mcode("mcode-cancer-related-medication-request"),
            "status": "completed", "intent": "order", "subject": subject.clone(), "authoredOn": "2024-03-20",
            "contained": [{"resourceType": "Medication", "id": "med1",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "224905"}]}}],
            "medicationReference": {"reference": "#med1"}}),
        // A second patient with only the overall HER2 interpretation (negative).
        json!({"resourceType": "Patient", "id": "mcode-pt-2", "meta": mcode("mcode-cancer-patient"),
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "http://hospital.example.org", "value": "m456"}],
            "gender": "female", "birthDate": "1970-02-03"}),
        json!({"resourceType": "Observation", "id": "mcode-her2-2", "meta": mcode("mcode-tumor-marker-test"),
            "status": "final", "category": lab.clone(), "code": loinc("48676-1"),
            "subject": {"reference": "Patient/mcode-pt-2"}, "effectiveDateTime": "2024-05-06",
            "valueCodeableConcept": snomed("260385009")}),
        json!({"resourceType": "MedicationAdministration", "id": "mcode-ma-1", "meta": mcode("mcode-cancer-related-medication-administration"),
            "status": "completed", "subject": subject.clone(), "effectiveDateTime": "2024-03-25",
            "medicationReference": {"reference": "Medication/mcode-med-paclitaxel"}}),
    ]
}

#[test]
fn an_mcode_endpoint_feeds_the_research_views_with_the_shipped_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let server = MedplumServer::start(Paging::Offset);
    server.put_all(&mcode_patient());
    let db = TestDb::new();
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--key-file".into(),
        key.to_str().unwrap().into(),
        "import".into(),
        "fhir".into(),
        "--endpoint".into(),
        server.base.clone(),
        "--mapping".into(),
    ];
    for m in [
        "tumor_marker_test", // Patient first whatever the order given
        "patient",
        "primary_cancer_condition",
        "tnm",
        "cancer_related_surgical_procedure",
        "cancer_related_medication_request",
        "cancer_related_medication_administration",
        "cancer_disease_status",
    ] {
        args.push(
            crate::support::repo_file(&format!("mappings/mcode/{m}.toml"))
                .to_str()
                .unwrap()
                .into(),
        );
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = db.registrar(&refs);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("m123") && !t.contains("Anyperson"), "{t}");
    let row = db
        .client()
        .query_one(
            "SELECT to_jsonb(m)::text FROM research.modeling_cohort m",
            &[],
        )
        .unwrap();
    let m: Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
    assert_eq!(m["laterality"], "left", "{m:#}");
    assert_eq!(m["histology_icdo3"], "8500/3", "{m:#}");
    assert_eq!(m["ct"], "T2", "{m:#}");
    assert_eq!(m["cn"], "N1", "{m:#}");
    assert_eq!(m["cm"], "M0", "{m:#}");
    assert_eq!(m["clinical_stage"], "IIB", "{m:#}");
    assert_eq!(m["er_pct"].as_f64(), Some(90.0), "{m:#}");
    assert_eq!(m["her2_status"], "positive", "{m:#}");
    assert_eq!(m["surgery_type"], "breast_conserving", "{m:#}");
    assert_eq!(m["pillar"], "her2_positive", "{m:#}");
    assert_eq!(m["neoadjuvant_agents"], "paclitaxel, trastuzumab", "{m:#}");
    let agents: Vec<String> = db
        .client()
        .query(
            "SELECT agent FROM research.systemic_therapy ORDER BY agent",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        agents,
        ["paclitaxel", "trastuzumab"],
        "contained and referenced Medications"
    );
    // Dates are shifted per person: compared as days from the diagnosis.
    let statuses: Vec<String> = db
        .client()
        .query(
            "SELECT (s.status_date - d.diagnosis_date)::text || ' ' || s.status
               FROM research.disease_status s JOIN research.diagnosis d USING (person_id) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["276 stable", "458 no_evidence_of_disease"]);
    let rt = db
        .client()
        .query_one(
            "SELECT (r.start_date - d.diagnosis_date)::text || ' ' || (r.end_date - r.start_date)::text
               FROM research.radiotherapy r JOIN research.diagnosis d USING (person_id)",
            &[],
        )
        .unwrap();
    assert_eq!(
        rt.get::<_, String>(0),
        "199 25",
        "the radiotherapy course summary"
    );
    let rs = db
        .client()
        .query_one(
            "SELECT er_positive, pr_positive FROM research.receptor_status WHERE her2_ihc IS NOT NULL",
            &[],
        )
        .unwrap();
    // The overall interpretation alone gives the HER2 status.
    assert_eq!(
        db.count("SELECT count(*) FROM research.receptor_status WHERE her2_ihc IS NULL AND her2_status = 'negative'"),
        1
    );
    assert_eq!(
        (rs.get::<_, Option<bool>>(0), rs.get::<_, Option<bool>>(1)),
        (Some(true), Some(false))
    );
}
