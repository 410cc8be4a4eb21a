//! # registrar-anonymizer
//!
//! The pseudonymisation core of *registrar*, the ETL that loads hospital data into an
//! OMOP CDM research registry for breast-cancer research. This crate needs no database: it is
//! pure key handling, keyed hashing, date shifting and hash-chain logic, so that it can be
//! reviewed and tested on its own.
//!
//! ## What it is for
//!
//! * [`key`]: the single secret of a registry, a 32-byte [`Key`] kept in a
//!   `0600` file (`registrar-key-v1:<base64url>`), and the per-purpose
//!   [`DomainKey`]s derived from it.
//! * [`pseudonym`]: normalisation of direct identifiers (Belgian NISS/INSZ, hospital MRN,
//!   study-subject ids) and the keyed [`Pseudonymiser`] that turns
//!   them into stable [`Pseudonym`]s; also keyed hashes of source
//!   locators and pseudonymous DICOM `2.25.` UIDs.
//! * [`dateshift`]: a per-person, key-derived, never-zero date shift.
//! * [`audit`]: the canonical encoding and SHA-256 hash chain of the audit log, checkpoints
//!   kept outside the database, and a streaming verifier that names the first tampered entry.
//! * [`dicom`]: DICOM pseudonymisation (PS3.15 Annex E Basic Profile and options, on
//!   dicom-rs): person pseudonyms for Patient ID and Name, keyed `2.25.` UIDs mapped by value,
//!   per-person date shifts, quarantine of what cannot be made safe, and a parallel directory
//!   runner. The one part of this crate that reads and writes data files.
//!
//! ## Key hierarchy
//!
//! ```text
//! Key (32 random bytes, file registrar-key-v1:..., mode 0600)
//!  |-- key_id        = "k1-" + hex(HMAC-SHA256(key, "registrar/key-id/v1"))[..16]
//!  `-- DomainKey(d)  = HKDF-SHA256(salt = "registrar/v1", ikm = key, info = "domain:" + d)
//!       |-- domain_key_id = same key-id scheme over the derived bytes
//!       `-- Pseudonymiser (HMAC-SHA256 state pre-keyed with the domain key)
//!            |-- person(ty, raw)      = b64url(HMAC("person\0" + ty + "\0" + normalise(ty, raw)))
//!            |-- keyed_hash(p, data)  = b64url(HMAC(p + "\0" + data))
//!            |-- uid_root_128(uid)    = first 16 bytes of HMAC("uid\0" + uid), big-endian
//!            `-- date_shift_days(..)  = from HMAC("dateshift\0" + pseudonym)
//! ```
//!
//! Every derivation is domain separated: two domains give unrelated sub-keys, and within one
//! domain every kind of hash has its own prefix (the reserved `keyed_hash` purposes are
//! refused so that a caller cannot produce a person pseudonym through it).
//!
//! ## Invariants
//!
//! * **The key never leaves the key types.** [`Key`] and
//!   [`DomainKey`] print only their key ids in `Debug`, have no `Display`,
//!   and no error of this crate contains key material, key-file content or a raw
//!   identifier (errors name the key file's path and the reason only). The key bytes are
//!   zeroed on drop (best effort: copies made by the hash implementations are not).
//! * **No identifier is stored.** Nothing here persists or caches an identifier or the
//!   mapping identifier -> pseudonym; the pseudonymiser keeps only the pre-keyed HMAC state.
//! * **Pseudonyms are recomputed, never looked up.** The same key, domain, identifier type
//!   and (normalised) identifier always give the same pseudonym, on any machine and in any
//!   process, so there is no mapping table to protect, lose or leak. Losing the key means
//!   no new data can be linked to existing persons; leaking it means pseudonyms can be
//!   reversed by brute force over the identifier space, so the key file must stay `0600`
//!   and off the research side.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod dateshift;
pub mod dicom;
pub mod key;
pub mod note;
pub mod pseudonym;

pub use audit::{
    canonical_json, truncate_to_micros, AuditEntry, AuditError, ChainVerifier, Checkpoint,
    CheckpointBuilder, Problem, ProblemKind, StoredEntry, VerifyReport, GENESIS_HASH,
};
pub use dateshift::{
    checked_shift_date, checked_shift_datetime, shift_date, shift_datetime, DatePolicy,
    DateShiftError, ShiftWindow,
};
pub use key::{DomainKey, Key, KeyError, KeyId};
pub use pseudonym::{
    normalise, IdentifierType, InvalidPseudonym, NormaliseError, ParseIdentifierTypeError,
    Pseudonym, Pseudonymiser,
};
