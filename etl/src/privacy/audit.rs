//! The audit log in `registry.audit_log`: appending (serialised, hash-chained), reading it as a
//! stream, checkpoints for the privacy officer, and verification.
//!
//! Appends take a transaction-scoped advisory lock, read the head, and insert the next entry,
//! so concurrent imports can never fork the chain. An import appends its entries in the same
//! transaction as its data, just before commit: an entry exists if and only if the work it
//! describes was committed, and the lock is held only for the commit.

use crate::runs::os_user;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::GenericClient;
use registrar_anonymizer::audit::{
    canonical_json, truncate_to_micros, AuditEntry, ChainVerifier, Checkpoint, CheckpointBuilder,
    StoredEntry, VerifyReport, GENESIS_HASH,
};
use std::path::Path;

/// Advisory lock key serialising audit appends ("regaudit" in ASCII).
pub const AUDIT_LOCK: i64 = 0x7265_6761_7564_6974;

/// The actions the log records.
pub mod action {
    pub const IMPORT_BATCH: &str = "import batch pseudonymised";
    pub const DICOM_FILE: &str = "dicom file pseudonymised";
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
/// describes; the advisory lock is released at its commit or rollback.
pub fn append(tx: &mut impl GenericClient, rec: &Record<'_>) -> Result<(i64, String)> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
    let head = tx.query_opt(
        "SELECT seq, entry_hash FROM registry.audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (seq, prev_hash) = match head {
        Some(r) => (r.get::<_, i64>(0) + 1, r.get::<_, String>(1)),
        None => (1, GENESIS_HASH.to_string()),
    };
    let role: String = tx.query_one("SELECT current_user::text", &[])?.get(0);
    let entry = AuditEntry {
        seq,
        logged_at: truncate_to_micros(Utc::now()),
        actor_os_user: os_user(),
        actor_db_role: role,
        action: rec.action.to_string(),
        run_id: rec.run_id,
        locator_hash: rec.locator_hash.map(str::to_string),
        key_id: rec.key_id.map(str::to_string),
        detail: canonical_json(&rec.detail),
        prev_hash,
    };
    let hash = entry.compute_hash();
    tx.execute(
        "INSERT INTO registry.audit_log (seq, logged_at, actor_os_user, actor_db_role, action,
                run_id, locator_hash, key_id, detail, prev_hash, entry_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &entry.seq,
            &entry.logged_at,
            &entry.actor_os_user,
            &entry.actor_db_role,
            &entry.action,
            &entry.run_id,
            &entry.locator_hash,
            &entry.key_id,
            &entry.detail,
            &entry.prev_hash,
            &hash,
        ],
    )
    .context("could not append to the audit log")?;
    Ok((seq, hash))
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

/// Build a checkpoint of the current head. The chain is verified on the way: a log that is
/// already broken is never checkpointed.
pub fn checkpoint(client: &mut postgres::Client) -> Result<Checkpoint> {
    let mut builder = CheckpointBuilder::new();
    let mut verifier = ChainVerifier::new(Vec::new())?;
    for_each_entry(client, None, |e| {
        verifier.push(&e);
        builder.push_entry(&e).map_err(anyhow::Error::from)
    })?;
    let report = verifier.finish();
    if let Some(p) = report.first_problem() {
        bail!(
            "the audit log is already altered (entry #{}: {}); not writing a checkpoint of it",
            p.seq,
            p.message
        );
    }
    if builder.is_empty() {
        bail!("the audit log is empty: nothing to checkpoint yet");
    }
    Ok(builder.finish()?)
}

/// Write a checkpoint file (refusing to overwrite an existing one).
pub fn write_checkpoint(path: &Path, cp: &Checkpoint) -> Result<()> {
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
    f.write_all(serde_json::to_string_pretty(cp)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Read a checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a registrar audit checkpoint", path.display()))
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
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
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
