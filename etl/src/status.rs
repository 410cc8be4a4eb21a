//! `registrar db status`: what the registry holds, for the data manager.

use crate::db::{self, DbTarget, MigrationState};
use anyhow::Result;
use serde::Serialize;

/// Row count of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    pub table: String,
    pub rows: i64,
}

/// The registry's state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub database: String,
    pub server_version: String,
    pub migrations: Vec<MigrationState>,
    pub cdm_tables: usize,
    pub cdm_rows: Vec<TableCount>,
    pub registry_rows: Vec<TableCount>,
    pub last_run: Option<String>,
}

impl Status {
    pub fn pending(&self) -> usize {
        self.migrations.iter().filter(|m| !m.applied).count()
    }
}

/// Collect the status of the registry at `target`.
pub fn collect(target: &DbTarget) -> Result<Status> {
    let mut conn = target.diesel()?;
    let migrations = db::migration_states(&mut conn)?;
    let mut c = target.client()?;
    let server_version: String = c.query_one("SHOW server_version", &[])?.get(0);
    let tables = |c: &mut postgres::Client, schema: &str| -> Result<Vec<String>> {
        Ok(c.query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
            &[&schema],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
    };
    let count = |c: &mut postgres::Client, schema: &str, t: &str| -> Result<i64> {
        Ok(c.query_one(
            &format!(
                "SELECT count(*) FROM {}.{}",
                db::quote_ident(schema),
                db::quote_ident(t)
            ),
            &[],
        )?
        .get(0))
    };
    let cdm = tables(&mut c, "cdm")?;
    let mut cdm_rows = Vec::new();
    for t in &cdm {
        let rows = count(&mut c, "cdm", t)?;
        if rows > 0 {
            cdm_rows.push(TableCount {
                table: t.clone(),
                rows,
            });
        }
    }
    let mut registry_rows = Vec::new();
    for t in tables(&mut c, "registry")? {
        let rows = count(&mut c, "registry", &t)?;
        registry_rows.push(TableCount { table: t, rows });
    }
    let last_run = if registry_rows.is_empty() {
        None
    } else {
        c.query_opt(
            "SELECT format('#%s %s: %s, started %s, %s rows loaded, %s rejected',
                           run_id, command, status,
                           to_char(started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), rows_loaded, rows_rejected)
               FROM registry.import_run ORDER BY run_id DESC LIMIT 1",
            &[],
        )?
        .map(|r| r.get(0))
    };
    Ok(Status {
        database: target.redacted(),
        server_version,
        migrations,
        cdm_tables: cdm.len(),
        cdm_rows,
        registry_rows,
        last_run,
    })
}

/// Human-readable form.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let applied = s.migrations.iter().filter(|m| m.applied).count();
    out.push_str(&format!("database:   {}\n", s.database));
    out.push_str(&format!("server:     PostgreSQL {}\n", s.server_version));
    out.push_str(&format!(
        "migrations: {applied} applied, {} pending\n",
        s.pending()
    ));
    for m in &s.migrations {
        out.push_str(&format!(
            "  [{}] {}\n",
            if m.applied { "x" } else { " " },
            m.version
        ));
    }
    if s.pending() > 0 {
        out.push_str("  run `registrar db migrate` to apply the pending migrations\n");
    }
    out.push_str(&format!("cdm:        {} tables", s.cdm_tables));
    if s.cdm_rows.is_empty() {
        out.push_str(", all empty\n");
    } else {
        out.push('\n');
        for t in &s.cdm_rows {
            out.push_str(&format!("  {:<24} {:>12}\n", t.table, t.rows));
        }
    }
    if !s.registry_rows.is_empty() {
        out.push_str("registry:\n");
        for t in &s.registry_rows {
            out.push_str(&format!("  {:<24} {:>12}\n", t.table, t.rows));
        }
    }
    if let Some(r) = &s.last_run {
        out.push_str(&format!("last run:   {r}\n"));
    }
    out
}
