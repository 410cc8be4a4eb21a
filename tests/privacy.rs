//! Keys, pseudonyms, the person map and the audit log, end to end.

use crate::support::{new_key, registrar_cmd, text, TestDb};
use registrar_anonymizer::audit::{AuditEntry, GENESIS_HASH};
use registrar_anonymizer::dateshift::{DatePolicy, ShiftWindow};
use registrar_anonymizer::key::Key;
use registrar_anonymizer::pseudonym::IdentifierType;
use registrar_etl::privacy::audit::{self, Record};
use registrar_etl::privacy::keys::{KeyOpts, Keys};
use registrar_etl::privacy::persons::{PersonResolver, ResolveError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A valid Belgian NISS (born 1985-07-30, check digits computed).
const NISS: &str = "85.07.30-033.28";
const NISS_DIGITS: &str = "85073003328";

fn keys(key: &Path, domain: &str, previous: &[&Path]) -> Keys {
    KeyOpts {
        key_file: Some(key.to_path_buf()),
        domain: domain.to_string(),
        previous_key_file: previous.iter().map(|p| p.to_path_buf()).collect(),
    }
    .load()
    .unwrap()
}

fn lookup(db: &TestDb, key: &Path, domain: &str, ty: &str, id: &str) -> serde_json::Value {
    let out = db.registrar(&[
        "--json",
        "--key-file",
        key.to_str().unwrap(),
        "--domain",
        domain,
        "pseudonym",
        "lookup",
        "--identifier",
        id,
        "--type",
        ty,
        "--why",
        "test of re-identification",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn key_files_are_private_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.trim().split(':').nth(1).unwrap().to_string();

    // A second `key new` to the same file is refused.
    let out = registrar_cmd()
        .args(["key", "new", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));

    // Group-readable: refused with a clear error that names the fix, not the key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = registrar_cmd()
        .args(["key", "id", "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{}", text(&out));
    assert!(!err.contains(&secret) && !String::from_utf8_lossy(&out.stdout).contains(&secret));

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = registrar_cmd()
        .args(["key", "id"])
        .env("REGISTRAR_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        id.starts_with("k1-") && !secret.contains(&id[3..]),
        "key id is derived, not the key: {id}"
    );

    // No key at all: the error says how to get one.
    let out = registrar_cmd().args(["key", "id"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("registrar key new"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_process_holding_the_key_leaves_no_core_dump() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let keys = keys(&key, "registry", &[]);
    drop(keys);
    // SAFETY: reading this process's own limits and flags.
    let (rl, dumpable) = unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        libc::getrlimit(libc::RLIMIT_CORE, &mut rl);
        (rl, libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0))
    };
    assert_eq!((rl.rlim_cur, dumpable), (0, 0));
}

#[test]
fn pseudonyms_are_deterministic_across_processes_and_differ_by_domain() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    let a = lookup(&db, &key, "registry", "niss", NISS);
    let b = lookup(&db, &key, "registry", "niss", NISS_DIGITS);
    assert_eq!(
        a["pseudonym"], b["pseudonym"],
        "normalised NISS, separate processes"
    );
    let p = a["pseudonym"].as_str().unwrap();
    assert_eq!(p.len(), 43);
    // The same computation in this process.
    let k = keys(&key, "registry", &[]);
    assert_eq!(
        k.current
            .person(IdentifierType::Niss, NISS)
            .unwrap()
            .as_str(),
        p
    );

    let study = lookup(&db, &key, "study:neoadj-2019", "niss", NISS);
    assert_ne!(
        study["pseudonym"], a["pseudonym"],
        "a study export cannot be joined"
    );
    let mrn = lookup(&db, &key, "registry", "mrn", NISS_DIGITS);
    assert_ne!(
        mrn["pseudonym"], a["pseudonym"],
        "identifier type is part of the input"
    );
    // Another key, another pseudonym.
    let key2 = new_key(dir.path(), "k2");
    assert_ne!(
        lookup(&db, &key2, "registry", "niss", NISS)["pseudonym"],
        a["pseudonym"]
    );
    // Two registries sharing a network key produce the same pseudonym.
    let db2 = TestDb::new();
    assert_eq!(
        lookup(&db2, &key, "network:eu-breast", "niss", NISS)["pseudonym"],
        lookup(&db, &key, "network:eu-breast", "niss", NISS)["pseudonym"]
    );
}

fn resolve(
    db: &mut postgres::Client,
    r: &mut PersonResolver<'_>,
    ids: &[(IdentifierType, &str)],
) -> Result<i32, ResolveError> {
    let mut tx = db.transaction().unwrap();
    let res = r.resolve(&mut tx, ids).map(|x| x.person_id);
    tx.commit().unwrap();
    res
}

#[test]
fn the_same_person_in_two_sources_is_one_person_and_key_rotation_keeps_ids() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let old = new_key(dir.path(), "old");
    let k = keys(&old, "registry", &[]);
    let mut c = db.client();
    let mut r = PersonResolver::new(&k, DatePolicy::default(), None);
    // Source A (hospital export) carries MRN and NISS; source B (FHIR) only the NISS;
    // source C (DICOM) only the MRN, formatted differently.
    let a = resolve(
        &mut c,
        &mut r,
        &[
            (IdentifierType::Mrn, "MRN0001234"),
            (IdentifierType::Niss, NISS),
        ],
    )
    .unwrap();
    let mut r2 = PersonResolver::new(&k, DatePolicy::default(), None);
    let b = resolve(&mut c, &mut r2, &[(IdentifierType::Niss, NISS_DIGITS)]).unwrap();
    let cc = resolve(&mut c, &mut r2, &[(IdentifierType::Mrn, " mrn0001234 ")]).unwrap();
    assert_eq!((a, a), (b, cc));
    let other = resolve(&mut c, &mut r2, &[(IdentifierType::Mrn, "MRN0009999")]).unwrap();
    assert_ne!(other, a);
    // Identifiers that point at two different persons are refused, naming no identifier.
    let err = resolve(
        &mut c,
        &mut r2,
        &[
            (IdentifierType::Mrn, "MRN0009999"),
            (IdentifierType::Niss, NISS),
        ],
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::Conflict(..)));
    assert!(
        !err.to_string().contains("9999") && !err.to_string().contains("85"),
        "{err}"
    );
    // An invalid NISS is an error without the value.
    let err = resolve(
        &mut c,
        &mut r2,
        &[(IdentifierType::Niss, "85.07.30-033.29")],
    )
    .unwrap_err();
    assert!(!err.to_string().contains("033"), "{err}");

    // Same shift for the same person, in window, never 0; kept dates give 0.
    let mut tx = c.transaction().unwrap();
    let s1 = r2
        .resolve(&mut tx, &[(IdentifierType::Mrn, "MRN0001234")])
        .unwrap()
        .shift_days;
    let s2 = r
        .resolve(
            &mut tx,
            &[
                (IdentifierType::Mrn, "mrn0001234"),
                (IdentifierType::Niss, NISS),
            ],
        )
        .unwrap()
        .shift_days;
    assert_eq!(s1, s2);
    assert!((-365..=-30).contains(&s1));
    let mut keep = PersonResolver::new(&k, DatePolicy::KeepTrueDates, None);
    assert_eq!(
        keep.resolve(&mut tx, &[(IdentifierType::Mrn, "MRN0001234")])
            .unwrap()
            .shift_days,
        0
    );
    let narrow = DatePolicy::Shift(ShiftWindow::new(-10, -5).unwrap());
    let mut n = PersonResolver::new(&k, narrow, None);
    assert!((-10..=-5).contains(
        &n.resolve(&mut tx, &[(IdentifierType::Mrn, "MRN0001234")])
            .unwrap()
            .shift_days
    ));
    tx.commit().unwrap();

    // Key rotation: the next import computes both pseudonyms and bridges; ids stay.
    let new = new_key(dir.path(), "new");
    let out = db.registrar(&[
        "--key-file",
        new.to_str().unwrap(),
        "--previous-key-file",
        old.to_str().unwrap(),
        "key",
        "rotate",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let k2 = keys(&new, "registry", &[&old]);
    let mut r3 = PersonResolver::new(&k2, DatePolicy::default(), None);
    assert_eq!(
        resolve(&mut c, &mut r3, &[(IdentifierType::Niss, NISS)]).unwrap(),
        a
    );
    assert_eq!(
        resolve(&mut c, &mut r3, &[(IdentifierType::Mrn, "MRN0009999")]).unwrap(),
        other
    );
    assert_eq!(r3.counts.bridged_from_previous_key, 2);
    let newcomer = resolve(&mut c, &mut r3, &[(IdentifierType::Mrn, "MRN0005555")]).unwrap();
    assert!(newcomer != a && newcomer != other);
    // After the bridge, the new key alone finds them.
    let k3 = keys(&new, "registry", &[]);
    let mut r4 = PersonResolver::new(&k3, DatePolicy::default(), None);
    assert_eq!(
        resolve(&mut c, &mut r4, &[(IdentifierType::Niss, NISS_DIGITS)]).unwrap(),
        a
    );
    assert_eq!(r4.counts.persons_created, 0);
    let out = db.registrar(&["--key-file", new.to_str().unwrap(), "key", "status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 of 3 persons"),
        "{}",
        text(&out)
    );

    // The lookup finds the person and is audited.
    let v = lookup(&db, &new, "registry", "niss", NISS);
    assert_eq!(v["person_id"], a);
    assert_eq!(
        db.count("SELECT count(*) FROM registry.audit_log WHERE action = 'lookup'"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registry.audit_log WHERE action = 'key rotation'"),
        1
    );
    // No identifier anywhere in the registry.
    let dump: String = c
        .query_one(
            "SELECT string_agg(t::text, '|') FROM registry.person_map t",
            &[],
        )
        .unwrap()
        .get(0);
    for needle in ["85073003328", "MRN0001234", "MRN0009999", "0001234"] {
        assert!(!dump.contains(needle));
    }
}

fn add_entries(db: &TestDb, n: usize) {
    let mut c = db.client();
    for i in 0..n {
        audit::append_now(
            &mut c,
            &Record {
                action: audit::action::IMPORT_BATCH,
                run_id: None,
                locator_hash: Some("c2FtcGxlLWxvY2F0b3ItaGFzaC1ub3QtYS1wYXRoLTAwMDA"),
                key_id: Some("k1-0123456789abcdef"),
                detail: serde_json::json!({ "rules": { "identifiers_pseudonymised": i, "free_text_dropped": 2 }, "dates": "shift -365..-30" }),
            },
        )
        .unwrap();
    }
}

/// The privacy officer's checkpoint key of these tests: (signer key file, verifier key).
fn officer() -> &'static (PathBuf, String) {
    static OFFICER: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();
    OFFICER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("officer.key");
        let out = registrar_cmd()
            .args(["audit", "keygen", "--name", "privacy-officer.test", "--out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let vkey = stdout
            .lines()
            .find_map(|l| l.strip_prefix("verifier key: "))
            .expect("keygen prints the verifier key")
            .to_string();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the signer key is for its owner only");
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&vkey));
        (path, vkey)
    })
}

fn verify(db: &TestDb, checkpoints: &[&Path]) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    for c in checkpoints {
        args.push("--checkpoint");
        args.push(c.to_str().unwrap());
    }
    if !checkpoints.is_empty() {
        args.push("--verifier-key");
        args.push(&officer().1);
    }
    let out = db.registrar(&args);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        text(&out)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn checkpoint(db: &TestDb, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let out = db.registrar(&[
        "audit",
        "checkpoint",
        "--signing-key",
        officer().0.to_str().unwrap(),
        "--out",
        p.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    p
}

fn tamper(db: &TestDb, sql: &str) {
    db.client()
        .batch_execute(&format!(
            "ALTER TABLE registry.audit_log DISABLE TRIGGER USER; {sql}; ALTER TABLE registry.audit_log ENABLE TRIGGER USER;"
        ))
        .unwrap();
}

#[test]
fn the_audit_log_is_append_only() {
    let db = TestDb::new();
    add_entries(&db, 2);
    let mut c = db.client();
    for sql in [
        "UPDATE registry.audit_log SET action = 'x' WHERE seq = 1",
        "DELETE FROM registry.audit_log WHERE seq = 2",
        "TRUNCATE registry.audit_log",
    ] {
        let e = c.batch_execute(sql).unwrap_err();
        assert!(
            e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"),
            "{sql}: {e:?}"
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM registry.audit_log"), 2);
}

#[test]
fn concurrent_appends_never_fork_the_chain() {
    let db = TestDb::new();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| add_entries(&db, 15));
        }
    });
    assert_eq!(db.count("SELECT count(*) FROM registry.audit_log"), 90);
    let (ok, out) = verify(&db, &[]);
    assert!(ok, "{out}");
}

#[test]
fn every_kind_of_tampering_is_caught_with_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();

    // Edit without rehash.
    let db = TestDb::new();
    add_entries(&db, 6);
    assert!(verify(&db, &[]).0);
    tamper(&db, "UPDATE registry.audit_log SET detail = replace(detail, '\"free_text_dropped\":2', '\"free_text_dropped\":0') WHERE seq = 3");
    let (ok, out) = verify(&db, &[]);
    assert!(!ok && out.contains("first bad entry #3"), "{out}");

    // Delete from the middle.
    let db = TestDb::new();
    add_entries(&db, 6);
    tamper(&db, "DELETE FROM registry.audit_log WHERE seq = 4");
    let (ok, out) = verify(&db, &[]);
    assert!(!ok && out.contains("first bad entry #4"), "{out}");

    // Insert a forged entry at the end (not chained).
    let db = TestDb::new();
    add_entries(&db, 5);
    tamper(&db, "INSERT INTO registry.audit_log SELECT 6, now(), 'mallory', 'postgres', 'lookup', NULL, NULL, NULL, '{}', repeat('0', 64), repeat('a', 64)");
    let (ok, out) = verify(&db, &[]);
    assert!(!ok && out.contains("first bad entry #6"), "{out}");

    // Truncate the tail: only a checkpoint can tell.
    let db = TestDb::new();
    add_entries(&db, 6);
    let cp = checkpoint(&db, dir.path(), "cp-trunc.json"); // covers #1..#7 (#7: its own entry)
    tamper(&db, "DELETE FROM registry.audit_log WHERE seq >= 5");
    assert!(
        verify(&db, &[]).0,
        "without a checkpoint a clean truncation looks intact"
    );
    let (ok, out) = verify(&db, &[&cp]);
    assert!(!ok && out.contains("first bad entry #5"), "{out}");

    // Deleting only the checkpoint's own entry (the tail after the previous head) is caught.
    let db = TestDb::new();
    add_entries(&db, 3);
    let cp = checkpoint(&db, dir.path(), "cp-own.json");
    assert_eq!(db.count("SELECT max(seq) FROM registry.audit_log"), 4);
    assert!(verify(&db, &[&cp]).0);
    tamper(&db, "DELETE FROM registry.audit_log WHERE seq = 4");
    let (ok, out) = verify(&db, &[&cp]);
    assert!(!ok && out.contains("first bad entry #4"), "{out}");

    // A checkpoint is only as good as its signature: an edited one, one without a verifier
    // key, one checked with another key, and one of another registry are refused.
    let db = TestDb::new();
    add_entries(&db, 3);
    let cp = checkpoint(&db, dir.path(), "cp-signed.json");
    let note = std::fs::read_to_string(&cp).unwrap();
    let edited = dir.path().join("cp-edited.json");
    std::fs::write(&edited, note.replacen("\n4\n", "\n2\n", 1)).unwrap();
    let out = db.registrar(&[
        "audit",
        "verify",
        "--checkpoint",
        edited.to_str().unwrap(),
        "--verifier-key",
        &officer().1,
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("not signed by any of the given verifier keys"),
        "{}",
        text(&out)
    );
    let out = db.registrar(&["audit", "verify", "--checkpoint", cp.to_str().unwrap()]);
    assert!(
        !out.status.success() && text(&out).contains("--verifier-key"),
        "{}",
        text(&out)
    );
    let other = registrar_anonymizer::note::SignerKey::generate("privacy-officer.test").unwrap();
    let out = db.registrar(&[
        "audit",
        "verify",
        "--checkpoint",
        cp.to_str().unwrap(),
        "--verifier-key",
        &other.verifier().to_text(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let elsewhere = TestDb::new();
    add_entries(&elsewhere, 3);
    let out = elsewhere.registrar(&[
        "audit",
        "verify",
        "--checkpoint",
        cp.to_str().unwrap(),
        "--verifier-key",
        &officer().1,
    ]);
    assert!(
        !out.status.success() && text(&out).contains("another log"),
        "{}",
        text(&out)
    );

    // Rewrite history from #3 and recompute every hash: only a checkpoint can tell.
    let db = TestDb::new();
    add_entries(&db, 6);
    let cp1 = checkpoint(&db, dir.path(), "cp1.json");
    add_entries(&db, 2);
    let cp2 = checkpoint(&db, dir.path(), "cp2.json");
    rewrite_from(&db, 3);
    assert!(
        verify(&db, &[]).0,
        "the rewritten chain is internally consistent"
    );
    // A signed checkpoint records the head only: the rewrite is located at the first
    // checkpoint it contradicts (#7, cp1's own entry), i.e. at or before it.
    let (ok, out) = verify(&db, &[&cp1, &cp2]);
    assert!(!ok && out.contains("first bad entry #7"), "{out}");
    assert!(out.contains("at or before"), "{out}");
    // Checkpointing an altered log is refused.
    let db = TestDb::new();
    add_entries(&db, 3);
    tamper(
        &db,
        "UPDATE registry.audit_log SET actor_os_user = 'nobody' WHERE seq = 2",
    );
    let out = db.registrar(&[
        "audit",
        "checkpoint",
        "--signing-key",
        officer().0.to_str().unwrap(),
        "--out",
        dir.path().join("never.json").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("#2"),
        "{}",
        text(&out)
    );
}

/// What a superuser could do: change entry `from` and re-chain everything after it.
fn rewrite_from(db: &TestDb, from: i64) {
    let mut c = db.client();
    let mut entries = Vec::new();
    audit::for_each_entry(&mut c, None, |e| {
        entries.push(e);
        Ok(())
    })
    .unwrap();
    let mut prev = GENESIS_HASH.to_string();
    let mut sql = String::from("ALTER TABLE registry.audit_log DISABLE TRIGGER USER;");
    for s in entries {
        let mut e: AuditEntry = s.entry;
        if e.seq == from {
            e.actor_os_user = "somebody-else".into();
        }
        e.prev_hash = prev.clone();
        let h = e.compute_hash();
        if e.seq >= from {
            sql.push_str(&format!(
                "UPDATE registry.audit_log SET actor_os_user = '{}', prev_hash = '{}', entry_hash = '{}' WHERE seq = {};",
                e.actor_os_user, e.prev_hash, h, e.seq
            ));
        }
        prev = h;
    }
    sql.push_str("ALTER TABLE registry.audit_log ENABLE TRIGGER USER;");
    c.batch_execute(&sql).unwrap();
}

#[test]
fn the_audit_report_speaks_to_a_privacy_officer() {
    let db = TestDb::new();
    add_entries(&db, 3);
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    lookup(&db, &key, "registry", "mrn", "MRN0001234");
    let out = db.registrar(&["audit", "report"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("import batch pseudonymised") && s.contains("lookup"),
        "{s}"
    );
    assert!(
        s.contains("free text dropped") && s.contains("6"),
        "rule totals: {s}"
    );
    assert!(s.contains("why: test of re-identification"), "{s}");
    assert!(!s.contains("MRN0001234"));
    // The head of the log is printed, to be kept outside the database.
    let head: String = db
        .client()
        .query_one(
            "SELECT entry_hash FROM registry.audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        s.contains("Head of the log: entry #4") && s.contains(&head),
        "{s}"
    );
    for (fmt, marker) in [
        ("csv", "seq,time_utc"),
        ("json", "\"per_action\""),
        ("html", "<table>"),
    ] {
        let out = db.registrar(&["audit", "report", "--format", fmt, "--since", "2000-01-01"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(marker),
            "{fmt}"
        );
    }
    let out = db.registrar(&["audit", "report", "--since", "2999-01-01"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 entries"),
        "{}",
        text(&out)
    );
    let _ = Key::generate();
}
