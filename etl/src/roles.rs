//! `registrar roles apply`: the PostgreSQL roles of a registry.
//!
//! - `registrar_etl`: the importers; reads and writes `cdm` and `registry`.
//! - `registrar_researcher`: SELECT on the `research` views and on the research marts behind
//!   them (`mart.<view>`: the same rows; on Citus a view's shard queries run with the
//!   caller's rights) and, when the registry is configured so, on the `cdm` tables; never
//!   `registry` (person map, audit log, lineage, rejects) nor the marts' sources; writes
//!   nowhere.
//! - `registrar_auditor`: the privacy officer; reads the audit log, runs and source-file
//!   ledger, nothing else.
//! - `registrar_federation` (LOGIN): the coordinating centre; may execute
//!   `federation.cohorts()`, `federation.schema_version()`, `federation.cohort_summary()` and
//!   `federation.release_info()` and nothing else: no table, no view, no other function.
//! - `registrar_federation_definer`: owns those SECURITY DEFINER functions; reads the
//!   published releases (and the cohort list and schema version), nothing of `research`,
//!   `registry` or `cdm`: it serves what `registrar federation publish` released and audited.
//!   Nobody logs in as it.
//! - `registrar_audit_owner`: owns `registry.audit_log` and `registry.audit_append`, the
//!   SECURITY DEFINER function that is the only way into the log (it computes seq, time,
//!   role and hash itself). The ETL role may call it and read the log, never INSERT. Nobody
//!   logs in as it.
//!
//! The database itself: PUBLIC loses CONNECT and TEMPORARY on it (a login that is not one of
//! registrar's roles cannot connect, and nobody can make temporary functions to probe the
//! views); CONNECT is granted to registrar's roles. The research views are security barriers.
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
pub const AUDIT_OWNER: &str = "registrar_audit_owner";

/// The audit log's one way in (see the module doc).
const AUDIT_APPEND: &str = "registry.audit_append(text, bigint, text, text, text, text)";

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
        (AUDIT_OWNER, "NOLOGIN"),
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
    // Tables are named, not `ON ALL TABLES IN SCHEMA`: on Citus that would also reach the
    // coordinator's shard placements (its copies of the reference tables), which Citus
    // refuses to change along with the distributed tables.
    let mut tables = std::collections::BTreeMap::<String, Vec<String>>::new();
    for r in client.query(
        "SELECT n.nspname::text, c.oid::regclass::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND n.nspname IN ('cdm', 'registry', 'research', 'mart', 'federation', 'public')
          ORDER BY 2",
        &[],
    )? {
        tables.entry(r.get(0)).or_default().push(r.get(1));
    }
    let all = |schemas: &[&str]| -> Result<String> {
        let list: Vec<&str> = schemas
            .iter()
            .flat_map(|n| tables.get(*n).into_iter().flatten())
            .map(String::as_str)
            .collect();
        anyhow::ensure!(
            !list.is_empty(),
            "schema {} holds no table: is the registry migrated?",
            schemas.join(", ")
        );
        Ok(list.join(", "))
    };
    let mut sql = vec![
        format!("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {db} TO {ETL}, {RESEARCHER}, {AUDITOR}, {FEDERATION}"),
        // The audit owner owns the log and its one way in.
        format!("GRANT USAGE ON SCHEMA registry TO {AUDIT_OWNER}"),
        format!("ALTER TABLE registry.audit_log OWNER TO {AUDIT_OWNER}"),
        format!("GRANT EXECUTE ON FUNCTION registry.audit_field(text) TO {AUDIT_OWNER}"),
        format!("ALTER FUNCTION {AUDIT_APPEND} OWNER TO {AUDIT_OWNER}"),
        // ETL
        format!("GRANT USAGE ON SCHEMA cdm, registry, research TO {ETL}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {ETL}", all(&["cdm"])?),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {ETL}", all(&["registry"])?),
        format!("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON registry.audit_log FROM {ETL}"),
        format!("GRANT EXECUTE ON FUNCTION {AUDIT_APPEND} TO {ETL}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA registry TO {ETL}"),
        format!("GRANT SELECT ON {} TO {ETL}", all(&["research"])?),
        format!("GRANT EXECUTE ON FUNCTION research.refresh_concept_sets() TO {ETL}"),
        // The research marts: refreshed through one SECURITY DEFINER function. Researchers
        // may read the marts behind the research views (granted below: the same rows as
        // the views), nothing else of the schema; nobody else reads it.
        format!("GRANT USAGE ON SCHEMA mart TO {ETL}"),
        format!("GRANT EXECUTE ON FUNCTION mart.refresh(boolean) TO {ETL}"),
        format!("GRANT SELECT ON mart.refresh_state TO {ETL}"),
        format!("REVOKE ALL ON {} FROM {RESEARCHER}, {AUDITOR}, {FEDERATION_DEFINER}, {FEDERATION}", all(&["mart"])?),
        format!("REVOKE ALL ON SCHEMA mart FROM {RESEARCHER}, {AUDITOR}, {FEDERATION_DEFINER}, {FEDERATION}"),
        // Researcher: the curated views, nothing of registry, no writes.
        format!("REVOKE ALL ON {} FROM {RESEARCHER}", all(&["registry"])?),
        format!("REVOKE ALL ON SCHEMA registry FROM {RESEARCHER}"),
        format!("REVOKE ALL ON {} FROM {RESEARCHER}", all(&["cdm"])?),
        format!("REVOKE ALL ON {} FROM {RESEARCHER}", all(&["research"])?),
        format!("GRANT USAGE ON SCHEMA research TO {RESEARCHER}"),
        format!("GRANT SELECT ON {} TO {RESEARCHER}", all(&["research"])?),
        // Auditor: the audit log and the run ledger.
        format!("REVOKE ALL ON {} FROM {AUDITOR}", all(&["registry"])?),
        format!("GRANT USAGE ON SCHEMA registry TO {AUDITOR}"),
        format!("GRANT SELECT ON registry.audit_log, registry.import_run, registry.source_file, registry.audit_origin, registry.identifier_type TO {AUDITOR}"),
        // The privacy officer's checkpoints are audited too (under the officer's own login).
        format!("GRANT EXECUTE ON FUNCTION {AUDIT_APPEND} TO {AUDITOR}"),
        // Federation: the definer owns the SECURITY DEFINER functions, which serve the
        // published releases: it reads those and nothing live; the login role can call the
        // API only.
        format!("REVOKE ALL ON {} FROM {FEDERATION_DEFINER}", all(&["cdm", "registry", "research"])?),
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
        format!("REVOKE ALL ON {} FROM {FEDERATION}", all(&["cdm", "registry", "research", "federation", "public"])?),
        format!("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA registry, federation FROM {FEDERATION}"),
        format!("REVOKE ALL ON SCHEMA cdm, registry, research FROM {FEDERATION}"),
        format!("GRANT USAGE ON SCHEMA federation TO {FEDERATION}"),
        format!("GRANT EXECUTE ON FUNCTION {FEDERATION_API} TO {FEDERATION}"),
    ];
    if opts.researcher_reads_cdm {
        sql.push(format!("GRANT USAGE ON SCHEMA cdm TO {RESEARCHER}"));
        sql.push(format!(
            "GRANT SELECT ON {} TO {RESEARCHER}",
            all(&["cdm"])?
        ));
    } else {
        sql.push(format!("REVOKE ALL ON SCHEMA cdm FROM {RESEARCHER}"));
    }
    // Every research view is a security barrier (views added by later migrations too).
    let views: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'research' AND c.relkind = 'v' ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for v in views {
        sql.push(format!("ALTER VIEW {v} SET (security_barrier = true)"));
    }
    // The marts the research views read, each the rows of a view of its name: a research
    // view's query runs on them with the researcher's own rights where the rows are
    // distributed (Citus runs a view's shard queries as the calling role on the workers),
    // so researchers read them; never cdm, whatever the database.
    let marts: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'mart' AND c.relkind IN ('r', 'p')
                AND EXISTS (SELECT 1 FROM pg_views v
                             WHERE v.schemaname = 'research' AND v.viewname = c.relname)
              ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !marts.is_empty() {
        sql.push(format!("GRANT USAGE ON SCHEMA mart TO {RESEARCHER}"));
        sql.push(format!(
            "GRANT SELECT ON {} TO {RESEARCHER}",
            marts.join(", ")
        ));
    }
    let mut tx = client.transaction()?;
    // On Citus, a transaction that changes distributed tables' privileges and then functions
    // must use one connection per worker.
    let citus: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )?
        .get(0);
    if citus {
        // (and with local execution, which Citus needs for changes to functions and to the
        // coordinator's own tables, whatever the database's default)
        tx.batch_execute(
            "SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
             SET LOCAL citus.enable_local_execution TO on",
        )?;
    }
    for s in &sql {
        tx.batch_execute(s)
            .with_context(|| format!("`{s}` failed"))?;
    }
    tx.commit()?;
    Ok(sql)
}
