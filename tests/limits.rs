//! Limits on inputs: a cell, a line, a file's decompressed content. Whatever exceeds a limit
//! is rejected with a reason that names the limit (never the content), the rest loads, and
//! memory stays bounded.

use crate::support::{new_key, registrar_cmd, repo_file, synth, text, TestDb};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Run `registrar` with `args` against `db`, stdout to a file, and return (exit code, stdout,
/// stderr, the child's own peak resident memory in bytes, from `wait4`).
fn run_measured(db: &TestDb, args: &[&str], dir: &Path) -> (i32, String, String, u64) {
    let out_path = dir.join("measured.out");
    let err_path = dir.join("measured.err");
    let child = registrar_cmd()
        .env("DATABASE_URL", db.database_url_arg())
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it for this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child); // reaped above
    assert!(libc::WIFEXITED(status), "registrar did not exit normally");
    (
        libc::WEXITSTATUS(status),
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap(),
        usage.ru_maxrss as u64 * 1024,
    )
}

/// A gzip file of `members` concatenated gzip members, each `member_bytes` of `byte` with no
/// line end: small on disk, one line of `members * member_bytes` bytes once decompressed.
fn gzip_bomb(path: &Path, byte: u8, member_bytes: usize, members: usize) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![byte; member_bytes]).unwrap();
    let member = gz.finish().unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..members {
        f.write_all(&member).unwrap();
    }
    f.flush().unwrap();
}

fn fhir_mappings() -> Vec<String> {
    ["patient", "observation"]
        .iter()
        .map(|m| {
            repo_file(&format!("mappings/fhir/{m}.toml"))
                .display()
                .to_string()
        })
        .collect()
}

fn unit<'a>(v: &'a Value, file: &str) -> &'a Value {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["file"] == file)
        .unwrap_or_else(|| panic!("no unit {file}: {v}"))
}

#[test]
fn a_gzip_bomb_is_rejected_in_bounded_memory_and_a_long_line_alone_is_rejected() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 20, 31, 0.0);
    let key = new_key(dir.path(), "k");
    let export = src.join("fhir");
    // 384 MiB of one line, from a file of well under a megabyte.
    let bomb = export.join("Observation.2.ndjson.gz");
    gzip_bomb(&bomb, b' ', 1 << 20, 384);
    assert!(std::fs::metadata(&bomb).unwrap().len() < (1 << 20));
    // A resource of 2 MiB between two that fit.
    let first = std::fs::read_to_string(export.join("Observation.ndjson"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut a: Value = serde_json::from_str(&first).unwrap();
    a["id"] = "limits-a".into();
    let mut b = a.clone();
    b["id"] = "limits-b".into();
    let mut big = a.clone();
    big["id"] = "limits-big".into();
    big["note"] = serde_json::json!([{ "text": "SECRET".repeat(2 << 20 >> 3) }]);
    std::fs::write(
        export.join("Observation.3.ndjson"),
        format!("{a}\n{big}\n{b}\n"),
    )
    .unwrap();

    let mut args = vec![
        "--json".to_string(),
        "--key-file".into(),
        key.display().to_string(),
        "import".into(),
        "fhir-bulk".into(),
        "--max-line-bytes".into(),
        "1MiB".into(),
        "--max-decompressed-bytes".into(),
        "8MiB".into(),
        "--mapping".into(),
    ];
    args.extend(fhir_mappings());
    args.push("--".into());
    args.push(export.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr, peak) = run_measured(&db, &refs, dir.path());
    let t = format!("{stdout}\n{stderr}");
    assert_eq!(code, 1, "rejects give exit 1: {t}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    // The bomb: rejected whole, with the limit, read only up to it.
    let u = unit(&v, "Observation.2.ndjson.gz");
    assert_eq!(u["status"], "rejected", "{u}");
    assert_eq!(u["reason_code"], "file_too_large", "{u}");
    assert!(u["reason"].as_str().unwrap().contains("8388608"), "{u}");
    assert!(
        // Less than the line itself: holding it would take 384 MiB on top of the importer's
        // own working set (which varies with the machine's load: 130 to 250 MiB seen).
        peak < 384 << 20,
        "peak memory {} MiB for a file expanding to 384 MiB",
        peak >> 20
    );
    // The long line: that resource rejected, naming the limit; the others of its file load.
    let u = unit(&v, "Observation.3.ndjson");
    assert_eq!(u["status"], "loaded", "{u}");
    assert_eq!(
        (u["rows_in"].as_i64(), u["rows_rejected"].as_i64()),
        (Some(3), Some(1)),
        "{u}"
    );
    assert_eq!(u["rows_loaded"], 2, "{u}");
    let mut c = db.client();
    let (row, reason): (Option<i64>, String) = c
        .query_one(
            "SELECT row_number, reason FROM registry.reject WHERE reason_code = 'line_too_long'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(row, Some(2));
    assert!(
        reason.contains("line 2") && reason.contains("1048576"),
        "{reason}"
    );
    // The rest of the export loads; nothing of the content is in any message.
    let u = unit(&v, "Observation.ndjson");
    assert_eq!(u["status"], "loaded", "{u}");
    assert!(u["rows_loaded"].as_i64().unwrap() > 0, "{u}");
    let all: String = c
        .query_one(
            "SELECT coalesce(string_agg(reason, ' | '), '') FROM registry.reject",
            &[],
        )
        .unwrap()
        .get(0);
    for s in [&all, &t] {
        assert!(!s.contains("SECRET") && !s.contains("limits-big"), "{s}");
    }
}

#[test]
fn a_huge_csv_cell_rejects_its_row_and_the_rest_loads() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path(), "k");
    // The trial's mapping without `complete = true` (which rejects a file with any reject).
    let mapping = dir.path().join("gbsg2.toml");
    let m = std::fs::read_to_string(repo_file("mappings/gbsg2/gbsg2.toml")).unwrap();
    assert!(m.contains("\ncomplete = true\n"));
    std::fs::write(&mapping, m.replace("\ncomplete = true\n", "\n")).unwrap();
    let text_in = std::fs::read_to_string(repo_file("tests/data/gbsg2.csv")).unwrap();
    // Row 3 (line 4) gets a 20 MB cell in `tgrade`; the default limit (1 MiB) rejects it.
    let mut lines: Vec<String> = text_in.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[3].split(',').map(str::to_string).collect();
    cells[4] = "SECRET".repeat(20_000_000 / 6);
    lines[3] = cells.join(",");
    let data = dir.path().join("gbsg2.csv");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let (code, v, t) = crate::support::import_json(&db, &key, "csv", &mapping, &[&data], &[]);
    assert_eq!(code, Some(1), "{t}");
    let f = &v["files"][0];
    assert_eq!(f["status"], "loaded", "{t}");
    assert_eq!(
        (
            f["rows_in"].as_i64(),
            f["rows_loaded"].as_i64(),
            f["rows_rejected"].as_i64()
        ),
        (Some(686), Some(685), Some(1)),
        "{t}"
    );
    assert_eq!(db.count("SELECT count(*) FROM cdm.person"), 685);
    let (rc, reason, row): (String, String, i64) = db
        .client()
        .query_one(
            "SELECT reason_code, reason, row_number FROM registry.reject",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!((rc.as_str(), row), ("cell_too_large", 3));
    assert!(
        reason.contains("line 4")
            && reason.contains("`tgrade`")
            && reason.contains("1048576")
            && !reason.contains("SECRET"),
        "{reason}"
    );
    assert!(!t.contains("SECRET"));

    // A lower limit given on the command line applies.
    let db2 = TestDb::new();
    let (code, v, t) = crate::support::import_json(
        &db2,
        &key,
        "csv",
        &mapping,
        &[&repo_file("tests/data/gbsg2.csv")],
        &["--max-cell-bytes", "2"],
    );
    assert_eq!(code, Some(1), "{t}");
    // Every row has a cell of 3 bytes or more (`Post`, ages, ...).
    assert_eq!(v["files"][0]["rows_rejected"], 686, "{t}");
    let help = text(
        &registrar_cmd()
            .args(["import", "csv", "--help"])
            .output()
            .unwrap(),
    );
    assert!(help.contains("--max-cell-bytes"), "{help}");
}

#[test]
fn an_xlsx_cell_over_the_limit_rejects_its_row_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let src = synth(dir.path(), 80, 32, 0.0);
    let key = new_key(dir.path(), "k");
    let mapping = repo_file("mappings/hospital/study_neoadj-2019.toml");
    let book = src.join("study/study_nurse.xlsx");
    // The default limit: nothing in the study workbook comes near it.
    let db = TestDb::new();
    let (code, v, t) = crate::support::import_json(&db, &key, "xlsx", &mapping, &[&book], &[]);
    assert!(matches!(code, Some(0) | Some(1)), "{t}");
    let rows = v["files"][0]["rows_in"].as_i64().unwrap();
    assert!(rows > 0, "{t}");
    assert_eq!(
        db.count("SELECT count(*) FROM registry.reject WHERE reason_code = 'cell_too_large'"),
        0
    );
    // A limit of 4 bytes: every row holds a longer cell (its subject number, a date).
    let db = TestDb::new();
    let (code, v, t) = crate::support::import_json(
        &db,
        &key,
        "xlsx",
        &mapping,
        &[&book],
        &["--max-cell-bytes", "4"],
    );
    assert_eq!(code, Some(1), "{t}");
    assert_eq!(v["files"][0]["rows_rejected"].as_i64(), Some(rows), "{t}");
    let (n, reason): (i64, String) = db
        .client()
        .query_one(
            "SELECT count(*), min(reason) FROM registry.reject WHERE reason_code = 'cell_too_large'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(n, rows);
    assert!(
        reason.starts_with("row ") && reason.contains("column `") && reason.contains("4 bytes"),
        "{reason}"
    );
}
