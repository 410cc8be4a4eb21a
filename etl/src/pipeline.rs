//! Sources, and how a run imports one: the interface the nightly run and the command line
//! share. A [`Source`] is a set of files through one mapping, a FHIR endpoint, a FHIR Bulk
//! Data export or a DICOM tree; [`run`] takes it through the one import path
//! ([`crate::import`]) and fills a [`SourceOutcome`] as it goes, so what was committed stays
//! counted when a source fails part-way.

use crate::fhirimport::{FhirOutcome, PatientCache, Pull};
use crate::import::identity::{find_files, FileInput};
use crate::import::{import_file, ImportContext, UnitOutcome};
use crate::ledger::{FileStatus, UnitCounts};
use crate::mapping::check::{compile, Compiled};
use crate::mapping::{Format, Mapping};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;

/// Which files of a folder a file source reads.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// The files under the root whose relative path matches (`*`, `**/`).
    Pattern(String),
    /// These files (each under the root).
    Files(Vec<PathBuf>),
}

/// Delimited text or spreadsheet files through one mapping.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub format: Format,
    pub mapping: PathBuf,
    /// What file identities are relative to.
    pub root: PathBuf,
    pub inputs: Inputs,
    /// The largest cell, in bytes: a row with a larger one is rejected (`cell_too_large`).
    pub max_cell_bytes: u64,
}

/// A FHIR R4 endpoint, pulled incrementally.
#[derive(Debug, Clone)]
pub struct EndpointSource {
    pub endpoint: String,
    pub mappings: Vec<PathBuf>,
    pub options: registrar_fhir::client::ClientOptions,
    pub full: bool,
    /// Days between id sweeps of types the server cannot list deletions of.
    pub sweep_days: u32,
}

/// A FHIR Bulk Data export folder.
#[derive(Debug, Clone)]
pub struct BulkSource {
    pub folder: PathBuf,
    pub mappings: Vec<PathBuf>,
    /// The folder holds one export per subfolder (oldest name first) rather than one export.
    pub exports_in_subfolders: bool,
    /// The longest line (resource) and the most content per file, after decompression.
    pub limits: registrar_fhir::ndjson::Limits,
}

/// A DICOM drop folder: pseudonymised into `output`, then indexed.
#[derive(Debug, Clone)]
pub struct DicomSource {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Where quarantined originals go (default: `<output>.quarantine`, beside the output).
    pub quarantine: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub accept_burned_in: bool,
    /// The key (with its previous keys) for the pseudonymiser, which owns it for the run.
    pub key_opts: crate::privacy::keys::KeyOpts,
}

/// What a source is.
#[derive(Debug, Clone)]
pub enum SourceKind {
    Files(FileSource),
    FhirEndpoint(EndpointSource),
    FhirBulk(BulkSource),
    Dicom(DicomSource),
}

/// One source of a run.
#[derive(Debug, Clone)]
pub struct Source {
    /// Part of every unit's identity: the nightly source's name, or the mapping's.
    pub name: String,
    pub kind: SourceKind,
}

impl Source {
    /// `csv`, `xlsx`, `fhir`, `fhir-bulk` or `dicom`.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SourceKind::Files(f) if f.format == Format::Xlsx => "xlsx",
            SourceKind::Files(_) => "csv",
            SourceKind::FhirEndpoint(_) => "fhir",
            SourceKind::FhirBulk(_) => "fhir-bulk",
            SourceKind::Dicom(_) => "dicom",
        }
    }
}

/// How a source ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    #[default]
    Ok,
    /// Finished, with rejected rows or files.
    Rejects,
    /// Stopped by an error (what was committed before stays, and is counted).
    Failed,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::Rejects => "rejects",
            SourceStatus::Failed => "failed",
        }
    }
}

/// What happened to one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceOutcome {
    pub name: String,
    pub kind: String,
    pub status: SourceStatus,
    pub files_seen: i64,
    pub files_loaded: i64,
    pub files_skipped: i64,
    pub files_rejected: i64,
    #[serde(flatten)]
    pub counts: UnitCounts,
    /// Entries of the source folder passed over, with the reason (dangling links, loops).
    pub passed_over: Vec<String>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// Every unit (file, page, export file), in order.
    pub units: Vec<UnitOutcome>,
    /// FHIR: per mapping, what the pull or export did.
    pub fhir: Vec<FhirOutcome>,
    /// FHIR endpoints: what the server's CapabilityStatement said (software, version).
    pub capabilities: Option<registrar_fhir::client::Capabilities>,
    /// FHIR endpoints: how the pull authenticated (method, SMART client id and tokens).
    pub auth: Option<serde_json::Value>,
    /// DICOM: the pseudonymisation and the index.
    pub dicom: Option<serde_json::Value>,
}

impl SourceOutcome {
    pub fn new(s: &Source) -> Self {
        Self {
            name: s.name.clone(),
            kind: s.kind_name().to_string(),
            ..Default::default()
        }
    }

    /// Count one unit.
    pub fn add_unit(&mut self, u: UnitOutcome) {
        self.files_seen += 1;
        match u.status {
            FileStatus::Loaded => self.files_loaded += 1,
            FileStatus::Skipped => self.files_skipped += 1,
            _ => self.files_rejected += 1,
        }
        self.counts.add(&u.counts);
        self.units.push(u);
    }

    /// Settle the status from the result and the counts.
    pub fn settle(&mut self, result: Result<()>) {
        self.status = match result {
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                SourceStatus::Failed
            }
            Ok(()) if self.counts.rows_rejected > 0 || self.files_rejected > 0 => {
                SourceStatus::Rejects
            }
            Ok(()) => SourceStatus::Ok,
        };
    }
}

/// Compile mapping files, each of the wanted format.
pub fn compile_all(
    client: &mut postgres::Client,
    paths: &[PathBuf],
    want: Format,
) -> Result<Vec<Compiled>> {
    paths
        .iter()
        .map(|p| {
            let c = compile(Mapping::load(p)?, client).map_err(|e| {
                anyhow::anyhow!("{}: mapping errors:\n  {}", p.display(), e.join("\n  "))
            })?;
            if c.mapping.spec.source.format != want {
                bail!(
                    "{} reads {:?}, but the source is {want:?}",
                    p.display(),
                    c.mapping.spec.source.format
                );
            }
            Ok(c)
        })
        .collect()
}

/// Import one source; `out` holds what was done, also when it fails part-way.
pub fn run(ctx: &mut ImportContext<'_>, s: &Source, out: &mut SourceOutcome) -> Result<()> {
    match &s.kind {
        SourceKind::Files(f) => {
            let c = compile_all(ctx.client, std::slice::from_ref(&f.mapping), f.format)?
                .pop()
                .expect("one mapping");
            let files: Vec<(PathBuf, String)> = match &f.inputs {
                Inputs::Pattern(p) => {
                    let found =
                        find_files(&f.root, p).with_context(|| format!("source {}", s.name))?;
                    out.passed_over = found.passed_over;
                    found
                        .files
                        .into_iter()
                        .enumerate()
                        .map(|(i, (path, _))| (path, format!("{} file {}", s.name, i + 1)))
                        .collect()
                }
                Inputs::Files(list) => list
                    .iter()
                    .map(|p| (p.clone(), p.display().to_string()))
                    .collect(),
            };
            for (path, label) in files {
                ctx.progress.set_prefix(s.name.clone());
                let input = FileInput {
                    path,
                    root: f.root.clone(),
                    source: s.name.clone(),
                    label,
                    max_cell_bytes: f.max_cell_bytes,
                };
                let u = import_file(ctx, &c, &input)?;
                out.add_unit(u);
            }
        }
        SourceKind::FhirEndpoint(e) => {
            let compiled = compile_all(ctx.client, &e.mappings, Format::Fhir)?;
            let fhir = registrar_fhir::client::Client::new(&e.endpoint, e.options.clone())?;
            // What the server offers decides how deletions are found (its statement is in
            // the run's report and audit detail).
            let capabilities = fhir.capabilities()?;
            out.capabilities = Some(capabilities.clone());
            let mut patients = PatientCache::default();
            let mut failures = Vec::new();
            let pull = Pull {
                fhir: &fhir,
                source: &s.name,
                full: e.full,
                run_start: Default::default(),
                capabilities: &capabilities,
                sweep_days: e.sweep_days,
            };
            ctx.person_rows = Some(Default::default());
            let order = crate::fhirimport::patient_first(&compiled);
            let total = order.len();
            // Each type's watermark and search first; then one thread fetches every type's
            // pages in order while this one loads them.
            let prepared: Vec<Result<crate::fhirimport::PreparedType>> = order
                .iter()
                .map(|c| crate::fhirimport::PreparedType::new(ctx, c, &pull))
                .collect();
            let plans: Vec<Option<crate::fhirimport::SearchPlan>> = prepared
                .iter()
                .map(|p| p.as_ref().ok().map(|p| p.plan()))
                .collect();
            std::thread::scope(|scope| {
                let (sink, stream) = crate::fhirimport::page_stream();
                let (fhir, plans) = (&fhir, &plans);
                scope.spawn(move || crate::fhirimport::fetch_all(fhir, plans, sink));
                for (i, (c, p)) in order.into_iter().zip(prepared).enumerate() {
                    let mut f = FhirOutcome::default();
                    let r = p.and_then(|p| {
                        crate::fhirimport::pull_endpoint(
                            ctx,
                            c,
                            p,
                            &pull,
                            &mut patients,
                            &mut f,
                            &stream,
                            i,
                        )
                    });
                    ctx.audit_fhir = None;
                    // What was committed counts, also when the type failed part-way.
                    for u in &f.units {
                        out.add_unit(u.clone());
                    }
                    out.fhir.push(f);
                    if let Err(err) = r {
                        failures.push(format!("{}: {err:#}", c.name()));
                        // Refused credentials are refused for every type: asking again for
                        // each would only repeat the refusal (and may lock the client out).
                        if crate::fhirimport::is_auth_refusal(&err) && i + 1 < total {
                            failures
                                .push(format!("{} other resource types not pulled", total - i - 1));
                            break;
                        }
                    }
                }
                // The fetcher stops at its next page once nobody reads them.
                drop(stream);
            });
            ctx.person_rows = None;
            out.auth = Some(fhir.auth_summary());
            if !failures.is_empty() {
                bail!("{}", failures.join("; "));
            }
        }
        SourceKind::FhirBulk(b) => {
            let compiled = compile_all(ctx.client, &b.mappings, Format::Fhir)?;
            ctx.person_rows = Some(Default::default());
            let mut exports: Vec<PathBuf> = Vec::new();
            if b.exports_in_subfolders {
                exports = std::fs::read_dir(&b.folder)
                    .map_err(|e| anyhow::anyhow!("source {}: cannot read its folder: {e}", s.name))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect();
                exports.sort();
            }
            if exports.is_empty() {
                exports.push(b.folder.clone());
            }
            for dir in exports {
                let mut outcomes = Vec::new();
                let r = crate::fhirimport::import_bulk(
                    ctx,
                    &compiled,
                    &s.name,
                    &dir,
                    b.limits,
                    &mut outcomes,
                );
                for f in outcomes {
                    for u in &f.units {
                        out.add_unit(u.clone());
                    }
                    out.fhir.push(f);
                }
                if r.is_err() {
                    ctx.person_rows = None;
                }
                r?;
            }
            ctx.person_rows = None;
        }
        SourceKind::Dicom(d) => {
            // Errors name the source, never its folder's path.
            if !d.input.is_dir() {
                bail!(
                    "source {}: its folder does not exist or cannot be opened",
                    s.name
                );
            }
            let profile = crate::dicomrun::load_profile(d.profile.as_deref(), d.accept_burned_in)?;
            let bar = ctx.progress.clone();
            let dicom_keys = d.key_opts.load()?;
            // What was written, kept even when the tree fails part-way (a full disk): the
            // source's outcome says how many files were written before the failure.
            let written = std::sync::atomic::AtomicU64::new(0);
            let quarantined = std::sync::atomic::AtomicU64::new(0);
            let event = format!("dicom-file:{}", s.name);
            use registrar_anonymizer::dicom::FileStatus;
            let on_file = |r: &registrar_anonymizer::dicom::FileRecord| {
                use std::sync::atomic::Ordering::Relaxed;
                match r.status {
                    FileStatus::Pseudonymised => written.fetch_add(1, Relaxed),
                    FileStatus::Quarantined => quarantined.fetch_add(1, Relaxed),
                    FileStatus::Skipped => 0,
                };
                bar.inc(1);
                crate::failpoint::hit(&event);
            };
            let run_id = Some(ctx.run_id());
            let run = crate::dicomrun::pseudonymise_tree(
                ctx.client,
                run_id,
                dicom_keys,
                ctx.opts.policy,
                &profile,
                &d.input,
                &d.output,
                &registrar_anonymizer::dicom::BatchOptions {
                    incremental: true,
                    quarantine: d.quarantine.clone(),
                    ..Default::default()
                },
                &on_file,
            );
            let run = match run {
                Ok(run) if run.failure.is_none() => run,
                other => {
                    use std::sync::atomic::Ordering::Relaxed;
                    out.files_loaded += written.load(Relaxed) as i64;
                    out.files_rejected += quarantined.load(Relaxed) as i64;
                    let e = match other {
                        Ok(run) => anyhow::Error::new(run.failure.expect("a failure")),
                        Err(e) => e,
                    };
                    return Err(e.context(format!("source {}", s.name)));
                }
            };
            let idx = crate::imaging::index_tree(ctx, &s.name, &d.output)?;
            out.dicom = Some(serde_json::json!({
                "files": run.summary.files,
                "pseudonymised": run.summary.pseudonymised,
                "skipped": run.summary.skipped,
                "quarantined": run.summary.quarantined,
                "index": &idx,
            }));
            out.files_seen += run.summary.files as i64;
            out.files_loaded += run.summary.pseudonymised as i64;
            out.files_skipped += run.summary.skipped as i64;
            out.files_rejected += run.summary.quarantined as i64;
            out.counts.add(&idx.unit.counts);
            out.units.push(idx.unit.clone());
        }
    }
    Ok(())
}
