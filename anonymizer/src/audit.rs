//! The tamper-evident audit log: canonical encoding, hash chain, checkpoints and verifier.
//!
//! This module is pure logic; the caller stores the entries (in PostgreSQL, for registrar).
//!
//! * Every [`AuditEntry`] has a `seq` (1, 2, 3, ... without gaps) and the `prev_hash` of the
//!   entry before it ([`GENESIS_HASH`] for seq 1). Its `entry_hash` is the lowercase hex
//!   SHA-256 of [`AuditEntry::canonical_bytes`], an unambiguous length-prefixed encoding of
//!   every field, so editing any field of any entry, deleting or inserting one breaks the
//!   chain at that point.
//! * The chain alone cannot detect someone who rewrites the log from some entry on and
//!   recomputes every later hash, nor the loss of the last entries. A [`Checkpoint`], kept
//!   *outside* the database (printed, mailed, committed elsewhere), records the head
//!   `(seq, entry_hash)` and an 8-byte fingerprint of every entry hash up to it, so a
//!   rewrite is located at the first entry whose fingerprint differs, and a log shorter than
//!   a checkpoint is reported as truncated. Entries after the newest checkpoint are
//!   protected by the chain only.
//! * [`ChainVerifier`] checks a log streamed in ascending `seq` order against any number of
//!   checkpoints and reports problems by the seq where they start.
//!
//! Two things the storing side must respect, or verification fails on an untouched log:
//!
//! * **`logged_at` carries microseconds.** The encoding formats it with exactly 6
//!   fractional digits; PostgreSQL `timestamptz` stores microseconds too. Truncate the time
//!   with [`truncate_to_micros`] *before* hashing and storing it.
//! * **`detail` is hashed as the exact text given.** Produce it with [`canonical_json`] and
//!   store it as `text`, not `jsonb` (which reformats JSON), or re-canonicalise on reading.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of entry 1: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The version tag at the start of [`AuditEntry::canonical_bytes`].
pub const AUDIT_FORMAT: &str = "registrar-audit-v1";

/// The `format` of a [`Checkpoint`].
pub const CHECKPOINT_FORMAT: &str = "registrar-audit-checkpoint-v1";

/// At most this many problems are kept in a [`VerifyReport`] (the ones with the lowest seq).
pub const MAX_PROBLEMS: usize = 20;

const FINGERPRINT_LEN: usize = 8;

/// Errors of building checkpoints and of setting up a [`ChainVerifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A checkpoint has another `format` than [`CHECKPOINT_FORMAT`].
    #[error("checkpoint #{index}: unsupported format {format:?} (expected {CHECKPOINT_FORMAT})")]
    CheckpointFormat {
        /// Position of the checkpoint in the list given.
        index: usize,
        /// Its format.
        format: String,
    },
    /// A checkpoint is inconsistent in itself.
    #[error("checkpoint #{index} (seq {seq}) is invalid: {reason}")]
    InvalidCheckpoint {
        /// Position of the checkpoint in the list given.
        index: usize,
        /// Its seq.
        seq: i64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Entries given to a [`CheckpointBuilder`] are not 1, 2, 3, ...
    #[error("audit entries must come in order from seq 1: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The seq that was expected.
        expected: i64,
        /// The seq that came.
        got: i64,
    },
    /// An entry hash is not 64 lowercase hex digits.
    #[error("audit entry {seq} has a malformed entry hash (expected 64 lowercase hex digits)")]
    MalformedHash {
        /// The entry's seq.
        seq: i64,
    },
    /// A checkpoint of no entries was asked for.
    #[error("cannot make a checkpoint of an empty audit log")]
    EmptyLog,
}

/// One entry of the audit log, as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// When it was logged; must be truncated to microseconds ([`truncate_to_micros`]).
    pub logged_at: DateTime<Utc>,
    /// The operating-system user that acted.
    pub actor_os_user: String,
    /// The database role that acted.
    pub actor_db_role: String,
    /// What was done (e.g. `load.start`).
    pub action: String,
    /// The ETL run, if any.
    pub run_id: Option<i64>,
    /// The keyed hash of the source locator, if any.
    pub locator_hash: Option<String>,
    /// The id of the key used, if any.
    pub key_id: Option<String>,
    /// Details as canonical JSON text ([`canonical_json`]); hashed as the exact text.
    pub detail: String,
    /// The `entry_hash` of entry `seq - 1`, or [`GENESIS_HASH`] for seq 1.
    pub prev_hash: String,
}

/// An entry with the hash stored next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The entry.
    pub entry: AuditEntry,
    /// The stored hash; for an untouched entry, `entry.compute_hash()`.
    pub entry_hash: String,
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("audit field larger than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_optional(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_field(out, bytes);
        }
    }
}

/// `t` without its sub-microsecond part, as PostgreSQL `timestamptz` would keep it (but
/// truncated, where PostgreSQL rounds: truncate before storing).
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

impl AuditEntry {
    /// The bytes that are hashed: the version tag [`AUDIT_FORMAT`], then every field in
    /// declaration order, each as a 4-byte big-endian length followed by its bytes.
    ///
    /// * `seq` and `run_id` are written in decimal ASCII.
    /// * `logged_at` is RFC 3339 in UTC with exactly 6 fractional digits and `Z`
    ///   (`2024-05-01T12:00:00.000000Z`); anything below a microsecond is dropped, so
    ///   truncate it before storing ([`truncate_to_micros`]).
    /// * The optional fields (`run_id`, `locator_hash`, `key_id`) are preceded by one byte,
    ///   0 for `None` (and nothing follows) or 1 for `Some` (and the length-prefixed value
    ///   follows), so `None` differs from `Some("")`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            128 + self.actor_os_user.len()
                + self.actor_db_role.len()
                + self.action.len()
                + self.detail.len(),
        );
        let run_id = self.run_id.map(|r| r.to_string());
        put_field(&mut out, AUDIT_FORMAT.as_bytes());
        put_field(&mut out, self.seq.to_string().as_bytes());
        put_field(
            &mut out,
            self.logged_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_bytes(),
        );
        put_field(&mut out, self.actor_os_user.as_bytes());
        put_field(&mut out, self.actor_db_role.as_bytes());
        put_field(&mut out, self.action.as_bytes());
        put_optional(&mut out, run_id.as_deref().map(str::as_bytes));
        put_optional(&mut out, self.locator_hash.as_deref().map(str::as_bytes));
        put_optional(&mut out, self.key_id.as_deref().map(str::as_bytes));
        put_field(&mut out, self.detail.as_bytes());
        put_field(&mut out, self.prev_hash.as_bytes());
        out
    }

    /// Lowercase hex SHA-256 of [`canonical_bytes`](Self::canonical_bytes) (64 characters).
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The entry with its computed hash, ready to store.
    pub fn seal(self) -> StoredEntry {
        let entry_hash = self.compute_hash();
        StoredEntry {
            entry: self,
            entry_hash,
        }
    }
}

/// JSON text with the keys of every object sorted (by UTF-8 bytes, i.e. by code point),
/// recursively, and no whitespace: the form of [`AuditEntry::detail`].
///
/// Strings and numbers are written as `serde_json` writes them; this does not depend on
/// whether `serde_json`'s `preserve_order` feature is on.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("a string serialises"));
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("a scalar serialises")),
    }
}

/// Whether `h` is 64 lowercase hex digits.
fn is_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The first 8 bytes of a hex hash, if it is one.
fn fingerprint_of(hash: &str) -> Option<[u8; FINGERPRINT_LEN]> {
    if !is_hash(hash) {
        return None;
    }
    let mut fp = [0u8; FINGERPRINT_LEN];
    hex::decode_to_slice(&hash[..2 * FINGERPRINT_LEN], &mut fp).ok()?;
    Some(fp)
}

/// A record of the log's state, to keep outside the database.
///
/// `fingerprints` is standard (padded) base64 of the concatenated first 8 bytes of the
/// `entry_hash` of every entry from seq 1 to `seq`: 8 bytes an entry (about 11 base64
/// characters), so a rewrite of any covered entry is located exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The seq of the last entry covered.
    pub seq: i64,
    /// The `entry_hash` of entry `seq`.
    pub entry_hash: String,
    /// When the checkpoint was made.
    pub created_at: DateTime<Utc>,
    /// Base64 (standard, padded) of the 8-byte fingerprints of entries 1..=seq.
    pub fingerprints: String,
}

impl Checkpoint {
    /// A head-only checkpoint (no fingerprints): what a signed checkpoint note records.
    pub fn head_only(seq: i64, entry_hash: &str, created_at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            format: CHECKPOINT_FORMAT.to_string(),
            seq,
            entry_hash: entry_hash.to_string(),
            created_at,
            fingerprints: String::new(),
        }
    }

    /// A checkpoint of the given entries, which must be the whole log from seq 1 in order;
    /// `created_at` is now. Only the stored hashes are used: verify the log first (e.g.
    /// feed the same stream to a [`ChainVerifier`]) so as not to bless a tampered one.
    pub fn from_entries<'a, I>(entries: I) -> Result<Checkpoint, AuditError>
    where
        I: IntoIterator<Item = &'a StoredEntry>,
    {
        let mut builder = CheckpointBuilder::new();
        for e in entries {
            builder.push_entry(e)?;
        }
        builder.finish()
    }

    /// Checks the checkpoint in itself: its format, its seq, its hash, and that the
    /// fingerprints are `8 * seq` bytes of base64 ending with the fingerprint of
    /// `entry_hash`.
    pub fn validate(&self) -> Result<(), AuditError> {
        self.decode(0).map(|_| ())
    }

    fn decode(&self, index: usize) -> Result<DecodedCheckpoint, AuditError> {
        let invalid = |reason| AuditError::InvalidCheckpoint {
            index,
            seq: self.seq,
            reason,
        };
        if self.format != CHECKPOINT_FORMAT {
            return Err(AuditError::CheckpointFormat {
                index,
                format: self.format.clone(),
            });
        }
        if self.seq < 1 {
            return Err(invalid("seq must be at least 1"));
        }
        let head_fp =
            fingerprint_of(&self.entry_hash).ok_or(invalid("entry_hash is not 64 hex digits"))?;
        let fingerprints = STANDARD
            .decode(self.fingerprints.as_bytes())
            .map_err(|_| invalid("fingerprints are not valid base64"))?;
        if fingerprints.is_empty() {
            // A head-only checkpoint (e.g. from a signed note): the head hash commits to the
            // whole chain; a rewrite is located at or before its seq.
            return Ok(DecodedCheckpoint {
                index,
                seq: self.seq,
                entry_hash: self.entry_hash.clone(),
                created_at: self.created_at,
                fingerprints,
                failed: false,
            });
        }
        if Some(fingerprints.len() as u64) != (self.seq as u64).checked_mul(FINGERPRINT_LEN as u64)
        {
            return Err(invalid("fingerprints do not hold 8 bytes for each entry"));
        }
        if fingerprints[fingerprints.len() - FINGERPRINT_LEN..] != head_fp {
            return Err(invalid("the last fingerprint does not match entry_hash"));
        }
        Ok(DecodedCheckpoint {
            index,
            seq: self.seq,
            entry_hash: self.entry_hash.clone(),
            created_at: self.created_at,
            fingerprints,
            failed: false,
        })
    }
}

/// Builds a [`Checkpoint`] one entry hash at a time, for logs too long to hold in memory.
#[derive(Debug, Default, Clone)]
pub struct CheckpointBuilder {
    fingerprints: Vec<u8>,
    head: Option<(i64, String)>,
}

impl CheckpointBuilder {
    /// An empty builder.
    pub fn new() -> CheckpointBuilder {
        CheckpointBuilder::default()
    }

    /// Adds the stored hash of entry `seq`; seqs must be 1, 2, 3, ...
    pub fn push(&mut self, seq: i64, entry_hash: &str) -> Result<(), AuditError> {
        let expected = self.len() + 1;
        if seq != expected {
            return Err(AuditError::OutOfOrder { expected, got: seq });
        }
        let fp = fingerprint_of(entry_hash).ok_or(AuditError::MalformedHash { seq })?;
        self.fingerprints.extend_from_slice(&fp);
        self.head = Some((seq, entry_hash.to_string()));
        Ok(())
    }

    /// Adds a stored entry (its seq and stored `entry_hash`).
    pub fn push_entry(&mut self, e: &StoredEntry) -> Result<(), AuditError> {
        self.push(e.entry.seq, &e.entry_hash)
    }

    /// The number of entries pushed.
    pub fn len(&self) -> i64 {
        (self.fingerprints.len() / FINGERPRINT_LEN) as i64
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// The checkpoint of the entries pushed, made now (to the microsecond).
    pub fn finish(self) -> Result<Checkpoint, AuditError> {
        self.finish_at(truncate_to_micros(Utc::now()))
    }

    /// The checkpoint of the entries pushed, with the given creation time.
    pub fn finish_at(self, created_at: DateTime<Utc>) -> Result<Checkpoint, AuditError> {
        let (seq, entry_hash) = self.head.ok_or(AuditError::EmptyLog)?;
        Ok(Checkpoint {
            format: CHECKPOINT_FORMAT.to_string(),
            seq,
            entry_hash,
            created_at,
            fingerprints: STANDARD.encode(&self.fingerprints),
        })
    }
}

#[derive(Debug)]
struct DecodedCheckpoint {
    index: usize,
    seq: i64,
    entry_hash: String,
    created_at: DateTime<Utc>,
    fingerprints: Vec<u8>,
    /// A mismatch was reported; later entries are not compared with it again.
    failed: bool,
}

impl DecodedCheckpoint {
    fn describe(&self) -> String {
        format!(
            "checkpoint #{} (seq {}, created {})",
            self.index,
            self.seq,
            self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// What kind of damage a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The entry's content does not match its stored hash: it was edited.
    Edited,
    /// Entries are missing from the middle of the log (or its start): deleted. The seq is
    /// the first missing one.
    Deleted,
    /// An entry that should not be there: a repeated or out-of-order seq, or an entry that
    /// the next entry's `prev_hash` skips over.
    Inserted,
    /// The entry's `prev_hash` is not the previous entry's hash: one of the two was
    /// rewritten (and re-hashed) or replaced.
    BrokenLink,
    /// The log is shorter than a checkpoint: its last entries were deleted. The seq is the
    /// first missing one.
    Truncated,
    /// The entry's hash differs from what a checkpoint recorded: the log was rewritten from
    /// here, hashes included.
    CheckpointMismatch,
}

impl ProblemKind {
    /// `edited`, `deleted`, `inserted`, `broken-link`, `truncated` or
    /// `checkpoint-mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Inserted => "inserted",
            ProblemKind::BrokenLink => "broken-link",
            ProblemKind::Truncated => "truncated",
            ProblemKind::CheckpointMismatch => "checkpoint-mismatch",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of a [`ChainVerifier`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The seq where the problem starts (for deletions and truncation: the first missing).
    pub seq: i64,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// A sentence for people.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}: {}: {}", self.seq, self.kind, self.message)
    }
}

/// The result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How many entries were pushed.
    pub entries: i64,
    /// The seq and stored `entry_hash` of the last entry, if any.
    pub head: Option<(i64, String)>,
    /// The problems with the lowest seqs (at most [`MAX_PROBLEMS`]), by ascending seq.
    pub problems: Vec<Problem>,
    /// How many more problems were found but not kept.
    pub problems_omitted: u64,
}

impl VerifyReport {
    /// The problem with the lowest seq: where the log first goes wrong.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.problems_omitted == 0
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.head {
            Some((seq, hash)) => write!(f, "{} entries, head seq {seq} {hash}", self.entries)?,
            None => write!(f, "{} entries", self.entries)?,
        }
        if self.is_ok() {
            return write!(f, ": OK");
        }
        write!(
            f,
            ": {} problem(s)",
            self.problems.len() as u64 + self.problems_omitted
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        if self.problems_omitted > 0 {
            write!(f, "\n  ... and {} more", self.problems_omitted)?;
        }
        Ok(())
    }
}

/// Verifies a log streamed in ascending `seq` order (e.g. `ORDER BY seq`).
///
/// Checks that seqs run 1, 2, 3, ... (a gap is a deletion, reported at the first missing
/// seq), that each `prev_hash` is the previous `entry_hash` ([`GENESIS_HASH`] for seq 1),
/// that each `entry_hash` is the hash of the entry (else it was edited), and, for every
/// checkpoint, that every entry up to its seq has the recorded fingerprint and entry
/// `seq` the recorded hash (else the log was rewritten from the first differing entry), and
/// that the log reaches its seq (else it was truncated). It goes on after a problem, so
/// that the report shows how far the damage goes, keeping the [`MAX_PROBLEMS`] problems
/// with the lowest seqs.
#[derive(Debug)]
pub struct ChainVerifier {
    checkpoints: Vec<DecodedCheckpoint>,
    /// The seq the next entry should have.
    next_seq: i64,
    /// The hash the next entry's `prev_hash` should be.
    expected_prev: String,
    /// The hash the last entry's `prev_hash` should have been, if the last entry followed
    /// its predecessor without a gap (to recognise an entry the next one skips over).
    before_prev: Option<String>,
    entries: i64,
    head: Option<(i64, String)>,
    problems: Vec<Problem>,
    problems_omitted: u64,
}

impl ChainVerifier {
    /// A verifier that also checks the given checkpoints (none is fine). Fails if a
    /// checkpoint is not well-formed.
    pub fn new(checkpoints: Vec<Checkpoint>) -> Result<Self, AuditError> {
        let checkpoints = checkpoints
            .iter()
            .enumerate()
            .map(|(i, c)| c.decode(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChainVerifier {
            checkpoints,
            next_seq: 1,
            expected_prev: GENESIS_HASH.to_string(),
            before_prev: None,
            entries: 0,
            head: None,
            problems: Vec::new(),
            problems_omitted: 0,
        })
    }

    /// Verifies a whole log at once.
    pub fn verify<'a, I>(
        checkpoints: Vec<Checkpoint>,
        entries: I,
    ) -> Result<VerifyReport, AuditError>
    where
        I: IntoIterator<Item = &'a StoredEntry>,
    {
        let mut v = ChainVerifier::new(checkpoints)?;
        for e in entries {
            v.push(e);
        }
        Ok(v.finish())
    }

    fn problem(&mut self, seq: i64, kind: ProblemKind, message: String) {
        let p = Problem { seq, kind, message };
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
            return;
        }
        self.problems_omitted += 1;
        // Keep the lowest seqs: replace the highest kept one if this one is lower.
        let (worst, worst_seq) = self
            .problems
            .iter()
            .enumerate()
            .map(|(i, q)| (i, q.seq))
            .max_by_key(|&(i, seq)| (seq, i))
            .expect("MAX_PROBLEMS > 0");
        if p.seq < worst_seq {
            self.problems[worst] = p;
        }
    }

    /// Checks the next entry.
    pub fn push(&mut self, e: &StoredEntry) {
        self.entries += 1;
        let seq = e.entry.seq;

        if seq < self.next_seq {
            let last = self.next_seq - 1;
            self.problem(
                seq,
                ProblemKind::Inserted,
                format!(
                    "an entry with seq {seq} comes after seq {last}: a repeated or \
                     out-of-order entry (entries must be read in ascending seq order)"
                ),
            );
            return;
        }

        let contiguous = seq == self.next_seq;
        if !contiguous {
            let first_missing = self.next_seq;
            let what = if seq - first_missing == 1 {
                format!("entry {first_missing} is missing")
            } else {
                format!("entries {first_missing}..={} are missing", seq - 1)
            };
            self.problem(
                first_missing,
                ProblemKind::Deleted,
                format!("{what}: deleted from the log"),
            );
        }

        let computed = e.entry.compute_hash();
        if computed != e.entry_hash {
            self.problem(
                seq,
                ProblemKind::Edited,
                format!(
                    "entry {seq} does not match its stored hash: its content was changed \
                     after it was logged"
                ),
            );
        }

        if contiguous && e.entry.prev_hash != self.expected_prev {
            if self.before_prev.as_deref() == Some(e.entry.prev_hash.as_str()) {
                let skipped = seq - 1;
                self.problem(
                    skipped,
                    ProblemKind::Inserted,
                    format!(
                        "entry {seq} links to the entry before {skipped}, not to {skipped}: \
                         entry {skipped} was inserted"
                    ),
                );
            } else {
                let what = if seq == 1 {
                    "is not the genesis hash".to_string()
                } else {
                    format!("is not the hash of entry {}", seq - 1)
                };
                self.problem(
                    seq,
                    ProblemKind::BrokenLink,
                    format!(
                        "the prev_hash of entry {seq} {what}: an entry before it or this \
                         entry was replaced or rewritten"
                    ),
                );
            }
        }

        self.check_checkpoints(seq, &e.entry_hash);

        self.before_prev = if contiguous {
            Some(std::mem::replace(
                &mut self.expected_prev,
                e.entry_hash.clone(),
            ))
        } else {
            self.expected_prev = e.entry_hash.clone();
            None
        };
        self.next_seq = seq.saturating_add(1);
        self.head = Some((seq, e.entry_hash.clone()));
    }

    fn check_checkpoints(&mut self, seq: i64, entry_hash: &str) {
        if self.checkpoints.is_empty() {
            return;
        }
        let fp = fingerprint_of(entry_hash);
        let mut mismatched = Vec::new();
        let mut head_only = Vec::new();
        for c in self.checkpoints.iter_mut() {
            if c.failed || c.seq < seq {
                continue;
            }
            if c.fingerprints.is_empty() {
                if seq == c.seq && entry_hash != c.entry_hash {
                    c.failed = true;
                    head_only.push(c.describe());
                }
                continue;
            }
            // 1 <= seq <= c.seq, and c holds 8 * c.seq bytes.
            let start = (seq - 1) as usize * FINGERPRINT_LEN;
            let recorded = &c.fingerprints[start..start + FINGERPRINT_LEN];
            let same = fp.as_ref().is_some_and(|fp| fp[..] == *recorded)
                && (seq != c.seq || entry_hash == c.entry_hash);
            if !same {
                c.failed = true;
                mismatched.push(c.describe());
            }
        }
        if !head_only.is_empty() {
            self.problem(
                seq,
                ProblemKind::CheckpointMismatch,
                format!(
                    "the hash of entry {seq} differs from the one recorded by {}: the log \
                     was rewritten at or before this entry",
                    head_only.join(", ")
                ),
            );
        }
        if !mismatched.is_empty() {
            self.problem(
                seq,
                ProblemKind::CheckpointMismatch,
                format!(
                    "the hash of entry {seq} differs from the one recorded by {}: the log \
                     was rewritten from this entry on",
                    mismatched.join(", ")
                ),
            );
        }
    }

    /// Ends verification: checks that the log reaches every checkpoint, and returns the
    /// report with problems by ascending seq.
    pub fn finish(mut self) -> VerifyReport {
        let last = self.next_seq - 1;
        if let Some(longest) = self.checkpoints.iter().max_by_key(|c| c.seq) {
            if longest.seq > last {
                let message = format!(
                    "the log ends at seq {last} but {} covers it up to seq {}: entries \
                     {}..={} were deleted",
                    longest.describe(),
                    longest.seq,
                    last + 1,
                    longest.seq
                );
                self.problem(last + 1, ProblemKind::Truncated, message);
            }
        }
        let mut problems = self.problems;
        problems.sort_by_key(|p| p.seq);
        VerifyReport {
            entries: self.entries,
            head: self.head,
            problems,
            problems_omitted: self.problems_omitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn entry(seq: i64, prev_hash: &str) -> AuditEntry {
        AuditEntry {
            seq,
            logged_at: t0() + chrono::Duration::microseconds(seq * 1_000_001),
            actor_os_user: "etl".into(),
            actor_db_role: "registrar_etl".into(),
            action: if seq % 2 == 0 {
                "load.file"
            } else {
                "load.start"
            }
            .into(),
            run_id: Some(seq / 3),
            locator_hash: (seq % 3 == 0).then(|| format!("loc{seq}")),
            key_id: Some("k1-0123456789abcdef".into()),
            detail: canonical_json(&json!({"rows": seq, "ok": true})),
            prev_hash: prev_hash.into(),
        }
    }

    fn log(n: i64) -> Vec<StoredEntry> {
        let mut out: Vec<StoredEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_string(), |e| e.entry_hash.clone());
            out.push(entry(seq, &prev).seal());
        }
        out
    }

    fn checkpoint(entries: &[StoredEntry]) -> Checkpoint {
        let mut b = CheckpointBuilder::new();
        for e in entries {
            b.push_entry(e).unwrap();
        }
        b.finish_at(t0()).unwrap()
    }

    fn verify(checkpoints: Vec<Checkpoint>, entries: &[StoredEntry]) -> VerifyReport {
        ChainVerifier::verify(checkpoints, entries).unwrap()
    }

    fn first(report: &VerifyReport) -> (i64, ProblemKind) {
        let p = report.first_problem().expect("a problem");
        (p.seq, p.kind)
    }

    /// Recomputes prev_hash and entry_hash of every entry from index `from` on, as an
    /// attacker with write access to the table would.
    fn rehash_from(entries: &mut [StoredEntry], from: usize) {
        for i in from..entries.len() {
            let prev = if i == 0 {
                GENESIS_HASH.to_string()
            } else {
                entries[i - 1].entry_hash.clone()
            };
            entries[i].entry.prev_hash = prev;
            entries[i].entry_hash = entries[i].entry.compute_hash();
        }
    }

    #[test]
    fn genesis_is_64_zeros() {
        assert_eq!(GENESIS_HASH.len(), 64);
        assert!(GENESIS_HASH.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn canonical_bytes_layout_and_pinned_hash() {
        let e = AuditEntry {
            seq: 1,
            logged_at: t0() + chrono::Duration::microseconds(5),
            actor_os_user: "alice".into(),
            actor_db_role: "etl".into(),
            action: "run.start".into(),
            run_id: None,
            locator_hash: Some(String::new()),
            key_id: Some("k1-0011223344556677".into()),
            detail: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
        };
        let mut expected = Vec::new();
        for field in [
            "registrar-audit-v1",
            "1",
            "2024-05-01T12:00:00.000005Z",
            "alice",
            "etl",
            "run.start",
        ] {
            expected.extend_from_slice(&(field.len() as u32).to_be_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        expected.push(0); // run_id: None
        expected.extend_from_slice(&[1, 0, 0, 0, 0]); // locator_hash: Some("")
        expected.push(1);
        expected.extend_from_slice(&19u32.to_be_bytes());
        expected.extend_from_slice(b"k1-0011223344556677");
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(b"{}");
        expected.extend_from_slice(&64u32.to_be_bytes());
        expected.extend_from_slice(GENESIS_HASH.as_bytes());
        assert_eq!(e.canonical_bytes(), expected);
        assert_eq!(e.compute_hash(), hex::encode(Sha256::digest(&expected)));
        // Pinned (computed independently): other implementations must agree.
        assert_eq!(
            e.compute_hash(),
            "c9b306bb2ca30f1eba784390910e6be37f13269eaf1d31e66f99a8a0bcff5ae2"
        );
    }

    #[test]
    fn encoding_is_unambiguous() {
        let base = entry(3, GENESIS_HASH);
        let h = base.compute_hash();
        let variants: Vec<fn(&mut AuditEntry)> = vec![
            |e| e.locator_hash = None,
            |e| e.locator_hash = Some(String::new()),
            |e| e.key_id = None,
            |e| e.run_id = None,
            |e| e.run_id = Some(0),
            |e| {
                // Moving a character across a field boundary.
                e.actor_os_user = "et".into();
                e.actor_db_role = "lregistrar_etl".into();
            },
            |e| e.seq = 5,
            |e| e.logged_at += chrono::Duration::microseconds(1),
            |e| e.detail.push(' '),
            |e| e.prev_hash = "1".repeat(64),
            |e| e.action = "load.File".into(),
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(h.clone());
        for change in variants {
            let mut e = base.clone();
            change(&mut e);
            assert!(seen.insert(e.compute_hash()), "{e:?}");
        }
        // None and Some("") of different optional fields are distinct too.
        let mut a = base.clone();
        a.locator_hash = Some(String::new());
        a.key_id = None;
        let mut b = base.clone();
        b.locator_hash = None;
        b.key_id = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
        assert_eq!(base.compute_hash(), h);
        assert!(is_hash(&h));
    }

    #[test]
    fn timestamps_have_six_digits_and_truncate() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        let mut e = entry(1, GENESIS_HASH);
        e.logged_at = truncate_to_micros(t);
        assert_eq!(e.logged_at.timestamp_subsec_nanos(), 123_456_000);
        let bytes = e.canonical_bytes();
        let needle = b"2024-05-01T12:00:00.123456Z";
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        e.logged_at = t0();
        let needle = b"2024-05-01T12:00:00.000000Z";
        assert!(e
            .canonical_bytes()
            .windows(needle.len())
            .any(|w| w == needle));
        // A time with nanoseconds hashes like its truncation: what PostgreSQL gives back.
        let mut a = entry(1, GENESIS_HASH);
        a.logged_at = t;
        let mut b = a.clone();
        b.logged_at = truncate_to_micros(t);
        assert_eq!(a.compute_hash(), b.compute_hash());
        assert_eq!(truncate_to_micros(b.logged_at), b.logged_at);
    }

    #[test]
    fn canonical_json_sorts_and_compacts() {
        let v = json!({
            "b": [3, {"z": 1, "a": null}],
            "a": {"y": "x\"y", "é": 1.5, "B": false},
            "": "emoji \u{1F600} and \n"
        });
        assert_eq!(
            canonical_json(&v),
            r#"{"":"emoji 😀 and \n","a":{"B":false,"y":"x\"y","é":1.5},"b":[3,{"a":null,"z":1}]}"#
        );
        let reparsed: serde_json::Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(reparsed, v);
        assert_eq!(canonical_json(&reparsed), canonical_json(&v));
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!([])), "[]");
        assert_eq!(canonical_json(&json!({})), "{}");
    }

    #[test]
    fn clean_log_verifies() {
        let entries = log(50);
        let cps = vec![checkpoint(&entries[..10]), checkpoint(&entries)];
        let report = verify(cps, &entries);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.entries, 50);
        assert_eq!(report.head, Some((50, entries[49].entry_hash.clone())));
        assert!(report.to_string().ends_with("OK"));
        // Empty log without checkpoints is fine; with one, it is truncated from seq 1.
        assert!(verify(vec![], &[]).is_ok());
        let r = verify(vec![checkpoint(&entries[..3])], &[]);
        assert_eq!(first(&r), (1, ProblemKind::Truncated));
        assert_eq!(r.head, None);
    }

    #[test]
    fn edit_without_rehash_is_reported_at_the_entry() {
        for k in [1usize, 17, 30] {
            let mut entries = log(30);
            entries[k - 1].entry.action = "nothing.to.see".into();
            let report = verify(vec![checkpoint(&log(30))], &entries);
            assert_eq!(first(&report), (k as i64, ProblemKind::Edited), "{report}");
            assert_eq!(report.problems.len(), 1, "{report}");
        }
    }

    #[test]
    fn edit_with_rehash_of_one_entry_breaks_the_next_link() {
        let mut entries = log(30);
        entries[9].entry.detail = "{}".into();
        entries[9].entry_hash = entries[9].entry.compute_hash();
        let report = verify(vec![], &entries);
        assert_eq!(first(&report), (11, ProblemKind::BrokenLink), "{report}");
        assert_eq!(report.problems.len(), 1);
        // A checkpoint places it at the entry itself.
        let report = verify(vec![checkpoint(&log(30))], &entries);
        assert_eq!(
            first(&report),
            (10, ProblemKind::CheckpointMismatch),
            "{report}"
        );
    }

    #[test]
    fn deleting_a_middle_entry_is_reported_at_the_missing_seq() {
        let mut entries = log(30);
        entries.remove(11); // seq 12
        let report = verify(vec![], &entries);
        assert_eq!(first(&report), (12, ProblemKind::Deleted), "{report}");
        assert_eq!(report.problems.len(), 1, "{report}");
        // Several entries, and with a checkpoint.
        let mut entries = log(30);
        entries.drain(4..8); // seqs 5..=8
        let report = verify(vec![checkpoint(&log(30))], &entries);
        assert_eq!(first(&report), (5, ProblemKind::Deleted), "{report}");
        assert!(report.problems[0].message.contains("5..=8"));
        assert_eq!(report.problems.len(), 1, "{report}");
        // The first entry.
        let entries = log(5)[1..].to_vec();
        assert_eq!(first(&verify(vec![], &entries)), (1, ProblemKind::Deleted));
    }

    #[test]
    fn deleting_and_renumbering_is_caught_at_the_first_renumbered_entry() {
        let mut entries = log(20);
        entries.remove(6); // seq 7
        for e in &mut entries[6..] {
            e.entry.seq -= 1;
        }
        let report = verify(vec![], &entries);
        assert_eq!(first(&report).0, 7, "{report}");
        // And if the attacker re-hashed everything after it, only a checkpoint sees it.
        rehash_from(&mut entries, 6);
        assert!(verify(vec![], &entries).is_ok());
        let report = verify(vec![checkpoint(&log(20))], &entries);
        assert_eq!(
            first(&report),
            (7, ProblemKind::CheckpointMismatch),
            "{report}"
        );
    }

    #[test]
    fn deleting_the_last_entries_is_truncation_with_a_checkpoint() {
        let full = log(30);
        let cp = checkpoint(&full);
        let entries = full[..29].to_vec();
        // Without a checkpoint, a shorter log is indistinguishable from an honest one.
        assert!(verify(vec![], &entries).is_ok());
        let report = verify(vec![cp.clone()], &entries);
        assert_eq!(first(&report), (30, ProblemKind::Truncated), "{report}");
        assert_eq!(report.problems.len(), 1);
        let entries = full[..20].to_vec();
        let report = verify(vec![checkpoint(&full[..10]), cp], &entries);
        assert_eq!(first(&report), (21, ProblemKind::Truncated), "{report}");
        assert!(report.problems[0].message.contains("21..=30"));
        assert_eq!(report.head, Some((20, full[19].entry_hash.clone())));
        // Entries appended after the checkpoint are fine.
        let longer = log(40);
        assert!(verify(vec![checkpoint(&longer[..30])], &longer).is_ok());
    }

    #[test]
    fn inserting_a_forged_entry_is_reported_at_the_forged_seq() {
        let k = 9usize;
        let original = log(20);
        let mut entries = original.clone();
        // A well-formed forged entry at seq k, linked to k-1 and correctly hashed; the
        // later entries renumbered but not re-hashed.
        let forged = {
            let mut e = entry(k as i64, &original[k - 2].entry_hash);
            e.action = "forged".into();
            e.seal()
        };
        entries.insert(k - 1, forged.clone());
        for e in &mut entries[k..] {
            e.entry.seq += 1;
        }
        let report = verify(vec![], &entries);
        assert_eq!(
            first(&report),
            (k as i64, ProblemKind::Inserted),
            "{report}"
        );
        let report = verify(vec![checkpoint(&original)], &entries);
        assert_eq!(first(&report).0, k as i64, "{report}");

        // The same at the very start of the log.
        let mut entries = original.clone();
        let forged1 = entry(1, GENESIS_HASH);
        let mut forged1 = forged1;
        forged1.action = "forged".into();
        entries.insert(0, forged1.seal());
        for e in &mut entries[1..] {
            e.entry.seq += 1;
        }
        assert_eq!(first(&verify(vec![], &entries)), (1, ProblemKind::Inserted));

        // A forged entry that does not link to its predecessor.
        let mut entries = original.clone();
        let mut bogus = entry(k as i64, &"f".repeat(64));
        bogus.action = "forged".into();
        entries[k - 1] = bogus.seal();
        let report = verify(vec![], &entries);
        assert_eq!(
            first(&report),
            (k as i64, ProblemKind::BrokenLink),
            "{report}"
        );

        // A repeated seq (a second row for seq k).
        let mut entries = original.clone();
        entries.insert(k, forged);
        let report = verify(vec![], &entries);
        assert_eq!(
            first(&report),
            (k as i64, ProblemKind::Inserted),
            "{report}"
        );
        assert_eq!(report.problems.len(), 1, "{report}");
    }

    #[test]
    fn rewrite_and_rehash_is_caught_by_a_checkpoint_at_the_first_rewritten_entry() {
        let original = log(60);
        for k in [1usize, 2, 25, 40] {
            let mut entries = original.clone();
            entries[k - 1].entry.actor_os_user = "mallory".into();
            entries[k - 1].entry.run_id = None;
            rehash_from(&mut entries, k - 1);
            // The chain itself is consistent again...
            assert!(verify(vec![], &entries).is_ok(), "k={k}");
            // ...but not with a checkpoint taken before the rewrite.
            let report = verify(vec![checkpoint(&original[..50])], &entries);
            assert_eq!(
                first(&report),
                (k as i64, ProblemKind::CheckpointMismatch),
                "k={k}: {report}"
            );
            assert_eq!(report.problems.len(), 1, "{report}");
            // Several checkpoints agreeing on the first bad entry give one problem.
            let report = verify(
                vec![checkpoint(&original[..45]), checkpoint(&original)],
                &entries,
            );
            assert_eq!(report.problems.len(), 1, "{report}");
            assert_eq!(first(&report).0, k as i64);
        }
        // A rewrite after the newest checkpoint is beyond its reach.
        let mut entries = original.clone();
        entries[55].entry.action = "x".into();
        rehash_from(&mut entries, 55);
        assert!(verify(vec![checkpoint(&original[..50])], &entries).is_ok());
        // The checkpoint's own head is checked exactly.
        let mut entries = original.clone();
        entries[49].entry.action = "x".into();
        rehash_from(&mut entries, 49);
        let report = verify(vec![checkpoint(&original[..50])], &entries);
        assert_eq!(first(&report), (50, ProblemKind::CheckpointMismatch));
    }

    #[test]
    fn absurd_seqs_do_not_panic() {
        let entries = log(3);
        let mut huge = entries[2].clone();
        huge.entry.seq = i64::MAX;
        huge.entry_hash = huge.entry.compute_hash();
        let mut negative = entries[0].clone();
        negative.entry.seq = -5;
        let report = verify(
            vec![checkpoint(&entries)],
            &[entries[0].clone(), entries[1].clone(), huge, negative],
        );
        assert_eq!(first(&report), (-5, ProblemKind::Inserted), "{report}");
        assert_eq!(report.problems[1].seq, 3);
        assert_eq!(report.problems[1].kind, ProblemKind::Deleted);
    }

    #[test]
    fn problems_are_capped_keeping_the_lowest_seqs() {
        let mut entries = log(100);
        for e in &mut entries[9..] {
            e.entry.detail = "{\"edited\":true}".into();
        }
        let report = verify(vec![], &entries);
        assert_eq!(report.problems.len(), MAX_PROBLEMS);
        assert_eq!(report.problems_omitted, 91 - MAX_PROBLEMS as u64);
        assert_eq!(first(&report), (10, ProblemKind::Edited));
        assert!(report.problems.windows(2).all(|w| w[0].seq <= w[1].seq));
        assert!(!report.is_ok());
        assert!(report.to_string().contains("and 71 more"));
    }

    #[test]
    fn streaming_matches_batch() {
        let entries = log(25);
        let cp = Checkpoint::from_entries(&entries).unwrap();
        assert_eq!(cp.seq, 25);
        assert_eq!(cp.entry_hash, entries[24].entry_hash);
        assert_eq!(cp.format, CHECKPOINT_FORMAT);
        let mut v = ChainVerifier::new(vec![cp.clone()]).unwrap();
        for e in &entries {
            v.push(e);
        }
        assert_eq!(v.finish(), verify(vec![cp], &entries));
    }

    #[test]
    fn checkpoint_encoding_and_serde() {
        let entries = log(3);
        let cp = checkpoint(&entries);
        let mut expected = Vec::new();
        for e in &entries {
            expected.extend_from_slice(&hex::decode(&e.entry_hash[..16]).unwrap());
        }
        assert_eq!(cp.fingerprints, STANDARD.encode(&expected));
        assert_eq!(STANDARD.decode(&cp.fingerprints).unwrap().len(), 24);
        cp.validate().unwrap();
        let json = serde_json::to_string(&cp).unwrap();
        assert!(json.contains("\"format\":\"registrar-audit-checkpoint-v1\""));
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cp);
        // from_entries and the builder agree (apart from created_at).
        let mut from = Checkpoint::from_entries(&entries).unwrap();
        from.created_at = cp.created_at;
        assert_eq!(from, cp);
    }

    #[test]
    fn bad_checkpoints_are_refused() {
        let entries = log(4);
        let good = checkpoint(&entries);
        let mut bad = Vec::new();
        let mut c = good.clone();
        c.format = "v0".into();
        bad.push(c);
        let mut c = good.clone();
        c.fingerprints = "not base64!".into();
        bad.push(c);
        let mut c = good.clone();
        c.fingerprints = STANDARD.encode([0u8; 24]);
        bad.push(c);
        let mut c = good.clone();
        c.seq = 5;
        bad.push(c);
        let mut c = good.clone();
        c.seq = 0;
        bad.push(c);
        let mut c = good.clone();
        c.entry_hash = entries[2].entry_hash.clone();
        bad.push(c);
        let mut c = good.clone();
        c.entry_hash = c.entry_hash.to_uppercase();
        bad.push(c);
        let mut c = good.clone();
        c.fingerprints = c.fingerprints.trim_end_matches('=').to_string();
        bad.push(c);
        for (i, c) in bad.into_iter().enumerate() {
            assert!(c.validate().is_err(), "#{i}: {c:?}");
            assert!(ChainVerifier::new(vec![good.clone(), c]).is_err(), "#{i}");
        }
        let err = ChainVerifier::new(vec![Checkpoint {
            format: "x".into(),
            ..good.clone()
        }])
        .unwrap_err();
        assert!(matches!(err, AuditError::CheckpointFormat { index: 0, .. }));
    }

    #[test]
    fn builder_requires_order_and_well_formed_hashes() {
        let entries = log(3);
        let mut b = CheckpointBuilder::new();
        assert!(b.is_empty());
        assert_eq!(b.clone().finish().unwrap_err(), AuditError::EmptyLog);
        assert_eq!(
            b.push_entry(&entries[1]),
            Err(AuditError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        b.push_entry(&entries[0]).unwrap();
        assert_eq!(b.push(2, "xyz"), Err(AuditError::MalformedHash { seq: 2 }));
        b.push_entry(&entries[1]).unwrap();
        assert_eq!(b.len(), 2);
        let cp = b.finish().unwrap();
        assert_eq!(cp.seq, 2);
        assert_eq!(cp.created_at, truncate_to_micros(cp.created_at));
    }

    #[test]
    fn problem_kinds_serialise_as_kebab_case() {
        assert_eq!(
            serde_json::to_string(&ProblemKind::CheckpointMismatch).unwrap(),
            "\"checkpoint-mismatch\""
        );
        assert_eq!(ProblemKind::BrokenLink.to_string(), "broken-link");
    }
}
