//! `registrar dicom pseudonymise`: a tree of DICOM files in, pseudonymised copies out (no
//! database; the work is `registrar_anonymizer::dicom`); `registrar dicom index`: a
//! pseudonymised tree into the registry (the work is [`crate::imaging`]).

use super::import::DateOpts;
use super::GlobalOpts;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use registrar_anonymizer::dicom::{batch, FileRecord};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DicomCommand {
    /// Pseudonymise DICOM files (PS3.15 Annex E Basic Profile and options) without a database.
    ///
    /// Every file under --in is read (never modified) and written to
    /// --out/<study uid>/<series uid>/<sop instance uid>.dcm with pseudonymous UIDs; Patient ID
    /// and Patient's Name become the person pseudonym (the MRN's, as for clinical rows), dates
    /// move by the person's shift, and the options in force are recorded in each file. Files
    /// that cannot be made safe (not DICOM, truncated, nested too deep or too large for the
    /// profile's [limits], burned-in text, no Patient ID, ...) are
    /// copied unchanged to the quarantine folder (--quarantine, default OUT.quarantine beside
    /// --out, never inside it) and listed with a reason in its report.jsonl: that folder holds
    /// identifying data and stays with the key (folders mode 0700, files 0600). Files already
    /// pseudonymised by registrar are skipped, and so are symbolic links to folders, dangling
    /// or looping links (each with its reason). Attributes that neither PS3.15 table E.1-1
    /// nor the allow-list of safe module attributes lists are removed. The audit log gets an
    /// entry before the first file and one after the last (the run refuses to start if it
    /// cannot be written). Exit code 0: every file pseudonymised or
    /// skipped; 1: some quarantined; 3: error.
    Pseudonymise(PseudonymiseArgs),
    /// Index a pseudonymised DICOM tree (the --out of `registrar dicom pseudonymise`) into
    /// the registry.
    ///
    /// One procedure_occurrence and one image_occurrence per series (person: the MRN
    /// pseudonym in Patient ID), and for RT Structure Sets one image_feature per ROI (name,
    /// TG-263 name, type, volume from the contours, ...; see the view
    /// research.rt_structure_set); the ROI names without a TG-263 name are listed. A
    /// structure drawn by two or more observers of a patient is rasterised on the referenced
    /// CT grid and each observer pair's agreement (Dice, Jaccard, HD95, Hausdorff, mean
    /// surface distance) becomes an image_feature (research.delineation_agreement); the
    /// structures that could not be measured are counted with the reason. Under every RT
    /// Dose, each ROI of the structure sets on its frame of reference gets Dmean, D95%, D2%
    /// and V95% of the plan's prescription (research.dose_volume). The tree
    /// is one source file: an unchanged tree is skipped, a changed one replaces the rows of
    /// its earlier index. Series of a person unknown to the registry are rejected with a
    /// reason. Exit code 0: everything indexed or skipped; 1: some series rejected or files
    /// unreadable; 3: error.
    Index(IndexArgs),
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The pseudonymised tree (read only; its quarantine folder is ignored).
    #[arg(long = "in", value_name = "DIR")]
    pub input: PathBuf,
    /// The source name, the tree's identity in the registry (a nightly `dicom` source's
    /// name indexes what that source indexes).
    #[arg(long, value_name = "NAME", default_value = "dicom")]
    pub source: String,
}

#[derive(Debug, Args)]
pub struct PseudonymiseArgs {
    /// The input directory (read only).
    #[arg(long = "in", value_name = "DIR")]
    pub input: PathBuf,
    /// The output directory (created if needed; must not overlap --in).
    #[arg(long = "out", value_name = "DIR")]
    pub output: PathBuf,
    /// Where files that cannot be made safe go, unchanged, with report.jsonl (identifying:
    /// keep it with the key). Default: OUT.quarantine, beside --out. Must lie outside --out
    /// and --in; created mode 0700, its files 0600.
    #[arg(long, value_name = "DIR")]
    pub quarantine: Option<PathBuf>,
    /// The DICOM profile (TOML, kebab-case keys of `DicomProfile`, e.g.
    /// `retain-device-identity = true`, and `[limits]` with `max-depth` (64), `max-elements`
    /// (2000000), `max-file-bytes` (4 GiB)); defaults: retain longitudinal dates, patient
    /// characteristics, clean descriptors, no private elements.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Pseudonymise objects that may show burned-in text instead of quarantining them (only
    /// where the pixels are checked elsewhere).
    #[arg(long)]
    pub accept_burned_in: bool,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Skip input files already pseudonymised into this output (same path, size and time;
    /// recorded as keyed hashes in OUT/.registrar-inputs.tsv), for folders read every night.
    #[arg(long)]
    pub incremental: bool,
    /// Write one JSON line per input file (locator hash, status, reason, counts per rule) to
    /// this file, for the audit log.
    #[arg(long, value_name = "FILE")]
    pub records: Option<PathBuf>,
    #[command(flatten)]
    pub dates: DateOpts,
}

pub fn dicom_command(g: &GlobalOpts, cmd: DicomCommand) -> Result<ExitCode> {
    match cmd {
        DicomCommand::Pseudonymise(args) => pseudonymise(g, args),
        DicomCommand::Index(args) => index(g, args),
    }
}

fn index(g: &GlobalOpts, args: IndexArgs) -> Result<ExitCode> {
    use crate::ledger::FileStatus;
    use crate::runs::RunStatus;
    let keys = g.keys.load()?;
    let target = g.db().resolve()?;
    let mut conn = target.diesel()?;
    crate::db::migrate(&mut conn)?;
    let mut client = target.client()?;
    crate::privacy::keys::check_registry_key(&mut client, &keys)?;
    let mut seq = target.client()?;
    let key_id = keys.current.key_id().as_str().to_string();
    let run_id = crate::runs::start(&mut conn, "dicom index", Some(&key_id))?;
    let opts = crate::import::ImportOptions::default();
    let result = crate::import::ImportContext::new(&mut client, &mut seq, &keys, run_id, &opts)
        .and_then(|mut ctx| crate::imaging::index_tree(&mut ctx, &args.source, &args.input));
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = crate::runs::finish(
                &mut conn,
                run_id,
                RunStatus::Failed,
                &Default::default(),
                Some(&msg),
            );
            return Err(e);
        }
    };
    let problems = outcome.rejected.len() + outcome.unreadable.len();
    let status = if problems > 0 {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    crate::runs::finish(
        &mut conn,
        run_id,
        status,
        &outcome.unit.counts,
        outcome.unit.reason.as_deref(),
    )?;
    let marts = crate::marts::refresh(&mut client, crate::marts::Scope::Changed)?;
    if g.json {
        let mut v = serde_json::to_value(&outcome)?;
        v["run_id"] = run_id.into();
        v["research_marts"] = serde_json::to_value(marts)?;
        v["status"] = serde_json::to_value(outcome.unit.status)?;
        v["reason"] = serde_json::to_value(&outcome.unit.reason)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if outcome.unit.status == FileStatus::Skipped {
        println!(
            "{} files: skipped ({})",
            outcome.files,
            outcome.unit.reason.as_deref().unwrap_or("")
        );
    } else {
        println!(
            "{} files, {} series: {} image occurrences, {} image features (ROIs), {} series rejected, {} files unreadable",
            outcome.files,
            outcome.series,
            outcome.image_occurrences,
            outcome.image_features,
            outcome.rejected.len(),
            outcome.unreadable.len()
        );
        if outcome.agreement_pairs > 0 || !outcome.agreement_unmeasured.is_empty() {
            println!(
                "inter-observer agreement: {} observer pairs measured",
                outcome.agreement_pairs
            );
            for (reason, n) in &outcome.agreement_unmeasured {
                let s = if *n == 1 { "" } else { "s" };
                println!("  {n} structure{s} not measured: {reason}");
            }
        }
        if outcome.dose_volumes > 0 || !outcome.dose_unmeasured.is_empty() {
            println!(
                "dose-volume metrics: {} structures under an RT Dose",
                outcome.dose_volumes
            );
            for (reason, n) in &outcome.dose_unmeasured {
                println!("  {n} not computed: {reason}");
            }
        }
        for (folder, reason) in &outcome.rejected {
            println!("rejected {folder}: {reason}");
        }
        for f in &outcome.unreadable {
            println!("unreadable {f}");
        }
        let names = &outcome.roi_names_not_normalised;
        if !names.is_empty() {
            println!("ROI names not normalised to TG-263 ({}):", names.len());
            for n in names {
                let name = if n.name.is_empty() {
                    "(no name)"
                } else {
                    n.name.as_str()
                };
                let s = if n.rois == 1 { "" } else { "s" };
                println!("  {name} ({} ROI{s})", n.rois);
            }
        }
    }
    if !g.json {
        println!("{marts}");
    }
    Ok(if problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn pseudonymise(g: &GlobalOpts, args: PseudonymiseArgs) -> Result<ExitCode> {
    let keys = g.keys.load()?;
    let policy = args.dates.policy()?;
    let profile = crate::dicomrun::load_profile(args.profile.as_deref(), args.accept_burned_in)?;
    let records = match &args.records {
        Some(p) => Some(std::sync::Mutex::new(std::io::BufWriter::new(
            crate::files::create_report(p)
                .with_context(|| format!("cannot create {}", p.display()))?,
        ))),
        None => None,
    };
    // The audit log is written before the first file and after the last.
    let mut registry = g.db().registry_client()?;
    let bar = crate::progress::count_bar(None, "dicom", "files");
    let start = std::time::Instant::now();
    let on_file = |r: &FileRecord| {
        bar.inc(1);
        if let Some(w) = &records {
            use std::io::Write;
            let line = serde_json::to_string(r).expect("records serialise");
            let _ = writeln!(w.lock().expect("lock"), "{line}");
        }
    };
    let quarantine = args
        .quarantine
        .clone()
        .unwrap_or_else(|| batch::default_quarantine(&args.output));
    let run = crate::dicomrun::pseudonymise_tree(
        &mut registry,
        None,
        keys,
        policy,
        &profile,
        &args.input,
        &args.output,
        &registrar_anonymizer::dicom::BatchOptions {
            jobs: args
                .jobs
                .unwrap_or_else(|| registrar_anonymizer::dicom::BatchOptions::default().jobs),
            incremental: args.incremental,
            quarantine: Some(quarantine.clone()),
        },
        &on_file,
    )?;
    bar.finish_and_clear();
    if let Some(w) = records {
        use std::io::Write;
        w.into_inner()
            .expect("lock")
            .flush()
            .context("cannot write the records")?;
    }
    let summary = &run.summary;
    let secs = start.elapsed().as_secs_f64();
    if g.json {
        let mut v = serde_json::to_value(summary)?;
        v["key_id"] = run.key_id.clone().into();
        v["seconds"] = secs.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} files: {} pseudonymised, {} skipped, {} quarantined ({:.0} files/s)",
            summary.files,
            summary.pseudonymised,
            summary.skipped,
            summary.quarantined,
            summary.files as f64 / secs.max(1e-9)
        );
        let c = &summary.counts;
        println!(
            "elements: {} removed, {} zeroed, {} replaced, {} private removed, {} private kept, \
             {} not on the allow-list removed, {} undefined removed; {} UIDs remapped, {} dates \
             shifted, {} time zones cleaned, {} labels kept, {} structure names scrubbed",
            c.removed,
            c.zeroed,
            c.replaced,
            c.private_removed,
            c.private_kept,
            c.not_allowed,
            c.undefined_removed,
            c.uids_remapped,
            c.dates_shifted,
            c.timezones_cleaned,
            c.labels_kept,
            c.labels_scrubbed
        );
        println!("method: {}", summary.method.join("; "));
        if summary.quarantined > 0 {
            println!(
                "quarantine: {} (identifying data: keep it with the key)",
                quarantine.join(batch::QUARANTINE_REPORT).display()
            );
        }
    }
    if let Some(e) = run.failure {
        return Err(anyhow::Error::new(e).context(format!(
            "the run stopped after {} of the tree's files (recorded in the audit log)",
            summary.files
        )));
    }
    Ok(if summary.quarantined > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
