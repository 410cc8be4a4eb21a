//! Import runs: one `registry.import_run` row per command that changes the registry.

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

/// Row counts of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counts {
    pub rows_in: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    pub rows_skipped: i64,
}

/// Finish a run with its status (`succeeded`, `partial` or `failed`) and counts.
pub fn finish(
    conn: &mut PgConnection,
    run_id: i64,
    status: &str,
    counts: Counts,
    message: Option<&str>,
) -> Result<()> {
    diesel::update(import_run::table.find(run_id))
        .set((
            import_run::status.eq(status),
            import_run::finished_at.eq(diesel::dsl::now),
            import_run::rows_in.eq(counts.rows_in),
            import_run::rows_loaded.eq(counts.rows_loaded),
            import_run::rows_rejected.eq(counts.rows_rejected),
            import_run::rows_skipped.eq(counts.rows_skipped),
            import_run::message.eq(message),
        ))
        .execute(conn)?;
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
