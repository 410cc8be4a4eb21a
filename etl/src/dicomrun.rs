//! Pseudonymising a DICOM tree as a registry job: the work is
//! `registrar_anonymizer::dicom` (no database); this adds the profile file, the progress
//! callback and the privacy officer's audit entries, shared by `registrar dicom pseudonymise`
//! and the nightly run.

use crate::privacy::audit::{self, Record};
use crate::privacy::keys::Keys;
use anyhow::{Context, Result};
use registrar_anonymizer::dateshift::DatePolicy;
use registrar_anonymizer::dicom::{
    batch, BatchError, BatchFailure, BatchOptions, BatchSummary, BurnedInPolicy, DicomProfile,
    DicomPseudonymiser, FileRecord,
};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// Read a profile file (TOML), or the default profile.
pub fn load_profile(path: Option<&Path>, accept_burned_in: bool) -> Result<DicomProfile> {
    let mut profile: DicomProfile = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the profile {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid profile {}", p.display()))?
        }
        None => DicomProfile::default(),
    };
    if accept_burned_in {
        profile.burned_in_annotation = BurnedInPolicy::Accept;
    }
    Ok(profile)
}

/// What a run did. Its audit entries are written by [`pseudonymise_tree`].
pub struct TreeRun {
    pub summary: BatchSummary,
    pub key_id: String,
    /// Why the run stopped part-way (what it wrote is in `summary` and in the audit entry).
    pub failure: Option<BatchError>,
}

/// Pseudonymise `input` into `output` with the current key (consumed: the DICOM
/// pseudonymiser owns it for the run), between two entries of the privacy officer's audit
/// log: `dicom run started` before the first file is written, so that no output exists that no
/// entry covers (a run killed part-way leaves a start without its end), and `dicom file
/// pseudonymised` after the last, with the counts and, for a run that stopped part-way, the
/// error and `"complete": false`. A log that cannot be written refuses the run before
/// anything is written.
#[allow(clippy::too_many_arguments)]
pub fn pseudonymise_tree(
    client: &mut postgres::Client,
    run_id: Option<i64>,
    keys: Keys,
    policy: DatePolicy,
    profile: &DicomProfile,
    input: &Path,
    output: &Path,
    opts: &BatchOptions,
    on_file: &(dyn Fn(&FileRecord) + Sync),
) -> Result<TreeRun> {
    let key_id = keys.current.key_id().as_str().to_string();
    let domain = keys.current.domain().to_string();
    let input_hash = keys
        .current
        .locator_hash(&format!("dicom-in/{}", input.display()));
    let d = DicomPseudonymiser::new(keys.current, policy, profile)?;
    let dates = crate::import::date_policy_text(&policy);
    let record = |action, detail| Record {
        action,
        run_id,
        locator_hash: Some(&input_hash),
        key_id: Some(&key_id),
        detail,
    };
    let start = record(
        audit::action::DICOM_RUN_STARTED,
        serde_json::json!({
            "domain": domain,
            "dates": dates,
            "method": d.method_codes().iter().map(|c| c.meaning).collect::<Vec<_>>(),
            "limits": serde_json::to_value(profile.limits)?,
        }),
    );
    // The start entry is written while the workers read their first files; the first write
    // waits for it (and a failure refuses the run before anything is written).
    let (summary, failure) = std::thread::scope(|s| -> Result<_> {
        let client = &mut *client;
        let start = &start;
        let pending = Mutex::new(Some(s.spawn(move || audit::append_now(client, start))));
        let started: OnceLock<Result<(), String>> = OnceLock::new();
        let gate = || {
            started
                .get_or_init(|| {
                    let handle = pending.lock().expect("lock").take().expect("joined once");
                    match handle.join() {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(format!("its audit entry cannot be written: {e:#}")),
                        Err(_) => Err("the audit entry's thread failed".into()),
                    }
                })
                .clone()
        };
        let result = batch::run(&d, input, output, opts, on_file, &gate);
        gate().map_err(|m| anyhow::anyhow!("the run is not started: {m}"))?;
        Ok(match result {
            Ok(s) => (s, None),
            Err(BatchFailure { error, summary }) => (*summary, Some(error)),
        })
    })?;
    let mut detail = serde_json::json!({
        "files": summary.files,
        "pseudonymised": summary.pseudonymised,
        "skipped": summary.skipped,
        "quarantined": summary.quarantined,
        "method": summary.method,
        "domain": domain,
        "dates": dates,
        "rules": serde_json::to_value(&summary.counts)?,
        "complete": failure.is_none(),
    });
    if let Some(e) = &failure {
        // Batch errors name output paths and operations, never input files or values.
        detail["error"] = e.to_string().into();
    }
    audit::append_now(client, &record(audit::action::DICOM_FILE, detail))
        .context("the run's closing audit entry cannot be written")?;
    Ok(TreeRun {
        summary,
        key_id,
        failure,
    })
}
