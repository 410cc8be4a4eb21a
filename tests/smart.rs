//! SMART Backend Services: pulls from FHIR endpoints that want a signed client assertion for
//! every token (tests/support/smart_gate.rs, verifying with its own code), with keys made by
//! `registrar smart-key new` (ES384) and by OpenSSL (RS384), in front of sekmet and Medplum.

use crate::fhir::{mapping_args, mapping_outcome, of_types, pull, rows_in, TYPES};
use crate::support::fhir_server::FhirServer;
use crate::support::medplum_server::{MedplumServer, Paging};
use crate::support::smart_gate::SmartGate;
use crate::support::{new_key, registrar_cmd, synth, text, TestDb};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// `registrar smart-key new FILE`: the JWK Set it prints.
fn smart_key_new(file: &Path) -> Value {
    let out = registrar_cmd()
        .args(["smart-key", "new"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn smart_key_jwks(file: &Path) -> Value {
    let out = registrar_cmd()
        .args(["smart-key", "jwks"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the SMART tests need the openssl program");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

fn total_rows(v: &Value) -> usize {
    TYPES
        .iter()
        .map(|ty| rows_in(mapping_outcome(v, ty)) as usize)
        .sum()
}

/// Neither a token nor an assertion of the gate's in the text.
fn assert_no_secret(gate: &SmartGate, t: &str) {
    for s in gate.tokens().iter().chain(gate.assertions().iter()) {
        assert!(
            !t.contains(s.as_str()),
            "a token or an assertion leaked:\n{t}"
        );
    }
    assert!(!t.contains("eyJ"), "something JWT-like in the output:\n{t}");
}

#[test]
fn smart_pulls_with_es384_and_rs384_keys_renew_tokens_and_survive_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 20, 5, 0.0);
    // sekmet itself wants a token: the gate holds it, registrar never sees it.
    let server = FhirServer::start(Some("upstream-only-token"));
    let all = server.load_synth(&src.join("fhir"));
    let gate = SmartGate::start(&server.base, server.token.as_deref());

    // An ES384 key from registrar: mode 0600, its JWK Set printed, never overwritten.
    let ec = dir.path().join("smart-ec.pem");
    let jwks = smart_key_new(&ec);
    assert_eq!(
        std::fs::metadata(&ec).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["alg"], "ES384");
    assert!(jwks["keys"][0].get("d").is_none(), "private part printed");
    assert_eq!(smart_key_jwks(&ec), jwks);
    let out = registrar_cmd()
        .args(["smart-key", "new"])
        .arg(&ec)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an existing key file was overwritten"
    );
    gate.register("registrar-nightly", jwks);

    // Tokens live two seconds: a pull of 20 patients in pages of 10 needs several.
    gate.set_lifetime(Duration::from_secs(2));
    let db = TestDb::new();
    let ec_s = ec.to_str().unwrap();
    let flags = [
        "--smart-client-id",
        "registrar-nightly",
        "--smart-key",
        ec_s,
    ];
    let mut args = flags.to_vec();
    args.extend(["--count", "10"]);
    let (code, v, t) = pull(&db, &key, &gate.base, &args);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(total_rows(&v), of_types(&all), "{t}");
    assert!(
        gate.issued() >= 2,
        "tokens were not renewed: {}",
        gate.issued()
    );
    assert!(gate.refused().is_empty(), "{:?}", gate.refused());
    assert_no_secret(&gate, &t);
    let messages = db
        .count("SELECT count(*) FROM registry.import_run WHERE coalesce(message, '') LIKE '%eyJ%'");
    assert_eq!(messages, 0);

    // Every token revoked in the middle of a pull: the refused request is repeated with a
    // new token, once, and the pull completes.
    gate.set_lifetime(Duration::from_secs(300));
    let before = (gate.issued(), gate.fhir_refused());
    gate.revoke_after(3);
    let mut args = flags.to_vec();
    args.extend(["--count", "10", "--full"]);
    let (code, v, t) = pull(&db, &key, &gate.base, &args);
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(total_rows(&v), of_types(&all), "{t}");
    assert_eq!(
        gate.issued() - before.0,
        2,
        "one token, one after the revocation"
    );
    assert_eq!(gate.fhir_refused() - before.1, 1);
    assert_no_secret(&gate, &t);

    // An RSA key made by OpenSSL (PKCS#8; the PKCS#1 form of it is the same key), through a
    // nightly configuration's [source.smart] with the token URL given.
    let rsa = dir.path().join("smart-rsa.pem");
    let rsa_s = rsa.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa_s,
    ]);
    std::fs::set_permissions(&rsa, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pkcs1 = dir.path().join("smart-rsa-pkcs1.pem");
    openssl(&[
        "pkey",
        "-in",
        rsa_s,
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    std::fs::set_permissions(&pkcs1, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rsa_jwks = smart_key_jwks(&rsa);
    assert_eq!(rsa_jwks["keys"][0]["alg"], "RS384");
    assert_eq!(smart_key_jwks(&pkcs1), rsa_jwks);
    gate.register("registrar-rsa", rsa_jwks);
    let maps = mapping_args()[1..]
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let night_db = TestDb::new();
    let cfg = dir.path().join("registrar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n\
             [[source]]\nname = \"his-fhir\"\nkind = \"fhir\"\nendpoint = \"{}\"\nmappings = [{maps}]\n\n\
             [source.smart]\nclient_id = \"registrar-rsa\"\nkey_file = \"{}\"\ntoken_url = \"{}\"\n",
            night_db.database_url_arg(),
            key.display(),
            dir.path().join("reports").display(),
            gate.base,
            pkcs1.display(),
            gate.token_url,
        ),
    )
    .unwrap();
    let out = registrar_cmd()
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = registrar_cmd()
        .args(["--json", "nightly", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sources"][0]["status"], "ok", "{r}");
    assert_eq!(
        night_db.count("SELECT count(*) FROM cdm.person"),
        db.count("SELECT count(*) FROM cdm.person")
    );
    assert_no_secret(&gate, &text(&out));
    assert!(gate.refused().is_empty(), "{:?}", gate.refused());
}

#[test]
fn smart_refusals_name_the_cause_and_never_show_the_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 4, 9, 0.0);
    let server = FhirServer::start(None);
    server.load_synth(&src.join("fhir"));
    let gate = SmartGate::start(&server.base, None);
    let registered = dir.path().join("registered.pem");
    let jwks = smart_key_new(&registered);
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    gate.register("registrar-nightly", jwks);
    let db = TestDb::new();
    let r = registered.to_str().unwrap();

    // Without a token the FHIR server refuses.
    let (code, _, t) = pull(&db, &key, &gate.base, &[]);
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("401"), "{t}");

    // A key readable by others is refused before anything is sent.
    let loose = dir.path().join("loose.pem");
    std::fs::copy(&registered, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sent = gate.assertions().len();
    let (code, _, t) = pull(
        &db,
        &key,
        &gate.base,
        &[
            "--smart-client-id",
            "registrar-nightly",
            "--smart-key",
            loose.to_str().unwrap(),
        ],
    );
    assert_ne!(code, Some(0), "{t}");
    assert!(t.contains("chmod 600"), "{t}");
    assert_eq!(gate.assertions().len(), sent, "an assertion was sent");

    // Another key under the registered kid: the signature does not verify.
    let other = dir.path().join("other.pem");
    smart_key_new(&other);
    let o = other.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "--smart-client-id",
                "registrar-nightly",
                "--smart-key",
                o,
                "--smart-kid",
                &kid,
            ],
            "invalid_client (the signature does not verify)",
        ),
        (
            &["--smart-client-id", "someone-else", "--smart-key", r],
            "invalid_client (unknown client)",
        ),
        (
            &[
                "--smart-client-id",
                "registrar-nightly",
                "--smart-key",
                r,
                "--smart-scope",
                "patient/*.read",
            ],
            "invalid_scope",
        ),
    ];
    for (args, why) in cases {
        let sent = gate.assertions().len();
        let (code, _, t) = pull(&db, &key, &gate.base, args);
        assert_eq!(code, Some(2), "{args:?}: {t}");
        // Asked once (for the CapabilityStatement): a refusal ends the pull.
        assert_eq!(gate.assertions().len(), sent + 1, "{t}");
        assert!(
            t.contains(&format!("token endpoint {}: HTTP", gate.token_url)) && t.contains(why),
            "{args:?}: {t}"
        );
        assert_no_secret(&gate, &t);
    }
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 0);

    // A token URL over plain http to another host is refused before a request.
    let (code, _, t) = pull(
        &db,
        &key,
        &gate.base,
        &[
            "--smart-client-id",
            "registrar-nightly",
            "--smart-key",
            r,
            "--smart-token-url",
            "http://auth.hospital.example/token",
        ],
    );
    assert_ne!(code, Some(0), "{t}");
    assert!(t.contains("https only"), "{t}");

    // A token and SMART settings together are refused: on the command line and in a
    // nightly configuration.
    let tf = dir.path().join("token");
    std::fs::write(&tf, "t\n").unwrap();
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, t) = pull(
        &db,
        &key,
        &gate.base,
        &[
            "--token-file",
            tf.to_str().unwrap(),
            "--smart-client-id",
            "registrar-nightly",
            "--smart-key",
            r,
        ],
    );
    assert_ne!(code, Some(0), "{t}");
    assert!(t.contains("cannot be used with"), "{t}");
    let cfg = dir.path().join("registrar.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\ndatabase_url = \"{}\"\nkey_file = \"{}\"\nreport_dir = \"{}\"\n\n\
             [[source]]\nname = \"his-fhir\"\nkind = \"fhir\"\nendpoint = \"{}\"\n\
             mappings = [\"{}\"]\ntoken_file = \"{}\"\n\n\
             [source.smart]\nclient_id = \"registrar-nightly\"\nkey_file = \"{r}\"\n",
            db.database_url_arg(),
            key.display(),
            dir.path().join("reports").display(),
            gate.base,
            mapping_args()[1],
            tf.display(),
        ),
    )
    .unwrap();
    let out = registrar_cmd()
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "source his-fhir: give one of token_file, token_env and [source.smart], not several"
        ),
        "{}",
        text(&out)
    );

    // With the right key, it loads.
    let (code, v, t) = pull(
        &db,
        &key,
        &gate.base,
        &["--smart-client-id", "registrar-nightly", "--smart-key", r],
    );
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(rows_in(mapping_outcome(&v, "Patient")), 4, "{t}");
}

#[test]
fn a_medplum_endpoint_behind_smart_loads_as_an_open_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "registry.key");
    let src = synth(dir.path(), 12, 21, 0.0);
    let server = MedplumServer::start(Paging::Offset);
    let all = server.load_synth(&src.join("fhir"));
    std::thread::sleep(Duration::from_millis(1200));
    let gate = SmartGate::start(&server.base, None);
    let k = dir.path().join("smart.pem");
    gate.register("registrar", smart_key_new(&k));
    gate.set_lifetime(Duration::from_secs(3));

    let open = TestDb::new();
    let (code, v_open, t) = pull(&open, &key, &server.base, &[]);
    assert_eq!(code, Some(0), "{t}");
    let gated = TestDb::new();
    let (code, v, t) = pull(
        &gated,
        &key,
        &gate.base,
        &[
            "--smart-client-id",
            "registrar",
            "--smart-key",
            k.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{t}");
    assert_eq!(total_rows(&v), of_types(&all), "{t}");
    assert_eq!(total_rows(&v), total_rows(&v_open));
    assert_eq!(
        crate::fhir::cohort_rows(&gated),
        crate::fhir::cohort_rows(&open)
    );
    assert!(gate.forwarded() > 0 && gate.refused().is_empty());
    assert_no_secret(&gate, &t);
}
