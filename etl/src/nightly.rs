//! `registrar nightly`: every configured source, one run record, one report.
//!
//! - One run at a time: a session advisory lock on the registry database (so two hosts cannot
//!   collide either); a second run exits with a clear message.
//! - Every source runs; one that fails does not stop the others.
//! - Resumable: each file is its own transaction and the ledger skips files already loaded,
//!   so a run killed at any point (power loss, kill -9) is completed by the next one without
//!   duplicates or gaps; the interrupted run is marked failed.
//! - Exit codes: 0 all good, 1 finished with rejects or rejected files, 2 a source failed,
//!   3 configuration or database error.

use crate::config::{source_files, Config, SourceKind};
use crate::import::{import_file, ImportOptions};
use crate::mapping::{check::compile, Format, Mapping};
use crate::privacy::report::html_escape;
use crate::{db, privacy, progress, quality, runs, status};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Advisory lock held for the whole nightly run ("regnight" in ASCII).
pub const NIGHTLY_LOCK: i64 = 0x7265_676e_6967_6874;

/// What happened to one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceOutcome {
    pub name: String,
    pub kind: String,
    pub status: String,
    pub files_seen: i64,
    pub files_loaded: i64,
    pub files_skipped: i64,
    pub files_rejected: i64,
    pub rows_in: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// The night's report (also written as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub exit_code: u8,
    pub sources: Vec<SourceOutcome>,
    pub cdm_rows: Vec<status::TableCount>,
    pub rejects: Vec<RejectGroup>,
    pub unmapped: Vec<(String, String, String, i64)>,
    pub quality_failed: Vec<quality::Outcome>,
    pub quality_checks: usize,
    pub audit_head: Option<(i64, String)>,
    pub trend: Vec<TrendPoint>,
    pub report_html: PathBuf,
    pub report_json: PathBuf,
}

/// Rejects of one source and reason, with the first rows (numbers only, never values).
#[derive(Debug, Clone, Serialize)]
pub struct RejectGroup {
    pub mapping: String,
    pub reason_code: String,
    pub count: i64,
    pub example_reason: String,
    pub first_rows: Vec<i64>,
}

/// One past night, for the trend charts.
#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    pub run_id: i64,
    pub day: String,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub seconds: f64,
}

/// Why a nightly run could not run at all (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Fatal(pub anyhow::Error);

/// Run the night. `Err(Fatal)` for configuration, lock and database errors.
pub fn run(cfg: &Config, db_opts: &db::DbOptions) -> Result<Report, Fatal> {
    let started = Instant::now();
    let policy = cfg.date_policy().map_err(Fatal)?;
    let keys = cfg.key_opts().load().map_err(Fatal)?;
    std::fs::create_dir_all(&cfg.registry.report_dir)
        .with_context(|| {
            format!(
                "cannot create the report folder {}",
                cfg.registry.report_dir.display()
            )
        })
        .map_err(Fatal)?;
    let target = db_opts.resolve().map_err(Fatal)?;
    let mut conn = target.diesel().map_err(Fatal)?;
    db::migrate(&mut conn).map_err(Fatal)?;
    // The lock lives as long as this connection.
    let mut lock = target.client().map_err(Fatal)?;
    let got: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&NIGHTLY_LOCK])
        .map_err(|e| Fatal(e.into()))?
        .get(0);
    if !got {
        let who = lock
            .query_opt(
                "SELECT format('run %s, started %s by %s', run_id, to_char(started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), actor_os_user)
                   FROM registry.import_run WHERE command = 'nightly' AND status = 'running' ORDER BY run_id DESC LIMIT 1",
                &[],
            )
            .ok()
            .flatten()
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|| "another host".into());
        return Err(Fatal(anyhow::anyhow!(
            "another nightly run is in progress ({who}); this one exits without touching anything"
        )));
    }
    let mut client = target.client().map_err(Fatal)?;
    let mut seq = target.client().map_err(Fatal)?;
    let interrupted = client
        .execute(
            "UPDATE registry.import_run SET status = 'failed', finished_at = now(),
                    message = 'interrupted before it finished; its loaded files stay, the rest is done by a later run'
              WHERE command = 'nightly' AND status = 'running'",
            &[],
        )
        .map_err(|e| Fatal(e.into()))?;
    privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&policy),
    )
    .map_err(Fatal)?;
    let run_id =
        runs::start(&mut conn, "nightly", Some(keys.current.key_id().as_str())).map_err(Fatal)?;
    if interrupted > 0 {
        eprintln!("registrar: {interrupted} interrupted nightly run(s) found; resuming their work");
    }
    let opts = ImportOptions {
        policy,
        ..Default::default()
    };
    let mut sources = Vec::new();
    for s in &cfg.sources {
        let t0 = Instant::now();
        let mut o = SourceOutcome {
            name: s.name.clone(),
            kind: format!("{:?}", s.kind).to_lowercase(),
            ..Default::default()
        };
        let result = run_source(cfg, s, &mut client, &mut seq, &keys, run_id, &opts, &mut o);
        o.duration_ms = t0.elapsed().as_millis() as i64;
        o.status = match &result {
            Err(e) => {
                o.error = Some(format!("{e:#}"));
                "failed".into()
            }
            Ok(()) if o.rows_rejected > 0 || o.files_rejected > 0 => "rejects".into(),
            Ok(()) => "ok".into(),
        };
        client
            .execute(
                "INSERT INTO registry.nightly_source (run_id, source_name, source_kind, status, files_seen, files_loaded,
                        files_skipped, files_rejected, rows_in, rows_loaded, rows_rejected, rows_skipped, duration_ms, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[&run_id, &o.name, &o.kind, &o.status, &o.files_seen, &o.files_loaded, &o.files_skipped,
                  &o.files_rejected, &o.rows_in, &o.rows_loaded, &o.rows_rejected, &o.rows_skipped, &o.duration_ms, &o.error],
            )
            .map_err(|e| Fatal(e.into()))?;
        sources.push(o);
    }
    let exit_code: u8 = if sources.iter().any(|s| s.status == "failed") {
        2
    } else if sources.iter().any(|s| s.status == "rejects") {
        1
    } else {
        0
    };
    let mut counts = runs::Counts::default();
    for s in &sources {
        counts.rows_in += s.rows_in;
        counts.rows_loaded += s.rows_loaded;
        counts.rows_rejected += s.rows_rejected;
        counts.rows_skipped += s.rows_skipped;
    }
    let run_status = match exit_code {
        0 => "succeeded",
        1 => "partial",
        _ => "failed",
    };
    runs::finish(&mut conn, run_id, run_status, counts, None).map_err(Fatal)?;
    let report = build_report(
        cfg,
        &target,
        &mut client,
        run_id,
        started,
        exit_code,
        sources,
    )
    .map_err(Fatal)?;
    Ok(report)
}

/// One source of the night; fills `o` as it goes (what was done stays counted when it fails).
#[allow(clippy::too_many_arguments)]
fn run_source(
    cfg: &Config,
    s: &crate::config::SourceConfig,
    client: &mut postgres::Client,
    seq: &mut postgres::Client,
    keys: &crate::privacy::keys::Keys,
    run_id: i64,
    opts: &ImportOptions,
    o: &mut SourceOutcome,
) -> Result<()> {
    let compile_all =
        |client: &mut postgres::Client, paths: &[std::path::PathBuf], want: Format| {
            paths
                .iter()
                .map(|p| {
                    let c = compile(Mapping::load(p)?, client).map_err(|e| {
                        anyhow::anyhow!("{}: mapping errors:\n  {}", p.display(), e.join("\n  "))
                    })?;
                    if c.mapping.spec.source.format != want {
                        bail!(
                            "source kind {:?} does not match the format of {}",
                            s.kind,
                            p.display()
                        );
                    }
                    Ok(c)
                })
                .collect::<Result<Vec<_>>>()
        };
    let add_fhir = |o: &mut SourceOutcome, f: &crate::fhirimport::FhirOutcome| {
        for u in &f.units {
            o.files_seen += 1;
            match u.status.as_str() {
                "loaded" => o.files_loaded += 1,
                "skipped" => o.files_skipped += 1,
                _ => o.files_rejected += 1,
            }
            o.rows_in += u.rows_in;
            o.rows_loaded += u.rows_loaded;
            o.rows_rejected += u.rows_rejected;
            o.rows_skipped += u.rows_skipped;
        }
    };
    match s.kind {
        SourceKind::Csv | SourceKind::Xlsx => {
            let want = if s.kind == SourceKind::Csv {
                Format::Csv
            } else {
                Format::Xlsx
            };
            let compiled = compile_all(client, std::slice::from_ref(&s.mapping), want)?
                .pop()
                .expect("one mapping");
            for f in source_files(s)? {
                o.files_seen += 1;
                let bar = progress::count_bar(None, &s.name, "rows");
                let r = import_file(client, seq, &compiled, keys, run_id, &f, opts, &bar)?;
                bar.finish_and_clear();
                match r.status.as_str() {
                    "loaded" => o.files_loaded += 1,
                    "skipped" => o.files_skipped += 1,
                    _ => o.files_rejected += 1,
                }
                o.rows_in += r.rows_in;
                o.rows_loaded += r.rows_loaded;
                o.rows_rejected += r.rows_rejected;
                o.rows_skipped += r.rows_skipped;
            }
        }
        SourceKind::Fhir => {
            let compiled = compile_all(client, &s.mappings, Format::Fhir)?;
            let token =
                crate::fhirimport::read_token(s.token_file.as_deref(), s.token_env.as_deref())?;
            let fhir = registrar_fhir::client::Client::new(
                s.endpoint.as_deref().expect("checked when loaded"),
                registrar_fhir::client::ClientOptions {
                    count: s.count.unwrap_or(200).clamp(1, 10_000),
                    bearer_token: token,
                    ..Default::default()
                },
            )?;
            let bar = progress::count_bar(None, &s.name, "resources");
            let mut patients = crate::fhirimport::PatientCache::default();
            let mut failures = Vec::new();
            for c in &compiled {
                match crate::fhirimport::pull_endpoint(
                    client,
                    seq,
                    c,
                    keys,
                    run_id,
                    &fhir,
                    &mut patients,
                    false,
                    opts,
                    &bar,
                ) {
                    Ok(f) => add_fhir(o, &f),
                    Err(e) => failures.push(format!("{}: {e:#}", c.mapping.spec.source.name)),
                }
            }
            bar.finish_and_clear();
            if !failures.is_empty() {
                bail!("{}", failures.join("; "));
            }
        }
        SourceKind::FhirBulk => {
            let compiled = compile_all(client, &s.mappings, Format::Fhir)?;
            // The folder is one export, or holds one export per subfolder (oldest name first).
            let mut exports: Vec<std::path::PathBuf> = std::fs::read_dir(&s.folder)
                .with_context(|| format!("cannot read {}", s.folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            exports.sort();
            if exports.is_empty() {
                exports.push(s.folder.clone());
            }
            let bar = progress::count_bar(None, &s.name, "resources");
            for dir in exports {
                let outcomes = crate::fhirimport::import_bulk(
                    client, seq, &compiled, keys, run_id, &dir, opts, &bar,
                )?;
                for f in &outcomes {
                    add_fhir(o, f);
                }
            }
            bar.finish_and_clear();
        }
        SourceKind::Dicom => {
            let output = s.output.as_deref().expect("checked when loaded");
            let profile = crate::dicomrun::load_profile(s.profile.as_deref(), s.accept_burned_in)?;
            let bar = progress::count_bar(None, &s.name, "files");
            let dicom_keys = cfg.key_opts().load()?;
            let run = crate::dicomrun::pseudonymise_tree(
                dicom_keys,
                opts.policy,
                &profile,
                &s.folder,
                output,
                &registrar_anonymizer::dicom::BatchOptions {
                    incremental: true,
                    ..Default::default()
                },
                &|_| bar.inc(1),
            )?;
            bar.finish_and_clear();
            crate::privacy::audit::append_now(client, &run.record(Some(run_id)))?;
            o.files_seen += run.summary.files as i64;
            o.files_loaded += run.summary.pseudonymised as i64;
            o.files_skipped += run.summary.skipped as i64;
            o.files_rejected += run.summary.quarantined as i64;
            let idx = crate::imaging::index_tree(client, keys, run_id, output)?;
            o.rows_in += idx.series;
            o.rows_loaded += idx.image_occurrences + idx.image_features;
            o.rows_rejected += idx.rejected.len() as i64;
        }
    }
    Ok(())
}

fn build_report(
    cfg: &Config,
    target: &db::DbTarget,
    c: &mut postgres::Client,
    run_id: i64,
    started: Instant,
    exit_code: u8,
    sources: Vec<SourceOutcome>,
) -> Result<Report> {
    let st = status::collect(target)?;
    let rejects = c
        .query(
            "SELECT coalesce(f.mapping_name, '-'), r.reason_code, count(*)::int8, min(r.reason),
                    (array_agg(r.row_number ORDER BY r.row_number) FILTER (WHERE r.row_number IS NOT NULL))[1:5]
               FROM registry.reject r LEFT JOIN registry.source_file f USING (source_file_id)
              WHERE r.run_id = $1 GROUP BY 1, 2 ORDER BY 3 DESC",
            &[&run_id],
        )?
        .iter()
        .map(|r| RejectGroup {
            mapping: r.get(0),
            reason_code: r.get(1),
            count: r.get(2),
            example_reason: r.get(3),
            first_rows: r.get::<_, Option<Vec<i64>>>(4).unwrap_or_default(),
        })
        .collect();
    let unmapped = c
        .query(
            "SELECT mapping_name, concept_map, source_code, occurrences FROM registry.unmapped_code
              ORDER BY occurrences DESC LIMIT 20",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    // Nothing loaded tonight: the data, and so its quality, are last night's; skip the
    // full-table checks (they dominate a night with nothing to do).
    let changed = sources
        .iter()
        .any(|s| s.files_loaded > 0 || s.files_rejected > 0);
    let (quality_checks, quality_failed) = if changed || previous_quality(cfg, run_id).is_none() {
        let checks = quality::run(c)?;
        (
            checks.len(),
            checks.into_iter().filter(|o| !o.passed).collect(),
        )
    } else {
        previous_quality(cfg, run_id).expect("checked")
    };
    let audit = privacy::audit::verify(c, Vec::new())?;
    let trend = c
        .query(
            "SELECT run_id, to_char(started_at, 'MM-DD'), rows_loaded, rows_rejected,
                    extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8
               FROM registry.import_run WHERE command = 'nightly' AND run_id <= $1
              ORDER BY run_id DESC LIMIT 30",
            &[&run_id],
        )?
        .iter()
        .rev()
        .map(|r| TrendPoint {
            run_id: r.get(0),
            day: r.get(1),
            rows_loaded: r.get(2),
            rows_rejected: r.get(3),
            seconds: r.get(4),
        })
        .collect();
    let started_at: String = c
        .query_one("SELECT to_char(started_at, 'YYYY-MM-DD HH24:MI:SS TZ') FROM registry.import_run WHERE run_id = $1", &[&run_id])?
        .get(0);
    let dir = &cfg.registry.report_dir;
    let report = Report {
        run_id,
        started_at,
        duration_ms: started.elapsed().as_millis() as i64,
        exit_code,
        sources,
        cdm_rows: st.cdm_rows,
        rejects,
        unmapped,
        quality_failed,
        quality_checks,
        audit_head: audit.head.clone(),
        trend,
        report_html: dir.join(format!("nightly-{run_id}.html")),
        report_json: dir.join(format!("nightly-{run_id}.json")),
    };
    crate::files::write_atomically(
        &report.report_json,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    crate::files::write_atomically(&report.report_html, html(&report, audit.is_ok()).as_bytes())?;
    Ok(report)
}

/// The data-quality results of the latest earlier report, if any.
fn previous_quality(cfg: &Config, run_id: i64) -> Option<(usize, Vec<quality::Outcome>)> {
    #[derive(serde::Deserialize)]
    struct Prev {
        quality_checks: usize,
        quality_failed: Vec<quality::Outcome>,
    }
    (1..run_id).rev().take(60).find_map(|id| {
        let text =
            std::fs::read_to_string(cfg.registry.report_dir.join(format!("nightly-{id}.json")))
                .ok()?;
        let p: Prev = serde_json::from_str(&text).ok()?;
        Some((p.quality_checks, p.quality_failed))
    })
}

/// An inline SVG bar chart of one series.
fn svg_bars(title: &str, points: &[(String, f64)], color: &str) -> String {
    let (w, h, pad) = (600.0, 160.0, 28.0);
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let n = points.len().max(1) as f64;
    let bw = (w - 2.0 * pad) / n;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        html_escape(title),
        html_escape(title)
    );
    s.push_str(&format!(
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        h - pad,
        w - pad,
        h - pad
    ));
    s.push_str(&format!(
        "<text x=\"2\" y=\"{}\" font-size=\"10\">{}</text>",
        pad - 8.0,
        max.round()
    ));
    for (i, (label, v)) in points.iter().enumerate() {
        let bh = (h - 2.0 * pad) * v / max;
        let x = pad + i as f64 * bw;
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {}</title></rect>",
            x + 1.0,
            h - pad - bh,
            (bw - 2.0).max(1.0),
            bh,
            html_escape(label),
            v
        ));
        if points.len() <= 12 || i % 5 == 0 {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\">{}</text>",
                x + 1.0,
                h - pad + 12.0,
                html_escape(label)
            ));
        }
    }
    s.push_str("</svg></figure>");
    s
}

/// The self-contained HTML page (no external assets).
pub fn html(r: &Report, audit_ok: bool) -> String {
    let mut o = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>registrar nightly report</title><style>\
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}th{background:#f0f0f0}td.n{text-align:right}\
.ok{color:#17692e}.warn{color:#9a6700}.bad{color:#b42318;font-weight:bold}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}\
</style></head><body>");
    let verdict = match r.exit_code {
        0 => "<span class=ok>all sources loaded</span>",
        1 => "<span class=warn>finished with rejects</span>",
        _ => "<span class=bad>a source failed</span>",
    };
    o.push_str(&format!(
        "<h1>Nightly run {} &mdash; {}</h1><p>Started {}, took {:.1} s. Exit code {}.</p>",
        r.run_id,
        verdict,
        html_escape(&r.started_at),
        r.duration_ms as f64 / 1000.0,
        r.exit_code
    ));
    o.push_str("<h2>Sources</h2><table><tr><th>source</th><th>kind</th><th>status</th><th>files</th><th>loaded</th><th>skipped</th><th>rejected</th><th>rows in</th><th>rows loaded</th><th>rows rejected</th><th>rows skipped</th><th>seconds</th><th>error</th></tr>");
    for s in &r.sources {
        let class = match s.status.as_str() {
            "ok" => "ok",
            "rejects" => "warn",
            _ => "bad",
        };
        o.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class={class}>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.1}</td><td>{}</td></tr>",
            html_escape(&s.name), s.kind, s.status, s.files_seen, s.files_loaded, s.files_skipped, s.files_rejected,
            s.rows_in, s.rows_loaded, s.rows_rejected, s.rows_skipped, s.duration_ms as f64 / 1000.0,
            html_escape(s.error.as_deref().unwrap_or(""))
        ));
    }
    o.push_str("</table><h2>Rejects and skips by reason</h2>");
    if r.rejects.is_empty() {
        o.push_str("<p>None.</p>");
    } else {
        o.push_str("<table><tr><th>mapping</th><th>reason</th><th>rows</th><th>example</th><th>first rows</th></tr>");
        for g in &r.rejects {
            let rows: Vec<String> = g.first_rows.iter().map(|x| x.to_string()).collect();
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&g.mapping),
                html_escape(&g.reason_code),
                g.count,
                html_escape(&g.example_reason),
                rows.join(", ")
            ));
        }
        o.push_str("</table><p>All rejects: <code>SELECT * FROM registry.reject WHERE run_id = ");
        o.push_str(&r.run_id.to_string());
        o.push_str("</code></p>");
    }
    o.push_str("<h2>Unmapped local codes</h2>");
    if r.unmapped.is_empty() {
        o.push_str("<p>None.</p>");
    } else {
        o.push_str(
            "<table><tr><th>mapping</th><th>concept map</th><th>code</th><th>occurrences</th></tr>",
        );
        for (m, cm, code, n) in &r.unmapped {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{n}</td></tr>",
                html_escape(m),
                html_escape(cm),
                html_escape(code)
            ));
        }
        o.push_str("</table>");
    }
    o.push_str(&format!(
        "<h2>Data quality</h2><p>{} checks, {} failed.</p>",
        r.quality_checks,
        r.quality_failed.len()
    ));
    if !r.quality_failed.is_empty() {
        o.push_str("<table><tr><th>check</th><th>severity</th><th>violating</th><th>%</th><th>description</th></tr>");
        for q in &r.quality_failed {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{:?}</td><td class=n>{}</td><td class=n>{:.2}</td><td>{}</td></tr>",
                html_escape(&q.id), q.severity, q.violating, q.pct, html_escape(&q.description)
            ));
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Registry</h2><table><tr><th>cdm table</th><th>rows</th></tr>");
    for t in &r.cdm_rows {
        o.push_str(&format!(
            "<tr><td>{}</td><td class=n>{}</td></tr>",
            html_escape(&t.table),
            t.rows
        ));
    }
    o.push_str("</table><h2>Audit log</h2>");
    match &r.audit_head {
        Some((seq, hash)) => o.push_str(&format!(
            "<p>{}: head entry #{seq}, hash <code>{hash}</code>. Keep this line outside the database (or run <code>registrar audit checkpoint</code>).</p>",
            if audit_ok { "<span class=ok>chain intact</span>" } else { "<span class=bad>CHAIN BROKEN: run registrar audit verify</span>" }
        )),
        None => o.push_str("<p>Empty.</p>"),
    }
    o.push_str("<h2>Last 30 nights</h2>");
    let pts = |f: &dyn Fn(&TrendPoint) -> f64| -> Vec<(String, f64)> {
        r.trend
            .iter()
            .map(|t| (format!("{} #{}", t.day, t.run_id), f(t)))
            .collect()
    };
    o.push_str(&svg_bars(
        "Rows loaded per night",
        &pts(&|t| t.rows_loaded as f64),
        "#2f6db5",
    ));
    o.push_str(&svg_bars(
        "Rows rejected per night",
        &pts(&|t| t.rows_rejected as f64),
        "#c2410c",
    ));
    o.push_str(&svg_bars(
        "Duration per night (seconds)",
        &pts(&|t| (t.seconds * 10.0).round() / 10.0),
        "#6b7280",
    ));
    o.push_str("</body></html>\n");
    o
}
