//! Signed notes (C2SP `signed-note`) with Ed25519 keys, and the audit log's checkpoints in the
//! C2SP `tlog-checkpoint` format.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
//! `— <key name> <base64(key id || signature)>` (an em dash, U+2014). The key id is the
//! first 4 bytes of SHA-256(key name || "\n" || 0x01 || public key); the signature is
//! Ed25519 over the note text (everything before the blank line, its final newline
//! included). Keys are written as in the Go `note` package:
//!
//! - verifier key: `<name>+<key id as 8 hex digits>+<base64(0x01 || public key)>`
//! - signer key:   `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`
//!
//! The audit log is a hash chain, not a Merkle tree: its checkpoint body is the origin line
//! (a random id made when the registry was created), the number of entries, and the head
//! entry's hash (32 bytes, base64) in place of a tree root, then one extension line
//! `created <RFC 3339 time>`. Anyone with the verifier key can check a checkpoint; only the
//! holder of the signer key (the privacy officer, not the ETL host) can make one.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signer as _, Verifier as _};
use sha2::{Digest, Sha256};
use std::fmt;

/// The algorithm byte of Ed25519 keys in the note key formats.
const ALG_ED25519: u8 = 0x01;
/// The start of a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or a note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key's text is not in the note key format.
    #[error("not a key in the note format: {0}")]
    BadKey(&'static str),
    /// A key name is empty or holds a space or '+'.
    #[error("a key name must be non-empty, without spaces or '+'")]
    BadName,
    /// The note is not a signed note.
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    /// No signature verifies with the given keys.
    #[error("the note is not signed by any of the given verifier keys")]
    NoValidSignature,
    /// The note's text is not an audit checkpoint.
    #[error("not an audit checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n', '\t', '\u{2014}'])
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A signer key: a name and an Ed25519 secret key.
pub struct SignerKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadName);
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| NoteError::BadKey("no randomness"))?;
        Ok(SignerKey {
            name: name.to_string(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SignerKey, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, key) = split_key(rest)?;
        let seed: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 seed is 32 bytes"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if key_id(&name, key.verifying_key().as_bytes()) != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(SignerKey { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signer key in text form (secret: keep it off the ETL host).
    pub fn to_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            join_key(
                &self.name,
                self.key.verifying_key().as_bytes(),
                self.key.as_bytes()
            )
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline and hold no blank line at its end): returns
    /// the signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.ends_with("\n\n") || text.is_empty() {
            return Err(NoteError::Malformed(
                "the text must end with exactly one newline",
            ));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, self.key.verifying_key().as_bytes()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A verifier key: a name and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<id>+<base64>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        if text.starts_with("PRIVATE+") {
            return Err(NoteError::BadKey(
                "this is a signer (private) key; give the verifier key",
            ));
        }
        let (name, id, key) = split_key(text)?;
        let public: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 public key is 32 bytes"))?;
        if key_id(&name, &public) != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not an Ed25519 public key"))?;
        Ok(VerifierKey { name, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key in text form.
    pub fn to_text(&self) -> String {
        join_key(&self.name, self.key.as_bytes(), self.key.as_bytes())
    }

    fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.as_bytes())
    }
}

/// `<name>+<key id of public>+<base64(0x01 || key)>` (`key` is the public key or the seed).
fn join_key(name: &str, public: &[u8; 32], key: &[u8; 32]) -> String {
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public)),
        STANDARD.encode(k)
    )
}

/// `<name>+<8 hex>+<base64(0x01 || 32 bytes)>` -> (name, id, 32 key bytes).
fn split_key(text: &str) -> Result<(String, [u8; 4], Vec<u8>), NoteError> {
    // The base64 key may hold '+' itself: only the first two separate fields.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+id+key"));
    };
    if !valid_name(name) {
        return Err(NoteError::BadName);
    }
    let mut idb = [0u8; 4];
    if id.len() != 8 || hex::decode_to_slice(id, &mut idb).is_err() {
        return Err(NoteError::BadKey("the key id is 8 hex digits"));
    }
    let raw = STANDARD
        .decode(key)
        .map_err(|_| NoteError::BadKey("the key is not base64"))?;
    match raw.split_first() {
        Some((&ALG_ED25519, rest)) => Ok((name.to_string(), idb, rest.to_vec())),
        Some(_) => Err(NoteError::BadKey(
            "only Ed25519 keys (algorithm 1) are known",
        )),
        None => Err(NoteError::BadKey("the key is empty")),
    }
}

/// Opens a signed note: returns its text once a signature by one of `verifiers` checks out
/// (signatures by unknown keys are ignored, as the format requires).
pub fn open<'a>(note: &'a str, verifiers: &[VerifierKey]) -> Result<&'a str, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the signatures must end with a newline",
        ));
    }
    let mut any = false;
    for line in sigs.lines() {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "a signature line starts with an em dash",
        ))?;
        let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "a signature line is: dash, name, signature",
        ))?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        any = true;
        if blob.len() != 4 + 64 {
            continue;
        }
        let (id, sig) = blob.split_at(4);
        let sig = ed25519_dalek::Signature::from_slice(sig)
            .map_err(|_| NoteError::Malformed("not an Ed25519 signature"))?;
        for v in verifiers {
            if v.name == name && v.id() == id && v.key.verify(text.as_bytes(), &sig).is_ok() {
                return Ok(text);
            }
        }
    }
    if !any {
        return Err(NoteError::Malformed("no signature line"));
    }
    Err(NoteError::NoValidSignature)
}

/// The state of an audit log a checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody {
    /// Which log (the registry's `registry.audit_origin`).
    pub origin: String,
    /// How many entries (the seq of the head).
    pub size: i64,
    /// The head entry's hash (lowercase hex, 64 digits).
    pub head_hash: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl CheckpointBody {
    /// The checkpoint text (to be signed).
    pub fn to_text(&self) -> Result<String, NoteError> {
        if self.origin.is_empty() || self.origin.contains('\n') {
            return Err(NoteError::BadCheckpoint("the origin is one non-empty line"));
        }
        let hash = hex::decode(&self.head_hash)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or(NoteError::BadCheckpoint("the head hash is 32 bytes of hex"))?;
        Ok(format!(
            "{}\n{}\n{}\ncreated {}\n",
            self.origin,
            self.size,
            STANDARD.encode(hash),
            self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
        ))
    }

    /// Parses a checkpoint text (the text of a note that was opened).
    pub fn parse(text: &str) -> Result<CheckpointBody, NoteError> {
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin line"))?;
        let size: i64 = lines
            .next()
            .and_then(|l| l.parse().ok())
            .filter(|&n: &i64| n >= 1 && !text.lines().nth(1).unwrap_or("").starts_with('+'))
            .ok_or(NoteError::BadCheckpoint(
                "the second line is the entry count",
            ))?;
        let hash = lines
            .next()
            .and_then(|l| STANDARD.decode(l).ok())
            .filter(|h| h.len() == 32)
            .ok_or(NoteError::BadCheckpoint("the third line is the head hash"))?;
        let mut created_at = None;
        for l in lines {
            if let Some(t) = l.strip_prefix("created ") {
                created_at = DateTime::parse_from_rfc3339(t)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
            }
        }
        Ok(CheckpointBody {
            origin: origin.to_string(),
            size,
            head_hash: hex::encode(hash),
            created_at: created_at.ok_or(NoteError::BadCheckpoint("no created line"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_notes_verify() {
        let k = SignerKey::generate("privacy-officer.ghent").unwrap();
        let again = SignerKey::parse(&k.to_text()).unwrap();
        assert_eq!(again.verifier(), k.verifier());
        let v = VerifierKey::parse(&k.verifier().to_text()).unwrap();
        let note = k.sign("origin\n3\nbody\n").unwrap();
        assert_eq!(
            open(&note, std::slice::from_ref(&v)).unwrap(),
            "origin\n3\nbody\n"
        );

        // Any change to the text, the name or the signature is refused.
        let edited = note.replacen("3\n", "4\n", 1);
        assert_eq!(
            open(&edited, std::slice::from_ref(&v)),
            Err(NoteError::NoValidSignature)
        );
        let other = SignerKey::generate("privacy-officer.ghent").unwrap();
        assert_eq!(
            open(&note, &[other.verifier()]),
            Err(NoteError::NoValidSignature)
        );
        assert!(open("origin\n3\nbody\n", std::slice::from_ref(&v)).is_err());
        assert!(
            VerifierKey::parse(&k.to_text()).is_err(),
            "a private key is no verifier"
        );
        let mut wrong_id = v.to_text();
        wrong_id.replace_range(
            wrong_id.find('+').unwrap() + 1..wrong_id.find('+').unwrap() + 3,
            "zz",
        );
        assert!(VerifierKey::parse(&wrong_id).is_err());
        assert!(SignerKey::generate("two words").is_err());
    }

    /// The signed-note example key of the C2SP spec / Go `note` package
    /// (golang.org/x/mod/sumdb/note): the key id of name "PeterNeumann" and this public key.
    #[test]
    fn key_ids_follow_the_note_format() {
        let v = VerifierKey::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!(v.name(), "PeterNeumann");
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert_eq!(
            open(note, &[v]).unwrap(),
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
        );
    }

    #[test]
    fn checkpoint_bodies_round_trip() {
        let b = CheckpointBody {
            origin: "registrar-audit/0123".into(),
            size: 42,
            head_hash: "ab".repeat(32),
            created_at: DateTime::parse_from_rfc3339("2026-12-02T01:02:03.000004Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        let t = b.to_text().unwrap();
        assert_eq!(t.lines().count(), 4);
        assert_eq!(CheckpointBody::parse(&t).unwrap(), b);
        assert!(CheckpointBody::parse("o\n0\nAA==\n").is_err());
    }
}
