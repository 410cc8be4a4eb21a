//! An operator's bad night: a key file swapped, two runs at once on a new database, a run
//! killed before its report.

use crate::support::{new_key, nightly, nightly_config, registrar_cmd, synth, text, TestDb};
use std::path::Path;

/// The configuration with another key file.
fn with_key(cfg: &Path, old: &Path, new: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace(old.to_str().unwrap(), new.to_str().unwrap());
    let p = cfg.with_file_name("registrar-other-key.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_different_key_is_refused_before_anything_is_read() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 30, 31, 0.0);
    let key = new_key(dir.path(), "k");
    let other = new_key(dir.path(), "other");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let persons = db.count("SELECT count(*) FROM registry.person_map");
    let runs = db.count("SELECT count(*) FROM registry.import_run");
    let audit = db.count("SELECT count(*) FROM registry.audit_log");

    // The key file swapped: exit 3, nothing written, and what to do.
    let swapped = with_key(&cfg, &key, &other);
    let out = nightly(&swapped);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("registry's key") && err.contains("key rotate"),
        "{}",
        text(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registry.person_map"),
        persons
    );
    assert_eq!(db.count("SELECT count(*) FROM registry.import_run"), runs);
    assert_eq!(db.count("SELECT count(*) FROM registry.audit_log"), audit);
    // The same for a hand import and the DICOM index.
    let out = db.registrar(&[
        "--key-file",
        other.to_str().unwrap(),
        "import",
        "csv",
        "--mapping",
        crate::support::repo_file("mappings/hospital/patients.toml")
            .to_str()
            .unwrap(),
        src.join("his/patients.csv").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM registry.person_map"),
        persons
    );

    // The right key back: nothing to do, nothing doubled.
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        db.count("SELECT count(*) FROM registry.person_map"),
        persons
    );

    // A declared rotation makes the new key the registry's.
    let out = db.registrar(&[
        "--key-file",
        other.to_str().unwrap(),
        "--previous-key-file",
        key.to_str().unwrap(),
        "key",
        "rotate",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rotated = std::fs::read_to_string(&swapped).unwrap().replace(
        "[registry]\n",
        &format!("[registry]\nprevious_key_files = [\"{}\"]\n", key.display()),
    );
    std::fs::write(&swapped, rotated).unwrap();
    let out = nightly(&swapped);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT person_id) FROM registry.person_map"),
        db.count("SELECT count(DISTINCT person_id) FROM registry.person_map WHERE key_id = (SELECT key_id FROM registry.registry_key WHERE status = 'current')"),
    );
    // The old key is now refused.
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retired"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_dicom_output_tree_refuses_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(
        crate::support::repo_file("tests/data/dicom/CT_small.dcm"),
        input.join("ct.dcm"),
    )
    .unwrap();
    let key = new_key(dir.path(), "k");
    let other = new_key(dir.path(), "other");
    let out_dir = dir.path().join("out");
    let run = |k: &Path| {
        registrar_cmd()
            .args([
                "--key-file",
                k.to_str().unwrap(),
                "dicom",
                "pseudonymise",
                "--in",
            ])
            .arg(&input)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap()
    };
    let out = run(&key);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let out = run(&other);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("made under key"),
        "{}",
        text(&out)
    );
}

#[test]
fn two_nights_started_together_on_a_new_database_do_not_collide() {
    let db = TestDb::empty();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 20, 32, 0.0);
    let key = new_key(dir.path(), "k");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    let spawn = || {
        registrar_cmd()
            .args(["--json", "nightly", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    for o in &outs {
        let t = text(o);
        assert!(!t.contains("migration failed"), "{t}");
        if o.status.code() == Some(3) {
            assert!(t.contains("another nightly run is in progress"), "{t}");
            assert!(
                t.contains("registrar nightly, pid"),
                "names the holder: {t}"
            );
        }
    }
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert_eq!(
        db.count("SELECT count(DISTINCT person_id) FROM registry.person_map"),
        20
    );
}

#[test]
fn a_run_killed_before_its_report_is_reported_by_the_next() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 300, 33, 0.05);
    let key = new_key(dir.path(), "k");
    let cfg = nightly_config(&db, dir.path(), &src, &key);
    // Kill runs until one dies after it committed a file.
    let mut killed = None;
    for delay_ms in [800u64, 1200, 1800, 2500, 3500, 5000] {
        let mut child = registrar_cmd()
            .args(["nightly", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let n: i64 = db.count(
            "SELECT count(*) FROM registry.import_run r WHERE status = 'running'
                AND EXISTS (SELECT 1 FROM registry.source_file f WHERE f.run_id = r.run_id AND f.status = 'loaded')",
        );
        if n > 0 {
            killed = Some(
                db.count("SELECT max(run_id) FROM registry.import_run WHERE status = 'running'"),
            );
            break;
        }
        if db.count("SELECT count(*) FROM registry.import_run WHERE status = 'running'") == 0
            && db.count("SELECT count(*) FROM registry.nightly_source") > 0
        {
            break; // it finished before the kill: nothing to see
        }
    }
    let Some(killed) = killed else {
        eprintln!("no kill landed between a commit and the report; nothing to check");
        return;
    };
    let out = nightly(&cfg);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let interrupted = r["interrupted"].as_array().unwrap();
    assert!(
        interrupted
            .iter()
            .any(|i| i["run_id"] == killed && i["files_loaded"].as_i64().unwrap() > 0),
        "{r}"
    );
    // The killed run's rejects are in this report's reject groups.
    let killed_rejects = db.count(&format!(
        "SELECT count(*) FROM registry.reject WHERE run_id = {killed}"
    ));
    let this_rejects = db.count(&format!(
        "SELECT count(*) FROM registry.reject WHERE run_id = {}",
        r["run_id"]
    ));
    let reported: i64 = r["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_i64().unwrap())
        .sum();
    assert_eq!(reported, killed_rejects + this_rejects, "{r}");
    let html = std::fs::read_to_string(r["report_html"].as_str().unwrap()).unwrap();
    assert!(html.contains("Interrupted runs"));
}

/// A file that cannot be read (here: a link to a file whose every read fails with EIO,
/// `/proc/self/mem`; in the field a file without read permission, or still being copied) is
/// quarantined as `read_error`, not copied, and not recorded as done: once readable, the next
/// incremental run pseudonymises it.
#[test]
fn a_dicom_file_that_could_not_be_read_is_tried_again() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let f = input.join("ct.dcm");
    std::os::unix::fs::symlink("/proc/self/mem", &f).unwrap();
    let out_dir = dir.path().join("out");
    let key = new_key(dir.path(), "k");
    let run = || {
        let out = registrar_cmd()
            .arg("--database-url")
            .arg(db.database_url_arg())
            .args(["--json", "--key-file"])
            .arg(&key)
            .args(["dicom", "pseudonymise", "--incremental", "--in"])
            .arg(&input)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out, v)
    };
    let (out, v) = run();
    assert_eq!(v["quarantined"], 1, "{}", text(&out));
    let quarantine = dir.path().join("out.quarantine");
    let report = std::fs::read_to_string(quarantine.join("report.jsonl")).unwrap();
    assert!(report.contains("\"read_error\""), "{report}");
    // Nothing copied: there was nothing to copy.
    let copies = std::fs::read_dir(&quarantine)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "dcm")
        })
        .count();
    assert_eq!(copies, 0);
    // Readable now: the next incremental run pseudonymises it (not "unchanged").
    std::fs::remove_file(&f).unwrap();
    std::fs::copy(
        crate::support::repo_file("tests/data/dicom/CT_small.dcm"),
        &f,
    )
    .unwrap();
    let (out, v) = run();
    assert_eq!(v["pseudonymised"], 1, "{}", text(&out));
    let (out, v) = run();
    assert_eq!(v["skipped"], 1, "now it is unchanged: {}", text(&out));
}

/// The fault harness: a night aborted (as by `kill -9`) at chosen events of every source
/// kind (after the first committed file of a CSV and an xlsx source, inside a FHIR bulk
/// export, after a few DICOM files are written, after the DICOM index, inside a FHIR
/// endpoint pull, and just before the report), resumed by one more night each time, ends equal to a clean night, table by
/// table, person map, records and research views included.
#[test]
fn a_night_aborted_at_chosen_events_of_every_source_kind_ends_equal_to_a_clean_night() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut o = registrar_synth::SynthOptions::new(30, 41, src.clone());
    o.dirt = 0.02;
    o.dicom = true;
    o.dicom_slices = 4;
    o.dicom_matrix = 16;
    registrar_synth::generate(&o, &|_| {}).unwrap();
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    std::fs::rename(src.join("fhir"), dir.path().join("exports/e1")).unwrap();
    // A FHIR endpoint serving another institution's patients.
    let mut ob = registrar_synth::SynthOptions::new(8, 42, dir.path().join("b"));
    ob.dicom = false;
    ob.first_patient_number = 7001;
    registrar_synth::generate(&ob, &|_| {}).unwrap();
    let server = crate::support::fhir_server::FhirServer::start(None);
    server.load_synth(&dir.path().join("b/fhir"));
    // (Past the server's _lastUpdated granularity, as the FHIR tests do.)
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let key = new_key(dir.path(), "k");
    let maps = crate::support::repo_file("mappings");
    let config = |db: &TestDb, name: &str| {
        let cfg = nightly_config(db, &dir.path().join(name), &src, &key);
        let fhir: Vec<String> = registrar_etl::demo::FHIR_MAPPINGS
            .iter()
            .map(|m| format!("\"{}/fhir/{m}.toml\"", maps.display()))
            .collect();
        let mut t = std::fs::read_to_string(&cfg).unwrap();
        t.push_str(&format!(
            "[[source]]\nname = \"fhir-exports\"\nkind = \"fhir-bulk\"\nfolder = \"{}\"\nmappings = [{}]\n\n\
             [[source]]\nname = \"rt-dicom\"\nkind = \"dicom\"\nfolder = \"{}\"\noutput = \"{}\"\n\n\
             [[source]]\nname = \"fhir-endpoint\"\nkind = \"fhir\"\nendpoint = \"{}\"\nmappings = [{}]\n",
            dir.path().join("exports").display(),
            fhir.join(", "),
            src.join("dicom").display(),
            dir.path().join(name).join("dicom-out").display(),
            server.base,
            fhir.join(", "),
        ));
        std::fs::write(&cfg, t).unwrap();
        cfg
    };
    let clean = TestDb::new();
    let out = nightly(&config(&clean, "clean"));
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );

    let db = TestDb::new();
    let cfg = config(&db, "aborted");
    for event in [
        "unit:his-patients:1",
        "unit:his-pathology:1",
        "unit:study_neoadj-2019:1",
        "unit:fhir-exports:3",
        "dicom-file:rt-dicom:5",
        "unit:rt-dicom:1",
        "unit:fhir-endpoint:2",
        "report:1",
    ] {
        let out = registrar_cmd()
            .env(registrar_etl::failpoint::VAR, event)
            .args(["--json", "nightly", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "the run was aborted at {event}: {}",
            text(&out)
        );
    }
    let out = nightly(&cfg);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !r["interrupted"].as_array().unwrap().is_empty(),
        "the report lists the runs that died: {r}"
    );

    let views = |db: &TestDb| -> Vec<String> {
        let mut v: Vec<String> = db
            .client()
            .query(
                "SELECT ((to_jsonb(m) - 'person_id') || jsonb_build_object('p', p.person_source_value))::text
                   FROM research.modeling_cohort m JOIN cdm.person p USING (person_id)",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (
        crate::support::registry_fingerprint(&db),
        crate::support::registry_fingerprint(&clean),
    );
    for (table, rows) in &b {
        assert_eq!(
            a.get(table),
            Some(rows),
            "{table} differs from the clean night"
        );
    }
    assert_eq!(a.len(), b.len());
    assert!(!b["cdm.image_occurrence"].is_empty());
    assert_eq!(views(&db), views(&clean), "research.modeling_cohort");
    let v = db.registrar(&["audit", "verify"]);
    assert!(v.status.success(), "{}", text(&v));
}

/// A full disk under the DICOM output: the source fails naming the file whose write failed
/// first (never the input bookkeeping), keeps the count of files it did write, and the next
/// night with room finishes the tree.
#[test]
fn a_full_disk_names_the_dicom_file_and_keeps_what_was_written() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to mount a small tmpfs; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut o = registrar_synth::SynthOptions::new(6, 3, src.clone());
    o.dicom = true;
    o.dicom_slices = 4;
    o.dicom_matrix = 16;
    registrar_synth::generate(&o, &|_| {}).unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=120k", "tmpfs"])
        .arg(&disk)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("cannot mount a tmpfs here; skipped");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(disk.clone());
    let db = TestDb::new();
    let key = new_key(dir.path(), "k");
    let cfg = dir.path().join("registrar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n\
             [[source]]\nname = \"rt-dicom\"\nkind = \"dicom\"\nfolder = \"{}\"\noutput = \"{}\"\nquarantine = \"{}\"\n",
            db.database_url_arg(),
            key.display(),
            dir.path().join("reports").display(),
            src.join("dicom").display(),
            disk.join("out").display(),
            dir.path().join("quarantine").display(),
        ),
    )
    .unwrap();
    let out = nightly(&cfg);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &r["sources"][0];
    assert_eq!(s["status"], "failed", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("No space left")
            && error.contains(".dcm")
            && !error.contains("registrar-inputs"),
        "{error}"
    );
    let written = walk_files(&disk.join("out"));
    assert!(written > 0, "some files fit");
    assert_eq!(s["files_loaded"].as_i64().unwrap(), written, "{s}");

    // Room again: the next night finishes the tree.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=20m"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(grown.success());
    let out = nightly(&cfg);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &r["sources"][0];
    assert_ne!(s["status"], "failed", "{s}");
    // (Its series wait for their patients: no clinical source here.) Every input is in the
    // output once: the files written before the disk filled are skipped, or written again
    // under the same names when the full disk also kept the input bookkeeping from being
    // saved.
    let files = s["dicom"]["files"].as_i64().unwrap();
    assert_eq!(walk_files(&disk.join("out")), files, "{s}");
    assert_eq!(
        s["dicom"]["pseudonymised"].as_i64().unwrap() + s["dicom"]["skipped"].as_i64().unwrap(),
        files,
        "{s}"
    );
}

/// The DICOM files under `dir` (not the bookkeeping files).
fn walk_files(dir: &Path) -> i64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            n += walk_files(&p);
        } else if p.extension().is_some_and(|x| x == "dcm") {
            n += 1;
        }
    }
    n
}
