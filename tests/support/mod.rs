//! Test harness: a fresh database per test, and the `registrar` binary.

#![allow(dead_code)]

use registrar_etl::db::{self, embedded::EmbeddedCluster, DbTarget};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The server tests create their databases on.
pub fn server() -> &'static DbTarget {
    static SERVER: OnceLock<DbTarget> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => DbTarget::from_url(&url)
            .expect("DATABASE_URL")
            .with_dbname("postgres"),
        _ => {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            let dir = std::env::temp_dir().join(format!("registrar-test-pg-{uid}"));
            let cluster = EmbeddedCluster::new(dir).expect("embedded cluster");
            cluster.ensure_running().expect("start embedded cluster");
            cluster.target()
        }
    })
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub target: DbTarget,
    name: String,
}

impl TestDb {
    /// A fresh, migrated database.
    pub fn new() -> Self {
        let t = Self::empty();
        db::migrate(&mut t.target.diesel().unwrap()).expect("migrate");
        t
    }

    /// A fresh database with nothing in it.
    pub fn empty() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "rt_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            nanos
        );
        let mut c = server().client().expect("connect to test server");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        Self {
            target: server().with_dbname(&name),
            name,
        }
    }

    pub fn client(&self) -> postgres::Client {
        self.target.client().unwrap()
    }

    pub fn url(&self) -> String {
        self.target.conninfo()
    }

    /// Run `registrar` with this database (via --database-url).
    pub fn registrar(&self, args: &[&str]) -> Output {
        registrar_cmd()
            .arg("--database-url")
            .arg(self.database_url_arg())
            .args(args)
            .output()
            .expect("run registrar")
    }

    /// A URL form for --database-url (the embedded cluster's socket as a URL host).
    pub fn database_url_arg(&self) -> String {
        match &self.target {
            DbTarget::Url(u) => u.to_string(),
            DbTarget::Socket {
                dir,
                port,
                user,
                dbname,
            } => format!(
                "postgresql://{user}@{}:{port}/{dbname}",
                dir.display().to_string().replace('/', "%2F")
            ),
        }
    }

    /// The --database-url form, logging in as `role` instead.
    pub fn url_as(&self, role: &str) -> String {
        let url = self.database_url_arg();
        let (scheme_user, rest) = url.split_once('@').expect("a URL with a user");
        let scheme = scheme_user.split("//").next().unwrap();
        format!("{scheme}//{role}@{rest}")
    }

    /// A client logged in as `role`.
    pub fn connect_as(&self, role: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_as(role), postgres::NoTls).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = server().client() {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The `registrar` binary built for these tests.
pub fn registrar_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registrar"));
    c.env_remove("DATABASE_URL")
        .env_remove("REGISTRAR_KEY_FILE");
    c
}

/// stdout and stderr as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A file in the repository (tests/data/...).
pub fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// A new key file made by `registrar key new`.
pub fn new_key(dir: &std::path::Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let out = registrar_cmd()
        .args(["key", "new", "--out"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    p
}

/// `registrar --json --key-file KEY import KIND --mapping M [extra...] INPUTS...` on `db`:
/// (exit code, the JSON it printed, everything it printed).
pub fn import_json(
    db: &TestDb,
    key: &std::path::Path,
    kind: &str,
    mapping: &std::path::Path,
    inputs: &[&std::path::Path],
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--key-file".into(),
        key.display().to_string(),
        "import".into(),
        kind.into(),
        "--mapping".into(),
        mapping.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = db.registrar(&argv);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v, text(&out))
}

/// `registrar --json nightly --config CONFIG`.
pub fn nightly(config: &std::path::Path) -> Output {
    registrar_cmd()
        .args(["--json", "nightly", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// The hospital export tables and their mapping files (mappings/hospital/).
pub use registrar_etl::demo::HIS_TABLES;

/// Generate a synthetic cohort into `dir/src`.
pub fn synth(dir: &std::path::Path, patients: u64, seed: u64, dirt: f64) -> PathBuf {
    synth_institution(
        dir,
        patients,
        seed,
        dirt,
        registrar_synth::DEFAULT_INSTITUTION,
        1,
    )
}

/// Generate a synthetic cohort of one institution into `dir/src`, patients numbered from
/// `first_patient`.
pub fn synth_institution(
    dir: &std::path::Path,
    patients: u64,
    seed: u64,
    dirt: f64,
    institution: &str,
    first_patient: u64,
) -> PathBuf {
    let out = dir.join("src");
    let mut o = registrar_synth::SynthOptions::new(patients, seed, out.clone());
    o.dirt = dirt;
    o.institution = institution.to_string();
    o.first_patient_number = first_patient;
    o.dicom = false;
    registrar_synth::generate(&o, &|_| {}).expect("synth");
    out
}

/// Import every HIS file and both study sheets of a synthetic cohort through the shipped
/// mappings; returns (mapping file, registrar's --json output) per import.
pub fn import_hospital(
    db: &TestDb,
    key: &std::path::Path,
    src: &std::path::Path,
) -> Vec<(String, serde_json::Value)> {
    // The vocabulary subset shipped with registrar, as the demo loads it.
    let out = db.registrar(&["vocab", "load"]);
    assert!(out.status.success(), "vocab load: {}", text(&out));
    let mut runs = Vec::new();
    let mut one = |kind: &str, mapping: &str, input: PathBuf| {
        let m = repo_file(&format!("mappings/hospital/{mapping}.toml"));
        let out = db.registrar(&[
            "--json",
            "--key-file",
            key.to_str().unwrap(),
            "import",
            kind,
            "--mapping",
            m.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{mapping}: {}",
            text(&out)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
        runs.push((mapping.to_string(), v));
    };
    for t in HIS_TABLES {
        // The files the nightly source would read (the archive's patients, the dated
        // pathology re-exports), in the order it reads them.
        for f in his_files(src, t) {
            one("csv", t, f);
        }
    }
    for sheet in registrar_etl::demo::STUDY_SHEETS {
        one("xlsx", sheet, src.join("study/study_nurse.xlsx"));
    }
    runs
}

/// The files of one HIS table in a synthetic export, as the nightly source finds them.
pub fn his_files(src: &std::path::Path, table: &str) -> Vec<PathBuf> {
    let his = src.join("his");
    let found =
        registrar_etl::import::identity::find_files(&his, &registrar_etl::demo::his_pattern(table))
            .unwrap();
    found.files.into_iter().map(|(p, _)| p).collect()
}

/// A registrar.toml for a synthetic cohort in `src`, every HIS table and both study sheets.
pub fn nightly_config(
    db: &TestDb,
    dir: &std::path::Path,
    src: &std::path::Path,
    key: &std::path::Path,
) -> PathBuf {
    let mut t = format!(
        "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n",
        db.database_url_arg(),
        key.display(),
        dir.join("reports").display()
    );
    t.push_str(&registrar_etl::demo::hospital_sources_toml(
        &src.join("his").display().to_string(),
        &src.join("study").display().to_string(),
        &repo_file("mappings/hospital").display().to_string(),
    ));
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("registrar.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// The registry-domain keys of a key file, for computing pseudonyms in tests.
pub fn registry_keys(key: &std::path::Path) -> registrar_etl::privacy::keys::Keys {
    registrar_etl::privacy::keys::KeyOpts {
        key_file: Some(key.to_path_buf()),
        domain: registrar_etl::privacy::keys::DEFAULT_DOMAIN.into(),
        previous_key_file: vec![],
    }
    .load()
    .unwrap()
}
pub mod fhir_server;
pub mod medplum_server;
pub mod smart_gate;

/// What the registry holds, without what differs between two runs that loaded the same
/// data (row ids, person ids, run and file ids): every cdm row as JSON with its person's
/// pseudonym instead of ids, the person map's pseudonyms, live records, lineage and reject
/// counts. Two registries loaded from the same sources, however interrupted, compare equal.
pub fn registry_fingerprint(db: &TestDb) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut c = db.client();
    let mut out = std::collections::BTreeMap::new();
    let tables = registrar_etl::mapping::check::EMIT_TABLES
        .iter()
        .filter(|t| **t != "episode_event")
        .chain(&["image_occurrence", "image_feature"]);
    for t in tables {
        let sql = format!(
            "SELECT ((SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(t))
                       WHERE key NOT LIKE '%\\_id' OR key LIKE '%\\_concept\\_id')
                     || jsonb_build_object('person', p.person_source_value))::text
               FROM cdm.{t} t LEFT JOIN cdm.person p USING (person_id)"
        );
        let mut rows: Vec<String> = c
            .query(&sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect();
        rows.sort();
        out.insert(format!("cdm.{t}"), rows);
    }
    let one = |c: &mut postgres::Client, sql: &str| -> Vec<String> {
        let mut v: Vec<String> = c
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort();
        v
    };
    out.insert(
        "registry.person_map".into(),
        one(
            &mut c,
            "SELECT pseudonym || ' ' || identifier_type FROM registry.person_map",
        ),
    );
    let mut records = Vec::new();
    for source in one(
        &mut c,
        "SELECT DISTINCT source_name FROM registry.record_set",
    ) {
        let index = registrar_etl::ledger::Ledger::record_index(&mut c, &source).unwrap();
        for (k, s) in index.iter() {
            records.push(format!(
                "{source} {} {} {}",
                hex::encode(k),
                s.content,
                s.deleted
            ));
        }
    }
    records.sort();
    out.insert("registry.records".into(), records);
    out.insert(
        "registry.lineage".into(),
        one(
            &mut c,
            "SELECT cdm_table || ' ' || count(*) FROM registry.lineage GROUP BY cdm_table",
        ),
    );
    out
}
