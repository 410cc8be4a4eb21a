//! `registrar import csv|xlsx` and `registrar mapping check|unmapped`.

use super::GlobalOpts;
use crate::import::{import_file, FileOutcome, ImportOptions};
use crate::mapping::check::{compile, Compiled};
use crate::mapping::{Format, Mapping};
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
    /// Each file is loaded whole or not at all, in one transaction; an unchanged file is
    /// skipped, a changed one replaces the rows of its earlier version. Rows that cannot be
    /// loaded are rejected with file, row, column and reason (`registry.reject`), never with
    /// their values. Exit code 0: all loaded; 1: some rows or files rejected; 3: error.
    Csv(ImportArgs),
    /// Import spreadsheets (xlsx) through a mapping file (see `import csv`).
    Xlsx(ImportArgs),
    /// Pull resources from a FHIR R4 endpoint through FHIR mappings (one per resource type).
    ///
    /// Each mapping's type is searched page by page (`_count`, following the Bundle's next
    /// links); each page loads in its own transaction. The first run pulls everything; later
    /// runs only what was updated since the last complete pull (`_lastUpdated=gt...`, a
    /// watermark per endpoint, type and mapping kept in the registry and advanced only after
    /// every page committed), plus deletions from the type's `_history`. An updated resource
    /// replaces the rows it produced before. A resource that does not parse is rejected with
    /// its reason; its page still loads. Timeouts, dropped connections, 429 and 5xx are
    /// retried (Retry-After, else exponential backoff); a next link that loops or leaves the
    /// server's origin stops that type. A run that dies is repeated from the last committed
    /// watermark, without duplicates. Exit code 0: all loaded; 1: some resources rejected;
    /// 2: a resource type failed (the others still ran); 3: error.
    Fhir(FhirArgs),
    /// Import a FHIR Bulk Data export folder (one ndjson file per type, plain or gzip)
    /// through FHIR mappings; the export's Patients resolve every reference. Unchanged files
    /// are skipped; resources replace their earlier rows as in `import fhir`.
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
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Ignore the watermarks and pull everything again (updated rows replace their own).
    #[arg(long)]
    pub full: bool,
    /// Seconds before one request times out.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Retries of one request (dropped connection, timeout, 429, 5xx).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First backoff between retries in milliseconds (doubled each time; Retry-After wins).
    #[arg(long, default_value_t = 500, hide = true)]
    pub backoff_ms: u64,
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
    #[command(flatten)]
    pub dates: DateOpts,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The mapping file (TOML).
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,
    /// Input files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub dates: DateOpts,
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Validate mapping files against the registry schema and their concept maps; reports
    /// every error with file and line.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Local codes seen without a concept, with counts, most frequent first.
    Unmapped {
        /// Only this mapping (its `source.name`).
        #[arg(long)]
        mapping: Option<String>,
    },
}

fn load_compiled(path: &std::path::Path, client: &mut postgres::Client) -> Result<Compiled> {
    let m = Mapping::load(path)?;
    compile(m, client)
        .map_err(|errs| anyhow::anyhow!("the mapping has errors:\n  {}", errs.join("\n  ")))
}

pub fn import_command(g: &GlobalOpts, cmd: ImportCommand) -> Result<ExitCode> {
    let (args, want) = match cmd {
        ImportCommand::Csv(a) => (a, Format::Csv),
        ImportCommand::Xlsx(a) => (a, Format::Xlsx),
        ImportCommand::Fhir(a) => return fhir_command(g, FhirInput::Endpoint(a)),
        ImportCommand::FhirBulk(a) => return fhir_command(g, FhirInput::Bulk(a)),
    };
    let keys = g.keys.load()?;
    let opts = ImportOptions {
        policy: args.dates.policy()?,
        ..Default::default()
    };
    let target = g.db().resolve()?;
    let mut conn = target.diesel()?;
    db::migrate(&mut conn)?;
    let mut client = target.client()?;
    let compiled = load_compiled(&args.mapping, &mut client)?;
    // A second connection draws ids from the sequences while the first one loads.
    let mut seq = target.client()?;
    if compiled.mapping.spec.source.format != want {
        bail!(
            "{} is a {:?} mapping; use `registrar import {}`",
            args.mapping.display(),
            compiled.mapping.spec.source.format,
            if want == Format::Csv { "xlsx" } else { "csv" }
        );
    }
    crate::privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&opts.policy),
    )?;
    let command = format!(
        "import {}",
        if want == Format::Csv { "csv" } else { "xlsx" }
    );
    let run_id = runs::start(&mut conn, &command, Some(keys.current.key_id().as_str()))?;
    let mut outcomes: Vec<FileOutcome> = Vec::new();
    let mut error = None;
    for input in &args.inputs {
        let bar = progress::count_bar(None, "rows", "rows");
        let r = import_file(
            &mut client,
            &mut seq,
            &compiled,
            &keys,
            run_id,
            input,
            &opts,
            &bar,
        );
        bar.finish_and_clear();
        match r {
            Ok(o) => {
                if !g.json {
                    print_outcome(&o);
                }
                outcomes.push(o);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let mut counts = runs::Counts::default();
    for o in &outcomes {
        counts.rows_in += o.rows_in;
        counts.rows_loaded += o.rows_loaded;
        counts.rows_rejected += o.rows_rejected;
        counts.rows_skipped += o.rows_skipped;
    }
    let rejected_files = outcomes.iter().filter(|o| o.status == "rejected").count();
    let status = if error.is_some() {
        "failed"
    } else if counts.rows_rejected > 0 || rejected_files > 0 {
        "partial"
    } else {
        "succeeded"
    };
    let msg = error.as_ref().map(|e| format!("{e:#}"));
    runs::finish(&mut conn, run_id, status, counts, msg.as_deref())?;
    if let Some(e) = error {
        return Err(e);
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "run_id": run_id, "status": status, "files": outcomes })
            )?
        );
    } else {
        println!(
            "run {run_id}: {} rows in, {} loaded, {} rejected, {} skipped; {} file(s) rejected",
            counts.rows_in,
            counts.rows_loaded,
            counts.rows_rejected,
            counts.rows_skipped,
            rejected_files
        );
        if counts.rows_rejected > 0 || rejected_files > 0 {
            println!("rejects: SELECT * FROM registry.reject WHERE run_id = {run_id};");
        }
    }
    Ok(if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

enum FhirInput {
    Endpoint(FhirArgs),
    Bulk(FhirBulkArgs),
}

fn fhir_command(g: &GlobalOpts, input: FhirInput) -> Result<ExitCode> {
    use crate::fhirimport::{import_bulk, pull_endpoint, FhirOutcome};
    let (mappings, dates) = match &input {
        FhirInput::Endpoint(a) => (&a.mapping, &a.dates),
        FhirInput::Bulk(a) => (&a.mapping, &a.dates),
    };
    let keys = g.keys.load()?;
    let opts = ImportOptions {
        policy: dates.policy()?,
        ..Default::default()
    };
    let fhir = match &input {
        FhirInput::Endpoint(a) => {
            let token =
                crate::fhirimport::read_token(a.token_file.as_deref(), a.token_env.as_deref())?;
            Some(registrar_fhir::client::Client::new(
                &a.endpoint,
                registrar_fhir::client::ClientOptions {
                    count: a.count.clamp(1, 10_000),
                    timeout: std::time::Duration::from_secs(a.timeout.max(1)),
                    max_retries: a.retries,
                    backoff: std::time::Duration::from_millis(a.backoff_ms),
                    bearer_token: token,
                    ..Default::default()
                },
            )?)
        }
        FhirInput::Bulk(_) => None,
    };
    let target = g.db().resolve()?;
    let mut conn = target.diesel()?;
    db::migrate(&mut conn)?;
    let mut client = target.client()?;
    let mut compiled = Vec::new();
    for m in mappings {
        let c = load_compiled(m, &mut client)?;
        if c.mapping.spec.source.format != Format::Fhir {
            bail!("{} is not a FHIR mapping (format = \"fhir\")", m.display());
        }
        compiled.push(c);
    }
    let mut seq = target.client()?;
    crate::privacy::audit::record_configuration(
        &mut client,
        keys.current.key_id().as_str(),
        keys.current.domain(),
        &crate::import::date_policy_text(&opts.policy),
    )?;
    let command = match &input {
        FhirInput::Endpoint(_) => "import fhir",
        FhirInput::Bulk(_) => "import fhir-bulk",
    };
    let run_id = runs::start(&mut conn, command, Some(keys.current.key_id().as_str()))?;
    let bar = progress::count_bar(None, "resources", "resources");
    let mut outcomes: Vec<FhirOutcome> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    match (&input, &fhir) {
        (FhirInput::Endpoint(a), Some(f)) => {
            let mut patients = crate::fhirimport::PatientCache::default();
            for c in &compiled {
                match pull_endpoint(
                    &mut client,
                    &mut seq,
                    c,
                    &keys,
                    run_id,
                    f,
                    &mut patients,
                    a.full,
                    &opts,
                    &bar,
                ) {
                    Ok(o) => outcomes.push(o),
                    Err(e) => failures.push(format!("{}: {e:#}", c.mapping.spec.source.name)),
                }
            }
        }
        (FhirInput::Bulk(a), _) => {
            match import_bulk(
                &mut client,
                &mut seq,
                &compiled,
                &keys,
                run_id,
                &a.dir,
                &opts,
                &bar,
            ) {
                Ok(o) => outcomes = o,
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        (FhirInput::Endpoint(_), None) => unreachable!("an endpoint has a client"),
    }
    bar.finish_and_clear();
    let mut counts = runs::Counts::default();
    for o in &outcomes {
        let t = o.totals();
        counts.rows_in += t.rows_in;
        counts.rows_loaded += t.rows_loaded;
        counts.rows_rejected += t.rows_rejected;
        counts.rows_skipped += t.rows_skipped;
    }
    let status = if !failures.is_empty() {
        "failed"
    } else if counts.rows_rejected > 0 {
        "partial"
    } else {
        "succeeded"
    };
    let msg = (!failures.is_empty()).then(|| failures.join("; "));
    runs::finish(&mut conn, run_id, status, counts, msg.as_deref())?;
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run_id": run_id, "status": status, "mappings": outcomes, "failures": failures
            }))?
        );
    } else {
        for o in &outcomes {
            let t = o.totals();
            println!(
                "{} ({}): {} resources in {} unit(s): {} loaded, {} rejected, {} skipped; {} deleted{}",
                o.mapping,
                o.resource_type,
                t.rows_in,
                o.units.len(),
                t.rows_loaded,
                t.rows_rejected,
                t.rows_skipped,
                o.deleted,
                o.watermark_after
                    .as_deref()
                    .map(|w| format!("; watermark {w}"))
                    .unwrap_or_default()
            );
        }
        for f in &failures {
            eprintln!("error: {f}");
        }
        if counts.rows_rejected > 0 {
            println!("rejects: SELECT * FROM registry.reject WHERE run_id = {run_id};");
        }
    }
    Ok(match status {
        "succeeded" => ExitCode::SUCCESS,
        "partial" => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

fn print_outcome(o: &FileOutcome) {
    match o.status.as_str() {
        "loaded" => {
            let tables: Vec<String> = o.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
            println!(
                "{}: loaded {} of {} rows ({} rejected, {} skipped) -> {}",
                o.file,
                o.rows_loaded,
                o.rows_in,
                o.rows_rejected,
                o.rows_skipped,
                tables.join(", ")
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
        MappingCommand::Check { files } => {
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
                    Ok(c) => println!(
                        "{}: ok ({} emit(s) into {}; {} concept map(s))",
                        f.display(),
                        c.emits.len(),
                        c.emits
                            .iter()
                            .map(|e| e.table.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        c.concept_maps.len()
                    ),
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
            let rows = client.query(
                "SELECT mapping_name, concept_map, source_code, occurrences, to_char(last_seen, 'YYYY-MM-DD')
                   FROM registry.unmapped_code WHERE $1::text IS NULL OR mapping_name = $1
                  ORDER BY occurrences DESC, mapping_name, concept_map, source_code",
                &[&mapping],
            )?;
            if g.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"mapping": r.get::<_, String>(0), "concept_map": r.get::<_, String>(1), "source_code": r.get::<_, String>(2), "occurrences": r.get::<_, i64>(3), "last_seen": r.get::<_, String>(4)}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if rows.is_empty() {
                println!("no unmapped codes");
            } else {
                println!(
                    "{:<24} {:<16} {:<20} {:>10}  last seen",
                    "mapping", "concept map", "code", "count"
                );
                for r in &rows {
                    println!(
                        "{:<24} {:<16} {:<20} {:>10}  {}",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, i64>(3),
                        r.get::<_, String>(4)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
