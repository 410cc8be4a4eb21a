//! SMART Backend Services: the OAuth 2.0 client-credentials grant with a signed JWT
//! assertion (RFC 7523), as hospital FHIR endpoints require of an unattended client.
//!
//! The client holds a private key (a PEM file, mode 0600 like registrar's own key): RSA
//! (signs RS384) or EC P-384 (signs ES384). The server knows the matching public key, usually
//! from a JWK Set registered with the client id ([`SigningKey::jwks`] prints it). To get an
//! access token, the client posts an assertion (`iss` = `sub` = client id, `aud` = the token
//! URL, `exp` five minutes ahead, a fresh `jti`) to the token endpoint, which the server names
//! in `.well-known/smart-configuration` under its FHIR base unless configured. The token is
//! kept until shortly before it expires, fetched again then, and once more when the FHIR
//! server refuses it early (a 401). Neither the token nor the assertion is ever printed:
//! errors name the token URL, the HTTP status and the server's OAuth error code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use url::Url;

use crate::client::FetchError;

/// The lifetime of an assertion (the SMART specification allows at most five minutes).
const ASSERTION_LIFETIME_SECS: u64 = 300;

/// The signature algorithm, fixed by the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs384,
    Es384,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs384 => "RS384",
            Alg::Es384 => "ES384",
        }
    }
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs client assertions.
pub struct SigningKey {
    inner: Inner,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}")]
    Key(String),
}

/// The PEM blocks of a text: (label, DER).
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        let Some(label) = l
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            if l.contains(':') {
                // RFC 1421 headers (Proc-Type: 4,ENCRYPTED): an encrypted legacy key.
                return Err(format!("the {label} block is encrypted: give an unencrypted key (the file's mode protects it)"));
            }
            b64.push_str(l);
        }
        if !closed {
            return Err(format!("the {label} block has no END line"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("the {label} block is not base64 ({e})"))?;
        out.push((label.to_string(), der));
    }
    Ok(out)
}

impl SigningKey {
    /// Read a PEM key file: mode 0600 (no access for group or others), PKCS#8 (`PRIVATE KEY`,
    /// RSA of 2048 to 8192 bits or EC P-384) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let err = |reason: String| KeyError::File {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(err(format!(
                    "readable by other users; run `chmod 600 {shown}`"
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        SigningKey::from_pem(&text).map_err(|e| match e {
            KeyError::Key(reason) => err(reason),
            other => other,
        })
    }

    /// A key from PEM text (see [`SigningKey::load`]).
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        let blocks = pem_blocks(text).map_err(KeyError::Key)?;
        let keys: Vec<_> = blocks
            .iter()
            .filter(|(l, _)| l.ends_with("PRIVATE KEY"))
            .collect();
        let (label, der) = match keys.as_slice() {
            [] => {
                return Err(KeyError::Key(
                    "no PEM private key (-----BEGIN PRIVATE KEY-----)".into(),
                ))
            }
            [one] => *one,
            _ => return Err(KeyError::Key("more than one private key".into())),
        };
        let inner = match label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
                    Inner::Rsa(k)
                } else {
                    match EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                        der,
                        &SystemRandom::new(),
                    ) {
                        Ok(k) => Inner::Ec(k),
                        Err(e) => {
                            return Err(KeyError::Key(format!(
                                "not an RSA key of 2048 to 8192 bits or an EC P-384 key ({e}); \
                                 SMART signs with RS384 or ES384"
                            )))
                        }
                    }
                }
            }
            "RSA PRIVATE KEY" => Inner::Rsa(RsaKeyPair::from_der(der).map_err(|e| {
                KeyError::Key(format!("not a usable RSA key of 2048 to 8192 bits ({e})"))
            })?),
            "EC PRIVATE KEY" => {
                return Err(KeyError::Key(
                    "a SEC1 EC key: convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY8`"
                        .into(),
                ))
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(KeyError::Key(
                    "an encrypted key: give an unencrypted one (the file's mode protects it)"
                        .into(),
                ))
            }
            other => {
                return Err(KeyError::Key(format!(
                    "a {other} block is not a key registrar reads"
                )))
            }
        };
        let mut key = SigningKey {
            inner,
            kid: String::new(),
        };
        key.kid = key.thumbprint();
        Ok(key)
    }

    /// A new EC P-384 key (ES384) as PKCS#8 PEM.
    pub fn generate_es384_pem() -> Result<String, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| KeyError::Key("the system's random source failed".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    pub fn alg(&self) -> Alg {
        match self.inner {
            Inner::Rsa(_) => Alg::Rs384,
            Inner::Ec(_) => Alg::Es384,
        }
    }

    /// The key id sent in the assertion's header: by default the RFC 7638 thumbprint of the
    /// public key, which [`SigningKey::jwks`] also gives.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Use another key id (the one the server registered).
    pub fn with_kid(mut self, kid: String) -> Self {
        self.kid = kid;
        self
    }

    /// The public key's required JWK members, in the lexicographic order RFC 7638 hashes.
    fn public_members(&self) -> Vec<(&'static str, String)> {
        match &self.inner {
            Inner::Rsa(k) => {
                let c: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                vec![
                    ("e", B64.encode(&c.e)),
                    ("kty", "RSA".into()),
                    ("n", B64.encode(&c.n)),
                ]
            }
            Inner::Ec(k) => {
                // Uncompressed point: 0x04 || x || y, 48 bytes each.
                let p = k.public_key().as_ref();
                vec![
                    ("crv", "P-384".into()),
                    ("kty", "EC".into()),
                    ("x", B64.encode(&p[1..49])),
                    ("y", B64.encode(&p[49..97])),
                ]
            }
        }
    }

    fn thumbprint(&self) -> String {
        use sha2::Digest;
        let members = self.public_members();
        let canonical = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
    }

    /// The public key as a JWK Set, to register with the server.
    pub fn jwks(&self) -> Value {
        let mut jwk = serde_json::Map::new();
        for (k, v) in self.public_members() {
            jwk.insert(k.into(), Value::String(v));
        }
        jwk.insert("alg".into(), self.alg().as_str().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("key_ops".into(), json!(["verify"]));
        jwk.insert("kid".into(), self.kid.clone().into());
        json!({ "keys": [Value::Object(jwk)] })
    }

    /// A signed JWT with these claims (compact serialisation).
    pub fn sign_jwt(&self, claims: &Value) -> Result<String, KeyError> {
        let header = json!({"alg": self.alg().as_str(), "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA384,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| KeyError::Key("signing failed".into()))?;
                sig
            }
            Inner::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .map_err(|_| KeyError::Key("signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }
}

/// How a client authenticates with SMART Backend Services.
#[derive(Debug)]
pub struct SmartOptions {
    /// The client id the server registered.
    pub client_id: String,
    pub key: SigningKey,
    /// Space-separated scopes, e.g. `system/Patient.rs system/Observation.rs`
    /// (default: [`DEFAULT_SCOPE`]).
    pub scope: String,
    /// The token endpoint; `None`: from the server's `.well-known/smart-configuration`.
    pub token_url: Option<String>,
}

/// Read access to every type (SMART v1 syntax, which v2 servers also accept).
pub const DEFAULT_SCOPE: &str = "system/*.read";

struct Token {
    value: String,
    /// When to fetch the next one (shortly before the server's expiry).
    renew_at: Instant,
}

/// Access tokens for one client: fetched when needed, kept until shortly before they
/// expire. Shared by every request of a [`crate::client::Client`].
pub struct SmartAuth {
    opts: SmartOptions,
    token_url: Mutex<Option<Url>>,
    token: Mutex<Option<Token>>,
    /// Tokens fetched so far (for the run's report).
    pub tokens_fetched: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SmartAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartAuth")
            .field("client_id", &self.opts.client_id)
            .field("alg", &self.opts.key.alg())
            .field("token_url", &self.opts.token_url)
            .finish_non_exhaustive()
    }
}

/// Loopback hosts may use plain http (test servers, a local gateway); others need https.
fn transport_allowed(u: &Url) -> bool {
    match u.scheme() {
        "https" => true,
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Printable, bounded text from a server (OAuth `error_description`).
fn bounded(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
}

impl SmartAuth {
    pub fn new(opts: SmartOptions) -> Result<SmartAuth, FetchError> {
        let token_url = match &opts.token_url {
            Some(t) => {
                let u = Url::parse(t)
                    .map_err(|e| FetchError::Invalid(format!("token URL `{t}`: {e}")))?;
                if !transport_allowed(&u) {
                    return Err(FetchError::Invalid(format!(
                        "token URL `{t}`: the assertion goes over https only (http only to loopback)"
                    )));
                }
                Some(u)
            }
            None => None,
        };
        if opts.client_id.trim().is_empty() {
            return Err(FetchError::Invalid("the SMART client id is empty".into()));
        }
        Ok(SmartAuth {
            opts,
            token_url: Mutex::new(token_url),
            token: Mutex::new(None),
            tokens_fetched: Default::default(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.opts.client_id
    }

    pub fn alg(&self) -> Alg {
        self.opts.key.alg()
    }

    /// Forget the current token (the server refused it).
    pub fn invalidate(&self) {
        *self.token.lock().expect("token lock") = None;
    }

    /// The token endpoint, discovered once through `discover` when not configured.
    pub fn token_url(
        &self,
        discover: impl FnOnce() -> Result<Value, FetchError>,
    ) -> Result<Url, FetchError> {
        let mut slot = self.token_url.lock().expect("token URL lock");
        if let Some(u) = &*slot {
            return Ok(u.clone());
        }
        let conf = discover()?;
        let alg = self.alg().as_str();
        if let Some(algs) = conf
            .get("token_endpoint_auth_signing_alg_values_supported")
            .and_then(Value::as_array)
        {
            if !algs.iter().any(|a| a.as_str() == Some(alg)) {
                let offered: Vec<&str> = algs.iter().filter_map(Value::as_str).collect();
                return Err(FetchError::Invalid(format!(
                    "the server accepts assertions signed with {} only; the key signs {alg}",
                    offered.join(", ")
                )));
            }
        }
        if let Some(grants) = conf.get("grant_types_supported").and_then(Value::as_array) {
            if !grants
                .iter()
                .any(|g| g.as_str() == Some("client_credentials"))
            {
                return Err(FetchError::Invalid(
                    "the server's smart-configuration does not offer the client_credentials grant (SMART Backend Services)".into(),
                ));
            }
        }
        let t = conf
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                FetchError::Invalid(
                    "the server's smart-configuration names no token_endpoint: configure the token URL".into(),
                )
            })?;
        let u = Url::parse(t).map_err(|e| {
            FetchError::Invalid(format!("the smart-configuration's token_endpoint: {e}"))
        })?;
        if !transport_allowed(&u) {
            return Err(FetchError::Invalid(format!(
                "the smart-configuration's token endpoint {} is not https: refused",
                u.origin().ascii_serialization()
            )));
        }
        *slot = Some(u.clone());
        Ok(u)
    }

    /// The client assertion for one token request.
    fn assertion(&self, token_url: &Url) -> Result<String, FetchError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| FetchError::Invalid("the system clock is before 1970".into()))?
            .as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| FetchError::Invalid("the system's random source failed".into()))?;
        let claims = json!({
            "iss": self.opts.client_id,
            "sub": self.opts.client_id,
            "aud": token_url.as_str(),
            "exp": now + ASSERTION_LIFETIME_SECS,
            "iat": now,
            "jti": hex(&jti),
        });
        self.opts
            .key
            .sign_jwt(&claims)
            .map_err(|e| FetchError::Invalid(e.to_string()))
    }

    /// A valid access token: the kept one, or a new one from the token endpoint.
    /// `retries` and `backoff` govern transient failures (transport, 429, 5xx).
    pub fn bearer(
        &self,
        agent: &ureq::Agent,
        token_url: &Url,
        retries: u32,
        backoff: Duration,
    ) -> Result<String, FetchError> {
        let mut slot = self.token.lock().expect("token lock");
        if let Some(t) = &*slot {
            if Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        let shown = token_url.as_str().to_string();
        let mut attempt = 0u32;
        let (value, lifetime) = loop {
            attempt += 1;
            let assertion = self.assertion(token_url)?;
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", self.opts.scope.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ];
            let reason = match agent
                .post(token_url.as_str())
                .header("Accept", "application/json")
                .send_form(form)
            {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(1024 * 1024)
                        .read_to_string()
                        .unwrap_or_default();
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    match status {
                        200 => break parse_token(&v, &shown)?,
                        429 | 500 | 502 | 503 | 504 => format!("HTTP {status}"),
                        _ => {
                            let code = v.get("error").and_then(Value::as_str).map(bounded);
                            let desc = v
                                .get("error_description")
                                .and_then(Value::as_str)
                                .map(bounded);
                            return Err(FetchError::TokenRefused {
                                url: shown,
                                status,
                                error: match (code, desc) {
                                    (Some(c), Some(d)) => format!(": {c} ({d})"),
                                    (Some(c), None) => format!(": {c}"),
                                    _ => String::new(),
                                },
                            });
                        }
                    }
                }
                Err(e) => format!("the request failed: {e}"),
            };
            if attempt > retries {
                return Err(FetchError::GaveUp {
                    url: shown,
                    reason,
                    attempts: attempt,
                });
            }
            std::thread::sleep(backoff.saturating_mul(1u32 << (attempt - 1).min(10)));
        };
        self.tokens_fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Renew a fifth of the lifetime early (at most 60 s early).
        let early = (lifetime / 5).min(Duration::from_secs(60));
        *slot = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime - early,
        });
        Ok(value)
    }
}

fn parse_token(v: &Value, shown: &str) -> Result<(String, Duration), FetchError> {
    let bad = |reason: &str| FetchError::TokenRefused {
        url: shown.to_string(),
        status: 200,
        error: format!(": the answer {reason}"),
    };
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("has no access_token"))?;
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("holds an access_token that is not a bearer token"));
    }
    match v.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err(bad("is not a bearer token (token_type)")),
    }
    // RFC 6749 recommends expires_in; without it, keep the token for five minutes.
    let secs = match v.get("expires_in") {
        None => 300,
        Some(e) => e
            .as_u64()
            .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| bad("has an expires_in that is not a number of seconds"))?,
    };
    Ok((token.to_string(), Duration::from_secs(secs.max(1))))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(jwt: &str, jwks: &Value) -> Value {
        let mut parts = jwt.split('.');
        let (h, c, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let input = format!("{h}.{c}");
        let sig = B64.decode(s).unwrap();
        let k = &jwks["keys"][0];
        match k["kty"].as_str().unwrap() {
            "EC" => {
                let mut point = vec![4u8];
                point.extend(B64.decode(k["x"].as_str().unwrap()).unwrap());
                point.extend(B64.decode(k["y"].as_str().unwrap()).unwrap());
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .unwrap();
            }
            _ => panic!("EC only here"),
        }
        serde_json::from_slice(&B64.decode(c).unwrap()).unwrap()
    }

    #[test]
    fn an_es384_assertion_verifies_with_the_published_jwk() {
        let key = SigningKey::from_pem(&SigningKey::generate_es384_pem().unwrap()).unwrap();
        assert_eq!(key.alg(), Alg::Es384);
        let jwks = key.jwks();
        assert_eq!(jwks["keys"][0]["kid"], key.kid());
        let claims = verify(&key.sign_jwt(&json!({"iss": "me"})).unwrap(), &jwks);
        assert_eq!(claims["iss"], "me");
        // Another key's JWK does not verify it.
        let other = SigningKey::from_pem(&SigningKey::generate_es384_pem().unwrap()).unwrap();
        assert_ne!(other.kid(), key.kid());
        let jwt = key.sign_jwt(&json!({})).unwrap();
        let r = std::panic::catch_unwind(|| verify(&jwt, &other.jwks()));
        assert!(r.is_err());
    }

    #[test]
    fn keys_registrar_cannot_use_are_named_not_shown() {
        let e = SigningKey::from_pem("nothing").unwrap_err().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = SigningKey::from_pem(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
        let e = SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("RS384 or ES384") && !e.contains("MAMCAQA"),
            "{e}"
        );
        let e = SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nMAMC\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no END line"), "{e}");
    }

    #[test]
    fn token_answers_are_checked() {
        let ok = parse_token(
            &json!({"access_token": "abc", "token_type": "Bearer", "expires_in": 120}),
            "u",
        )
        .unwrap();
        assert_eq!(ok.1, Duration::from_secs(120));
        for bad in [
            json!({"token_type": "bearer"}),
            json!({"access_token": "abc", "token_type": "mac"}),
            json!({"access_token": "a b", "token_type": "bearer"}),
            json!({"access_token": "abc", "token_type": "bearer", "expires_in": "soon"}),
        ] {
            let e = parse_token(&bad, "u").unwrap_err().to_string();
            assert!(!e.contains("abc"), "{e}");
        }
    }

    #[test]
    fn plain_http_token_urls_only_on_loopback() {
        for (u, ok) in [
            ("https://auth.example/token", true),
            ("http://127.0.0.1:8080/token", true),
            ("http://localhost/token", true),
            ("http://[::1]/token", true),
            ("http://auth.example/token", false),
            ("ftp://auth.example/token", false),
        ] {
            assert_eq!(transport_allowed(&Url::parse(u).unwrap()), ok, "{u}");
        }
    }
}
