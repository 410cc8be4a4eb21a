//! `registrar nightly`: all sources, exit codes, lock, report, resumption after kill -9.

use crate::support::{new_key, nightly, nightly_config, registrar_cmd, synth, text, TestDb};

#[test]
fn a_night_runs_every_source_reports_and_the_next_night_skips_unchanged_files() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 60, 12, 0.0);
    let key = new_key(dir.path(), "k");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    let out = registrar_cmd()
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sources"].as_array().unwrap().len(), 12);
    assert!(
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "ok" && s["files_loaded"] == 1),
        "{r}"
    );
    let html = std::fs::read_to_string(r["report_html"].as_str().unwrap()).unwrap();
    assert!(
        html.contains("<svg") && html.contains("Nightly run") && !html.contains("src=\"http"),
        "self-contained"
    );
    assert!(html.contains("chain intact"));
    for mrn in std::fs::read_to_string(src.join("truth.jsonl"))
        .unwrap()
        .lines()
        .take(5)
    {
        let v: serde_json::Value = serde_json::from_str(mrn).unwrap();
        assert!(!html.contains(v["patient_nr"].as_str().unwrap()));
    }
    assert_eq!(db.count("SELECT count(*) FROM registry.nightly_source"), 12);

    // The derived tables OHDSI tools start from: one cdm_source row (CDM v5.4, concept
    // 756265), and one observation period per person with facts, holding all of them.
    assert_eq!(
        db.count("SELECT count(*) FROM cdm.cdm_source WHERE cdm_version = 'v5.4' AND cdm_version_concept_id = 756265"),
        1
    );
    let with_facts = db.count(
        "SELECT count(DISTINCT person_id) FROM (
            SELECT person_id FROM cdm.condition_occurrence UNION ALL
            SELECT person_id FROM cdm.measurement UNION ALL
            SELECT person_id FROM cdm.drug_exposure) f",
    );
    assert!(with_facts > 0);
    assert!(
        db.count(
            "SELECT count(*) FROM cdm.observation_period WHERE period_type_concept_id = 32882"
        ) >= with_facts
    );
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT person_id FROM cdm.observation_period GROUP BY 1 HAVING count(*) > 1) d"),
        0,
        "one period per person"
    );
    for (table, date) in [
        ("condition_occurrence", "condition_start_date"),
        ("measurement", "measurement_date"),
        ("drug_exposure", "drug_exposure_start_date"),
        ("procedure_occurrence", "procedure_date"),
        ("observation", "observation_date"),
        ("death", "death_date"),
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM cdm.{table} f LEFT JOIN cdm.observation_period o USING (person_id)
                  WHERE o.person_id IS NULL
                     OR f.{date} NOT BETWEEN o.observation_period_start_date AND o.observation_period_end_date"
            )),
            0,
            "every {table} row lies in its person's observation period"
        );
    }
    // Condition eras (tests/eras.rs checks the era logic): every mapped occurrence of a
    // person is in exactly one era, and a person's eras of one condition are more than the
    // 30-day persistence window apart.
    let mapped = db.count(
        "SELECT count(*) FROM cdm.condition_occurrence
          WHERE condition_concept_id <> 0 AND person_id IN (SELECT person_id FROM cdm.person)",
    );
    assert!(mapped > 0);
    assert_eq!(
        db.count(
            "SELECT coalesce(sum(condition_occurrence_count), 0)::int8 FROM cdm.condition_era"
        ),
        mapped
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM cdm.condition_era a JOIN cdm.condition_era b
                 ON b.person_id = a.person_id AND b.condition_concept_id = a.condition_concept_id
                AND b.condition_era_start_date > a.condition_era_start_date
              WHERE b.condition_era_start_date <= a.condition_era_end_date + 30"
        ),
        0
    );

    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["files_skipped"] == 1 && s["rows_loaded"] == 0),
        "{r}"
    );
    assert_eq!(r["trend"].as_array().unwrap().len(), 2);
}

#[test]
fn exit_codes_tell_cron_what_happened_and_one_run_at_a_time() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 40, 13, 0.05);
    let key = new_key(dir.path(), "k");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    // Dirty sources: rejects, exit 1.
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!r["rejects"].as_array().unwrap().is_empty());

    // A source that fails (its mapping is gone) does not stop the others: exit 2.
    let broken = std::fs::read_to_string(&cfg).unwrap().replacen(
        "mappings/hospital/deaths.toml",
        "mappings/hospital/no-such.toml",
        1,
    );
    let cfg2 = dir.path().join("broken.toml");
    std::fs::write(&cfg2, broken).unwrap();
    let out = registrar_cmd()
        .args(["config", "check", "--config"])
        .arg(&cfg2)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no-such.toml"),
        "{}",
        text(&out)
    );
    let out = nightly(&cfg2);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<_> = r["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "his-deaths");

    // Another run holds the lock: a clear message, exit 3, nothing touched.
    let mut holder = db.client();
    holder.batch_execute("BEGIN").unwrap();
    holder
        .batch_execute(registrar_etl::nightly::NIGHTLY_LOCK)
        .unwrap();
    let runs = db.count("SELECT count(*) FROM registry.import_run");
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another nightly run is in progress"),
        "{}",
        text(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM registry.import_run"), runs);
    drop(holder);

    // A configuration error: exit 3.
    std::fs::write(dir.path().join("bad.toml"), "[registry]\nkey_file = 1\n").unwrap();
    let out = nightly(&dir.path().join("bad.toml"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// Every cdm row, without its generated ids, with person_id replaced by the person's MRN
/// pseudonym: what must be equal between a clean run and an interrupted-and-resumed one.
fn canonical(db: &TestDb) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut c = db.client();
    let mut out = std::collections::BTreeMap::new();
    for t in [
        "person",
        "measurement",
        "observation",
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
        "death",
    ] {
        let cols: Vec<String> = c
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'cdm' AND table_name = $1
                   AND column_name NOT IN ('person_id', $2) ORDER BY ordinal_position",
                &[&t, &format!("{t}_id")],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sql = format!(
            "SELECT m.pseudonym || '|' || concat_ws('|', {}) FROM cdm.{t} x
               JOIN registry.person_map m ON m.person_id = x.person_id AND m.identifier_type = 'mrn'",
            cols.iter().map(|c| format!("coalesce(x.{c}::text, '∅')")).collect::<Vec<_>>().join(", ")
        );
        let mut rows: Vec<String> = c
            .query(&sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        rows.sort();
        out.insert(t.to_string(), rows);
    }
    out
}

#[test]
fn a_night_killed_twenty_times_ends_equal_to_a_clean_night() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 120, 21, 0.02);
    let key = new_key(dir.path(), "k");
    let clean = TestDb::new();
    let cfg_clean = nightly_config(&clean, &dir.path().join("clean"), &src, &key);
    let out = nightly(&cfg_clean);
    assert_eq!(
        out.status.code(),
        Some(1),
        "dirty rows give exit 1: {}",
        text(&out)
    );

    let db = TestDb::new();
    let cfg = nightly_config(&db, &dir.path().join("killed"), &src, &key);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    let mut attempts = 0;
    while kills < 20 {
        attempts += 1;
        assert!(attempts < 200, "could not interrupt 20 runs");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = std::time::Duration::from_millis(30 + rng % 900);
        let mut child = registrar_cmd()
            .args(["nightly", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
        } else if child.wait().unwrap().code() != Some(3) {
            // It finished before the kill: start over on the next round with a shorter fuse.
            continue;
        }
        // Let the server notice the dead client and release its lock.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Resume until a run completes.
    let mut done = None;
    for _ in 0..20 {
        let out = nightly(&cfg);
        if out.status.code() != Some(3) {
            done = Some(out);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = done.expect("a resumed run completes");
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    assert_eq!(
        canonical(&db),
        canonical(&clean),
        "row for row equal to the clean run"
    );
    assert!(db.count("SELECT count(*) FROM registry.import_run WHERE command = 'nightly' AND status = 'failed'") >= 1);
    let v = db.registrar(&["audit", "verify"]);
    assert!(v.status.success(), "the audit chain verifies: {}", text(&v));
    assert_eq!(
        db.count("SELECT count(*) FROM registry.source_file WHERE status = 'loaded'"),
        clean.count("SELECT count(*) FROM registry.source_file WHERE status = 'loaded'")
    );
}

#[test]
fn a_missing_source_folder_fails_its_source_by_name_never_by_path_and_reports_are_0640() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    // Folder names can identify (a patient's name, an MRN): they never appear in the output.
    let gone = dir.path().join("drop-Smith-John-MRN4711");
    let maps = crate::support::repo_file("mappings");
    let cfg = dir.path().join("registrar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n\
             [[source]]\nname = \"trial-csv\"\nkind = \"csv\"\nfolder = \"{}/csv\"\nmapping = \"{}/gbsg2/gbsg2.toml\"\n\n\
             [[source]]\nname = \"bulk-exports\"\nkind = \"fhir-bulk\"\nfolder = \"{}/fhir\"\nmappings = [\"{}/fhir/patient.toml\"]\n\n\
             [[source]]\nname = \"rt-images\"\nkind = \"dicom\"\nfolder = \"{}/dicom\"\noutput = \"{}\"\n",
            db.database_url_arg(),
            key.display(),
            dir.path().join("reports").display(),
            gone.display(),
            maps.display(),
            gone.display(),
            maps.display(),
            gone.display(),
            dir.path().join("dicom-out").display(),
        ),
    )
    .unwrap();
    let out = nightly(&cfg);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report_json = r["report_json"].as_str().unwrap();
    let report_html = r["report_html"].as_str().unwrap();
    for name in ["trial-csv", "bulk-exports", "rt-images"] {
        let s = r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {r}"));
        assert_eq!(s["status"], "failed", "{name}: {s}");
        let e = s["error"].as_str().unwrap();
        assert!(e.contains(name) && e.contains("folder"), "{name}: {e}");
    }
    let stored = std::fs::read_to_string(report_json).unwrap();
    let html = std::fs::read_to_string(report_html).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let errors: String = db
        .client()
        .query_one(
            "SELECT coalesce(string_agg(error, ' | '), '') FROM registry.nightly_source",
            &[],
        )
        .unwrap()
        .get(0);
    for (what, s) in [
        ("stderr", &stderr),
        ("report", &stored),
        ("html", &html),
        ("registry", &errors),
    ] {
        assert!(
            !s.contains("Smith-John") && !s.contains("MRN4711"),
            "{what}: {s}"
        );
    }
    assert!(errors.contains("trial-csv"), "{errors}");
    // Reports are mode 0640, whatever the umask.
    for p in [report_json, report_html] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{p}");
    }
}
