//! Pseudonymising a DICOM tree as a registry job: the work is
//! `registrar_anonymizer::dicom` (no database); this adds the profile file, the progress
//! callback and the privacy officer's audit entry, shared by `registrar dicom pseudonymise`
//! and the nightly run.

use crate::privacy::audit::{self, Record};
use crate::privacy::keys::Keys;
use anyhow::{Context, Result};
use registrar_anonymizer::dateshift::DatePolicy;
use registrar_anonymizer::dicom::{
    batch, BatchOptions, BatchSummary, BurnedInPolicy, DicomProfile, DicomPseudonymiser, FileRecord,
};
use std::path::Path;

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

/// What a run did, and the audit record to write for it.
pub struct TreeRun {
    pub summary: BatchSummary,
    pub key_id: String,
    pub input_hash: String,
    pub detail: serde_json::Value,
}

impl TreeRun {
    /// The audit entry of this run.
    pub fn record(&self, run_id: Option<i64>) -> Record<'_> {
        Record {
            action: audit::action::DICOM_FILE,
            run_id,
            locator_hash: Some(&self.input_hash),
            key_id: Some(&self.key_id),
            detail: self.detail.clone(),
        }
    }
}

/// Pseudonymise `input` into `output` with the current key (consumed: the DICOM
/// pseudonymiser owns it for the run).
pub fn pseudonymise_tree(
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
    let summary = batch::run(&d, input, output, opts, on_file)?;
    let detail = serde_json::json!({
        "files": summary.files,
        "pseudonymised": summary.pseudonymised,
        "skipped": summary.skipped,
        "quarantined": summary.quarantined,
        "method": summary.method,
        "domain": domain,
        "dates": crate::import::date_policy_text(&policy),
        "rules": serde_json::to_value(&summary.counts)?,
    });
    Ok(TreeRun {
        summary,
        key_id,
        input_hash,
        detail,
    })
}
