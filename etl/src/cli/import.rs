//! `registrar import csv|xlsx|fhir|fhir-bulk` (one source through [`crate::pipeline`]) and
//! `registrar mapping check|unmapped`.

use super::GlobalOpts;
use crate::import::{ImportContext, ImportOptions, UnitOutcome};
use crate::ledger::{FileStatus, Ledger};
use crate::mapping::check::compile;
use crate::mapping::{Format, Mapping};
use crate::pipeline::{
    self, BulkSource, EndpointSource, FileSource, Inputs, Source, SourceKind, SourceOutcome,
    SourceStatus,
};
use crate::runs::RunStatus;
use crate::{db, progress, runs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use registrar_anonymizer::dateshift::{DatePolicy, ShiftWindow};
use std::path::PathBuf;
use std::process::ExitCode;

/// How dates are protected.
#[derive(Debug, Clone, Args)]
pub struct DateOpts {
    /// Keep true dates instead of shifting them (only where the registry is allowed to;
    /// the choice is recorded in the audit log with every import).
    #[arg(long, global = true)]
    pub keep_true_dates: bool,
    /// The per-person date shift window in days, MIN,MAX (never 0 is drawn).
    #[arg(
        long,
        global = true,
        value_name = "MIN,MAX",
        default_value = "-365,-30",
        allow_hyphen_values = true
    )]
    pub shift_window: String,
}

impl DateOpts {
    pub fn policy(&self) -> Result<DatePolicy> {
        if self.keep_true_dates {
            return Ok(DatePolicy::KeepTrueDates);
        }
        let (a, b) = self
            .shift_window
            .split_once(',')
            .ok_or_else(|| anyhow::anyhow!("--shift-window takes MIN,MAX (e.g. -365,-30)"))?;
        let w = ShiftWindow::new(a.trim().parse()?, b.trim().parse()?)
            .map_err(|e| anyhow::anyhow!("--shift-window: {e}"))?;
        Ok(DatePolicy::Shift(w))
    }
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import delimited text exports through a mapping file.
    ///
    /// A file is its source (--source, default the mapping's name) plus its path relative to
    /// --root (default /, i.e. its absolute path): `siteA/lab.csv` and `siteB/lab.csv` are two
    /// files. Each file is loaded whole or not at all, in one transaction; an unchanged file
    /// is skipped, a changed one replaces the rows of its earlier version (or, with a record
    /// key, its changed records replace theirs; with a declared series, the newest member
    /// replaces the older ones). Rows that cannot be loaded are rejected with row, source
    /// column, mapping line and reason (`registry.reject`), never with their values. Exit code
    /// 0: all loaded; 1: some rows or files rejected; 2: the import failed part-way (what
    /// was committed stays); 3: nothing ran (arguments, mapping, key, database).
    Csv(ImportArgs),
    /// Import spreadsheets (xlsx) through a mapping file (see `import csv`).
    Xlsx(ImportArgs),
    /// Pull resources from a FHIR R4 endpoint through FHIR mappings (one per resource type).
    ///
    /// Each mapping's type is searched page by page (`_count`, following the Bundle's next
    /// links); each page loads in its own transaction. The first run pulls everything; later
    /// runs only what was updated since the last complete pull (`_lastUpdated=gt...`, a
    /// watermark per endpoint, type and mapping kept in the registry and advanced only after
    /// every page committed), plus deletions from the type's `_history`. A resource is a
    /// record (its type and id): one seen before unchanged costs nothing, an updated one
    /// replaces the rows it produced before. A resource that does not parse is rejected with
    /// its reason; its page still loads. Timeouts, dropped connections, 429 and 5xx are
    /// retried (Retry-After, else exponential backoff); a next link that loops or leaves the
    /// server's origin stops that type. A run that dies is repeated from the last committed
    /// watermark, without duplicates. Exit code 0: all loaded; 1: some resources rejected;
    /// 2: a resource type failed (the others still ran); 3: error.
    Fhir(FhirArgs),
    /// Import a FHIR Bulk Data export folder (one ndjson file per type, plain or gzip)
    /// through FHIR mappings; the export's Patients resolve every reference. Unchanged files
    /// are skipped; resources are records as in `import fhir`. A line longer than
    /// --max-line-bytes is rejected (`line_too_long`) and the rest of its file loads; a file
    /// whose content expands beyond --max-decompressed-bytes is rejected whole
    /// (`file_too_large`), read only up to the limit.
    FhirBulk(FhirBulkArgs),
}

#[derive(Debug, Args)]
pub struct FhirArgs {
    /// The server's base URL, e.g. https://fhir.hospital.example/r4
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// FHIR mapping files (format = "fhir"), one per resource type; Patient first is usual.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    pub mapping: Vec<PathBuf>,
    /// Resources per search page (`_count`).
    #[arg(long, default_value_t = 200)]
    pub count: u32,
    /// A file holding the bearer token (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the bearer token.
    #[arg(long, value_name = "VAR", conflicts_with = "smart_client_id")]
    pub token_env: Option<String>,
    /// SMART Backend Services: the client id the server registered. Tokens are then fetched
    /// with assertions signed by --smart-key (and renewed before they expire).
    #[arg(
        long,
        value_name = "ID",
        requires = "smart_key",
        conflicts_with = "token_file"
    )]
    pub smart_client_id: Option<String>,
    /// SMART: the private key, PEM (RSA signs RS384, EC P-384 signs ES384), mode 0600;
    /// `registrar smart-key new` makes one and prints the JWK Set to register.
    #[arg(long, value_name = "FILE", requires = "smart_client_id")]
    pub smart_key: Option<PathBuf>,
    /// SMART: the scopes to request.
    #[arg(long, value_name = "SCOPES", default_value = registrar_fhir::smart::DEFAULT_SCOPE, requires = "smart_client_id")]
    pub smart_scope: String,
    /// SMART: the token endpoint (default: the server's .well-known/smart-configuration).
    #[arg(long, value_name = "URL", requires = "smart_client_id")]
    pub smart_token_url: Option<String>,
    /// SMART: the key id the server registered (default: the key's thumbprint).
    #[arg(long, value_name = "KID", requires = "smart_client_id")]
    pub smart_kid: Option<String>,
    /// Ignore the watermarks and pull everything again (unchanged resources cost nothing);
    /// what the server no longer holds is removed, as by an id sweep.
    #[arg(long)]
    pub full: bool,
    /// Days between id sweeps of a resource type whose deletions the server cannot list
    /// (its CapabilityStatement has no type-level `_history`, or `_history` answers 404):
    /// the ids the server holds (`_elements=id`) are compared with the registry's records
    /// and the missing ones removed. 0: every pull.
    #[arg(long, value_name = "DAYS", default_value_t = crate::config::DEFAULT_SWEEP_DAYS)]
    pub id_sweep_days: u32,
    /// Seconds before one request times out.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Retries of one request (dropped connection, timeout, 429, 5xx).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First backoff between retries in milliseconds (doubled each time; Retry-After wins).
    #[arg(long, default_value_t = 500, hide = true)]
    pub backoff_ms: u64,
    /// The source name recorded with every page (default: `fhir`).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    #[command(flatten)]
    pub dates: DateOpts,
}

#[derive(Debug, Args)]
pub struct FhirBulkArgs {
    /// FHIR mapping files (format = "fhir").
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    pub mapping: Vec<PathBuf>,
    /// The export folder (manifest.json and Type.ndjson[.gz] files).
    pub dir: PathBuf,
    /// The source name recorded with every file (default: `fhir-bulk`).
    #[arg(long, value_name = "NAME", default_value = "fhir-bulk")]
    pub source: String,
    /// The longest line (one resource) of an ndjson file: bytes, or KiB, MiB, GiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::sources::parse_size)]
    pub max_line_bytes: u64,
    /// The most content of one ndjson file after decompression: bytes, or KiB, MiB, GiB.
    #[arg(long, value_name = "SIZE", default_value = "16GiB", value_parser = crate::sources::parse_size)]
    pub max_decompressed_bytes: u64,
    #[command(flatten)]
    pub dates: DateOpts,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The mapping file (TOML).
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,
    /// Input files (each under --root).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The folder file identities are relative to: the export's drop folder (as a nightly
    /// source's `folder`). Without it a file's identity is its absolute path, so the same
    /// file dropped again at the same place replaces its earlier version.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The source name, part of every file's identity (default: the mapping's name). Use the
    /// nightly source's name to import by hand what the nightly run reads.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// The largest cell: bytes, or KiB, MiB, GiB. A row with a larger cell is rejected
    /// (`cell_too_large`, naming the column and the limit) and the rest of the file loads.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = crate::sources::parse_size)]
    pub max_cell_bytes: u64,
    #[command(flatten)]
    pub dates: DateOpts,
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Validate mapping files against the registry schema and their concept maps; reports
    /// every error with file and line. With --sample, also runs the mapping on the first rows
    /// of a file (nothing is written) and prints, per field, how many values parsed, were
    /// empty, nulled or failed, with the reasons, and which date formats match how many.
    ///
    /// It also says which research views each mapping feeds (by the concepts it writes, read
    /// through research.concept_role), and warns when a fact concept can be 0, when a concept
    /// is not in the loaded vocabulary, not standard, or of a domain its column does not
    /// expect, and, for a mapping that feeds a view, which of its fact concepts no view reads.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A data file to try the (single) mapping on.
        #[arg(long, value_name = "FILE")]
        sample: Option<PathBuf>,
        /// Rows of the sample to read.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
    },
    /// Values seen without a concept (concept maps) or without an entry (value maps), with
    /// counts, most frequent first. Values that do not look like codes are counted, never
    /// shown.
    Unmapped {
        /// Only this mapping (its `source.name`).
        #[arg(long)]
        mapping: Option<String>,
    },
}

use crate::fhirimport::Deletions;

pub fn import_command(g: &GlobalOpts, cmd: ImportCommand) -> Result<ExitCode> {
    let (command, source, dates) = match cmd {
        ImportCommand::Csv(a) => {
            let s = files_source(&a, Format::Csv)?;
            ("import csv", s, a.dates)
        }
        ImportCommand::Xlsx(a) => {
            let s = files_source(&a, Format::Xlsx)?;
            ("import xlsx", s, a.dates)
        }
        ImportCommand::Fhir(a) => {
            let auth = crate::fhirimport::AuthSpec {
                token_file: a.token_file.clone(),
                token_env: a.token_env.clone(),
                smart: match (&a.smart_client_id, &a.smart_key) {
                    (Some(id), Some(key)) => Some(crate::fhirimport::SmartSpec {
                        client_id: id.clone(),
                        key_file: key.clone(),
                        scope: Some(a.smart_scope.clone()),
                        token_url: a.smart_token_url.clone(),
                        kid: a.smart_kid.clone(),
                    }),
                    _ => None,
                },
            }
            .resolve()?;
            let name = a.source.clone().unwrap_or_else(|| "fhir".into());
            let source = Source {
                name,
                kind: SourceKind::FhirEndpoint(EndpointSource {
                    endpoint: a.endpoint.clone(),
                    mappings: a.mapping.clone(),
                    options: registrar_fhir::client::ClientOptions {
                        count: a.count.clamp(1, 10_000),
                        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
                        max_retries: a.retries,
                        backoff: std::time::Duration::from_millis(a.backoff_ms),
                        auth,
                        ..Default::default()
                    },
                    full: a.full,
                    sweep_days: a.id_sweep_days,
                }),
            };
            ("import fhir", source, a.dates)
        }
        ImportCommand::FhirBulk(a) => (
            "import fhir-bulk",
            Source {
                name: a.source.clone(),
                kind: SourceKind::FhirBulk(BulkSource {
                    folder: a.dir.clone(),
                    mappings: a.mapping.clone(),
                    exports_in_subfolders: false,
                    limits: registrar_fhir::ndjson::Limits {
                        max_line: a.max_line_bytes,
                        max_content: a.max_decompressed_bytes,
                    },
                }),
            },
            a.dates,
        ),
    };
    run_import(g, command, &source, &dates)
}

/// The source of `import csv|xlsx`.
fn files_source(a: &ImportArgs, format: Format) -> Result<Source> {
    let name = match &a.source {
        Some(n) => n.clone(),
        None => Mapping::load(&a.mapping)?.spec.source.name,
    };
    Ok(Source {
        name,
        kind: SourceKind::Files(FileSource {
            format,
            mapping: a.mapping.clone(),
            root: a.root.clone(),
            inputs: Inputs::Files(a.inputs.clone()),
            max_cell_bytes: a.max_cell_bytes,
        }),
    })
}

/// Run one source as its own import run, print what happened, and say how it ended.
fn run_import(
    g: &GlobalOpts,
    command: &str,
    source: &Source,
    dates: &DateOpts,
) -> Result<ExitCode> {
    let keys = g.keys.load()?;
    let opts = ImportOptions {
        policy: dates.policy()?,
        ..Default::default()
    };
    let target = g.db().resolve()?;
    let mut conn = target.diesel()?;
    db::migrate(&mut conn)?;
    let mut client = target.client()?;
    crate::privacy::keys::check_registry_key(&mut client, &keys)?;
    // A second connection draws ids from the sequences while the first one loads.
    let mut seq = target.client()?;
    crate::privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&opts.policy),
    )?;
    let run_id = runs::start(&mut conn, command, Some(keys.current.key_id().as_str()))?;
    let mut out = SourceOutcome::new(source);
    let result = {
        let mut ctx = ImportContext::new(&mut client, &mut seq, &keys, run_id, &opts)?;
        ctx.progress = progress::count_bar(None, &source.name, "rows");
        let r = pipeline::run(&mut ctx, source, &mut out);
        ctx.progress.finish_and_clear();
        r
    };
    out.settle(result);
    let status = match out.status {
        SourceStatus::Failed => RunStatus::Failed,
        SourceStatus::Rejects => RunStatus::Partial,
        SourceStatus::Ok => RunStatus::Succeeded,
    };
    runs::finish(&mut conn, run_id, status, &out.counts, out.error.as_deref())?;
    // The research views follow at once: the marts of the persons this import changed.
    let marts = crate::marts::refresh(&mut client, crate::marts::Scope::Changed)?;
    let is_files = matches!(source.kind, SourceKind::Files(_));
    if g.json {
        let mut v = serde_json::json!({
            "run_id": run_id,
            "status": status,
            "files": out.units,
            "source": &out,
            "research_marts": marts,
        });
        if !is_files {
            v["mappings"] = serde_json::to_value(&out.fhir)?;
            v["failures"] = serde_json::to_value(out.error.iter().collect::<Vec<_>>())?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if is_files {
            for u in &out.units {
                print_outcome(u);
            }
        } else {
            for o in &out.fhir {
                let t = o.totals();
                println!(
                    "{} ({}): {} resources in {} unit(s): {} loaded, {} unchanged, {} rejected, {} skipped; {} deleted{}",
                    o.mapping,
                    o.resource_type,
                    t.rows_in,
                    o.units.len(),
                    t.rows_loaded,
                    t.rows_unchanged,
                    t.rows_rejected,
                    t.rows_skipped,
                    o.deleted,
                    o.watermark_after
                        .as_deref()
                        .map(|w| format!("; watermark {w}"))
                        .unwrap_or_default()
                );
                let how = match &o.deletions {
                    Deletions::NotChecked => None,
                    Deletions::History => Some("deletions from the type's _history".to_string()),
                    Deletions::FullPull => {
                        Some("deletions: a full pull compared with the registry".to_string())
                    }
                    Deletions::Sweep => Some(
                        "deletions: an id sweep (the server keeps no type-level _history)"
                            .to_string(),
                    ),
                    Deletions::SweepNotDue { next_due } => Some(format!(
                        "deletions: the server keeps no type-level _history; next id sweep {next_due}"
                    )),
                };
                for line in how.iter().chain(o.notes.iter()) {
                    println!("  {line}");
                }
                if let (Some(n), Some(m)) = (o.announced, o.missing) {
                    println!("  incomplete: {m} of {n} announced resources were not received");
                }
            }
        }
        if let Some(a) = out
            .auth
            .as_ref()
            .filter(|a| a["method"] == "smart_backend_services")
        {
            println!(
                "authenticated by SMART Backend Services as client {} ({}): {} token(s) fetched",
                a["client_id"].as_str().unwrap_or(""),
                a["alg"].as_str().unwrap_or(""),
                a["tokens_fetched"]
            );
        }
        let c = &out.counts;
        println!(
            "run {run_id}: {} rows in, {} loaded, {} rejected, {} skipped, {} unchanged ({} cells nulled); {} file(s) rejected",
            c.rows_in, c.rows_loaded, c.rows_rejected, c.rows_skipped, c.rows_unchanged,
            c.cells_nulled, out.files_rejected
        );
        if c.rows_rejected > 0 || out.files_rejected > 0 || c.cells_nulled > 0 {
            println!("rejects: SELECT * FROM registry.reject WHERE run_id = {run_id};");
        }
        println!("{marts}");
    }
    match out.status {
        SourceStatus::Ok => Ok(ExitCode::SUCCESS),
        SourceStatus::Rejects => Ok(ExitCode::from(1)),
        SourceStatus::Failed => {
            let e = anyhow::anyhow!(
                "{}",
                out.error.unwrap_or_else(|| "the import failed".into())
            );
            // Files: nothing done (a mapping, an argument) is a setup error; else part-way.
            Err(if is_files && out.files_seen == 0 {
                crate::Error::Setup(e)
            } else {
                crate::Error::SourceFailed(e)
            }
            .into())
        }
    }
}

fn print_outcome(o: &UnitOutcome) {
    let c = &o.counts;
    match o.status {
        FileStatus::Loaded => {
            let tables: Vec<String> = o.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let mut extra = String::new();
            if c.rows_unchanged > 0 {
                extra.push_str(&format!(", {} unchanged", c.rows_unchanged));
            }
            if c.cells_nulled > 0 {
                extra.push_str(&format!(", {} cells nulled", c.cells_nulled));
            }
            let records =
                c.records_added + c.records_updated + c.records_unchanged + c.records_deleted;
            if records > 0 {
                extra.push_str(&format!(
                    "; records: {} added, {} updated, {} unchanged, {} deleted",
                    c.records_added, c.records_updated, c.records_unchanged, c.records_deleted
                ));
            }
            if o.replaced_rows > 0 {
                extra.push_str(&format!(
                    "; replaced {} rows of earlier versions",
                    o.replaced_rows
                ));
            }
            println!(
                "{}: loaded {} of {} rows ({} rejected, {} skipped{extra}) -> {}",
                o.file,
                c.rows_loaded,
                c.rows_in,
                c.rows_rejected,
                c.rows_skipped,
                if tables.is_empty() {
                    "nothing".to_string()
                } else {
                    tables.join(", ")
                }
            );
        }
        s => println!("{}: {s}: {}", o.file, o.reason.as_deref().unwrap_or("")),
    }
}

pub fn mapping_command(g: &GlobalOpts, cmd: MappingCommand) -> Result<ExitCode> {
    let target = g.db().resolve()?;
    db::migrate(&mut target.diesel()?)?;
    let mut client = target.client()?;
    match cmd {
        MappingCommand::Check {
            files,
            sample,
            rows,
        } => {
            if sample.is_some() && files.len() != 1 {
                bail!("--sample tries one mapping: give one mapping file");
            }
            let mut bad = 0;
            for f in &files {
                let m = match Mapping::load(f) {
                    Ok(m) => m,
                    Err(e) => {
                        bad += 1;
                        println!("{e:#}");
                        continue;
                    }
                };
                match compile(m, &mut client) {
                    Ok(c) => {
                        println!(
                            "{}: ok ({} emit(s) into {}; {} concept map(s){})",
                            f.display(),
                            c.emits.len(),
                            c.emits
                                .iter()
                                .map(|e| e.table.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            c.concept_maps.len(),
                            match &c.record {
                                Some(r) => format!(
                                    "; records keyed by {}{}",
                                    r.key.join(", "),
                                    if r.snapshot { ", snapshot" } else { "" }
                                ),
                                None => String::new(),
                            }
                        );
                        let lint = crate::mapping::lint::run(&c, &mut client)?;
                        if lint.feeds.is_empty() {
                            println!("  feeds no research view");
                        } else {
                            println!(
                                "  feeds research.{}",
                                lint.feeds
                                    .iter()
                                    .map(String::as_str)
                                    .collect::<Vec<_>>()
                                    .join(", research.")
                            );
                        }
                        for w in &lint.warnings {
                            println!("  warning: {w}");
                        }
                        if let Some(path) = &sample {
                            let limits = crate::import::read_limits(
                                &mut client,
                                chrono::Local::now().date_naive(),
                            )?;
                            let report = crate::mapping::sample::run(&c, path, rows, limits)?;
                            if g.json {
                                println!("{}", serde_json::to_string_pretty(&report)?);
                            } else {
                                print!("{}", crate::mapping::sample::render(&report));
                            }
                            if report.fields.iter().any(|f| f.failed > 0) {
                                bad += 1;
                            }
                        }
                    }
                    Err(errs) => {
                        bad += 1;
                        for e in errs {
                            println!("{e}");
                        }
                    }
                }
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        MappingCommand::Unmapped { mapping } => {
            let rows = Ledger::unmapped(&mut client, mapping.as_deref(), None)?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no unmapped codes or values");
            } else {
                println!(
                    "{:<24} {:<36} {:<20} {:>10}  last seen",
                    "mapping", "concept map / value map", "code", "count"
                );
                for r in &rows {
                    println!(
                        "{:<24} {:<36} {:<20} {:>10}  {}",
                        r.mapping, r.concept_map, r.source_code, r.occurrences, r.last_seen
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
