//! A second, independent FHIR R4 server for the tests: Medplum's FHIR router from npm
//! (`@medplum/fhir-router` with its in-memory repository) behind the small Node HTTP shell
//! `tests/support/medplum/server.mjs`, one per test on a loopback port. The shell leaves FHIR
//! to Medplum and only writes the paging links of search Bundles (see [`Paging`]) and the
//! capability statement.

use super::fhir_server::{http, ndjson_resources};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the shell pages type-level search Bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Medplum's own Bundles: no next links (a page holds `_count` matches, or all of them).
    None,
    /// Next links repeat the search with `_offset=N`.
    Offset,
    /// HAPI-style opaque next links: `base?_getpages=<uuid>&_getpagesoffset=N&_count=C`.
    GetPages,
}

impl Paging {
    fn arg(self) -> &'static str {
        match self {
            Paging::None => "none",
            Paging::Offset => "offset",
            Paging::GetPages => "getpages",
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Holds an exclusive flock on `path` while alive (test processes install one at a time).
struct FileLock(std::fs::File);

impl FileLock {
    fn new(path: &Path) -> Self {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: a valid open descriptor; the lock goes with it when the file is closed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {}", path.display());
        Self(f)
    }
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Write `bytes` to `path` unless it already holds them (by rename, so a running server
/// that has the old file open is not disturbed).
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The directory the server runs in: `$MEDPLUM_DIR` (installed by .ci/run) or
/// `target/medplum`, where this harness runs `npm ci` once from the committed lock file.
/// Either way it gets the current `server.mjs`. Also: whether node needs
/// `--experimental-websocket` (Node 20 does; Medplum's core loads WebSocket).
fn medplum_dir() -> &'static (PathBuf, bool) {
    static DIR: OnceLock<(PathBuf, bool)> = OnceLock::new();
    DIR.get_or_init(|| {
        assert!(
            runs("node", "--version"),
            "the Medplum FHIR tests need Node.js (`node` on PATH, Node 20 or later)"
        );
        let src = repo_root().join("tests/support/medplum");
        let (dir, from_env) = match std::env::var("MEDPLUM_DIR") {
            Ok(d) if !d.is_empty() => (PathBuf::from(d), true),
            _ => (repo_root().join("target/medplum"), false),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let _lock = FileLock::new(&dir.join(".install.lock"));
        let lock_file = std::fs::read(src.join("package-lock.json")).unwrap();
        let stamp = dir.join(".installed-lock.json");
        if !from_env && std::fs::read(&stamp).ok() != Some(lock_file.clone()) {
            assert!(
                runs("npm", "--version"),
                "the Medplum FHIR tests need npm to install @medplum/fhir-router (or set MEDPLUM_DIR \
                 to a folder where `npm ci` was run on tests/support/medplum/package-lock.json)"
            );
            write_if_changed(
                &dir.join("package.json"),
                &std::fs::read(src.join("package.json")).unwrap(),
            );
            write_if_changed(&dir.join("package-lock.json"), &lock_file);
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("run npm ci");
            assert!(
                out.status.success(),
                "npm ci in {} failed:\n{}\n{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&stamp, &lock_file).unwrap();
        }
        assert!(
            dir.join("node_modules/@medplum/fhir-router/package.json")
                .exists(),
            "no @medplum/fhir-router in {}/node_modules: run `npm ci` there (from \
             tests/support/medplum/package-lock.json), or unset MEDPLUM_DIR",
            dir.display()
        );
        write_if_changed(
            &dir.join("server.mjs"),
            &std::fs::read(src.join("server.mjs")).unwrap(),
        );
        let has_websocket = Command::new("node")
            .args(["-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        (dir, !has_websocket)
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the server on `port` answers GET /fhir/metadata as `instance` (no panics: it
/// may not listen yet).
fn answers_as(port: u16, instance: &str) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /fhir/metadata HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp);
        Ok(text.starts_with("HTTP/1.1 200") && text.contains(&format!("instance {instance}\"")))
    };
    match probe() {
        Ok(ok) => ok,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::ConnectionRefused {
                eprintln!("medplum probe on port {port}: {e}");
            }
            false
        }
    }
}

/// One Medplum server (in memory: every start is empty), stopped on drop.
pub struct MedplumServer {
    child: Child,
    pub base: String,
    pub paging: Paging,
    _log_dir: tempfile::TempDir,
}

impl MedplumServer {
    /// Medplum transactions take at most 50 updates (its router's limit).
    pub const TRANSACTION_MAX: usize = 50;

    pub fn start(paging: Paging) -> Self {
        let (dir, flag) = medplum_dir();
        let mut last_log = String::new();
        for _ in 0..5 {
            let log_dir = tempfile::tempdir().unwrap();
            let log_path = log_dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}/fhir");
            // Told to the server, and checked in its answer: the port may have been taken
            // meanwhile by another test's server.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let instance = format!("{}-{port}-{nanos}", std::process::id());
            let mut cmd = Command::new("node");
            if *flag {
                cmd.arg("--experimental-websocket");
            }
            let child = cmd
                .arg("server.mjs")
                .args(["--port", &port.to_string(), "--variant", paging.arg()])
                .args(["--instance", &instance])
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start node server.mjs");
            // Owned at once, so that the child is stopped on every way out (panics too).
            let mut server = Self {
                child,
                base,
                paging,
                _log_dir: log_dir,
            };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(90) {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // port taken (exit 98) or a failure: try again, then report
                }
                if answers_as(port, &instance) {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("the Medplum FHIR server did not start:\n{last_log}");
    }

    /// Create or replace resources, keeping their ids: transaction Bundles of PUTs.
    pub fn put_all(&self, resources: &[Value]) {
        for chunk in resources.chunks(Self::TRANSACTION_MAX) {
            let entries: Vec<Value> = chunk
                .iter()
                .map(|r| {
                    json!({"resource": r, "request": {"method": "PUT",
                        "url": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())}})
                })
                .collect();
            let (status, v) = http(
                "POST",
                &self.base,
                None,
                Some(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})),
            );
            assert_eq!(status, 200, "transaction failed: {v}");
            for e in v["entry"].as_array().into_iter().flatten() {
                let s = e["response"]["status"].as_str().unwrap_or("");
                assert!(s.starts_with('2'), "transaction entry failed: {e}");
            }
        }
    }

    pub fn delete(&self, resource_type: &str, id: &str) {
        let (status, v) = http(
            "DELETE",
            &format!("{}/{resource_type}/{id}", self.base),
            None,
            None,
        );
        assert!(status == 200 || status == 204, "{v}");
    }

    /// Every resource of an export folder of `registrar synth`.
    pub fn load_synth(&self, fhir_dir: &Path) -> Vec<Value> {
        let all = ndjson_resources(fhir_dir);
        self.put_all(&all);
        all
    }
}

impl Drop for MedplumServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
