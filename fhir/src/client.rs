//! A FHIR search client: Bundle paging, bearer auth, retries, and the checks that keep a
//! misbehaving server from looping the importer or leading it (and its token) elsewhere.

use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use url::Url;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `_count` per search page.
    pub count: u32,
    /// Timeout of one request, connection to last byte.
    pub timeout: Duration,
    /// Retries of one request after a dropped connection, a timeout, 429 or 5xx.
    pub max_retries: u32,
    /// First backoff; doubled on every retry (a server's Retry-After wins when given).
    pub backoff: Duration,
    /// Longest wait between retries, whatever Retry-After says.
    pub max_backoff: Duration,
    /// How requests authenticate (credentials go to the server's origin only, never logged).
    pub auth: Auth,
}

thread_local! {
    static THREAD_RETRIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Retries made by requests of the calling thread so far (of every client): a thread's
/// difference over a piece of work is that work's retries, also while other threads request.
pub fn retries_on_this_thread() -> u64 {
    THREAD_RETRIES.with(|r| r.get())
}

/// How a client authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// A fixed bearer token.
    Bearer(String),
    /// SMART Backend Services: tokens from the token endpoint, signed assertions.
    Smart(std::sync::Arc<crate::smart::SmartAuth>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Smart(s) => write!(f, "Smart({s:?})"),
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            count: 200,
            timeout: Duration::from_secs(60),
            max_retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            auth: Auth::None,
        }
    }
}

/// Why a request or a page failed. Messages carry URLs without credentials, never tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status} (authentication refused: check the token)")]
    Unauthorized { url: String, status: u16 },
    #[error("token endpoint {url}: HTTP {status}{error} (check the client id, the registered key and the scope)")]
    TokenRefused {
        url: String,
        status: u16,
        error: String,
    },
    #[error("{url}: HTTP {status}{body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {reason} (after {attempts} attempts)")]
    GaveUp {
        url: String,
        reason: String,
        attempts: u32,
    },
    #[error("{url}: not a FHIR Bundle: {reason}")]
    NotABundle { url: String, reason: String },
    #[error("the next link {url} was already followed: the server's paging loops")]
    Loop { url: String },
    #[error("the next link {url} leaves the server's origin {origin}: refused (the token is never sent elsewhere)")]
    OriginMismatch { url: String, origin: String },
    #[error("{url}: the search ended early: the server announced {announced} resources (Bundle.total) and gave {received}, {missing} missing; the type keeps its watermark")]
    Incomplete {
        url: String,
        announced: u64,
        received: u64,
        missing: u64,
    },
    #[error("{url}: the page repeats resources of earlier pages only: the server's paging loops")]
    PageRepeats { url: String },
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// The server does not offer what was asked (404, 405, 501 and 400 to an interaction
    /// the server may lack, such as type-level `_history`).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            FetchError::Status {
                status: 400 | 404 | 405 | 501,
                ..
            }
        )
    }
}

/// Whether the server says it supports something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Yes,
    No,
    /// The CapabilityStatement could not be read or does not describe the type.
    Unknown,
}

/// What a server's CapabilityStatement (`/metadata`) says, as far as an importer cares.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Capabilities {
    /// `software.name` and `software.version`, `fhirVersion` (for the run's audit detail).
    pub software: Option<String>,
    pub fhir_version: Option<String>,
    /// Why the statement could not be used, if it could not.
    pub unreadable: Option<String>,
    #[serde(skip)]
    types: std::collections::HashMap<String, TypeCapabilities>,
    /// System-level interactions (`rest.interaction`).
    #[serde(skip)]
    system: HashSet<String>,
}

#[derive(Debug, Clone, Default)]
struct TypeCapabilities {
    interactions: HashSet<String>,
    search_params: HashSet<String>,
    includes: HashSet<String>,
}

impl Capabilities {
    /// Read from a CapabilityStatement.
    pub fn from_statement(v: &Value) -> Capabilities {
        let mut c = Capabilities::default();
        if v.get("resourceType").and_then(Value::as_str) != Some("CapabilityStatement") {
            c.unreadable = Some("the metadata is not a CapabilityStatement".into());
            return c;
        }
        c.fhir_version = v
            .get("fhirVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        c.software = v.get("software").map(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or("unnamed");
            match s.get("version").and_then(Value::as_str) {
                Some(ver) => format!("{name} {ver}"),
                None => name.to_string(),
            }
        });
        let codes = |v: Option<&Value>| -> HashSet<String> {
            v.and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("code").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        };
        for rest in v
            .get("rest")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if rest.get("mode").and_then(Value::as_str) == Some("client") {
                continue;
            }
            c.system.extend(codes(rest.get("interaction")));
            for r in rest
                .get("resource")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(t) = r.get("type").and_then(Value::as_str) else {
                    continue;
                };
                let e = c.types.entry(t.to_string()).or_default();
                e.interactions.extend(codes(r.get("interaction")));
                e.search_params.extend(
                    r.get("searchParam")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.get("name").and_then(Value::as_str))
                        .map(str::to_string),
                );
                e.includes.extend(
                    r.get("searchInclude")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string),
                );
            }
        }
        c
    }

    /// A server whose statement could not be read: everything is unknown.
    pub fn unknown(reason: String) -> Capabilities {
        Capabilities {
            unreadable: Some(reason),
            ..Default::default()
        }
    }

    fn interaction(&self, resource_type: &str, code: &str) -> Support {
        match self.types.get(resource_type) {
            Some(t) if t.interactions.contains(code) => Support::Yes,
            Some(t) if !t.interactions.is_empty() => Support::No,
            _ => Support::Unknown,
        }
    }

    /// Type-level `_history` (`history-type`), the source of deletions.
    pub fn history_type(&self, resource_type: &str) -> Support {
        self.interaction(resource_type, "history-type")
    }

    /// `_include=<include>` on searches of the type (`*` in searchInclude counts).
    pub fn include(&self, resource_type: &str, include: &str) -> Support {
        match self.types.get(resource_type) {
            Some(t) if t.includes.contains(include) || t.includes.contains("*") => Support::Yes,
            Some(t) if !t.includes.is_empty() => Support::No,
            _ => Support::Unknown,
        }
    }
}

/// One search page.
#[derive(Debug)]
pub struct Page {
    /// The page's URL (without credentials).
    pub url: String,
    /// Each entry's resource, or why the entry has none (`search.mode` match or none).
    pub entries: Vec<Result<Value, String>>,
    /// Resources the server added by `_include` (`search.mode = include`): not results,
    /// only what references of the results reach.
    pub included: Vec<Value>,
    /// Response bytes (for throughput figures).
    pub bytes: u64,
}

/// The client of one FHIR server (its base URL).
pub struct Client {
    base: Url,
    agent: ureq::Agent,
    opts: ClientOptions,
    /// Retries done so far (all requests).
    pub retries: std::sync::atomic::AtomicU64,
}

fn strip_credentials(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Seconds or an HTTP date in a Retry-After header.
fn retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Client {
    /// A client for the server at `base` (e.g. `https://fhir.example.org/r4`).
    pub fn new(base: &str, opts: ClientOptions) -> Result<Self, FetchError> {
        let mut base =
            Url::parse(base).map_err(|e| FetchError::Invalid(format!("endpoint `{base}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(format!(
                "endpoint `{base}`: only http and https are supported"
            )));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(opts.timeout))
            .user_agent(concat!("registrar/", env!("CARGO_PKG_VERSION")))
            .accept("application/fhir+json, application/json;q=0.9")
            .build()
            .into();
        Ok(Self {
            base,
            agent,
            opts,
            retries: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The base URL (with a trailing slash).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// How the client authenticates, for reports and the audit log (no secret in it):
    /// the method, and for SMART the client id, the signature algorithm and the number of
    /// tokens fetched so far.
    pub fn auth_summary(&self) -> Value {
        match &self.opts.auth {
            Auth::None => serde_json::json!({"method": "none"}),
            Auth::Bearer(_) => serde_json::json!({"method": "bearer_token"}),
            Auth::Smart(s) => serde_json::json!({
                "method": "smart_backend_services",
                "client_id": s.client_id(),
                "alg": s.alg().as_str(),
                "tokens_fetched": s.tokens_fetched.load(std::sync::atomic::Ordering::Relaxed),
            }),
        }
    }

    /// GET a URL of this server and parse the JSON body, retrying transient failures.
    /// Returns the body, its size and the server's `Date` header.
    pub fn get_json(&self, url: &Url) -> Result<(Value, u64, Option<String>), FetchError> {
        self.get(url, true)
    }

    /// The Authorization header value, if the client authenticates.
    fn authorization(&self) -> Result<Option<String>, FetchError> {
        Ok(match &self.opts.auth {
            Auth::None => None,
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Smart(s) => {
                let token_url = s.token_url(|| {
                    let u = self
                        .base
                        .join(".well-known/smart-configuration")
                        .map_err(|e| FetchError::Invalid(e.to_string()))?;
                    self.get(&u, false).map(|(v, _, _)| v).map_err(|e| {
                        FetchError::Invalid(format!(
                            "no token URL configured and the server's smart-configuration could not be read: {e}"
                        ))
                    })
                })?;
                let t = s.bearer(
                    &self.agent,
                    &token_url,
                    self.opts.max_retries,
                    self.opts.backoff,
                )?;
                Some(format!("Bearer {t}"))
            }
        })
    }

    fn get(
        &self,
        url: &Url,
        authenticated: bool,
    ) -> Result<(Value, u64, Option<String>), FetchError> {
        if !same_origin(url, &self.base) {
            return Err(FetchError::OriginMismatch {
                url: strip_credentials(url),
                origin: self.base.origin().ascii_serialization(),
            });
        }
        let shown = strip_credentials(url);
        let mut attempt = 0u32;
        // A SMART token the server refuses before its expiry is fetched again, once.
        let mut renewed = false;
        loop {
            attempt += 1;
            let mut req = self.agent.get(url.as_str());
            if authenticated {
                if let Some(h) = self.authorization()? {
                    req = req.header("Authorization", &h);
                }
            }
            let (reason, wait) = match req.call() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let header = |n: &str| {
                        resp.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let date = header("date");
                    let after = header("retry-after").as_deref().and_then(retry_after);
                    match status {
                        200 => {
                            let body = resp
                                .body_mut()
                                .with_config()
                                .limit(512 * 1024 * 1024)
                                .read_to_vec();
                            match body {
                                Ok(b) => {
                                    let n = b.len() as u64;
                                    let v: Value = serde_json::from_slice(&b).map_err(|e| {
                                        FetchError::NotABundle {
                                            url: shown.clone(),
                                            reason: format!("the body is not JSON ({e})"),
                                        }
                                    })?;
                                    return Ok((v, n, date));
                                }
                                Err(e) => (format!("reading the body failed: {e}"), None),
                            }
                        }
                        401 if authenticated && !renewed => match &self.opts.auth {
                            Auth::Smart(s) => {
                                s.invalidate();
                                renewed = true;
                                attempt -= 1;
                                continue;
                            }
                            _ => return Err(FetchError::Unauthorized { url: shown, status }),
                        },
                        401 | 403 => return Err(FetchError::Unauthorized { url: shown, status }),
                        429 | 500 | 502 | 503 | 504 => (format!("HTTP {status}"), after),
                        _ => {
                            let body = resp
                                .body_mut()
                                .with_config()
                                .limit(4096)
                                .read_to_string()
                                .unwrap_or_default();
                            let diag = operation_outcome_text(&body);
                            return Err(FetchError::Status {
                                url: shown,
                                status,
                                body: diag.map(|d| format!(": {d}")).unwrap_or_default(),
                            });
                        }
                    }
                }
                Err(e) => (transport_reason(&e), None),
            };
            if attempt > self.opts.max_retries {
                return Err(FetchError::GaveUp {
                    url: shown,
                    reason,
                    attempts: attempt,
                });
            }
            self.retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            THREAD_RETRIES.with(|r| r.set(r.get() + 1));
            let backoff = self
                .opts
                .backoff
                .saturating_mul(1u32 << (attempt - 1).min(16));
            std::thread::sleep(wait.unwrap_or(backoff).min(self.opts.max_backoff));
        }
    }

    /// Read one resource (`None` when the server says it is gone: 404 or 410).
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, FetchError> {
        let url = self
            .base
            .join(&format!("{resource_type}/{id}"))
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        match self.get_json(&url) {
            Ok((v, _, _)) => Ok(Some(v)),
            Err(FetchError::Status {
                status: 404 | 410, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The server's CapabilityStatement (`GET metadata`). A server that has none, or
    /// answers with something else, gives [`Capabilities::unknown`] with the reason: the
    /// importer then tries what it needs and adapts to the answer.
    pub fn capabilities(&self) -> Result<Capabilities, FetchError> {
        let url = self
            .base
            .join("metadata")
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        match self.get_json(&url) {
            Ok((v, _, _)) => Ok(Capabilities::from_statement(&v)),
            Err(
                e @ (FetchError::Unauthorized { .. }
                | FetchError::TokenRefused { .. }
                | FetchError::GaveUp { .. }),
            ) => Err(e),
            Err(e) => Ok(Capabilities::unknown(e.to_string())),
        }
    }

    /// A search of one resource type, optionally only resources updated after `since`
    /// (an instant: `_lastUpdated=gt<since>`).
    pub fn search(
        &self,
        resource_type: &str,
        since: Option<&str>,
    ) -> Result<Search<'_>, FetchError> {
        self.search_with(resource_type, since, &[])
    }

    /// [`Client::search`] with more parameters (`_include`, `_elements`).
    pub fn search_with(
        &self,
        resource_type: &str,
        since: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<Search<'_>, FetchError> {
        let mut url = self
            .base
            .join(resource_type)
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("_count", &self.opts.count.to_string());
            if let Some(s) = since {
                q.append_pair("_lastUpdated", &format!("gt{s}"));
            }
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        Ok(Search {
            client: self,
            first_url: strip_credentials(&url),
            next: Some(url),
            seen: HashSet::new(),
            ids: HashSet::new(),
            total: None,
            received: 0,
            repeated: 0,
            server_date: None,
        })
    }
}

impl Client {
    /// The ids of resources of `resource_type` whose latest change since `since` (an
    /// instant in UTC, `...Z`) is a deletion, from the type's `_history`. History is read
    /// newest first and only until entries older than `since` (some servers' next links
    /// drop `_since`; this stays correct and short either way).
    pub fn deleted_since(
        &self,
        resource_type: &str,
        since: &str,
    ) -> Result<Vec<String>, FetchError> {
        let mut url = self
            .base
            .join(&format!("{resource_type}/_history"))
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("_since", since)
            .append_pair("_count", &self.opts.count.to_string());
        let mut seen_urls = HashSet::new();
        let mut seen_ids = HashSet::new();
        let mut deleted = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            if !seen_urls.insert(url.as_str().to_string()) {
                return Err(FetchError::Loop {
                    url: strip_credentials(&url),
                });
            }
            let shown = strip_credentials(&url);
            let (bundle, _, _) = self.get_json(&url)?;
            if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                return Err(FetchError::NotABundle {
                    url: shown,
                    reason: "the history is not a Bundle".into(),
                });
            }
            let mut older = false;
            for e in bundle
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let modified = e
                    .get("response")
                    .and_then(|r| r.get("lastModified"))
                    .and_then(Value::as_str)
                    .or_else(|| {
                        e.get("resource")
                            .and_then(|r| r.get("meta"))
                            .and_then(|m| m.get("lastUpdated"))
                            .and_then(Value::as_str)
                    });
                if modified.is_some_and(|m| instant_before(m, since)) {
                    older = true;
                    break;
                }
                let id = e
                    .get("request")
                    .and_then(|r| r.get("url"))
                    .and_then(Value::as_str)
                    .or_else(|| e.get("fullUrl").and_then(Value::as_str))
                    .and_then(|u| {
                        let mut parts = u.trim_end_matches('/').rsplit('/');
                        let last = parts.next()?;
                        Some(last.to_string())
                    });
                let Some(id) = id else { continue };
                if !seen_ids.insert(id.clone()) {
                    continue; // an older change of a resource already decided
                }
                let method = e
                    .get("request")
                    .and_then(|r| r.get("method"))
                    .and_then(Value::as_str);
                if method == Some("DELETE") {
                    deleted.push(id);
                }
            }
            if older {
                break;
            }
            next = bundle
                .get("link")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                .and_then(|l| l.get("url").and_then(Value::as_str))
                .and_then(|n| self.base.join(n).ok());
            if let Some(n) = &next {
                if !same_origin(n, &self.base) {
                    return Err(FetchError::OriginMismatch {
                        url: strip_credentials(n),
                        origin: self.base.origin().ascii_serialization(),
                    });
                }
            }
        }
        Ok(deleted)
    }
}

/// Whether instant `a` is before `b` (both ISO 8601 in UTC with `Z`; compared on their
/// common precision, so `...13.5Z` is not before `...13Z`).
fn instant_before(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('Z');
    let b = b.trim_end_matches('Z');
    let n = a.len().min(b.len());
    a[..n] < b[..n]
}

fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

fn operation_outcome_text(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let issues = v.get("issue")?.as_array()?;
    let texts: Vec<String> = issues
        .iter()
        .filter_map(|i| {
            i.get("diagnostics")
                .or_else(|| i.get("details").and_then(|d| d.get("text")))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect())
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// The pages of one search, following `next` links, and what they held: the search is
/// complete when the resources received match `Bundle.total` (when the server gives one).
pub struct Search<'a> {
    client: &'a Client,
    first_url: String,
    next: Option<Url>,
    seen: HashSet<String>,
    /// The ids of the results so far (identity decides what is one resource).
    ids: HashSet<String>,
    /// `Bundle.total` of the first page that gave one.
    pub total: Option<u64>,
    /// Distinct results received.
    pub received: u64,
    /// Results received again on a later page (a server whose pages overlap).
    pub repeated: u64,
    /// The server's `Date` header of the first page: a watermark that misses nothing
    /// updated while the pages were being read.
    pub server_date: Option<String>,
}

impl Search<'_> {
    /// The next page, or `None` after the last.
    pub fn next_page(&mut self) -> Result<Option<Page>, FetchError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let key = url.as_str().to_string();
        if !self.seen.insert(key) {
            return Err(FetchError::Loop {
                url: strip_credentials(&url),
            });
        }
        let shown = strip_credentials(&url);
        let (mut bundle, bytes, date) = self.client.get_json(&url)?;
        if self.server_date.is_none() {
            self.server_date = date;
        }
        let not_bundle = |reason: String| FetchError::NotABundle {
            url: shown.clone(),
            reason,
        };
        match bundle.get("resourceType").and_then(Value::as_str) {
            Some("Bundle") => {}
            Some(other) => return Err(not_bundle(format!("a {other}"))),
            None => return Err(not_bundle("no resourceType".into())),
        }
        if self.total.is_none() {
            self.total = bundle.get("total").and_then(Value::as_u64);
        }
        let next = bundle
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            .and_then(|l| l.get("url").and_then(Value::as_str));
        if let Some(n) = next {
            let n = self
                .client
                .base
                .join(n)
                .map_err(|e| not_bundle(format!("invalid next link `{n}`: {e}")))?;
            if !same_origin(&n, &self.client.base) {
                return Err(FetchError::OriginMismatch {
                    url: strip_credentials(&n),
                    origin: self.client.base.origin().ascii_serialization(),
                });
            }
            self.next = Some(n);
        }
        let mut entries = Vec::new();
        let mut included = Vec::new();
        let entry_list = match bundle.get_mut("entry").map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let mut new_ids = 0u64;
        let mut with_ids = 0u64;
        for mut e in entry_list {
            // Search bundles may carry OperationOutcomes (search.mode = outcome): not data;
            // `_include`d resources are kept apart.
            let mode = e
                .get("search")
                .and_then(|s| s.get("mode"))
                .and_then(Value::as_str)
                .map(str::to_string);
            match (mode.as_deref(), e.get_mut("resource").map(Value::take)) {
                (Some("outcome"), _) => {}
                (Some("include"), Some(r)) if !r.is_null() => included.push(r),
                (Some("include"), _) => {}
                (_, Some(r)) if !r.is_null() => {
                    if let Some(id) = r.get("id").and_then(Value::as_str) {
                        with_ids += 1;
                        if self.ids.insert(id.to_string()) {
                            new_ids += 1;
                        } else {
                            self.repeated += 1;
                        }
                    }
                    entries.push(Ok(r));
                }
                _ => entries.push(Err("a Bundle entry without a resource".to_string())),
            }
        }
        self.received += new_ids;
        if with_ids > 0 && new_ids == 0 && self.seen.len() > 1 {
            // Only what earlier pages gave: a server that pages in a circle through
            // different URLs (an offset that does not advance).
            return Err(FetchError::PageRepeats { url: shown });
        }
        Ok(Some(Page {
            url: shown,
            entries,
            included,
            bytes,
        }))
    }

    /// After the last page: an error when the server announced more resources than it gave
    /// (a search that ended early), else the number received.
    pub fn finish(&self) -> Result<u64, FetchError> {
        if let Some(total) = self.total {
            if self.received < total {
                return Err(FetchError::Incomplete {
                    url: self.first_url.clone(),
                    announced: total,
                    received: self.received,
                    missing: total - self.received,
                });
            }
        }
        Ok(self.received)
    }

    /// The ids of the results received (for a sweep of what the server still holds).
    pub fn ids(&self) -> &HashSet<String> {
        &self.ids
    }

    /// The ids received, to take them.
    pub fn ids_mut(&mut self) -> &mut HashSet<String> {
        &mut self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_retry_after() {
        let a = Url::parse("https://h.example/fhir/").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://h.example:443/fhir/Patient?page=2").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://h.example/fhir/").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://evil.example/fhir/").unwrap()
        ));
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("soon"), None);
        assert!(instant_before(
            "2026-01-01T10:00:00.000Z",
            "2026-01-01T10:00:00.001Z"
        ));
        assert!(!instant_before(
            "2026-01-01T10:00:00.500Z",
            "2026-01-01T10:00:00Z"
        ));
        assert_eq!(
            strip_credentials(&Url::parse("https://u:p@h.example/x").unwrap()),
            "https://h.example/x"
        );
    }

    #[test]
    fn capabilities_say_what_a_type_supports() {
        let c = Capabilities::from_statement(&serde_json::json!({
            "resourceType": "CapabilityStatement", "fhirVersion": "4.0.1",
            "software": {"name": "Medplum", "version": "5.2.13"},
            "rest": [{"mode": "server", "resource": [
                {"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                {"type": "Observation", "interaction": [{"code": "history-type"}],
                 "searchInclude": ["*"]},
                {"type": "MedicationRequest", "interaction": [{"code": "read"}],
                 "searchInclude": ["MedicationRequest:medication"]}
            ]}]
        }));
        assert_eq!(c.software.as_deref(), Some("Medplum 5.2.13"));
        assert_eq!(c.history_type("Patient"), Support::No);
        assert_eq!(c.history_type("Observation"), Support::Yes);
        assert_eq!(c.history_type("Procedure"), Support::Unknown);
        assert_eq!(
            c.include("MedicationRequest", "MedicationRequest:medication"),
            Support::Yes
        );
        assert_eq!(
            c.include("Observation", "Observation:subject"),
            Support::Yes
        );
        assert_eq!(
            c.include("MedicationRequest", "MedicationRequest:subject"),
            Support::No
        );
        let u = Capabilities::from_statement(&serde_json::json!({"resourceType": "Bundle"}));
        assert!(u.unreadable.is_some());
        assert_eq!(u.history_type("Patient"), Support::Unknown);
    }

    #[test]
    fn an_unreachable_server_is_given_up_on_with_the_reason() {
        let c = Client::new(
            "http://127.0.0.1:1/fhir",
            ClientOptions {
                max_retries: 2,
                backoff: Duration::from_millis(1),
                ..Default::default()
            },
        )
        .unwrap();
        let e = c.search("Patient", None).unwrap().next_page().unwrap_err();
        assert!(matches!(e, FetchError::GaveUp { attempts: 3, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("127.0.0.1:1/fhir/Patient?_count=200"),
            "{e}"
        );
        assert_eq!(c.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
