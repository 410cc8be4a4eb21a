//! FHIR imports against a real FHIR R4 server (sekmet-fhir on loopback): paging, incremental
//! runs, updates and deletions, auth, faults, resuming; and Bulk Data folders.

use crate::support::fhir_server::{Fault, FaultProxy, FhirServer};
use crate::support::{new_key, repo_file, synth, text, TestDb};
use serde_json::{json, Value};
use std::path::Path;

const MAPPINGS: [&str; 5] = [
    "patient",
    "condition",
    "observation",
    "procedure",
    "medication_administration",
];
pub(crate) const TYPES: [&str; 5] = [
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationAdministration",
];

pub(crate) fn mapping_args() -> Vec<String> {
    let mut v = vec!["--mapping".to_string()];
    for m in MAPPINGS {
        v.push(
            repo_file(&format!("mappings/fhir/{m}.toml"))
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    v
}

/// `registrar --json import fhir` against `endpoint`; returns (exit code, JSON, full text).
pub(crate) fn pull(
    db: &TestDb,
    key: &Path,
    endpoint: &str,
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--key-file".into(),
        key.to_str().unwrap().into(),
        "import".into(),
        "fhir".into(),
        "--endpoint".into(),
        endpoint.into(),
        "--backoff-ms".into(),
        "20".into(),
    ];
    if !extra.contains(&"--count") {
        args.extend(["--count".into(), "50".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(mapping_args());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = db.registrar(&refs);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, text(&out))
}

/// `registrar import fhir-bulk` of an export folder with the FHIR mappings.
pub(crate) fn bulk_import(db: &TestDb, key: &Path, export: &Path) -> std::process::Output {
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
    db.registrar(&refs)
}

pub(crate) fn mapping_outcome<'a>(v: &'a Value, resource_type: &str) -> &'a Value {
    v["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["resource_type"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type} in {v:#}"))
}

pub(crate) fn rows_in(m: &Value) -> i64 {
    m["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["rows_in"].as_i64().unwrap())
        .sum()
}

/// The modeling cohort keyed by pseudonym (person_id differs between registries).
pub(crate) fn cohort_rows(db: &TestDb) -> Vec<String> {
    db.client()
        .query(
            "SELECT p.person_source_value || ' ' || (to_jsonb(m) - 'person_id')::text
               FROM research.modeling_cohort m JOIN cdm.person p USING (person_id) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub(crate) fn of_types(all: &[Value]) -> usize {
    all.iter()
        .filter(|r| TYPES.contains(&r["resourceType"].as_str().unwrap()))
        .count()
}

#[test]
fn endpoint_pulls_page_incrementally_with_updates_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 40, 7, 0.0);
    let server = FhirServer::start(None);
    let all = server.load_synth(&src.join("fhir"));
    // Resources must be older than the watermark (the server clock, whole seconds, less 2 s).
    std::thread::sleep(std::time::Duration::from_millis(3200));

    let db = TestDb::new();
    let (code, v, t) = pull(&db, &key, &server.base, &[]);
    assert_eq!(code, Some(0), "{t}");
    let total: i64 = TYPES
        .iter()
        .map(|ty| rows_in(mapping_outcome(&v, ty)))
        .sum();
    assert_eq!(
        total as usize,
        of_types(&all),
        "every resource of the mapped types"
    );
    let obs = mapping_outcome(&v, "Observation");
    assert!(
        obs["units"].as_array().unwrap().len() > 2,
        "paged by 50: {obs}"
    );

    // The same cohort as a bulk import of the same export.
    let bulk = TestDb::new();
    let out = bulk_import(&bulk, &key, &src.join("fhir"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = cohort_rows(&db);
    assert_eq!(rows.len(), 40);
    assert_eq!(rows, cohort_rows(&bulk));

    // Nothing changed: nothing pulled.
    let (code, v, t) = pull(&db, &key, &server.base, &[]);
    assert_eq!(code, Some(0), "{t}");
    for ty in TYPES {
        assert_eq!(rows_in(mapping_outcome(&v, ty)), 0, "{ty}: {t}");
    }

    // Pulling everything again replaces every row by itself (one-per-person rows included).
    let persons = db.count("SELECT count(*) FROM cdm.person");
    let (code, _, t) = pull(&db, &key, &server.base, &["--full"]);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), persons, "{t}");
    assert_eq!(cohort_rows(&db), cohort_rows(&bulk));

    // One receptor result is corrected, one surgery deleted: only those change.
    let measurements = db.count("SELECT count(*) FROM cdm.measurement");
    let procedures = db.count("SELECT count(*) FROM cdm.procedure_occurrence");
    let mut er = all
        .iter()
        .find(|r| r["resourceType"] == "Observation" && r["code"]["coding"][0]["code"] == "85337-4")
        .unwrap()
        .clone();
    er["component"][0]["valueQuantity"]["value"] = json!(77);
    server.put_all(&[er]);
    let surgery = all
        .iter()
        .find(|r| {
            r["resourceType"] == "Procedure"
                && r["code"]["coding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["code"].as_str().unwrap().starts_with("CHIR-"))
        })
        .unwrap();
    server.delete("Procedure", surgery["id"].as_str().unwrap());
    let (code, v, t) = pull(&db, &key, &server.base, &[]);
    assert!(matches!(code, Some(0) | Some(1)), "{t}");
    assert_eq!(rows_in(mapping_outcome(&v, "Observation")), 1, "{t}");
    assert_eq!(mapping_outcome(&v, "Procedure")["deleted"], json!(1), "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement"),
        measurements,
        "replaced, not added"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.measurement WHERE measurement_source_value = 'ER_PCT' AND value_as_number = 77"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.procedure_occurrence"),
        procedures - 1
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT last_updated) FROM registry.fhir_watermark"),
        1,
        "one watermark for all types of the last pull"
    );
    let out = db.registrar(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn endpoint_auth_uses_a_token_that_never_appears_in_output() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 5, 3, 0.0);
    let token = "s3cr3t-token-for-the-test";
    let server = FhirServer::start(Some(token));
    server.load_synth(&src.join("fhir"));
    let db = TestDb::new();

    let (code, _, t) = pull(&db, &key, &server.base, &[]);
    assert_eq!(code, Some(2), "no token: every type fails\n{t}");
    assert!(
        t.contains("401") && t.contains("authentication refused"),
        "{t}"
    );
    // Refused once, not once per type.
    assert!(t.contains("4 other resource types not pulled"), "{t}");

    let tf = dir.path().join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, t) = pull(
        &db,
        &key,
        &server.base,
        &["--token-file", tf.to_str().unwrap()],
    );
    assert_ne!(code, Some(0));
    assert!(t.contains("chmod 600"), "{t}");
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, v, t) = pull(
        &db,
        &key,
        &server.base,
        &["--token-file", tf.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(rows_in(mapping_outcome(&v, "Patient")), 5);
    assert!(!t.contains(token), "the token leaked into the output");

    // From an environment variable too.
    let mut args = vec![
        "--key-file",
        key.to_str().unwrap(),
        "import",
        "fhir",
        "--endpoint",
        &server.base,
        "--token-env",
        "REGISTRAR_TEST_TOKEN",
        "--full",
    ];
    let m = mapping_args();
    args.extend(m.iter().map(String::as_str));
    let out = crate::support::registrar_cmd()
        .env("REGISTRAR_TEST_TOKEN", token)
        .arg("--database-url")
        .arg(db.database_url_arg())
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(token));
    let leaked = db.count(&format!(
        "SELECT count(*) FROM registry.import_run WHERE coalesce(message, '') LIKE '%{token}%'"
    ));
    assert_eq!(leaked, 0);
}

#[test]
fn endpoint_faults_are_retried_refused_or_rejected_and_a_failed_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 20, 5, 0.0);
    let server = FhirServer::start(None);
    let all = server.load_synth(&src.join("fhir"));
    // One resource the R4 models refuse (an unknown status code): rejected, its page loads.
    let mut bad = all
        .iter()
        .find(|r| r["resourceType"] == "Observation")
        .unwrap()
        .clone();
    bad["id"] = json!("bad-status");
    bad["status"] = json!("almost-final");
    server.put_all(&[bad]);
    let proxy = FaultProxy::start(&server);

    // Transient faults are retried: 429 with Retry-After, 503, a dropped connection.
    proxy.inject(
        "/fhir/Patient?",
        &[
            Fault::Status(429, Some(1)),
            Fault::Status(503, None),
            Fault::Reset,
        ],
    );
    let db = TestDb::new();
    let clean = TestDb::new();
    {
        let (code, v, t) = pull(&clean, &key, &server.base, &[]);
        assert_eq!(code, Some(1), "the bad resource is a reject\n{t}");
        let obs = mapping_outcome(&v, "Observation");
        let reject = clean.client().query_one(
            "SELECT reason_code, reason FROM registry.reject WHERE reason_code = 'invalid_resource'",
            &[],
        ).unwrap();
        assert!(reject
            .get::<_, String>(1)
            .starts_with("Observation: not a valid R4 Observation"));
        assert!(!reject.get::<_, String>(1).contains("bad-status"));
        assert_eq!(
            rows_in(obs) as usize,
            all.iter()
                .filter(|r| r["resourceType"] == "Observation")
                .count()
                + 1
        );
    }
    // Observation: page 1 loads, page 2 answers 500 until the retries run out.
    proxy.inject(
        "/fhir/Observation?_count=50&_offset=50",
        &[
            Fault::Status(500, None),
            Fault::Status(500, None),
            Fault::Status(500, None),
            Fault::Status(500, None),
            Fault::Status(500, None),
            Fault::Status(500, None),
        ],
    );
    let (code, v, t) = pull(&db, &key, &proxy.base, &[]);
    assert_eq!(code, Some(2), "a type failed\n{t}");
    assert!(
        mapping_outcome(&v, "Patient")["retries"].as_u64().unwrap() >= 3,
        "{t}"
    );
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{t}");
    assert!(failures[0].as_str().unwrap().contains("HTTP 500"), "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM registry.fhir_watermark WHERE resource_type = 'Condition'"),
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM registry.fhir_watermark WHERE resource_type = 'Observation'"
        ),
        0,
        "no watermark for the type that failed"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registry.source_file WHERE source_kind = 'fhir' AND mapping_name = 'fhir-observation' AND status = 'loaded'"),
        1,
        "its first page committed"
    );

    // The next run resumes: everything ends as in one clean run, without duplicates.
    proxy.clear();
    let (code, _, t) = pull(&db, &key, &proxy.base, &[]);
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(cohort_rows(&db), cohort_rows(&clean));
    for table in [
        "condition_occurrence",
        "observation",
        "measurement",
        "procedure_occurrence",
        "drug_exposure",
        "person",
    ] {
        let q = format!("SELECT count(*) FROM cdm.{table}");
        assert_eq!(db.count(&q), clean.count(&q), "{table}");
    }

    // Paging that loops, leaves the origin, or is not a Bundle stops that type only.
    for (fault, why) in [
        (Fault::LoopingNext, "loops"),
        (Fault::ForeignNext, "leaves the server's origin"),
        (Fault::NotABundle, "not a FHIR Bundle"),
    ] {
        proxy.inject("/fhir/Procedure?", &[fault]);
        let (code, v, t) = pull(&db, &key, &proxy.base, &["--full"]);
        assert_eq!(code, Some(2), "{t}");
        let failures = v["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{t}");
        assert!(failures[0].as_str().unwrap().contains(why), "{why}: {t}");
        assert!(
            rows_in(mapping_outcome(&v, "Patient")) > 0,
            "the other types ran: {t}"
        );
    }
}

#[test]
fn a_night_pulls_fhir_endpoint_bulk_exports_and_dicom() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    // Cohort A on the FHIR server, with its DICOM RT sets; cohort B as a bulk export.
    let a = dir.path().join("a");
    let mut opts = registrar_synth::SynthOptions::new(8, 21, a.clone());
    opts.dicom = true;
    opts.dicom_slices = 4;
    opts.dicom_matrix = 16;
    registrar_synth::generate(&opts, &|_| {}).unwrap();
    let mut opts = registrar_synth::SynthOptions::new(6, 22, dir.path().join("b"));
    opts.dicom = false;
    opts.first_patient_number = 5001;
    registrar_synth::generate(&opts, &|_| {}).unwrap();
    let server = FhirServer::start(None);
    server.load_synth(&a.join("fhir"));
    std::thread::sleep(std::time::Duration::from_millis(3200));

    let db = TestDb::new();
    let list = |v: Vec<String>| {
        v.iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let maps = list(
        MAPPINGS
            .iter()
            .map(|m| {
                repo_file(&format!("mappings/fhir/{m}.toml"))
                    .display()
                    .to_string()
            })
            .collect(),
    );
    let config = format!(
        "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n\
         [[source]]\nname = \"fhir-endpoint\"\nkind = \"fhir\"\nendpoint = \"{}\"\nmappings = [{maps}]\n\n\
         [[source]]\nname = \"fhir-exports\"\nkind = \"fhir-bulk\"\nfolder = \"{}\"\nmappings = [{maps}]\n\n\
         [[source]]\nname = \"rt-dicom\"\nkind = \"dicom\"\nfolder = \"{}\"\noutput = \"{}\"\n",
        db.database_url_arg(),
        key.display(),
        dir.path().join("reports").display(),
        server.base,
        dir.path().join("b").display(),
        a.join("dicom").display(),
        dir.path().join("dicom-out").display(),
    );
    // The bulk source folder holds one export per subfolder.
    std::fs::create_dir_all(dir.path().join("b-exports")).unwrap();
    std::fs::rename(
        dir.path().join("b/fhir"),
        dir.path().join("b-exports/2026-11-26"),
    )
    .unwrap();
    let config = config.replace(
        &format!("folder = \"{}\"", dir.path().join("b").display()),
        &format!("folder = \"{}\"", dir.path().join("b-exports").display()),
    );
    let cfg = dir.path().join("registrar.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = crate::support::registrar_cmd()
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let night = || {
        crate::support::registrar_cmd()
            .args(["--json", "nightly", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = night();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let source = |v: &Value, name: &str| -> Value {
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    for name in ["fhir-endpoint", "fhir-exports", "rt-dicom"] {
        let s = source(&v, name);
        assert_ne!(s["status"], "failed", "{name}: {s}");
        assert!(s["rows_loaded"].as_i64().unwrap() > 0, "{name}: {s}");
    }
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 14);
    assert!(db.count("SELECT count(*) FROM cdm.image_occurrence") > 0);
    assert!(db.count("SELECT count(*) FROM research.rt_structure_set") > 0);
    // DICOM and FHIR of one patient share a person_id.
    assert_eq!(
        db.count(
            "SELECT count(DISTINCT o.person_id) FROM cdm.image_occurrence o
               WHERE NOT EXISTS (SELECT 1 FROM cdm.person p WHERE p.person_id = o.person_id)"
        ),
        0
    );
    let counts = |db: &TestDb| {
        [
            "person",
            "measurement",
            "observation",
            "drug_exposure",
            "image_occurrence",
            "image_feature",
        ]
        .map(|t| db.count(&format!("SELECT count(*) FROM cdm.{t}")))
    };
    let first = counts(&db);

    // The next night finds nothing new.
    let out = night();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(source(&v, "fhir-endpoint")["rows_in"], json!(0));
    assert_eq!(source(&v, "fhir-exports")["files_loaded"], json!(0));
    let dicom = source(&v, "rt-dicom");
    assert_eq!(
        dicom["files_loaded"],
        json!(0),
        "unchanged DICOM inputs are skipped: {dicom}"
    );
    assert_eq!(dicom["files_skipped"], dicom["files_seen"]);
    assert_eq!(counts(&db), first);
    let out = db.registrar(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The cdm tables FHIR mappings write, with their rows' persons.
const FACT_TABLES: [&str; 5] = [
    "condition_occurrence",
    "measurement",
    "procedure_occurrence",
    "drug_exposure",
    "observation",
];

fn table_counts(db: &TestDb) -> Vec<(String, i64)> {
    std::iter::once("person")
        .chain(FACT_TABLES)
        .map(|t| {
            (
                t.to_string(),
                db.count(&format!("SELECT count(*) FROM cdm.{t}")),
            )
        })
        .collect()
}

/// Resources as a Bulk Data export folder (one ndjson file per type).
fn write_export(dir: &Path, all: &[Value]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut by_type: std::collections::BTreeMap<String, String> = Default::default();
    for r in all {
        let f = by_type
            .entry(r["resourceType"].as_str().unwrap().to_string())
            .or_default();
        f.push_str(&serde_json::to_string(r).unwrap());
        f.push('\n');
    }
    for (t, body) in by_type {
        std::fs::write(dir.join(format!("{t}.ndjson")), body).unwrap();
    }
}

#[test]
fn results_do_not_depend_on_the_page_size_and_no_fact_outlives_its_rejected_patient() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 30, 11, 0.0);
    let mut all: Vec<Value> = Vec::new();
    for e in std::fs::read_dir(src.join("fhir")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("ndjson") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                if !line.trim().is_empty() {
                    all.push(serde_json::from_str(line).unwrap());
                }
            }
        }
    }
    // A Patient whose birth date is absent with a data-absent-reason (valid FHIR; the
    // mapping needs a year of birth, so the Patient is rejected): none of its facts may load.
    let rejected = all
        .iter_mut()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    rejected.as_object_mut().unwrap().remove("birthDate");
    rejected["_birthDate"] = json!({"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        "valueCode": "unknown"}]});
    let rejected_id = rejected["id"].as_str().unwrap().to_string();
    let rejected_ref = format!("Patient/{rejected_id}");
    let orphans = all
        .iter()
        .filter(|r| r["subject"]["reference"] == rejected_ref.as_str())
        .filter(|r| TYPES.contains(&r["resourceType"].as_str().unwrap()))
        .count();
    assert!(orphans > 3, "the rejected patient has facts: {orphans}");
    // Identical content under two ids is two resources (a second administration the same day).
    let mut twin = all
        .iter()
        .find(|r| {
            r["resourceType"] == "MedicationAdministration"
                && r["subject"]["reference"] != rejected_ref.as_str()
        })
        .unwrap()
        .clone();
    twin["id"] = json!(format!("{}-twin", twin["id"].as_str().unwrap()));
    all.push(twin);
    let administrations = all
        .iter()
        .filter(|r| {
            r["resourceType"] == "MedicationAdministration"
                && r["subject"]["reference"] != rejected_ref.as_str()
        })
        .count() as i64;

    let server = FhirServer::start(None);
    server.put_all(&all);
    let export = dir.path().join("export");
    write_export(&export, &all);

    let mut results = Vec::new();
    for count in ["7", "50", "1000"] {
        let db = TestDb::new();
        let (code, v, t) = pull(&db, &key, &server.base, &["--count", count]);
        assert_eq!(code, Some(1), "rejects, nothing failed: {t}");
        let obs = mapping_outcome(&v, "Observation");
        assert!(obs["announced"].as_u64().unwrap() > 0, "{obs}");
        assert_eq!(obs["missing"], Value::Null, "{obs}");
        assert_eq!(
            db.count("SELECT count(*) FROM cdm.drug_exposure"),
            administrations,
            "_count {count}: one drug row per administration resource, twins included"
        );
        assert_eq!(
            db.count(
                "SELECT count(*) FROM registry.reject WHERE reason_code = 'person_without_row'"
            ),
            orphans as i64,
            "_count {count}: every fact of the rejected patient is rejected with its own reason"
        );
        for t in FACT_TABLES {
            assert_eq!(
                db.count(&format!(
                    "SELECT count(*) FROM cdm.{t} x WHERE NOT EXISTS (SELECT 1 FROM cdm.person p WHERE p.person_id = x.person_id)"
                )),
                0,
                "{t}: no fact without its person row"
            );
        }
        let reasons = db
            .client()
            .query("SELECT reason FROM registry.reject", &[])
            .unwrap();
        for r in reasons {
            let reason: String = r.get(0);
            assert!(!reason.contains(rejected_id.as_str()), "{reason}");
        }
        results.push((count, table_counts(&db), cohort_rows(&db)));
    }
    let bulk = TestDb::new();
    let out = bulk_import(&bulk, &key, &export);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        bulk.count("SELECT count(*) FROM registry.reject WHERE reason_code = 'person_without_row'"),
        orphans as i64
    );
    results.push(("bulk", table_counts(&bulk), cohort_rows(&bulk)));
    let (_, first_counts, first_rows) = &results[0];
    assert_eq!(first_rows.len(), 29, "the rejected patient is in no view");
    for (how, counts, rows) in &results[1..] {
        assert_eq!(counts, first_counts, "{how} against _count 7");
        assert_eq!(rows, first_rows, "{how} against _count 7");
    }
}

#[test]
fn medication_references_are_resolved_contained_included_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 5, 3, 0.0);
    let server = FhirServer::start(None);
    let all = server.load_synth(&src.join("fhir"));
    let drug_system = "https://hopital-sainte-elise.example/fhir/CodeSystem/drug";
    let ma: Vec<Value> = all
        .iter()
        .filter(|r| r["resourceType"] == "MedicationAdministration")
        .cloned()
        .collect();
    assert!(ma.len() >= 3);
    let code_of = |r: &Value| {
        r["medicationCodeableConcept"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["system"] == drug_system)
            .unwrap()["code"]
            .clone()
    };
    // 1: the medication contained in the administration; 2: a Medication resource of the
    // server; 3: a reference to a Medication the server does not have.
    let mut contained = ma[0].clone();
    let c0 = code_of(&contained);
    contained["contained"] = json!([{"resourceType": "Medication", "id": "med1",
        "code": {"coding": [{"system": drug_system, "code": c0}]}}]);
    contained
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    contained["medicationReference"] = json!({"reference": "#med1"});
    let mut separate = ma[1].clone();
    let c1 = code_of(&separate);
    let medication = json!({"resourceType": "Medication", "id": "medication-rx-1",
        "code": {"coding": [{"system": drug_system, "code": c1}]}});
    separate
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    separate["medicationReference"] = json!({"reference": "Medication/medication-rx-1"});
    let mut missing = ma[2].clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    missing["medicationReference"] = json!({"reference": "Medication/no-such-medication-9"});
    server.put_all(&[medication, contained, separate, missing]);

    let db = TestDb::new();
    let (code, v, t) = pull(&db, &key, &server.base, &[]);
    assert_eq!(code, Some(1), "one administration rejected: {t}");
    let m = mapping_outcome(&v, "MedicationAdministration");
    assert_eq!(rows_in(m), ma.len() as i64, "{m}");
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.drug_exposure"),
        ma.len() as i64 - 1,
        "{t}"
    );
    for c in [c0, c1] {
        assert!(
            db.count(&format!(
                "SELECT count(*) FROM cdm.drug_exposure WHERE drug_source_value = '{}'",
                c.as_str().unwrap()
            )) >= 1
        );
    }
    let r = db
        .client()
        .query_one(
            "SELECT column_name, reason FROM registry.reject WHERE reason LIKE '%referenced Medication%'",
            &[],
        )
        .unwrap();
    let (col, reason): (Option<String>, String) = (r.get(0), r.get(1));
    assert_eq!(col.as_deref(), Some("drug"), "{reason}");
    assert!(!reason.contains("no-such-medication"), "{reason}");
}

#[test]
fn history_that_the_statement_promises_but_the_server_refuses_falls_back_to_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 8, 13, 0.0);
    let server = FhirServer::start(None);
    let all = server.load_synth(&src.join("fhir"));
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let proxy = FaultProxy::start(&server);
    let db = TestDb::new();
    let (code, _, t) = pull(&db, &key, &proxy.base, &[]);
    assert_eq!(code, Some(0), "{t}");
    // No statement this time, and every _history answered 404: never a failure; the ids
    // are swept (the first sweep is due at once: the first pull was not a sweep).
    let gone = all
        .iter()
        .find(|r| r["resourceType"] == "Condition")
        .unwrap();
    server.delete("Condition", gone["id"].as_str().unwrap());
    for night in 1..=2 {
        proxy.inject("/fhir/metadata", &[Fault::Status(404, None)]);
        proxy.inject("_history", &vec![Fault::Status(404, None); 5]);
        let (code, v, t) = pull(&db, &key, &proxy.base, &["--id-sweep-days", "0"]);
        assert_eq!(code, Some(0), "night {night}: {t}");
        let m = mapping_outcome(&v, "Condition");
        assert_eq!(m["deletions"]["method"], "sweep", "{m}");
        assert_eq!(m["deleted"], json!(if night == 1 { 1 } else { 0 }), "{m}");
        assert!(m["notes"][0].as_str().unwrap().contains("HTTP 404"), "{m}");
        assert!(v["source"]["capabilities"]["unreadable"].is_string(), "{v}");
    }
    proxy.clear();
}
