//! `registrar federation ...` (node side) and `registrar federate` (coordinator).

use super::GlobalOpts;
use crate::db;
use crate::federation::{self, NodesFile};
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Show or change this node's disclosure policy: its node id and the minimum cell size
    /// (default 5). Changes are written to the audit log.
    Configure {
        /// The id the coordinator knows this node by (letters, digits, '.', '_', '-').
        #[arg(long)]
        node_id: Option<String>,
        /// Counts from 1 to this minus 1 are suppressed, and more until every suppressed
        /// count keeps a range of at least this many values (applies from the next release).
        #[arg(long, value_name = "N")]
        min_cell: Option<i32>,
    },
    /// Publish a release: compute every askable cohort's answer from the research views,
    /// choose the suppressions for the whole release at once and verify them (every suppressed
    /// count keeps a range of at least the minimum cell size, given everything the release
    /// publishes, as an attacker solving the integer programme would find), and store it with
    /// its audit-log entry. The coordinator is served this release until the next one. Run it
    /// after the nightly; when the answers are unchanged, no new release is made.
    Publish {
        /// Make a new release even when the latest one publishes the same answers.
        #[arg(long)]
        force: bool,
    },
    /// List the cohorts the latest release answers for.
    Cohorts,
    /// Print this node's answer for a cohort exactly as the coordinator receives it: the
    /// latest published release's (run `federation publish` first).
    Summary {
        #[arg(long)]
        cohort: String,
    },
    /// Write this node's published answer for a cohort to a file for a coordinator that cannot reach
    /// the database: node id, time, schema version and a SHA-256 over the content (also
    /// written to this node's audit log, so an alteration can be proved).
    Export {
        #[arg(long)]
        cohort: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Output formats of `federate`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FederateArgs {
    #[command(subcommand)]
    pub merge: Option<FederateSub>,
    /// The nodes to ask: a TOML file of [[node]] entries with `id`, `url` (normally as the
    /// node's registrar_federation role), and optionally `sslmode`, `sslrootcert`,
    /// `connect_timeout`.
    #[arg(long, value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// The cohort to ask for (see --list).
    #[arg(long)]
    pub cohort: Option<String>,
    /// List the cohorts each node answers for instead.
    #[arg(long)]
    pub list: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: PoolFormat,
}

#[derive(Debug, Subcommand)]
pub enum FederateSub {
    /// Pool exported summary files (`registrar federation export`) the same way; a file whose
    /// hash does not match, or with another schema version, is reported and left out.
    Merge {
        files: Vec<PathBuf>,
        /// Only pool files of this cohort (default: the cohort of the first file).
        #[arg(long)]
        cohort: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: PoolFormat,
    },
}

pub fn federation_command(g: &GlobalOpts, cmd: FederationCommand) -> Result<ExitCode> {
    let target = g.db().resolve()?;
    db::migrate(&mut target.diesel()?)?;
    let mut client = target.client()?;
    match cmd {
        FederationCommand::Configure { node_id, min_cell } => {
            let p = federation::configure(&mut client, node_id.as_deref(), min_cell)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "node id {}; minimum cell size {} (audited secondary suppression; from the next `federation publish`)",
                    p.node_id, p.min_cell
                );
            }
        }
        FederationCommand::Publish { force } => {
            let r = federation::release::publish(&mut client, force)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else if r.new {
                println!(
                    "release {} published (audit entry {}): {} cohorts, {} counts suppressed ({} primary, {} secondary), audited in {} rounds",
                    r.release_id,
                    r.audit_seq,
                    r.cohorts.len(),
                    r.primary_suppressions + r.secondary_suppressions,
                    r.primary_suppressions,
                    r.secondary_suppressions,
                    r.audit_rounds
                );
            } else {
                println!(
                    "answers unchanged: release {} (audit entry {}) stays published",
                    r.release_id, r.audit_seq
                );
            }
        }
        FederationCommand::Cohorts => {
            for (name, description) in federation::cohorts(&mut client)? {
                println!("{name:<24} {description}");
            }
        }
        FederationCommand::Summary { cohort } => {
            let s = federation::summary(&mut client, &cohort)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        FederationCommand::Export { cohort, out } => {
            let f = federation::export(&mut client, &cohort, &out)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"file": out, "sha256": f.sha256, "node_id": f.node_id})
                );
            } else {
                println!(
                    "wrote {} (node {}, cohort {}, sha256 {})",
                    out.display(),
                    f.node_id,
                    cohort,
                    f.sha256
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn federate_command(g: &GlobalOpts, args: FederateArgs) -> Result<ExitCode> {
    let expected = federation::expected_schema_version()?;
    let (pooled, format) = match args.merge {
        Some(FederateSub::Merge {
            files,
            cohort,
            format,
        }) => {
            if files.is_empty() {
                bail!("name the exported files to merge");
            }
            let answers = federation::answers_from_files(&files, cohort.as_deref(), &expected);
            let cohort = cohort
                .or_else(|| {
                    answers.iter().find_map(|a| match &a.outcome {
                        federation::NodeOutcome::Answered { summary } => summary
                            .get("cohort")
                            .and_then(|c| c.as_str())
                            .map(String::from),
                        _ => None,
                    })
                })
                .unwrap_or_default();
            (federation::pool(&cohort, &expected, answers), format)
        }
        None => {
            let Some(nodes_path) = args.nodes else {
                bail!("give --nodes FILE (and --cohort NAME or --list), or use `registrar federate merge FILES...`");
            };
            let nodes = NodesFile::load(&nodes_path)?;
            if args.list {
                let mut failed = false;
                for (node, r) in federation::list_cohorts(&nodes) {
                    match r {
                        Ok(c) => println!("{node:<20} {}", c.join(", ")),
                        Err(e) => {
                            failed = true;
                            println!("{node:<20} UNAVAILABLE: {e}")
                        }
                    }
                }
                return Ok(if failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            let Some(cohort) = args.cohort else {
                bail!("give --cohort NAME (or --list to see the cohorts the nodes answer for)");
            };
            let bar = crate::progress::count_bar(Some(nodes.nodes.len() as u64), "asking", "nodes");
            let answers = std::thread::scope(|s| {
                let handles: Vec<_> = nodes
                    .nodes
                    .iter()
                    .map(|n| {
                        let (cohort, expected, bar) = (&cohort, &expected, &bar);
                        s.spawn(move || {
                            let a = federation::ask(n, cohort, expected);
                            bar.inc(1);
                            a
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("node thread panicked"))
                    .collect::<Vec<_>>()
            });
            bar.finish_and_clear();
            (federation::pool(&cohort, &expected, answers), args.format)
        }
    };
    let format = if g.json { PoolFormat::Json } else { format };
    match format {
        PoolFormat::Table => print!("{}", federation::render_text(&pooled)),
        PoolFormat::Json => println!("{}", serde_json::to_string_pretty(&pooled)?),
        PoolFormat::Csv => print!("{}", federation::render_csv(&pooled)?),
    }
    if !pooled.all_answered() {
        for a in &pooled.nodes {
            if !matches!(a.outcome, federation::NodeOutcome::Answered { .. }) {
                eprintln!("warning: node {} is not in the totals (see above)", a.node);
            }
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
