//! `registrar roles apply`: the PostgreSQL roles of a registry.
//!
//! - `registrar_etl`: the importers; reads and writes `cdm` and `registry`.
//! - `registrar_researcher`: SELECT on the `research` views only (and, when the registry is
//!   configured so, on the `cdm` tables); never `registry` (person map, audit log, lineage,
//!   rejects); writes nowhere.
//! - `registrar_auditor`: the privacy officer; reads the audit log, runs and source-file
//!   ledger, nothing else.
//! - `registrar_federation` (LOGIN): the coordinating centre; may execute
//!   `federation.cohorts()`, `federation.schema_version()`, `federation.cohort_summary()` and
//!   `federation.release_info()` and nothing else: no table, no view, no other function.
//! - `registrar_federation_definer`: owns those SECURITY DEFINER functions; reads the
//!   published releases (and the cohort list and schema version), nothing of `research`,
//!   `registry` or `cdm`: it serves what `registrar federation publish` released and audited.
//!   Nobody logs in as it.
//!
//! The roles are group roles (NOLOGIN): grant them to login roles, e.g.
//! `GRANT registrar_researcher TO alice`. Applying is idempotent and also revokes what a role
//! should not have (e.g. cdm access when it is no longer configured).

use anyhow::{Context, Result};

pub const ETL: &str = "registrar_etl";
pub const RESEARCHER: &str = "registrar_researcher";
pub const AUDITOR: &str = "registrar_auditor";
pub const FEDERATION: &str = "registrar_federation";
pub const FEDERATION_DEFINER: &str = "registrar_federation_definer";

/// Options of `roles apply`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleOptions {
    /// Researchers may also read the cdm tables (not only the curated views).
    pub researcher_reads_cdm: bool,
}

/// The functions the federation login role may execute.
const FEDERATION_API: &str = "federation.cohorts(), federation.schema_version(), \
     federation.cohort_summary(text), federation.release_info()";

/// Create (if missing) and grant the roles in the current database.
pub fn apply(client: &mut postgres::Client, opts: RoleOptions) -> Result<Vec<String>> {
    for (role, login) in [
        (ETL, "NOLOGIN"),
        (RESEARCHER, "NOLOGIN"),
        (AUDITOR, "NOLOGIN"),
        (FEDERATION_DEFINER, "NOLOGIN"),
        (FEDERATION, "LOGIN"),
    ] {
        // Roles are cluster-wide: another database's `roles apply` may create it concurrently.
        client
            .batch_execute(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} {login};
                   END IF;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END $$;"
            ))
            .with_context(|| format!("could not create role {role}"))?;
    }
    let db: String = client.query_one("SELECT current_database()", &[])?.get(0);
    let db = crate::db::quote_ident(&db);
    let mut sql = vec![
        format!("GRANT CONNECT ON DATABASE {db} TO {ETL}, {RESEARCHER}, {AUDITOR}"),
        // ETL
        format!("GRANT USAGE ON SCHEMA cdm, registry, research TO {ETL}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cdm TO {ETL}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA registry TO {ETL}"),
        format!("REVOKE UPDATE, DELETE ON registry.audit_log FROM {ETL}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA registry TO {ETL}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA research TO {ETL}"),
        // Researcher: the curated views, nothing of registry, no writes.
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA registry FROM {RESEARCHER}"),
        format!("REVOKE ALL ON SCHEMA registry FROM {RESEARCHER}"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA cdm FROM {RESEARCHER}"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA research FROM {RESEARCHER}"),
        format!("GRANT USAGE ON SCHEMA research TO {RESEARCHER}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA research TO {RESEARCHER}"),
        // Auditor: the audit log and the run ledger.
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA registry FROM {AUDITOR}"),
        format!("GRANT USAGE ON SCHEMA registry TO {AUDITOR}"),
        format!("GRANT SELECT ON registry.audit_log, registry.import_run, registry.source_file TO {AUDITOR}"),
        // Federation: the definer owns the SECURITY DEFINER functions, which serve the
        // published releases: it reads those and nothing live; the login role can call the
        // API only.
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA cdm, registry, research FROM {FEDERATION_DEFINER}"),
        format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA registry FROM {FEDERATION_DEFINER}"),
        format!("REVOKE ALL ON SCHEMA cdm, registry, research FROM {FEDERATION_DEFINER}"),
        format!("GRANT USAGE ON SCHEMA federation TO {FEDERATION_DEFINER}"),
        format!("REVOKE ALL ON federation.policy FROM {FEDERATION_DEFINER}"),
        format!("GRANT SELECT ON federation.cohort, federation.release, federation.release_summary TO {FEDERATION_DEFINER}"),
        format!("GRANT SELECT ON public.__diesel_schema_migrations TO {FEDERATION_DEFINER}"),
        format!("GRANT EXECUTE ON FUNCTION federation.latest_release() TO {FEDERATION_DEFINER}"),
        format!("ALTER FUNCTION federation.cohorts() OWNER TO {FEDERATION_DEFINER}"),
        format!("ALTER FUNCTION federation.schema_version() OWNER TO {FEDERATION_DEFINER}"),
        format!("ALTER FUNCTION federation.cohort_summary(text) OWNER TO {FEDERATION_DEFINER}"),
        format!("ALTER FUNCTION federation.release_info() OWNER TO {FEDERATION_DEFINER}"),
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA cdm, registry, research, federation, public FROM {FEDERATION}"),
        format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA registry, federation FROM {FEDERATION}"),
        format!("REVOKE ALL ON SCHEMA cdm, registry, research FROM {FEDERATION}"),
        format!("GRANT USAGE ON SCHEMA federation TO {FEDERATION}"),
        format!("GRANT EXECUTE ON FUNCTION {FEDERATION_API} TO {FEDERATION}"),
    ];
    if opts.researcher_reads_cdm {
        sql.push(format!("GRANT USAGE ON SCHEMA cdm TO {RESEARCHER}"));
        sql.push(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA cdm TO {RESEARCHER}"
        ));
    } else {
        sql.push(format!("REVOKE ALL ON SCHEMA cdm FROM {RESEARCHER}"));
    }
    let mut tx = client.transaction()?;
    for s in &sql {
        tx.batch_execute(s)
            .with_context(|| format!("`{s}` failed"))?;
    }
    tx.commit()?;
    Ok(sql)
}
