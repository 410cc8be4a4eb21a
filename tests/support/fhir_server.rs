//! A real FHIR R4 server for the tests (the PyPI package `sekmet-fhir`, SQLite-backed), one
//! per test on a loopback port, and a fault-injecting proxy in front of it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `sekmet` program: $SEKMET_BIN, `.ci/venv` (made by .ci/run), or a venv this harness
/// makes once in target/ with pip (PyPI), so `cargo test` works on a fresh machine.
fn sekmet_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("SEKMET_BIN") {
            return PathBuf::from(b);
        }
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let ci = repo.join(".ci/venv/bin/sekmet");
        if ci.exists() {
            return ci;
        }
        let venv = repo.join("target/sekmet-venv");
        let bin = venv.join("bin/sekmet");
        if !bin.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "sekmet-fhir==0.1.1"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            assert!(
                ok && bin.exists(),
                "the FHIR tests need the PyPI package sekmet-fhir: run .ci/run, or set SEKMET_BIN"
            );
        }
        bin
    })
    .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.0 exchange (the tests' own client: nothing of registrar's).
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let u = url::Url::parse(url).unwrap();
    let mut s = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n",
        u.authority(),
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]);
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let v = serde_json::from_slice(&resp[split + 4..]).unwrap_or(Value::Null);
    (status, v)
}

/// Every resource of the `.ndjson` files in a folder (an export of `registrar synth`).
pub fn ndjson_resources(fhir_dir: &std::path::Path) -> Vec<Value> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(fhir_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("ndjson") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                if !line.trim().is_empty() {
                    all.push(serde_json::from_str(line).unwrap());
                }
            }
        }
    }
    all
}

/// One sekmet server, stopped on drop.
pub struct FhirServer {
    child: Child,
    pub base: String,
    pub token: Option<String>,
    _dir: tempfile::TempDir,
}

impl FhirServer {
    /// Start a server; with `token`, only requests bearing it are served.
    pub fn start(token: Option<&str>) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let base = format!("http://127.0.0.1:{port}/fhir");
            let auth = match token {
                Some(t) => format!("server_auth: {{types: [bearer], tokens: [\"{t}\"]}}\n"),
                None => String::new(),
            };
            std::fs::write(
                dir.path().join("settings.yaml"),
                format!(
                    "base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {}\n\
                     simulator: {{enabled: false}}\nlog_inbound: false\n\
                     validation: {{inbound: warn}}\n{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let mut child = Command::new(sekmet_bin())
                .arg("serve")
                .arg("-c")
                .arg(dir.path().join("settings.yaml"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start sekmet");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && http("GET", &format!("{base}/metadata"), None, None).0 == 200
                {
                    return Self {
                        child,
                        base,
                        token: token.map(String::from),
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sekmet did not start");
    }

    /// Create or replace resources (one transaction Bundle of PUTs).
    pub fn put_all(&self, resources: &[Value]) {
        for chunk in resources.chunks(2000) {
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
                self.token.as_deref(),
                Some(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})),
            );
            assert_eq!(status, 200, "transaction failed: {v}");
        }
    }

    pub fn delete(&self, resource_type: &str, id: &str) {
        let (status, v) = http(
            "DELETE",
            &format!("{}/{resource_type}/{id}", self.base),
            self.token.as_deref(),
            None,
        );
        assert!(status == 200 || status == 204, "{v}");
    }

    /// Every resource of an export folder of `registrar synth`.
    pub fn load_synth(&self, fhir_dir: &std::path::Path) -> Vec<Value> {
        let all = ndjson_resources(fhir_dir);
        self.put_all(&all);
        all
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does with the next requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and Retry-After seconds, if any).
    Status(u16, Option<u32>),
    /// Close the connection without answering.
    Reset,
    /// A 200 answer that is an OperationOutcome, not a Bundle.
    NotABundle,
    /// A Bundle whose next link is the request itself.
    LoopingNext,
    /// A Bundle whose next link points to another origin.
    ForeignNext,
}

/// A proxy in front of a server: forwards requests (rewriting the server's URLs to its own)
/// except when a fault is queued; faults apply to requests whose path contains `match_path`.
pub struct FaultProxy {
    pub base: String,
    faults: Arc<Mutex<Vec<(String, Fault)>>>,
    pub requests: Arc<Mutex<u64>>,
}

impl FaultProxy {
    pub fn start(upstream: &FhirServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}/fhir");
        let faults: Arc<Mutex<Vec<(String, Fault)>>> = Arc::default();
        let requests: Arc<Mutex<u64>> = Arc::default();
        let up = upstream.base.clone();
        let (f2, r2, me) = (faults.clone(), requests.clone(), base.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, r, up, me) = (f2.clone(), r2.clone(), up.clone(), me.clone());
                std::thread::spawn(move || serve(conn, &f, &r, &up, &me));
            }
        });
        Self {
            base,
            faults,
            requests,
        }
    }

    /// Queue faults for the next requests whose path contains `match_path`.
    pub fn inject(&self, match_path: &str, faults: &[Fault]) {
        let mut q = self.faults.lock().unwrap();
        for f in faults {
            q.push((match_path.to_string(), f.clone()));
        }
    }

    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }
}

fn serve(
    mut conn: TcpStream,
    faults: &Mutex<Vec<(String, Fault)>>,
    requests: &Mutex<u64>,
    upstream: &str,
    me: &str,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    *requests.lock().unwrap() += 1;
    let head = String::from_utf8_lossy(&buf).to_string();
    let line = head.lines().next().unwrap_or("").to_string();
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    let fault = {
        let mut q = faults.lock().unwrap();
        q.iter()
            .position(|(m, _)| target.contains(m.as_str()))
            .map(|i| q.remove(i).1)
    };
    let reply = |conn: &mut TcpStream, status: u16, extra: &str, body: &Value| {
        let b = serde_json::to_vec(body).unwrap();
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                b.len()
            )
            .as_bytes(),
        );
        let _ = conn.write_all(&b);
    };
    let own = format!("{}{}", me.trim_end_matches("/fhir"), target);
    match fault {
        Some(Fault::Status(s, after)) => {
            let extra = after
                .map(|a| format!("Retry-After: {a}\r\n"))
                .unwrap_or_default();
            reply(
                &mut conn,
                s,
                &extra,
                &json!({"resourceType": "OperationOutcome", "issue": []}),
            );
        }
        Some(Fault::Reset) => drop(conn),
        Some(Fault::NotABundle) => reply(
            &mut conn,
            200,
            "",
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}),
        ),
        Some(Fault::LoopingNext) => reply(
            &mut conn,
            200,
            "",
            &json!({"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": own}], "entry": []}),
        ),
        Some(Fault::ForeignNext) => reply(
            &mut conn,
            200,
            "",
            &json!({"resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "next", "url": "http://elsewhere.invalid/fhir/Patient?page=2"}], "entry": []}),
        ),
        None => forward(conn, &head, upstream, me, UpstreamAuth::Keep),
    }
}

/// How a proxy forwards a request's Authorization header.
pub enum UpstreamAuth<'a> {
    /// As the client sent it.
    Keep,
    /// Replaced by this bearer token, or removed.
    Replace(Option<&'a str>),
}

/// Forward a request (its head only: GET requests) to `upstream` as HTTP/1.0 (no chunking,
/// close at the end), and its answer back with the upstream's URLs rewritten to `me`'s.
pub fn forward(mut conn: TcpStream, head: &str, upstream: &str, me: &str, auth: UpstreamAuth) {
    let line = head.lines().next().unwrap_or("");
    let target = line.split(' ').nth(1).unwrap_or("/");
    let u = url::Url::parse(upstream).unwrap();
    let Ok(mut up) = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())) else {
        return;
    };
    let replace = match auth {
        UpstreamAuth::Replace(t) => Some(t),
        UpstreamAuth::Keep => None,
    };
    let mut headers = String::new();
    for h in head.split("\r\n\r\n").next().unwrap().lines().skip(1) {
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("host:")
            || lower.starts_with("connection:")
            || lower.starts_with("accept-encoding:")
            || (replace.is_some() && lower.starts_with("authorization:"))
        {
            continue;
        }
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    if let Some(Some(t)) = replace {
        headers.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let method = line.split(' ').next().unwrap_or("GET");
    let _ = up.write_all(
        format!(
            "{method} {target} HTTP/1.0\r\nHost: {}\r\n{headers}\r\n",
            u.authority()
        )
        .as_bytes(),
    );
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let up_root = upstream.trim_end_matches("/fhir");
    let my_root = me.trim_end_matches("/fhir");
    let body = String::from_utf8_lossy(&resp[split + 4..]).replace(up_root, my_root);
    let mut out_head = String::new();
    for (i, h) in String::from_utf8_lossy(&resp[..split]).lines().enumerate() {
        let lower = h.to_ascii_lowercase();
        if i > 0 && (lower.starts_with("content-length:") || lower.starts_with("connection:")) {
            continue;
        }
        out_head.push_str(h);
        out_head.push_str("\r\n");
    }
    out_head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = conn.write_all(out_head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}
