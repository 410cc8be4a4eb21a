//! The `registrar` command line: argument definitions and dispatch. Each subcommand is a
//! thin shell over the library modules.

use crate::db::{self, DbOptions};
use crate::privacy::keys::KeyOpts;
use crate::{runs, status, vocab};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod dicom;
mod federation;
mod import;
mod privacy;

const ABOUT: &str = "registrar builds and feeds a pseudonymised OMOP CDM 5.4 research registry \
for multi-institutional breast-cancer research.";

const LONG_ABOUT: &str = "registrar builds and feeds a pseudonymised OMOP CDM 5.4 research registry \
for multi-institutional breast-cancer research: it pulls hospital exports (CSV, spreadsheets, FHIR, \
DICOM), pseudonymises them with a keyed hash, maps them into the `cdm` schema and keeps a \
tamper-evident audit log for the privacy officer.

DATABASE: with DATABASE_URL (or --database-url) set, registrar uses that PostgreSQL server and \
never starts its own. Without it, registrar runs a private PostgreSQL cluster from the installed \
server binaries, in --data-dir (default ~/.local/share/registrar/pgdata; for root \
/var/lib/registrar/pgdata), listening on a unix socket only. `registrar db stop` stops it.";

#[derive(Debug, Parser)]
#[command(name = "registrar", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// PostgreSQL URL of the registry (postgres://user@host:port/db). When unset, the
    /// embedded cluster is used.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Data directory of the embedded cluster (ignored when DATABASE_URL is set).
    #[arg(long, env = "REGISTRAR_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyOpts,
}

impl GlobalOpts {
    pub(crate) fn db(&self) -> DbOptions {
        DbOptions {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, reset or stop the registry database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Load OMOP standardised vocabularies (an Athena download).
    #[command(subcommand)]
    Vocab(VocabCommand),
    /// Run the main job on sample data in the embedded registry and show what it holds.
    ///
    /// Migrates the registry (the embedded cluster unless DATABASE_URL is set), makes a
    /// synthetic hospital (CSV export, study workbook) and a second institution (FHIR bulk
    /// export, DICOM RT sets) next to it with a demo key, and runs one nightly over all of
    /// them: pseudonymised, mapped, loaded, research views refreshed, a report written.
    /// Later runs find everything unchanged. Prints the registry's status and the report.
    Demo,
    /// Generate synthetic breast-cancer sources (HIS CSV export, study workbook, FHIR bulk
    /// export) with a truth file, deterministically from a seed.
    Synth(registrar_synth::SynthArgs),
    /// The data manager's nightly job: every source of registrar.toml, one run, one report.
    ///
    /// Exit codes for cron and systemd: 0 all good, 1 finished with rejects or rejected
    /// files, 2 a source failed, 3 configuration or database error (or another run holds the
    /// lock). A run killed at any point is completed by the next one.
    Nightly {
        /// The configuration file.
        #[arg(long, value_name = "FILE", default_value = "registrar.toml")]
        config: PathBuf,
    },
    /// Validate a registrar.toml: paths, key, mappings against the schema.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Pseudonymise DICOM files (PS3.15 Basic Profile; no database).
    #[command(subcommand)]
    Dicom(dicom::DicomCommand),
    /// Import hospital exports and spreadsheets through mapping files.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Check mapping files; list local codes that still need a concept.
    #[command(subcommand)]
    Mapping(import::MappingCommand),
    /// Data-quality checks (conformance, completeness, plausibility) with severities and
    /// thresholds. Exit code 1 when a fatal check fails.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: privacy::Format,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Export a research cohort (a view of schema `research`) for analysis tools.
    #[command(subcommand)]
    Cohort(CohortCommand),
    /// The research marts: the tables behind the views of schema `research`.
    ///
    /// Every import command and the nightly recompute the marts of the persons whose facts
    /// they changed, in one transaction (a researcher never sees half a refresh), and
    /// `registrar vocab load` rebuilds them whole. Rebuild them yourself after writing cdm
    /// without registrar (another ETL, a manual fix); changing research.concept_role rebuilds
    /// them at once.
    #[command(subcommand)]
    Research(ResearchCommand),
    /// Create and maintain the PostgreSQL roles (ETL writer, researcher, auditor,
    /// federation).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Node side of federated cohorts: disclosure policy, this node's summary, export to a
    /// file. Only aggregates leave the node.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Coordinator: ask every node of nodes.toml for a cohort's aggregate summary and pool
    /// the answers (or `federate merge FILES...` for exported files).
    ///
    /// Exit code 1 when a node is down, answers with another schema version or sent an
    /// altered file: it is reported by name and left out of the totals.
    Federate(federation::FederateArgs),
    /// Create keys, rotate them, and see which keys the person map uses.
    #[command(subcommand)]
    Key(crate::cli::privacy::KeyCommand),
    /// Re-identify by recomputation (needs the key; every lookup is audited).
    #[command(subcommand)]
    Pseudonym(crate::cli::privacy::PseudonymCommand),
    /// The privacy officer's audit log: checkpoints, verification, reports.
    #[command(subcommand)]
    Audit(crate::cli::privacy::AuditCommand),
    /// Show, or set, the registry's plausibility limits.
    ///
    /// Every import refuses a birth before --min-birth-year (default 1850), any other date
    /// before --min-event-year (default 1900) and any date after today, with a reason per
    /// cell; `registrar check` flags ages above --max-age-years (default 120). A mapping can
    /// override the year limits for its own source (`[limits]`). Changes are audited.
    Limits(LimitsArgs),
    /// The registry's identifier types: the built-in NISS, MRN and study-subject ids, and
    /// the ones it declares (a US social security number, another country's national id).
    ///
    /// A declared type is used in a mapping like a built-in one (`type = "us-ssn"`) and is a
    /// pseudonym domain of its own. Its rules (normalisation, length, check digit) decide its
    /// pseudonyms, so they never change once declared; declarations are audited.
    #[command(subcommand)]
    Identifiers(IdentifiersCommand),
    /// Keys for SMART Backend Services: the FHIR endpoint authenticates registrar by a JWT
    /// assertion signed with a private key whose public half (a JWK Set) the server holds.
    #[command(subcommand)]
    SmartKey(SmartKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum SmartKeyCommand {
    /// Make an EC P-384 key (signs ES384), written with mode 0600 (never over an existing
    /// file), and print its JWK Set to register with the server's client id. RSA keys
    /// (RS384) made elsewhere work too: `openssl genpkey -algorithm RSA -out KEY`.
    New {
        /// The key file to create.
        file: PathBuf,
    },
    /// Print the JWK Set (public key only, with its `kid`) of a key file.
    Jwks {
        /// The key file (PEM, mode 0600).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentifiersCommand {
    /// List the identifier types: built-in and declared, with their rules.
    List,
    /// Declare an identifier type (declaring the same rules again changes nothing).
    Declare {
        /// The name mappings use (2 to 32 lower-case letters, digits and `-`).
        name: String,
        /// How a value is normalised before it is hashed: `trim` (case kept), `upper`,
        /// `digits` (separators ` .-/` dropped, anything else refused) or `alnum-upper`
        /// (letters and digits, upper-cased, the same separators dropped).
        #[arg(long, value_name = "HOW")]
        normalise: String,
        /// The length after normalisation: `9`, or a range `6-12`.
        #[arg(long, value_name = "N|MIN-MAX")]
        length: String,
        /// A check digit over the digits: `luhn` (last digit) or `mod97` (last two digits
        /// are 97 - the rest mod 97). Needs `--normalise digits`.
        #[arg(long, value_name = "ALGORITHM")]
        check_digit: Option<String>,
        /// What the identifier is, for the privacy officer.
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// The earliest year of birth an import accepts.
    #[arg(long, value_name = "YEAR")]
    pub min_birth_year: Option<i32>,
    /// The earliest year of any other date an import accepts.
    #[arg(long, value_name = "YEAR")]
    pub min_event_year: Option<i32>,
    /// The highest age at an event `registrar check` accepts.
    #[arg(long, value_name = "YEARS")]
    pub max_age_years: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file; exit 3 when it has errors.
    Check {
        #[arg(long, value_name = "FILE", default_value = "registrar.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CohortCommand {
    /// List the cohorts (views of schema `research`).
    List,
    /// Write a cohort as CSV or Parquet; warns about small cells (categories with fewer than
    /// 5 patients) before the file is shared.
    Export {
        /// The cohort, e.g. `tnbc_cohort` or `modeling_cohort`.
        name: String,
        /// Output file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// File format: CSV with a header row, or Parquet (typed columns, snappy).
        #[arg(long, value_enum, default_value = "csv")]
        format: CohortFormat,
    },
}

/// Cohort export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CohortFormat {
    Csv,
    Parquet,
}

#[derive(Debug, Subcommand)]
pub enum ResearchCommand {
    /// Recompute the marts of the persons whose facts changed since the last refresh, or of
    /// every person with --full.
    Refresh {
        /// Recompute every person (after cdm was written by something else than registrar's
        /// import path).
        #[arg(long)]
        full: bool,
    },
    /// When the marts were last refreshed, and how many persons changed since.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Create the group roles registrar_etl, registrar_researcher and registrar_auditor (if
    /// missing) and set their grants in this database; idempotent. Grant them to login roles
    /// yourself, e.g. `GRANT registrar_researcher TO alice`.
    ///
    /// Also creates the login role registrar_federation for the coordinating centre (it can
    /// execute the federation functions and nothing else; set its password with psql's
    /// `\password registrar_federation`) and registrar_federation_definer, which owns them.
    Apply {
        /// Let researchers read the cdm tables too, not only the research views.
        #[arg(long)]
        researcher_reads_cdm: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (creates the `cdm` and `registry` schemas on a new database).
    Migrate,
    /// Show migrations, table row counts and the last import run.
    Status,
    /// Drop everything registrar created and migrate again. All registry data is lost.
    Reset {
        /// Confirm that all data in the registry database may be destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// Revert every migration (drops the `cdm` and `registry` schemas). Needs --yes.
    Down {
        /// Confirm that all data in the registry database may be destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// Stop the embedded PostgreSQL cluster (no effect with DATABASE_URL).
    Stop,
    /// Print the connection string, e.g. for `psql "$(registrar db url)"`.
    Url,
}

#[derive(Debug, Subcommand)]
pub enum VocabCommand {
    /// Load CONCEPT.csv, CONCEPT_RELATIONSHIP.csv, ... from an Athena download directory,
    /// or, without a directory, the vocabulary subset shipped with registrar.
    ///
    /// Files are tab-delimited with a header row, as Athena ships them. Every file found
    /// replaces its table (binary COPY), all in one transaction: re-running with the same
    /// download is harmless, and a malformed line (reported with file and line) loads nothing.
    /// registrar's own concepts (vocabulary `registrar`, ids >= 2000000000: the registry's
    /// conventions that have no standard concept) are merged into whatever is loaded.
    ///
    /// The shipped subset holds the concepts registrar's mappings and research views use,
    /// with their Maps-to and ancestor rows, each traceable to a public OHDSI source
    /// (vocabulary/SOURCES.tsv). A registry loaded with a full Athena download works the same.
    Load {
        /// The unzipped Athena download (default: the subset shipped with registrar).
        dir: Option<PathBuf>,
    },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> std::result::Result<ExitCode, crate::Error> {
    dispatch(cli).map_err(crate::Error::from)
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Db(cmd) => db_command(g, cmd),
        Command::Vocab(VocabCommand::Load { dir }) => {
            let target = g.db().resolve()?;
            let mut conn = target.diesel()?;
            db::migrate(&mut conn)?;
            let run_id = runs::start(&mut conn, "vocab load", None)?;
            let mut client = target.client()?;
            let origin = match &dir {
                Some(d) => vocab::Origin::Dir(d),
                None => vocab::Origin::Shipped,
            };
            match vocab::load(&mut client, origin) {
                Ok(report) => {
                    let rows: i64 = report.tables.iter().map(|t| t.rows as i64).sum();
                    let counts = crate::ledger::UnitCounts {
                        rows_in: rows,
                        rows_loaded: rows,
                        ..Default::default()
                    };
                    runs::finish(&mut conn, run_id, runs::RunStatus::Succeeded, &counts, None)?;
                    if g.json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        for t in &report.tables {
                            println!("{:<28} -> cdm.{:<22} {:>10} rows", t.file, t.table, t.rows);
                        }
                        for f in &report.ignored {
                            println!("{f:<28}    skipped: not an Athena vocabulary table");
                        }
                        println!(
                            "{:<28}    merged: {} rows of registrar's own vocabulary",
                            "registrar", report.registrar_rows
                        );
                        println!("{}", report.marts);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    runs::finish(
                        &mut conn,
                        run_id,
                        runs::RunStatus::Failed,
                        &Default::default(),
                        Some(&msg),
                    )?;
                    Err(e)
                }
            }
        }
        Command::Demo => crate::demo::run(&g.db(), g.json),
        Command::Synth(args) => synth_command(g, &args),
        Command::Import(cmd) => import::import_command(g, cmd),
        Command::Dicom(cmd) => dicom::dicom_command(g, cmd),
        Command::Mapping(cmd) => import::mapping_command(g, cmd),
        Command::Roles(RolesCommand::Apply {
            researcher_reads_cdm,
        }) => {
            let target = g.db().resolve()?;
            db::migrate(&mut target.diesel()?)?;
            let stmts = crate::roles::apply(
                &mut target.client()?,
                crate::roles::RoleOptions {
                    researcher_reads_cdm,
                },
            )?;
            println!(
                "roles registrar_etl, registrar_researcher, registrar_auditor, registrar_federation applied ({} grants)",
                stmts.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Nightly { config } => {
            let cfg = crate::config::Config::load(&config)?;
            let opts = cfg.db_options(g.database_url.as_deref(), g.data_dir.as_deref());
            match crate::nightly::run(&cfg, &opts) {
                Ok(r) => {
                    if g.json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        for s in &r.sources {
                            println!(
                                "{:<24} {:<8} {} files ({} loaded, {} unchanged, {} rejected), {} rows loaded, {} unchanged, {} rejected{}",
                                s.name, s.status.as_str(), s.files_seen, s.files_loaded, s.files_skipped, s.files_rejected,
                                s.counts.rows_loaded, s.counts.rows_unchanged, s.counts.rows_rejected,
                                s.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                            );
                            for p in &s.passed_over {
                                println!("{:<24} passed over {p}", s.name);
                            }
                        }
                        println!("{}", r.research_marts);
                        println!("report: {}", r.report_html.display());
                    }
                    Ok(ExitCode::from(r.exit_code))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let problems =
                crate::config::check(&config, g.database_url.as_deref(), g.data_dir.as_deref());
            if problems.is_empty() {
                println!("{}: ok", config.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("{p}");
                }
                Ok(ExitCode::from(3))
            }
        }
        Command::Cohort(cmd) => {
            let target = g.db().resolve()?;
            db::migrate(&mut target.diesel()?)?;
            let mut client = target.client()?;
            match cmd {
                CohortCommand::List => {
                    for c in crate::cohort::cohorts(&mut client)? {
                        println!("{c}");
                    }
                }
                CohortCommand::Export { name, out, format } => {
                    let (rows, small) = match format {
                        CohortFormat::Csv => crate::cohort::export_csv(&mut client, &name, &out)?,
                        CohortFormat::Parquet => {
                            crate::cohort::export_parquet(&mut client, &name, &out)?
                        }
                    };
                    if g.json {
                        println!(
                            "{}",
                            serde_json::json!({ "rows": rows, "file": out, "small_cells": small })
                        );
                    } else {
                        println!("wrote {rows} rows of research.{name} to {}", out.display());
                        for s in &small {
                            eprintln!(
                                "warning: small cell: {} = {} holds {} patient(s) (< {}); aggregate before sharing",
                                s.column, s.value, s.rows, crate::cohort::SMALL_CELL
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Research(cmd) => {
            let target = g.db().resolve()?;
            db::migrate(&mut target.diesel()?)?;
            let mut client = target.client()?;
            match cmd {
                ResearchCommand::Refresh { full } => {
                    let scope = if full {
                        crate::marts::Scope::Full
                    } else {
                        crate::marts::Scope::Changed
                    };
                    let r = crate::marts::refresh(&mut client, scope)?;
                    if g.json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        println!("{r}");
                    }
                }
                ResearchCommand::Status => {
                    let s = crate::marts::state(&mut client)?;
                    if g.json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        match &s.refreshed_at {
                            None => println!("research marts: never built"),
                            Some(at) => println!(
                                "research marts: refreshed {at} ({} person(s){}, {:.2} s); last full rebuild {}",
                                s.last.persons,
                                if s.last.full_rebuild { ", full rebuild" } else { "" },
                                s.last.seconds,
                                s.full_rebuild_at.as_deref().unwrap_or("never")
                            ),
                        }
                        println!(
                            "{} person(s) changed since (recomputed by the next import, nightly or `registrar research refresh`)",
                            s.pending
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { format, out } => {
            let target = g.db().resolve()?;
            db::migrate(&mut target.diesel()?)?;
            let outcomes = crate::quality::run(&mut target.client()?)?;
            let format = if g.json {
                privacy::Format::Json
            } else {
                format
            };
            let text = match format {
                privacy::Format::Json => serde_json::to_string_pretty(&outcomes)? + "\n",
                privacy::Format::Html => crate::quality::html(&outcomes),
                privacy::Format::Csv => {
                    let mut s =
                        String::from("check,severity,violating,total,pct,threshold_pct,passed\n");
                    for o in &outcomes {
                        s.push_str(&format!(
                            "{},{:?},{},{},{:.4},{},{}\n",
                            o.id,
                            o.severity,
                            o.violating,
                            o.total,
                            o.pct,
                            o.threshold_pct,
                            o.passed
                        ));
                    }
                    s
                }
                privacy::Format::Text => crate::quality::text(&outcomes),
            };
            match out {
                Some(p) => crate::files::write_atomically(&p, text.as_bytes())?,
                None => print!("{text}"),
            }
            let fatal = outcomes
                .iter()
                .any(|o| !o.passed && o.severity == crate::quality::Severity::Fatal);
            Ok(if fatal {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Federation(cmd) => federation::federation_command(g, cmd),
        Command::Federate(args) => federation::federate_command(g, args),
        Command::Key(cmd) => privacy::key_command(g, cmd),
        Command::Pseudonym(cmd) => privacy::pseudonym_command(g, cmd),
        Command::Audit(cmd) => privacy::audit_command(g, cmd),
        Command::Limits(args) => limits_command(g, &args),
        Command::Identifiers(cmd) => identifiers_command(g, cmd),
        Command::SmartKey(cmd) => smart_key_command(cmd),
    }
}

fn identifiers_command(g: &GlobalOpts, cmd: IdentifiersCommand) -> Result<ExitCode> {
    use crate::privacy::identifiers;
    let target = g.db().resolve()?;
    db::migrate(&mut target.diesel()?)?;
    let mut client = target.client()?;
    if let IdentifiersCommand::Declare {
        name,
        normalise,
        length,
        check_digit,
        description,
    } = cmd
    {
        let (min, max) = match length.split_once('-') {
            Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
            None => (length.trim().parse::<i32>(), length.trim().parse::<i32>()),
        };
        let (Ok(min_length), Ok(max_length)) = (min, max) else {
            bail!("--length is a number of characters (`9`) or a range (`6-12`)");
        };
        let mut tx = client.transaction()?;
        let new = identifiers::add(
            &mut tx,
            &identifiers::Declaration {
                name: name.clone(),
                normalisation: normalise,
                min_length,
                max_length,
                check_digit,
                description,
            },
        )?;
        tx.commit()?;
        if !g.json {
            println!(
                "{name}: {}",
                if new {
                    "declared"
                } else {
                    "already declared with these rules"
                }
            );
        }
    }
    let declared = identifiers::list(&mut client)?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "built_in": registrar_anonymizer::pseudonym::IdentifierType::ALL,
                "declared": declared,
            }))?
        );
    } else {
        println!(
            "built in: niss (11 digits, mod-97 check), mrn (upper-cased), study-subject (trimmed)"
        );
        for d in &declared {
            let len = if d.min_length == d.max_length {
                format!("{}", d.min_length)
            } else {
                format!("{}-{}", d.min_length, d.max_length)
            };
            println!(
                "declared: {} ({}, {len} characters{}){}",
                d.name,
                d.normalisation,
                d.check_digit
                    .map(|c| format!(", {c} check"))
                    .unwrap_or_default(),
                if d.description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.description)
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn limits_command(g: &GlobalOpts, a: &LimitsArgs) -> Result<ExitCode> {
    let target = g.db().resolve()?;
    db::migrate(&mut target.diesel()?)?;
    let mut client = target.client()?;
    let today = chrono::Local::now().date_naive();
    let before = crate::import::read_limits(&mut client, today)?;
    if a.min_birth_year.is_some() || a.min_event_year.is_some() || a.max_age_years.is_some() {
        let mut tx = client.transaction()?;
        tx.execute(
            "UPDATE registry.plausibility SET min_birth_year = coalesce($1, min_birth_year),
                    min_event_year = coalesce($2, min_event_year),
                    max_age_years = coalesce($3, max_age_years), updated_at = now()",
            &[&a.min_birth_year, &a.min_event_year, &a.max_age_years],
        )
        .map_err(|e| anyhow::anyhow!("{}", crate::db::pg_message(&e)))?;
        let after = crate::import::read_limits(&mut tx, today)?;
        crate::privacy::audit::append(
            &mut tx,
            &crate::privacy::audit::Record {
                action: crate::privacy::audit::action::CONFIGURATION,
                run_id: None,
                locator_hash: None,
                key_id: None,
                detail: serde_json::json!({ "plausibility": { "before": before, "now": after } }),
            },
        )?;
        tx.commit()?;
    }
    let l = crate::import::read_limits(&mut client, today)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&l)?);
    } else {
        println!(
            "births from {}, other dates from {}, no date after today, ages up to {} years",
            l.min_birth_year, l.min_event_year, l.max_age_years
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn db_command(g: &GlobalOpts, cmd: DbCommand) -> Result<ExitCode> {
    match cmd {
        DbCommand::Migrate => {
            let target = g.db().resolve()?;
            let applied = db::migrate(&mut target.diesel()?)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "database": target.redacted(), "applied": applied })
                );
            } else if applied.is_empty() {
                println!("{}: up to date", target.redacted());
            } else {
                for v in &applied {
                    println!("applied {v}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Status => {
            let target = g.db().resolve()?;
            let s = status::collect(&target)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", status::render(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Reset { yes } | DbCommand::Down { yes } if !yes => {
            bail!(
                "this destroys every table registrar created in the registry database, with all \
                 its data; run again with --yes to confirm"
            )
        }
        DbCommand::Reset { .. } => {
            let target = g.db().resolve()?;
            let mut conn = target.diesel()?;
            let reverted = db::revert_all(&mut conn)?;
            let applied = db::migrate(&mut conn)?;
            println!(
                "{}: reverted {} and re-applied {} migrations",
                target.redacted(),
                reverted.len(),
                applied.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Down { .. } => {
            let target = g.db().resolve()?;
            let reverted = db::revert_all(&mut target.diesel()?)?;
            println!(
                "{}: reverted {} migrations",
                target.redacted(),
                reverted.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Stop => {
            if g.database_url.as_deref().is_some_and(|u| !u.is_empty()) {
                println!(
                    "DATABASE_URL is set: registrar does not manage that server; nothing to stop"
                );
                return Ok(ExitCode::SUCCESS);
            }
            let cluster = g.db().embedded()?;
            if cluster.stop()? {
                println!(
                    "stopped the embedded cluster in {}",
                    cluster.data_dir().display()
                );
            } else {
                println!(
                    "the embedded cluster in {} is not running",
                    cluster.data_dir().display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Url => {
            let target = g.db().resolve()?;
            println!("{}", target.conninfo());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn synth_command(g: &GlobalOpts, args: &registrar_synth::SynthArgs) -> Result<ExitCode> {
    let opts = args.to_options();
    let bar = crate::progress::count_bar(Some(opts.patients), "synth", "patients");
    let report = registrar_synth::generate(&opts, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "wrote {} patients to {}",
            report.patients,
            opts.out.display()
        );
        for (path, n) in &report.files {
            println!("  {:<40} {n:>10}", path.display());
        }
        println!("truth: {}", opts.out.join("truth.jsonl").display());
    }
    Ok(ExitCode::SUCCESS)
}

fn smart_key_command(cmd: SmartKeyCommand) -> Result<ExitCode> {
    use registrar_fhir::smart::SigningKey;
    let file = match cmd {
        SmartKeyCommand::New { file } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let pem = SigningKey::generate_es384_pem()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .with_context(|| format!("key file {}", file.display()))?;
            f.write_all(pem.as_bytes())
                .and_then(|_| f.sync_all())
                .with_context(|| format!("key file {}", file.display()))?;
            eprintln!(
                "wrote {} (ES384, mode 0600); register this JWK Set with the client id:",
                file.display()
            );
            file
        }
        SmartKeyCommand::Jwks { file } => file,
    };
    let key = SigningKey::load(&file)?;
    println!("{}", serde_json::to_string_pretty(&key.jwks())?);
    Ok(ExitCode::SUCCESS)
}
