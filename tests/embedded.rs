//! The embedded cluster: initdb once, unix socket only, reuse, stop.

use crate::support::{registrar_cmd, text};

#[test]
fn embedded_cluster_starts_migrates_is_reused_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    // The server may run as an unprivileged user (when tests run as root): let it in.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = tmp.path().join("pg");
    let run = |args: &[&str]| {
        registrar_cmd()
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["demo"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("nightly report:")
            && s.contains("cdm.person")
            && s.contains("research.modeling_cohort"),
        "{s}"
    );
    // Every source kind of the demo ran: CSV, xlsx, a FHIR bulk export, DICOM.
    for source in [
        "his-patients ",
        "study_rt-boost ",
        "fhir-exports ",
        "rt-dicom ",
    ] {
        let line = s
            .lines()
            .find(|l| l.starts_with(source))
            .unwrap_or_else(|| panic!("{source}: {s}"));
        assert!(
            line.contains(" ok ") && !line.contains(" 0 rows loaded"),
            "{line}"
        );
    }
    assert!(s.contains("cdm.image_occurrence"), "{s}");
    let report = s
        .lines()
        .find_map(|l| l.strip_prefix("nightly report: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(std::fs::read_to_string(report).unwrap().contains("<svg"));
    assert!(data.join("PG_VERSION").is_file());
    assert!(
        data.join(".s.PGSQL.5432").exists(),
        "unix socket in the data directory"
    );
    let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    assert!(conf.contains("listen_addresses = ''"), "no TCP port");

    // Reused: a second command finds it running, nothing to migrate.
    let out = run(&["db", "migrate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up to date"),
        "{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("creating"),
        "initdb runs once"
    );

    let out = run(&["db", "stop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped"),
        "{}",
        text(&out)
    );
    assert!(!data.join(".s.PGSQL.5432").exists());
    let out = run(&["db", "stop"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not running"),
        "{}",
        text(&out)
    );

    // Started again on demand, data kept.
    let out = run(&["db", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 pending"),
        "{}",
        text(&out)
    );
    run(&["db", "stop"]);
}
