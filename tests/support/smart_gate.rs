//! A SMART Backend Services authorisation server in front of a FHIR server, written for the
//! tests from the specification (SMART App Launch 2.x, Backend Services; RFC 7523): it
//! publishes `.well-known/smart-configuration`, verifies client assertions itself (ring:
//! RS384 and ES384 against the registered JWK Set), issues short-lived bearer tokens, and
//! forwards FHIR requests upstream only with a valid token (401 otherwise).

use super::fhir_server::{forward, UpstreamAuth};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct State {
    /// Registered clients: id -> JWK Set.
    clients: HashMap<String, Value>,
    /// Issued tokens: value -> expiry.
    tokens: HashMap<String, Instant>,
    /// Every jti seen (a replayed assertion is refused).
    jtis: HashSet<String>,
    lifetime: Duration,
    issued: u64,
    /// Token requests refused, with the OAuth error code.
    refused: Vec<String>,
    /// FHIR requests refused for want of a valid token.
    fhir_refused: u64,
    /// FHIR requests forwarded.
    forwarded: u64,
    /// Every request body and Authorization header seen (to check what the client sent).
    seen_assertions: Vec<String>,
    seq: u64,
    /// Revoke every token once this many FHIR requests have been forwarded.
    revoke_at: Option<u64>,
}

pub struct SmartGate {
    pub base: String,
    pub token_url: String,
    state: Arc<Mutex<State>>,
}

impl SmartGate {
    /// A gate in front of `upstream` (a FHIR base), which it calls with `upstream_token`.
    pub fn start(upstream: &str, upstream_token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}/fhir");
        let token_url = format!("http://127.0.0.1:{port}/auth/token");
        let state = Arc::new(Mutex::new(State {
            lifetime: Duration::from_secs(300),
            ..State::default()
        }));
        let (st, me, tu, up) = (
            state.clone(),
            base.clone(),
            token_url.clone(),
            upstream.to_string(),
        );
        let up_token = upstream_token.map(str::to_string);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, me, tu, up, ut) = (
                    st.clone(),
                    me.clone(),
                    tu.clone(),
                    up.clone(),
                    up_token.clone(),
                );
                std::thread::spawn(move || serve(conn, &st, &me, &tu, &up, ut.as_deref()));
            }
        });
        Self {
            base,
            token_url,
            state,
        }
    }

    /// Register a client id with its JWK Set.
    pub fn register(&self, client_id: &str, jwks: Value) {
        self.state
            .lock()
            .unwrap()
            .clients
            .insert(client_id.to_string(), jwks);
    }

    /// The lifetime (expires_in) of the tokens issued from now on.
    pub fn set_lifetime(&self, d: Duration) {
        self.state.lock().unwrap().lifetime = d;
    }

    /// Revoke every issued token (the FHIR server refuses them from now on).
    pub fn revoke_all(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    /// Revoke every token after the `n`th forwarded FHIR request from now (mid-pull).
    pub fn revoke_after(&self, n: u64) {
        let mut s = self.state.lock().unwrap();
        s.revoke_at = Some(s.forwarded + n);
    }

    pub fn issued(&self) -> u64 {
        self.state.lock().unwrap().issued
    }

    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    pub fn fhir_refused(&self) -> u64 {
        self.state.lock().unwrap().fhir_refused
    }

    pub fn forwarded(&self) -> u64 {
        self.state.lock().unwrap().forwarded
    }

    /// The client assertions received (to check that none is printed).
    pub fn assertions(&self) -> Vec<String> {
        self.state.lock().unwrap().seen_assertions.clone()
    }

    /// The tokens currently valid (to check that none is printed).
    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.keys().cloned().collect()
    }
}

fn reply(conn: &mut TcpStream, status: u16, extra: &str, body: &Value) {
    let b = serde_json::to_vec(body).unwrap();
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            b.len()
        )
        .as_bytes(),
    );
    let _ = conn.write_all(&b);
}

fn serve(
    mut conn: TcpStream,
    state: &Mutex<State>,
    me: &str,
    token_url: &str,
    upstream: &str,
    upstream_token: Option<&str>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..split + 4]).to_string();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < split + 4 + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[split + 4..split + 4 + length]).to_string();
    let line = head.lines().next().unwrap_or("").to_string();
    let method = line.split(' ').next().unwrap_or("");
    let target = line.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("");
    let fhir_path = url::Url::parse(me).unwrap().path().to_string();

    if path == format!("{fhir_path}/.well-known/smart-configuration") {
        return reply(
            &mut conn,
            200,
            "",
            &json!({
                "token_endpoint": token_url,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "scopes_supported": ["system/*.read", "system/*.rs"],
                "capabilities": ["client-confidential-asymmetric"]
            }),
        );
    }
    // The CapabilityStatement is public (SMART servers publish it for discovery).
    if path == format!("{fhir_path}/metadata") {
        return forward(
            conn,
            &head,
            upstream,
            me,
            UpstreamAuth::Replace(upstream_token),
        );
    }
    if path == url::Url::parse(token_url).unwrap().path() {
        if method != "POST" {
            return reply(&mut conn, 405, "", &json!({"error": "invalid_request"}));
        }
        let (status, answer) = token(state, token_url, &body);
        return reply(&mut conn, status, "", &answer);
    }
    // A FHIR request: only with a valid token.
    let valid = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        .is_some_and(|t| {
            let s = state.lock().unwrap();
            s.tokens.get(&t).is_some_and(|exp| Instant::now() < *exp)
        });
    if !valid {
        state.lock().unwrap().fhir_refused += 1;
        return reply(
            &mut conn,
            401,
            "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}),
        );
    }
    {
        let mut s = state.lock().unwrap();
        s.forwarded += 1;
        if s.revoke_at == Some(s.forwarded) {
            s.tokens.clear();
        }
    }
    forward(
        conn,
        &head,
        upstream,
        me,
        UpstreamAuth::Replace(upstream_token),
    );
}

fn oauth_error(state: &Mutex<State>, code: &str, why: &str) -> (u16, Value) {
    state.lock().unwrap().refused.push(code.to_string());
    let status = if code == "invalid_client" { 401 } else { 400 };
    (status, json!({"error": code, "error_description": why}))
}

/// The token endpoint: check the form and the assertion, issue a token.
fn token(state: &Mutex<State>, token_url: &str, body: &str) -> (u16, Value) {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if let Some(a) = form.get("client_assertion") {
        state.lock().unwrap().seen_assertions.push(a.clone());
    }
    if get("grant_type") != "client_credentials" {
        return oauth_error(state, "unsupported_grant_type", "client_credentials only");
    }
    if get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return oauth_error(state, "invalid_request", "client_assertion_type");
    }
    let scope = get("scope");
    if scope.is_empty() || !scope.split(' ').all(|s| s.starts_with("system/")) {
        return oauth_error(state, "invalid_scope", "system scopes only");
    }
    let jwt = get("client_assertion");
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return oauth_error(state, "invalid_request", "not a JWS compact serialisation");
    }
    let decode = |p: &str| -> Option<Value> { serde_json::from_slice(&B64.decode(p).ok()?).ok() };
    let (Some(h), Some(c), Ok(sig)) = (decode(parts[0]), decode(parts[1]), B64.decode(parts[2]))
    else {
        return oauth_error(state, "invalid_request", "undecodable assertion");
    };
    let iss = c["iss"].as_str().unwrap_or("");
    let Some(jwks) = state.lock().unwrap().clients.get(iss).cloned() else {
        return oauth_error(state, "invalid_client", "unknown client");
    };
    let alg = h["alg"].as_str().unwrap_or("");
    let kid = h["kid"].as_str().unwrap_or("");
    if h.get("typ").is_some_and(|t| t != "JWT") {
        return oauth_error(state, "invalid_request", "typ");
    }
    let Some(jwk) = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid)
    else {
        return oauth_error(state, "invalid_client", "no registered key has this kid");
    };
    let input = format!("{}.{}", parts[0], parts[1]);
    let b = |k: &str| {
        B64.decode(jwk[k].as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    let verified = match (alg, jwk["kty"].as_str()) {
        ("ES384", Some("EC")) if jwk["crv"] == "P-384" => {
            let mut point = vec![4u8];
            point.extend(b("x"));
            point.extend(b("y"));
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }
        ("RS384", Some("RSA")) => signature::RsaPublicKeyComponents {
            n: b("n"),
            e: b("e"),
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA384,
            input.as_bytes(),
            &sig,
        )
        .is_ok(),
        _ => false,
    };
    if !verified {
        return oauth_error(state, "invalid_client", "the signature does not verify");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = c["exp"].as_u64().unwrap_or(0);
    if c["sub"] != iss {
        return oauth_error(state, "invalid_client", "sub is not iss");
    }
    if c["aud"] != token_url {
        return oauth_error(state, "invalid_client", "aud is not the token URL");
    }
    if exp <= now || exp > now + 300 + 5 {
        return oauth_error(state, "invalid_client", "exp not within five minutes");
    }
    let jti = c["jti"].as_str().unwrap_or("");
    let mut s = state.lock().unwrap();
    if jti.is_empty() || !s.jtis.insert(jti.to_string()) {
        drop(s);
        return oauth_error(state, "invalid_client", "jti replayed");
    }
    s.seq += 1;
    s.issued += 1;
    let value = format!("tok-{}-{:x}", s.seq, now.wrapping_mul(0x9e37_79b9) ^ s.seq);
    let lifetime = s.lifetime;
    s.tokens.insert(value.clone(), Instant::now() + lifetime);
    (
        200,
        json!({"access_token": value, "token_type": "bearer",
               "expires_in": lifetime.as_secs(), "scope": scope}),
    )
}
