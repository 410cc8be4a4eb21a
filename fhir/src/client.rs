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
    /// Bearer token sent on every request to the server's origin (never logged).
    pub bearer_token: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            count: 200,
            timeout: Duration::from_secs(60),
            max_retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            bearer_token: None,
        }
    }
}

/// Why a request or a page failed. Messages carry URLs without credentials, never tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status} (authentication refused: check the token)")]
    Unauthorized { url: String, status: u16 },
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
    #[error("{0}")]
    Invalid(String),
}

/// One search page.
#[derive(Debug)]
pub struct Page {
    /// The page's URL (without credentials).
    pub url: String,
    /// Each entry's resource, or why the entry has none.
    pub entries: Vec<Result<Value, String>>,
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

    /// GET a URL of this server and parse the JSON body, retrying transient failures.
    /// Returns the body, its size and the server's `Date` header.
    pub fn get_json(&self, url: &Url) -> Result<(Value, u64, Option<String>), FetchError> {
        if !same_origin(url, &self.base) {
            return Err(FetchError::OriginMismatch {
                url: strip_credentials(url),
                origin: self.base.origin().ascii_serialization(),
            });
        }
        let shown = strip_credentials(url);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self.agent.get(url.as_str());
            if let Some(t) = &self.opts.bearer_token {
                req = req.header("Authorization", &format!("Bearer {t}"));
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

    /// A search of one resource type, optionally only resources updated after `since`
    /// (an instant: `_lastUpdated=gt<since>`), sorted by last update.
    pub fn search(
        &self,
        resource_type: &str,
        since: Option<&str>,
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
        }
        Ok(Search {
            client: self,
            next: Some(url),
            seen: HashSet::new(),
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

/// The pages of one search, following `next` links.
pub struct Search<'a> {
    client: &'a Client,
    next: Option<Url>,
    seen: HashSet<String>,
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
        let entry_list = match bundle.get_mut("entry").map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        for mut e in entry_list {
            // Search bundles may carry OperationOutcomes (search.mode = outcome): not data.
            let mode = e
                .get("search")
                .and_then(|s| s.get("mode"))
                .and_then(Value::as_str);
            if mode == Some("outcome") {
                continue;
            }
            match e.get_mut("resource").map(Value::take) {
                Some(r) if !r.is_null() => entries.push(Ok(r)),
                _ => entries.push(Err("a Bundle entry without a resource".to_string())),
            }
        }
        Ok(Some(Page {
            url: shown,
            entries,
            bytes,
        }))
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
