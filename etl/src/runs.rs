//! Import runs: one `registry.import_run` row per command that changes the registry.

use crate::ledger::UnitCounts;
use anyhow::Result;
use diesel::prelude::*;
use registrar_schema::models::{ImportRun, NewImportRun};
use registrar_schema::registry::import_run;

/// The OS user running registrar (from the password database, else `$USER`).
pub fn os_user() -> String {
    // SAFETY: getpwuid returns static storage or null; we copy the name out at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

/// Start a run; returns its id.
pub fn start(conn: &mut PgConnection, command: &str, key_id: Option<&str>) -> Result<i64> {
    let user = os_user();
    let id = diesel::insert_into(import_run::table)
        .values(&NewImportRun {
            command,
            actor_os_user: &user,
            key_id,
            registrar_version: env!("CARGO_PKG_VERSION"),
        })
        .returning(import_run::run_id)
        .get_result(conn)?;
    Ok(id)
}

/// How a run ended (`registry.import_run.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Finished with rejected rows or files.
    Partial,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }

    /// Succeeded, or partial when anything was rejected.
    pub fn from_counts(c: &UnitCounts, files_rejected: usize) -> Self {
        if c.rows_rejected > 0 || files_rejected > 0 {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
}

/// Finish a run with its status and counts.
pub fn finish(
    conn: &mut PgConnection,
    run_id: i64,
    status: RunStatus,
    counts: &UnitCounts,
    message: Option<&str>,
) -> Result<()> {
    diesel::update(import_run::table.find(run_id))
        .set((
            import_run::status.eq(status.as_str()),
            import_run::finished_at.eq(diesel::dsl::now),
            import_run::rows_in.eq(counts.rows_in),
            import_run::rows_loaded.eq(counts.rows_loaded),
            import_run::rows_rejected.eq(counts.rows_rejected),
            import_run::rows_skipped.eq(counts.rows_skipped),
            import_run::rows_unchanged.eq(counts.rows_unchanged),
            import_run::cells_nulled.eq(counts.cells_nulled),
            import_run::message.eq(message),
        ))
        .execute(conn)?;
    Ok(())
}

/// Mark nightly runs left `running` by a run that died as failed; returns their ids (the
/// next report says what they did).
pub fn mark_interrupted(client: &mut postgres::Client) -> Result<Vec<i64>> {
    let mut runs: Vec<i64> = client
        .query(
            "UPDATE registry.import_run SET status = 'failed', finished_at = now(),
                    message = 'interrupted before it finished; its loaded files stay, the rest is done by a later run',
                    reported_at = now()
              WHERE command = 'nightly' AND status = 'running' RETURNING run_id",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Runs that finished but died while writing their report: this run reports them.
    runs.extend(
        client
            .query(
                "UPDATE registry.import_run SET reported_at = now()
                  WHERE command = 'nightly' AND status <> 'running' AND reported_at IS NULL
                RETURNING run_id",
                &[],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0)),
    );
    runs.sort_unstable();
    Ok(runs)
}

/// Record that a nightly run's report was written.
pub fn mark_reported(client: &mut postgres::Client, run_id: i64) -> Result<()> {
    client.execute(
        "UPDATE registry.import_run SET reported_at = now() WHERE run_id = $1",
        &[&run_id],
    )?;
    Ok(())
}

/// What an interrupted run committed before it died (from the ledger).
#[derive(Debug, Clone, serde::Serialize)]
pub struct InterruptedRun {
    pub run_id: i64,
    pub started_at: String,
    pub files_loaded: i64,
    pub files_rejected: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
}

/// What these runs committed, per run.
pub fn interrupted_runs(
    client: &mut postgres::Client,
    runs: &[i64],
) -> Result<Vec<InterruptedRun>> {
    Ok(client
        .query(
            "SELECT r.run_id, to_char(r.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'),
                    count(f.*) FILTER (WHERE f.status IN ('loaded', 'superseded'))::int8,
                    count(f.*) FILTER (WHERE f.status = 'rejected')::int8,
                    coalesce(sum(f.rows_loaded), 0)::int8, coalesce(sum(f.rows_rejected), 0)::int8,
                    coalesce(sum(f.rows_skipped), 0)::int8
               FROM registry.import_run r LEFT JOIN registry.source_file f USING (run_id)
              WHERE r.run_id = ANY($1) GROUP BY r.run_id ORDER BY r.run_id",
            &[&runs],
        )?
        .iter()
        .map(|r| InterruptedRun {
            run_id: r.get(0),
            started_at: r.get(1),
            files_loaded: r.get(2),
            files_rejected: r.get(3),
            rows_loaded: r.get(4),
            rows_rejected: r.get(5),
            rows_skipped: r.get(6),
        })
        .collect())
}

/// Record what a nightly run did with one source.
pub fn record_source(
    client: &mut postgres::Client,
    run_id: i64,
    o: &crate::pipeline::SourceOutcome,
) -> Result<()> {
    let c = &o.counts;
    client.execute(
        "INSERT INTO registry.nightly_source (run_id, source_name, source_kind, status, files_seen, files_loaded,
                files_skipped, files_rejected, rows_in, rows_loaded, rows_rejected, rows_skipped,
                rows_unchanged, cells_nulled, records_deleted, duration_ms, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        &[
            &run_id, &o.name, &o.kind, &o.status.as_str(), &o.files_seen, &o.files_loaded,
            &o.files_skipped, &o.files_rejected, &c.rows_in, &c.rows_loaded, &c.rows_rejected,
            &c.rows_skipped, &c.rows_unchanged, &c.cells_nulled, &c.records_deleted,
            &o.duration_ms, &o.error,
        ],
    )?;
    Ok(())
}

/// The most recent runs, newest first.
pub fn recent(conn: &mut PgConnection, limit: i64) -> Result<Vec<ImportRun>> {
    Ok(import_run::table
        .order(import_run::run_id.desc())
        .limit(limit)
        .select(ImportRun::as_select())
        .load(conn)?)
}
