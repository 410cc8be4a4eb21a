//! The audit log in `registry.audit_log`: appending (serialised, hash-chained), reading it as a
//! stream, checkpoints for the privacy officer, and verification.
//!
//! Appends go through `registry.audit_append`, a SECURITY DEFINER function owned by the audit
//! owner role: it locks the log (a table lock only the owner can take), reads the head and
//! inserts the next entry with the seq, time, role and hash it computes, so concurrent
//! imports can never fork the chain and no role can write an entry of its own making. An import appends its entries in the same
//! transaction as its data, just before commit: an entry exists if and only if the work it
//! describes was committed, and the lock is held only for the commit.

use crate::runs::os_user;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::GenericClient;
use registrar_anonymizer::audit::{
    canonical_json, truncate_to_micros, AuditEntry, ChainVerifier, Checkpoint, StoredEntry,
    VerifyReport,
};
use registrar_anonymizer::note::{self, CheckpointBody, SignerKey, VerifierKey};
use std::path::Path;

/// The actions the log records.
pub mod action {
    pub const IMPORT_BATCH: &str = "import batch pseudonymised";
    pub const DICOM_FILE: &str = "dicom file pseudonymised";
    /// Written before a DICOM run reads its first file (its end is [`DICOM_FILE`]).
    pub const DICOM_RUN_STARTED: &str = "dicom run started";
    pub const DICOM_INDEX: &str = "dicom tree indexed";
    pub const REJECTED: &str = "rejected";
    pub const LOOKUP: &str = "lookup";
    pub const KEY_ROTATION: &str = "key rotation";
    pub const CONFIGURATION: &str = "configuration change";
    pub const CHECKPOINT: &str = "checkpoint";
}

/// What a caller wants logged; sequence, time, actor and hashes are filled in by [`append`].
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub action: &'a str,
    pub run_id: Option<i64>,
    /// A keyed hash of the source locator (never a raw path or identifier).
    pub locator_hash: Option<&'a str>,
    pub key_id: Option<&'a str>,
    /// Counts per rule and other non-identifying facts.
    pub detail: serde_json::Value,
}

/// Append one entry; returns (seq, entry_hash). Run inside the transaction whose work it
/// describes. The entry is written by `registry.audit_append`, the only way into the log
/// (nobody else may INSERT): the database takes the log's lock (held until this transaction
/// ends), and computes the sequence number, the time, the database role and the hash itself.
pub fn append(tx: &mut impl GenericClient, rec: &Record<'_>) -> Result<(i64, String)> {
    let detail = canonical_json(&rec.detail);
    let row = tx
        .query_one(
            "SELECT seq, entry_hash FROM registry.audit_append($1, $2, $3, $4, $5, $6)",
            &[
                &rec.action,
                &rec.run_id,
                &rec.locator_hash,
                &rec.key_id,
                &detail,
                &os_user(),
            ],
        )
        .context("could not append to the audit log")?;
    Ok((row.get(0), row.get(1)))
}

/// Take the audit log's append lock in `tx` (released when it ends): for a caller that reads
/// the log and then appends depending on what it read.
fn lock_log(tx: &mut impl GenericClient) -> Result<()> {
    tx.batch_execute("LOCK TABLE registry.audit_log IN EXCLUSIVE MODE")
        .context("could not lock the audit log")
}

/// Append one entry in its own transaction.
pub fn append_now(client: &mut postgres::Client, rec: &Record<'_>) -> Result<(i64, String)> {
    let mut tx = client.transaction()?;
    let r = append(&mut tx, rec)?;
    tx.commit()?;
    Ok(r)
}

const SELECT_ENTRIES: &str = "SELECT seq, logged_at, actor_os_user, actor_db_role, action, run_id,
        locator_hash, key_id, detail, prev_hash, entry_hash FROM registry.audit_log";

fn stored(r: &postgres::Row) -> StoredEntry {
    StoredEntry {
        entry: AuditEntry {
            seq: r.get(0),
            logged_at: r.get(1),
            actor_os_user: r.get(2),
            actor_db_role: r.get(3),
            action: r.get(4),
            run_id: r.get(5),
            locator_hash: r.get(6),
            key_id: r.get(7),
            detail: r.get(8),
            prev_hash: r.get(9),
        },
        entry_hash: r.get(10),
    }
}

/// Stream every entry in sequence order (constant memory) into `f`.
pub fn for_each_entry(
    client: &mut postgres::Client,
    since: Option<DateTime<Utc>>,
    mut f: impl FnMut(StoredEntry) -> Result<()>,
) -> Result<()> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let sql = match since {
        Some(_) => format!("{SELECT_ENTRIES} WHERE logged_at >= $1 ORDER BY seq"),
        None => format!("{SELECT_ENTRIES} ORDER BY seq"),
    };
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = match &since {
        Some(s) => vec![s],
        None => vec![],
    };
    let mut rows = tx.query_raw(&sql, params.iter().copied())?;
    while let Some(r) = rows.next()? {
        f(stored(&r))?;
    }
    drop(rows);
    tx.commit()?;
    Ok(())
}

/// A checkpoint just made: the signed note and what it records.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub note: String,
    pub seq: i64,
    pub entry_hash: String,
}

/// This registry's checkpoint origin line (see `registry.audit_origin`).
pub fn origin(client: &mut impl GenericClient) -> Result<String> {
    Ok(client
        .query_one("SELECT origin FROM registry.audit_origin", &[])
        .context("could not read the audit log's origin")?
        .get(0))
}

/// The head of the log: (seq, entry_hash), or None when it is empty.
pub fn head(client: &mut impl GenericClient) -> Result<Option<(i64, String)>> {
    Ok(client
        .query_opt(
            "SELECT seq, entry_hash FROM registry.audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )?
        .map(|r| (r.get(0), r.get(1))))
}

/// Make a signed checkpoint (C2SP tlog-checkpoint, see [`registrar_anonymizer::note`]).
///
/// The checkpoint's own audit entry is appended first, so the checkpoint covers it: deleting
/// the tail from that entry on is caught by this checkpoint. The chain is then verified: a
/// log that is already broken is never signed.
pub fn checkpoint(client: &mut postgres::Client, signer: &SignerKey) -> Result<SignedCheckpoint> {
    // The attempt is logged either way; an altered log is found below and never signed.
    append_now(
        client,
        &Record {
            action: action::CHECKPOINT,
            run_id: None,
            locator_hash: None,
            key_id: None,
            detail: serde_json::json!({ "signer": signer.name() }),
        },
    )?;
    let report = verify(client, Vec::new())?;
    if let Some(p) = report.first_problem() {
        bail!(
            "the audit log is already altered (entry #{}: {}); not writing a checkpoint of it",
            p.seq,
            p.message
        );
    }
    let (seq, entry_hash) = report.head.context("the audit log is empty")?;
    let body = CheckpointBody {
        origin: origin(client)?,
        size: seq,
        head_hash: entry_hash.clone(),
        created_at: truncate_to_micros(Utc::now()),
    };
    let note = signer.sign(&body.to_text()?)?;
    Ok(SignedCheckpoint {
        note,
        seq,
        entry_hash,
    })
}

/// Write a checkpoint file (refusing to overwrite an existing one).
pub fn write_checkpoint(path: &Path, cp: &SignedCheckpoint) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create checkpoint file {} (it must not exist yet)",
                path.display()
            )
        })?;
    f.write_all(cp.note.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Read a checkpoint file: its signature must verify with one of `verifiers`, and it must be
/// a checkpoint of the log with this `origin`.
pub fn read_checkpoint(path: &Path, verifiers: &[VerifierKey], origin: &str) -> Result<Checkpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let body = note::open(&text, verifiers)
        .with_context(|| format!("checkpoint {} refused", path.display()))?;
    let body = CheckpointBody::parse(body)
        .with_context(|| format!("checkpoint {} refused", path.display()))?;
    if body.origin != origin {
        bail!(
            "checkpoint {} is of another log ({}), not of this registry's ({origin})",
            path.display(),
            body.origin
        );
    }
    Ok(Checkpoint::head_only(
        body.size,
        &body.head_hash,
        body.created_at,
    ))
}

/// A verifier key given on the command line: the key itself, or a file holding it.
pub fn verifier_key(arg: &str) -> Result<VerifierKey> {
    let text = if VerifierKey::parse(arg).is_ok() {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).with_context(|| {
            "a verifier key is name+id+key (as `audit keygen` prints it) or a file holding one"
                .to_string()
        })?
    };
    VerifierKey::parse(&text).context("not a verifier key")
}

/// Read a signer key file (refusing one that others can read).
pub fn signer_key(path: &Path) -> Result<SignerKey> {
    let text = crate::privacy::keys::read_secret_file(path, "signing key")?;
    SignerKey::parse(&text).with_context(|| format!("{} is not a signer key", path.display()))
}

/// Recompute the whole chain and check it against the kept checkpoints.
pub fn verify(client: &mut postgres::Client, checkpoints: Vec<Checkpoint>) -> Result<VerifyReport> {
    let mut v = ChainVerifier::new(checkpoints)?;
    for_each_entry(client, None, |e| {
        v.push(&e);
        Ok(())
    })?;
    Ok(v.finish())
}

/// Record the pseudonymisation configuration (date policy, domain, key id) when it differs
/// from the last one recorded, so the audit log shows every change, e.g. a registry switching
/// to true dates. Returns the new entry's sequence number, if one was written.
pub fn record_configuration(
    client: &mut postgres::Client,
    key_id: &str,
    domain: &str,
    dates: &str,
) -> Result<Option<i64>> {
    let mut tx = client.transaction()?;
    lock_log(&mut tx)?;
    let now = serde_json::json!({ "dates": dates, "domain": domain, "key_id": key_id });
    let last: Option<String> = tx
        .query_opt(
            "SELECT detail FROM registry.audit_log WHERE action = $1 ORDER BY seq DESC LIMIT 1",
            &[&action::CONFIGURATION],
        )?
        .map(|r| r.get(0));
    let previous: Option<serde_json::Value> = last.and_then(|t| serde_json::from_str(&t).ok());
    if previous.as_ref().and_then(|p| p.get("now")) == Some(&now) {
        return Ok(None);
    }
    let (seq, _) = append(
        &mut tx,
        &Record {
            action: action::CONFIGURATION,
            run_id: None,
            locator_hash: None,
            key_id: Some(key_id),
            detail: serde_json::json!({
                "now": now,
                "before": previous.and_then(|p| p.get("now").cloned()),
            }),
        },
    )?;
    tx.commit()?;
    Ok(Some(seq))
}
