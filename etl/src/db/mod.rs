//! Where the registry lives, and bringing its schema up to date.
//!
//! A [`DbTarget`] is either a server named by `DATABASE_URL` (never started or stopped by
//! registrar) or the private [`embedded`] cluster used when `DATABASE_URL` is unset.

pub mod embedded;

use anyhow::{Context, Result};
use diesel::pg::PgConnection;
use diesel::Connection;
use diesel_migrations::MigrationHarness;
use registrar_schema::MIGRATIONS;
use std::path::PathBuf;

/// A PostgreSQL server and database to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// A `postgres://` / `postgresql://` URL (from `DATABASE_URL` or `--database-url`).
    Url(url::Url),
    /// A unix-socket server (the embedded cluster).
    Socket {
        dir: PathBuf,
        port: u16,
        user: String,
        dbname: String,
    },
}

impl DbTarget {
    /// Parse a `postgres://` or `postgresql://` URL.
    pub fn from_url(s: &str) -> Result<Self> {
        let url = url::Url::parse(s).with_context(|| {
            "DATABASE_URL is not a valid URL (expected postgres://user@host:port/db)"
        })?;
        anyhow::ensure!(
            matches!(url.scheme(), "postgres" | "postgresql"),
            "DATABASE_URL must start with postgres:// or postgresql://, not {}://",
            url.scheme()
        );
        Ok(DbTarget::Url(url))
    }

    /// The same server, another database.
    pub fn with_dbname(&self, db: &str) -> Self {
        match self {
            DbTarget::Url(u) => {
                let mut u = u.clone();
                u.set_path(&format!("/{db}"));
                DbTarget::Url(u)
            }
            DbTarget::Socket {
                dir, port, user, ..
            } => DbTarget::Socket {
                dir: dir.clone(),
                port: *port,
                user: user.clone(),
                dbname: db.to_string(),
            },
        }
    }

    /// The database name.
    pub fn dbname(&self) -> String {
        match self {
            DbTarget::Url(u) => {
                let p = u.path().trim_start_matches('/');
                if p.is_empty() {
                    u.username().to_string()
                } else {
                    p.to_string()
                }
            }
            DbTarget::Socket { dbname, .. } => dbname.clone(),
        }
    }

    /// A connection string for libpq, diesel and the postgres crate (may contain a password).
    pub fn conninfo(&self) -> String {
        match self {
            DbTarget::Url(u) => u.to_string(),
            DbTarget::Socket {
                dir,
                port,
                user,
                dbname,
            } => format!(
                "host='{}' port={port} user='{user}' dbname='{dbname}'",
                dir.display()
                    .to_string()
                    .replace('\\', "\\\\")
                    .replace('\'', "\\'")
            ),
        }
    }

    /// A display form without any password, for messages and logs.
    pub fn redacted(&self) -> String {
        match self {
            DbTarget::Url(u) => {
                let mut u = u.clone();
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            DbTarget::Socket {
                dir, user, dbname, ..
            } => format!(
                "embedded cluster (socket in {}), user {user}, database {dbname}",
                dir.display()
            ),
        }
    }

    /// Open a diesel connection.
    pub fn diesel(&self) -> Result<PgConnection> {
        PgConnection::establish(&self.conninfo())
            .with_context(|| format!("could not connect to {}", self.redacted()))
    }

    /// Open a postgres-crate client (used for COPY and dynamic SQL).
    pub fn client(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.conninfo(), postgres::NoTls)
            .with_context(|| format!("could not connect to {}", self.redacted()))
    }
}

/// How the command line chose its database.
#[derive(Debug, Clone, Default)]
pub struct DbOptions {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl DbOptions {
    /// Resolve to a target: the URL when given, else the embedded cluster (started if needed).
    pub fn resolve(&self) -> Result<DbTarget> {
        match self.database_url.as_deref().filter(|s| !s.is_empty()) {
            Some(url) => DbTarget::from_url(url),
            None => self.embedded()?.ensure_running(),
        }
    }

    /// A client on the resolved database (the embedded cluster started if needed), whose
    /// registry schema is current (migrated when behind). One connection in the usual case.
    pub fn registry_client(&self) -> Result<postgres::Client> {
        // A running embedded cluster is reached with the one connection that checks it.
        let running = match self.database_url.as_deref().filter(|s| !s.is_empty()) {
            Some(_) => None,
            None => self.embedded()?.connect_if_running(),
        };
        let (target, mut client) = match running {
            Some(tc) => tc,
            None => {
                let t = self.resolve()?;
                let c = t.client()?;
                (t, c)
            }
        };
        let latest = latest_migration_version()?;
        let current: Option<String> = client
            .query_one("SELECT max(version) FROM __diesel_schema_migrations", &[])
            .ok()
            .and_then(|r| r.get(0));
        if current.as_deref() != Some(latest.as_str()) {
            migrate(&mut target.diesel()?)?;
        }
        Ok(client)
    }

    /// The embedded cluster these options point at.
    pub fn embedded(&self) -> Result<embedded::EmbeddedCluster> {
        embedded::EmbeddedCluster::new(
            self.data_dir
                .clone()
                .unwrap_or_else(embedded::default_data_dir),
        )
    }
}

/// Create database `db` on the target's server if it does not exist.
pub fn ensure_database(server: &DbTarget, db: &str) -> Result<()> {
    let mut c = server.with_dbname("postgres").client()?;
    let exists = c
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(db));
        if let Err(e) = c.batch_execute(&sql) {
            // Another process may have created it meanwhile.
            if e.code() != Some(&postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e).with_context(|| format!("could not create database {db}"));
            }
        }
    }
    Ok(())
}

/// Quote an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The server's message of a postgres-crate error (with its detail and hint), without the
/// crate's generic prefix.
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut m = d.message().to_string();
            if let Some(x) = d.detail() {
                m.push_str(&format!(" ({x})"));
            }
            if let Some(h) = d.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// The version of the newest migration this build knows (the registry schema version).
pub fn latest_migration_version() -> Result<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("could not list migrations: {e}"))?
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .context("no migrations embedded")
}

/// One migration and whether it is applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationState {
    pub version: String,
    pub applied: bool,
}

/// Run all pending migrations; returns the versions applied.
///
/// Two commands started together on a new database must not both create the schemas: the
/// second waits for the first, then finds nothing to do. The lock is a table lock on diesel's
/// migration table in a mode (SHARE UPDATE EXCLUSIVE) that needs write privileges on it, so
/// no reader of the registry can take or hold it; all pending migrations run in one
/// transaction that holds it.
pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>> {
    use diesel::connection::SimpleConnection;
    // diesel's own table, created here (as diesel would) so that it can be locked; two
    // sessions creating it together race in the catalog, and the loser finds it made.
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS public.__diesel_schema_migrations (
        version VARCHAR(50) PRIMARY KEY NOT NULL,
        run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)";
    if let Err(e) = conn.batch_execute(CREATE) {
        conn.batch_execute(CREATE)
            .map_err(|_| anyhow::anyhow!("could not create the migration table: {e}"))?;
    }
    conn.transaction::<_, anyhow::Error, _>(|c| {
        c.batch_execute(MIGRATION_LOCK)
            .context("could not take the migration lock")?;
        c.run_pending_migrations(MIGRATIONS)
            .map(|d| d.iter().map(|v| v.to_string()).collect())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))
    })
}

/// The lock held while migrations run (see [`migrate`]).
pub const MIGRATION_LOCK: &str =
    "LOCK TABLE public.__diesel_schema_migrations IN SHARE UPDATE EXCLUSIVE MODE";

/// Revert every applied migration (newest first); returns the versions reverted.
pub fn revert_all(conn: &mut PgConnection) -> Result<Vec<String>> {
    let done = conn
        .revert_all_migrations(MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("reverting migrations failed: {e}"))?;
    Ok(done.iter().map(|v| v.to_string()).collect())
}

/// Every known migration with its state.
pub fn migration_states(conn: &mut PgConnection) -> Result<Vec<MigrationState>> {
    use diesel::migration::MigrationSource;
    let applied: Vec<String> = conn
        .applied_migrations()
        .map_err(|e| anyhow::anyhow!("could not read applied migrations: {e}"))?
        .iter()
        .map(|v| v.to_string())
        .collect();
    let all = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("could not list migrations: {e}"))?;
    let mut states: Vec<MigrationState> = all
        .iter()
        .map(|m| {
            let version = m.name().version().to_string();
            MigrationState {
                applied: applied.contains(&version),
                version,
            }
        })
        .collect();
    states.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(states)
}
