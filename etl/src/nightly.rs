//! `registrar nightly`: every configured source, one run record, one report.
//!
//! - One run at a time: the run holds an EXCLUSIVE lock on `registry.run_lock` (on a
//!   connection of its own, for its whole run) so two hosts cannot collide either; a second
//!   run exits with a clear message naming the holder. Only roles that may write the table
//!   (the ETL role) can take that lock: a researcher or the federation role cannot block a
//!   night.
//! - Every source runs; one that fails does not stop the others.
//! - Resumable: each file is its own transaction and the ledger skips files already loaded,
//!   so a run killed at any point (power loss, kill -9) is completed by the next one without
//!   duplicates or gaps; the interrupted run is marked failed.
//! - Exit codes: 0 all good, 1 finished with rejects or rejected files, 2 a source failed,
//!   3 configuration or database error.

use crate::config::Config;
use crate::import::{ImportContext, ImportOptions};
use crate::ledger::Ledger;
use crate::pipeline::{self, SourceOutcome, SourceStatus};
use crate::privacy::report::html_escape;
use crate::runs::RunStatus;
use crate::Error::Setup;
use crate::{db, privacy, progress, quality, runs, status};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// The statement that takes the run lock (see the module doc); it fails at once with
/// `lock_not_available` while another run holds it.
pub const NIGHTLY_LOCK: &str = "LOCK TABLE registry.run_lock IN EXCLUSIVE MODE NOWAIT";

/// Take the run lock on `lock` (a connection kept for the whole run: the lock lives in an
/// open transaction that takes no snapshot and writes nothing). `Ok(false)` when another run
/// holds it.
fn take_run_lock(lock: &mut postgres::Client) -> Result<bool> {
    lock.batch_execute("BEGIN")?;
    match lock.batch_execute(NIGHTLY_LOCK) {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            lock.batch_execute("ROLLBACK")?;
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context("could not take the nightly run lock")),
    }
}

/// Who holds the run lock, in words (never a path or a name from the data).
fn run_lock_holder(lock: &mut postgres::Client) -> String {
    lock.query_opt(
        "SELECT format('%s, %s, since %s', coalesce(nullif(a.application_name, ''), 'a session'),
                       CASE WHEN a.client_addr IS NULL THEN 'on the database host (local socket)'
                            ELSE 'from ' || host(a.client_addr) END,
                       to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'))
           FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'ExclusiveLock'
            AND l.relation = to_regclass('registry.run_lock') AND l.pid <> pg_backend_pid()
          LIMIT 1",
        &[],
    )
    .ok()
    .flatten()
    .map(|r| r.get::<_, String>(0))
    .unwrap_or_else(|| "its holder cannot be seen by this login".into())
}

/// The night's report (also written as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub exit_code: u8,
    pub sources: Vec<SourceOutcome>,
    /// Earlier runs that died before their report: what they committed (their rejects are
    /// in `rejects`).
    pub interrupted: Vec<runs::InterruptedRun>,
    pub cdm_rows: Vec<status::TableCount>,
    pub rejects: Vec<crate::ledger::RejectGroup>,
    pub unmapped: Vec<crate::ledger::Unmapped>,
    /// The derived tables (observation periods, eras, oncology links and episodes), when
    /// something was loaded.
    pub derived: Option<crate::derive::Derived>,
    /// The research marts' refresh: persons recomputed and its time.
    pub research_marts: crate::marts::Refreshed,
    pub quality_failed: Vec<quality::Outcome>,
    pub quality_checks: usize,
    pub audit_head: Option<(i64, String)>,
    pub trend: Vec<TrendPoint>,
    pub report_html: PathBuf,
    pub report_json: PathBuf,
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

/// Run the night. `Err` ([`crate::Error::Setup`]) for configuration, lock and database
/// errors; a source that fails is in the report (exit code 2).
pub fn run(cfg: &Config, db_opts: &db::DbOptions) -> Result<Report, crate::Error> {
    let started = Instant::now();
    let policy = cfg.date_policy().map_err(Setup)?;
    let keys = cfg.key_opts().load().map_err(Setup)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&cfg.registry.report_dir)
            .context("cannot create the report folder ([registry] report_dir)")
            .map_err(Setup)?;
    }
    let target = db_opts.resolve().map_err(Setup)?;
    // The run lock lives as long as this connection, which says who holds it.
    let mut lock = target.client().map_err(Setup)?;
    let me = format!(
        "registrar nightly, pid {}, user {}",
        std::process::id(),
        runs::os_user()
    );
    lock.execute("SELECT set_config('application_name', $1, false)", &[&me])
        .map_err(|e| Setup(e.into()))?;
    // On a registry that exists, the lock comes before migrations (a newer binary must not
    // migrate under a running night); on a new one, right after them.
    let exists: bool = lock
        .query_one("SELECT to_regclass('registry.run_lock') IS NOT NULL", &[])
        .map_err(|e| Setup(e.into()))?
        .get(0);
    let busy = |lock: &mut postgres::Client| {
        Setup(anyhow::anyhow!(
            "another nightly run is in progress ({}); this one exits without touching anything",
            run_lock_holder(lock)
        ))
    };
    if exists && !take_run_lock(&mut lock).map_err(Setup)? {
        return Err(busy(&mut lock));
    }
    let mut conn = target.diesel().map_err(Setup)?;
    db::migrate(&mut conn).map_err(Setup)?;
    if !exists && !take_run_lock(&mut lock).map_err(Setup)? {
        return Err(busy(&mut lock));
    }
    let mut client = target.client().map_err(Setup)?;
    crate::privacy::keys::check_registry_key(&mut client, &keys).map_err(Setup)?;
    let mut seq = target.client().map_err(Setup)?;
    let interrupted = runs::mark_interrupted(&mut client).map_err(Setup)?;
    privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&policy),
    )
    .map_err(Setup)?;
    let run_id =
        runs::start(&mut conn, "nightly", Some(keys.current.key_id().as_str())).map_err(Setup)?;
    if !interrupted.is_empty() {
        eprintln!(
            "registrar: {} interrupted nightly run(s) found; resuming their work",
            interrupted.len()
        );
    }
    let opts = ImportOptions {
        policy,
        ..Default::default()
    };
    // A source that cannot be set up (a token file that cannot be read, ...) fails alone.
    let mut planned = Vec::new();
    for s in &cfg.sources {
        planned.push((s.name().to_string(), s.to_source(cfg)));
    }
    let mut ctx = ImportContext::new(&mut client, &mut seq, &keys, run_id, &opts).map_err(Setup)?;
    let mut sources = Vec::new();
    for (name, source) in planned {
        let t0 = Instant::now();
        let mut o = SourceOutcome {
            name: name.clone(),
            ..Default::default()
        };
        let result = match source {
            Ok(source) => {
                o = SourceOutcome::new(&source);
                ctx.progress = progress::count_bar(None, &name, "rows");
                let r = pipeline::run(&mut ctx, &source, &mut o);
                ctx.progress.finish_and_clear();
                r
            }
            Err(e) => Err(e),
        };
        o.settle(result);
        o.duration_ms = t0.elapsed().as_millis() as i64;
        runs::record_source(ctx.client, run_id, &o).map_err(Setup)?;
        sources.push(o);
    }
    drop(ctx);
    let exit_code: u8 = if sources.iter().any(|s| s.status == SourceStatus::Failed) {
        2
    } else if sources.iter().any(|s| s.status == SourceStatus::Rejects) {
        1
    } else {
        0
    };
    let mut counts = crate::ledger::UnitCounts::default();
    for s in &sources {
        counts.add(&s.counts);
    }
    // The derived tables follow what was loaded (rebuilt whole; cheap beside a load).
    let loaded = sources.iter().any(|s| s.files_loaded > 0);
    let missing = client
        .query_one("SELECT NOT EXISTS (SELECT 1 FROM cdm.cdm_source)", &[])
        .map_err(|e| Setup(e.into()))?
        .get::<_, bool>(0);
    let derived = if loaded || missing {
        Some(crate::derive::rebuild(&mut client).map_err(Setup)?)
    } else {
        None
    };
    // The research marts of the persons whose facts changed (the derived tables refreshed
    // them; otherwise a night's deletions, or an earlier run's leftovers, still count).
    let marts = match &derived {
        Some(d) => d.marts,
        None => crate::marts::refresh(&mut client, crate::marts::Scope::Changed).map_err(Setup)?,
    };
    let run_status = match exit_code {
        0 => RunStatus::Succeeded,
        1 => RunStatus::Partial,
        _ => RunStatus::Failed,
    };
    runs::finish(&mut conn, run_id, run_status, &counts, None).map_err(Setup)?;
    crate::failpoint::hit("report");
    let report = build_report(
        cfg,
        &target,
        &mut client,
        Night {
            run_id,
            started,
            exit_code,
            sources,
            interrupted,
            derived,
            marts,
        },
    )
    .map_err(Setup)?;
    runs::mark_reported(&mut client, run_id).map_err(Setup)?;
    Ok(report)
}

/// What the report is made of.
struct Night {
    run_id: i64,
    started: Instant,
    exit_code: u8,
    sources: Vec<SourceOutcome>,
    /// Runs that died before their report; this one reports what they did.
    interrupted: Vec<i64>,
    /// The derived tables, when rebuilt tonight.
    derived: Option<crate::derive::Derived>,
    marts: crate::marts::Refreshed,
}

fn build_report(
    cfg: &Config,
    target: &db::DbTarget,
    c: &mut postgres::Client,
    night: Night,
) -> Result<Report> {
    let Night {
        run_id,
        started,
        exit_code,
        sources,
        interrupted,
        derived,
        marts,
    } = night;
    let st = status::collect(target)?;
    let mut runs = vec![run_id];
    runs.extend(&interrupted);
    let rejects = Ledger::reject_groups(c, &runs)?;
    let interrupted = runs::interrupted_runs(c, &interrupted)?;
    let mut unmapped = Ledger::unmapped(c, None, None)?;
    unmapped.truncate(20);
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
        interrupted,
        cdm_rows: st.cdm_rows,
        rejects,
        unmapped,
        derived,
        research_marts: marts,
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
    o.push_str("<h2>Sources</h2><table><tr><th>source</th><th>kind</th><th>status</th><th>files</th><th>loaded</th><th>unchanged</th><th>rejected</th><th>rows in</th><th>rows loaded</th><th>rows rejected</th><th>rows skipped</th><th>rows unchanged</th><th>cells nulled</th><th>records added / updated / unchanged / deleted</th><th>seconds</th><th>error</th></tr>");
    for s in &r.sources {
        let class = match s.status {
            SourceStatus::Ok => "ok",
            SourceStatus::Rejects => "warn",
            SourceStatus::Failed => "bad",
        };
        let c = &s.counts;
        o.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class={class}>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{} / {} / {} / {}</td><td class=n>{:.1}</td><td>{}</td></tr>",
            html_escape(&s.name), s.kind, s.status.as_str(), s.files_seen, s.files_loaded, s.files_skipped, s.files_rejected,
            c.rows_in, c.rows_loaded, c.rows_rejected, c.rows_skipped, c.rows_unchanged, c.cells_nulled,
            c.records_added, c.records_updated, c.records_unchanged, c.records_deleted,
            s.duration_ms as f64 / 1000.0,
            html_escape(s.error.as_deref().unwrap_or(""))
        ));
        for p in &s.passed_over {
            o.push_str(&format!(
                "<tr><td colspan=16 class=warn>{}: passed over {}</td></tr>",
                html_escape(&s.name),
                html_escape(p)
            ));
        }
    }
    o.push_str("</table>");
    if !r.interrupted.is_empty() {
        o.push_str("<h2>Interrupted runs</h2><p>These runs died before their report; what they committed stays and is reported here (their rejects are in the table below).</p><table><tr><th>run</th><th>started</th><th>files loaded</th><th>files rejected</th><th>rows loaded</th><th>rows rejected</th><th>rows skipped</th></tr>");
        for i in &r.interrupted {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                i.run_id, html_escape(&i.started_at), i.files_loaded, i.files_rejected,
                i.rows_loaded, i.rows_rejected, i.rows_skipped
            ));
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Derived tables and research marts</h2>");
    match &r.derived {
        Some(d) => o.push_str(&format!(
            "<p>Rebuilt from tonight's facts: {} observation periods, {} condition eras, {} drug eras; {} tumour facts linked to their diagnosis, {} first-occurrence episodes written.</p>",
            d.observation_periods, d.condition_eras, d.drug_eras, d.modifiers_linked, d.first_occurrence_episodes
        )),
        None => o.push_str("<p>Nothing was loaded tonight: the derived tables are last night's.</p>"),
    }
    o.push_str(&format!(
        "<p>Research marts: {} person(s) recomputed{} in {:.2} s.</p>",
        r.research_marts.persons,
        if r.research_marts.full_rebuild {
            " (full rebuild)"
        } else {
            ""
        },
        r.research_marts.seconds
    ));
    o.push_str("<h2>Rejects and skips by reason</h2>");
    if r.rejects.is_empty() {
        o.push_str("<p>None.</p>");
    } else {
        o.push_str("<table><tr><th>mapping</th><th>reason</th><th>outcome</th><th>records</th><th>example</th><th>first rows</th></tr>");
        for g in &r.rejects {
            let rows: Vec<String> = g.first_rows.iter().map(|x| x.to_string()).collect();
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&g.mapping),
                html_escape(&g.reason_code),
                html_escape(&g.outcome),
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
        for u in &r.unmapped {
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                html_escape(&u.mapping),
                html_escape(&u.concept_map),
                html_escape(&u.source_code),
                u.occurrences
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
