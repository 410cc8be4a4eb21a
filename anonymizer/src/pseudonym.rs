//! Identifier normalisation and keyed pseudonyms.
//!
//! A pseudonym is `base64url_nopad(HMAC-SHA256(domain_key, "person\0" + type + "\0" +
//! normalised identifier))`: 43 characters, the same wherever and whenever it is computed
//! with the same key, so it is recomputed from the identifier each time, never looked up.
//!
//! The [`Pseudonymiser`] keeps an HMAC state that has already absorbed the key, and clones it
//! for each hash, so the per-call cost is two SHA-256 compressions plus the encoding.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::key::{is_valid_label, KeyId};

/// Largest accepted MRN, in characters, after trimming and upper-casing.
pub const MAX_MRN_CHARS: usize = 64;

/// Purposes that [`Pseudonymiser::keyed_hash`] refuses, because other methods use them.
pub const RESERVED_PURPOSES: [&str; 3] = ["person", "uid", "dateshift"];

/// The kind of a direct identifier of a person. Each is a pseudonym domain of its own (its
/// name is part of the hash): the same digits as an MRN and as a declared type are two
/// pseudonyms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierType {
    /// Belgian national number (NISS / INSZ / rijksregisternummer, or a BIS number): 11
    /// digits with a mod-97 check.
    Niss,
    /// A hospital medical record number.
    Mrn,
    /// A study-subject id. The caller passes a study-qualified value (e.g. `"STUDY-A/0042"`):
    /// the study is not part of this type.
    StudySubject,
    /// A type a registry declared ([`declare`]): a US social security number, another
    /// country's national id.
    Declared(&'static DeclaredType),
}

/// How a declared identifier is normalised before it is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Normalisation {
    /// Trimmed; the case is kept.
    Trim,
    /// Trimmed and upper-cased.
    Upper,
    /// The digits only: ASCII whitespace, `.`, `-` and `/` are separators and dropped, any
    /// other character is refused.
    Digits,
    /// Letters and digits only, upper-cased: the same separators are dropped, any other
    /// character is refused.
    AlnumUpper,
}

impl Normalisation {
    /// The names used in configuration.
    pub const ALL: [(&'static str, Normalisation); 4] = [
        ("trim", Normalisation::Trim),
        ("upper", Normalisation::Upper),
        ("digits", Normalisation::Digits),
        ("alnum-upper", Normalisation::AlnumUpper),
    ];

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == self)
            .map_or("", |(s, _)| s)
    }
}

/// A check-digit algorithm of a declared identifier (over its normalised digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckDigit {
    /// The last digit is the Luhn check of the others (e.g. a Canadian SIN).
    Luhn,
    /// The last two digits are `97 - (n mod 97)` of the others, `n` the number they form
    /// (the Belgian NISS rule without its 2000 variant).
    Mod97,
}

impl CheckDigit {
    /// The names used in configuration.
    pub const ALL: [(&'static str, CheckDigit); 2] =
        [("luhn", CheckDigit::Luhn), ("mod97", CheckDigit::Mod97)];

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == self)
            .map_or("", |(s, _)| s)
    }

    fn holds(self, digits: &[u8]) -> bool {
        match self {
            CheckDigit::Luhn => {
                let sum: u32 = digits
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(i, &d)| {
                        let d = u32::from(d - b'0');
                        if i % 2 == 1 {
                            let x = d * 2;
                            if x > 9 {
                                x - 9
                            } else {
                                x
                            }
                        } else {
                            d
                        }
                    })
                    .sum();
                digits.len() >= 2 && sum.is_multiple_of(10)
            }
            CheckDigit::Mod97 => {
                if digits.len() < 3 {
                    return false;
                }
                let (body, check) = digits.split_at(digits.len() - 2);
                let rem = body
                    .iter()
                    .fold(0u64, |acc, &d| (acc * 10 + u64::from(d - b'0')) % 97);
                let check = u64::from(check[0] - b'0') * 10 + u64::from(check[1] - b'0');
                check == 97 - rem
            }
        }
    }
}

/// An identifier type a registry declared: its name (the pseudonym domain), how it is
/// normalised, its length after normalisation, and an optional check digit. Its rules never
/// change once declared: they decide its pseudonyms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeclaredType {
    /// The name mappings use (`type = "us-ssn"`), and the pseudonym domain.
    pub name: String,
    /// How a value is normalised.
    pub normalisation: Normalisation,
    /// The fewest characters after normalisation.
    pub min_len: u16,
    /// The most characters after normalisation.
    pub max_len: u16,
    /// The check digit, if the identifier has one.
    pub check: Option<CheckDigit>,
}

/// Why a declaration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum DeclareError {
    #[error("`{0}` is not a name for an identifier type (2 to 32 lower-case letters, digits and `-`, starting with a letter)")]
    BadName(String),
    #[error("`{0}` is a built-in identifier type")]
    BuiltIn(String),
    #[error("`{0}` is already declared with other rules; a type's rules never change (they decide its pseudonyms): declare a new name")]
    Redeclared(String),
    #[error("the length must be between 1 and {MAX_MRN_CHARS} characters, the shortest first")]
    BadLength,
    #[error("a check digit needs `digits` normalisation")]
    CheckNeedsDigits,
}

static DECLARED: std::sync::RwLock<Vec<&'static DeclaredType>> = std::sync::RwLock::new(Vec::new());

/// Make a declared type known to this process (parsing, [`IdentifierType::ALL`] aside). The
/// same declaration twice gives the same type; another with the same name is refused.
pub fn declare(t: DeclaredType) -> Result<IdentifierType, DeclareError> {
    let name_ok = (2..=32).contains(&t.name.len())
        && t.name.starts_with(|c: char| c.is_ascii_lowercase())
        && t.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(DeclareError::BadName(t.name));
    }
    if IdentifierType::ALL.iter().any(|b| b.as_str() == t.name) {
        return Err(DeclareError::BuiltIn(t.name));
    }
    if t.min_len == 0 || t.min_len > t.max_len || usize::from(t.max_len) > MAX_MRN_CHARS {
        return Err(DeclareError::BadLength);
    }
    if t.check.is_some() && t.normalisation != Normalisation::Digits {
        return Err(DeclareError::CheckNeedsDigits);
    }
    let mut all = DECLARED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = all.iter().find(|d| d.name == t.name) {
        return if **d == t {
            Ok(IdentifierType::Declared(d))
        } else {
            Err(DeclareError::Redeclared(t.name))
        };
    }
    let leaked: &'static DeclaredType = Box::leak(Box::new(t));
    all.push(leaked);
    Ok(IdentifierType::Declared(leaked))
}

/// The types declared in this process, by name.
pub fn declared() -> Vec<IdentifierType> {
    let all = DECLARED.read().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<IdentifierType> = all.iter().map(|d| IdentifierType::Declared(d)).collect();
    v.sort();
    v
}

impl Serialize for IdentifierType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentifierType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl IdentifierType {
    /// All identifier types.
    pub const ALL: [IdentifierType; 3] = [
        IdentifierType::Niss,
        IdentifierType::Mrn,
        IdentifierType::StudySubject,
    ];

    /// `"niss"`, `"mrn"`, `"study-subject"` or a declared name: the name used in text, serde
    /// and the hash.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::Niss => "niss",
            IdentifierType::Mrn => "mrn",
            IdentifierType::StudySubject => "study-subject",
            IdentifierType::Declared(d) => d.name.as_str(),
        }
    }
}

impl fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown [`IdentifierType`] name (the text is not repeated, in
/// case a misplaced identifier was passed as a type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown identifier type (expected niss, mrn, study-subject or a type declared with `registrar identifiers declare`)")]
pub struct ParseIdentifierTypeError;

impl FromStr for IdentifierType {
    type Err = ParseIdentifierTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentifierType::ALL
            .into_iter()
            .chain(declared())
            .find(|t| t.as_str() == s)
            .ok_or(ParseIdentifierTypeError)
    }
}

/// Why an identifier was refused. The message never contains the identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NormaliseError {
    /// Not an 11-digit NISS with valid check digits.
    #[error("not a valid NISS ({reason})")]
    InvalidNiss {
        /// `"check digits"`, `"must have 11 digits"` or `"unexpected character"`.
        reason: &'static str,
    },
    /// The MRN is empty after trimming.
    #[error("not a valid MRN (empty)")]
    EmptyMrn,
    /// The MRN is longer than [`MAX_MRN_CHARS`].
    #[error("not a valid MRN ({chars} characters, at most {MAX_MRN_CHARS} allowed)")]
    MrnTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// The study-subject id is empty after trimming.
    #[error("not a valid study-subject id (empty)")]
    EmptyStudySubject,
    /// Not a valid identifier of a declared type.
    #[error("not a valid {name} ({reason})")]
    Declared {
        /// The type's name.
        name: &'static str,
        /// `"unexpected character"`, `"length"` or `"check digit"`.
        reason: &'static str,
    },
}

/// An identifier after normalisation; borrowed where normalisation changed nothing.
enum Normalised<'a> {
    Niss([u8; 11]),
    Text(Cow<'a, str>),
}

impl Normalised<'_> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Normalised::Niss(digits) => digits,
            Normalised::Text(s) => s.as_bytes(),
        }
    }

    fn into_string(self) -> String {
        match self {
            Normalised::Niss(digits) => digits.iter().map(|&d| d as char).collect(),
            Normalised::Text(s) => s.into_owned(),
        }
    }
}

/// Normalises an identifier of the given type, the form that is hashed:
///
/// * `Niss`: the digits only, ignoring the usual separators (ASCII whitespace, `.`, `-`,
///   `/`; any other character is refused); exactly 11 digits whose last two are the mod-97
///   check of the first nine (`97 - n mod 97`) or, for people born in 2000 or later, of
///   `"2"` followed by the first nine. Otherwise [`NormaliseError::InvalidNiss`].
/// * `Mrn`: trimmed and upper-cased; non-empty, at most [`MAX_MRN_CHARS`] characters.
/// * `StudySubject`: trimmed; non-empty.
pub fn normalise(ty: IdentifierType, raw: &str) -> Result<String, NormaliseError> {
    normalise_inner(ty, raw).map(Normalised::into_string)
}

fn normalise_inner(ty: IdentifierType, raw: &str) -> Result<Normalised<'_>, NormaliseError> {
    match ty {
        IdentifierType::Niss => normalise_niss(raw).map(Normalised::Niss),
        IdentifierType::Mrn => {
            let t = raw.trim();
            if t.is_empty() {
                return Err(NormaliseError::EmptyMrn);
            }
            let upper: Cow<'_, str> = if t.chars().any(|c| c.is_lowercase()) {
                Cow::Owned(t.to_uppercase())
            } else {
                Cow::Borrowed(t)
            };
            let chars = upper.chars().count();
            if chars > MAX_MRN_CHARS {
                return Err(NormaliseError::MrnTooLong { chars });
            }
            Ok(Normalised::Text(upper))
        }
        IdentifierType::StudySubject => {
            let t = raw.trim();
            if t.is_empty() {
                return Err(NormaliseError::EmptyStudySubject);
            }
            Ok(Normalised::Text(Cow::Borrowed(t)))
        }
        IdentifierType::Declared(d) => normalise_declared(d, raw).map(Normalised::Text),
    }
}

fn normalise_declared<'a>(
    d: &'static DeclaredType,
    raw: &'a str,
) -> Result<Cow<'a, str>, NormaliseError> {
    let bad = |reason| NormaliseError::Declared {
        name: d.name.as_str(),
        reason,
    };
    let t = raw.trim();
    let separator = |c: char| c.is_ascii_whitespace() || matches!(c, '.' | '-' | '/');
    let out: Cow<'a, str> = match d.normalisation {
        Normalisation::Trim => Cow::Borrowed(t),
        Normalisation::Upper => {
            if t.chars().any(char::is_lowercase) {
                Cow::Owned(t.to_uppercase())
            } else {
                Cow::Borrowed(t)
            }
        }
        Normalisation::Digits | Normalisation::AlnumUpper => {
            let digits_only = d.normalisation == Normalisation::Digits;
            let mut s = String::with_capacity(t.len());
            for c in t.chars() {
                if c.is_ascii_digit() || (!digits_only && c.is_ascii_alphabetic()) {
                    s.push(c.to_ascii_uppercase());
                } else if !separator(c) {
                    return Err(bad("unexpected character"));
                }
            }
            Cow::Owned(s)
        }
    };
    let n = out.chars().count();
    if n < usize::from(d.min_len) || n > usize::from(d.max_len) {
        return Err(bad("length"));
    }
    if let Some(check) = d.check {
        if !check.holds(out.as_bytes()) {
            return Err(bad("check digit"));
        }
    }
    Ok(out)
}

/// Whether `raw` is a Belgian national register number (NISS) with valid check digits, in
/// any usual notation (`85.01.02-125.55`, `85010212555`).
pub fn is_valid_niss(raw: &str) -> bool {
    normalise_niss(raw).is_ok()
}

fn normalise_niss(raw: &str) -> Result<[u8; 11], NormaliseError> {
    let invalid = |reason| NormaliseError::InvalidNiss { reason };
    let mut digits = [0u8; 11];
    let mut n = 0usize;
    for b in raw.bytes() {
        match b {
            b'0'..=b'9' => {
                if n == digits.len() {
                    return Err(invalid("must have 11 digits"));
                }
                digits[n] = b;
                n += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'.' | b'-' | b'/' => {}
            _ => return Err(invalid("unexpected character")),
        }
    }
    if n != digits.len() {
        return Err(invalid("must have 11 digits"));
    }
    let number = |ds: &[u8]| {
        ds.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'))
    };
    let base = number(&digits[..9]);
    let check = number(&digits[9..]);
    let before_2000 = 97 - base % 97;
    let from_2000 = 97 - (2_000_000_000 + base) % 97;
    if check == before_2000 || check == from_2000 {
        Ok(digits)
    } else {
        Err(invalid("check digits"))
    }
}

/// A person pseudonym: 43 characters of unpadded base64url (256 bits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pseudonym(String);

/// A string that is not 43 characters of canonical unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a pseudonym (expected 43 characters of base64url)")]
pub struct InvalidPseudonym;

impl Pseudonym {
    /// Re-reads a pseudonym that was stored as text (e.g. from the database), checking its
    /// form (43 characters of canonical unpadded base64url).
    pub fn parse(s: &str) -> Result<Pseudonym, InvalidPseudonym> {
        let mut buf = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut buf) {
            Ok(32) if s.len() == 43 => Ok(Pseudonym(s.to_string())),
            _ => Err(InvalidPseudonym),
        }
    }

    /// The pseudonym as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pseudonym as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Pseudonym> for String {
    fn from(p: Pseudonym) -> String {
        p.0
    }
}

impl AsRef<str> for Pseudonym {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Computes pseudonyms and keyed hashes with one [`DomainKey`](crate::key::DomainKey).
///
/// Built by [`DomainKey::pseudonymiser`](crate::key::DomainKey::pseudonymiser). It holds the
/// HMAC-SHA256 state already keyed (never the identifiers), is cheap to clone, `Send` and
/// `Sync`; its `Debug` shows the domain and key ids only.
#[derive(Clone)]
pub struct Pseudonymiser {
    mac: Hmac<Sha256>,
    domain: String,
    key_id: KeyId,
    domain_key_id: KeyId,
}

impl Pseudonymiser {
    pub(crate) fn new(
        key: &[u8],
        domain: &str,
        key_id: &KeyId,
        domain_key_id: &KeyId,
    ) -> Pseudonymiser {
        Pseudonymiser {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"),
            domain: domain.to_string(),
            key_id: key_id.clone(),
            domain_key_id: domain_key_id.clone(),
        }
    }

    /// The domain of the key this pseudonymiser uses.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The id of the registry key this pseudonymiser's domain key was derived from.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The id of the domain key itself.
    pub fn domain_key_id(&self) -> &KeyId {
        &self.domain_key_id
    }

    fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The pseudonym of a person identifier: `b64url(HMAC("person\0" + ty + "\0" +
    /// normalise(ty, raw)))`. Fails, without quoting the identifier, if it does not
    /// normalise (see [`normalise`]).
    pub fn person(&self, ty: IdentifierType, raw: &str) -> Result<Pseudonym, NormaliseError> {
        let normalised = normalise_inner(ty, raw)?;
        let tag = self.hmac(&[
            b"person\0",
            ty.as_str().as_bytes(),
            b"\0",
            normalised.as_bytes(),
        ]);
        Ok(Pseudonym(URL_SAFE_NO_PAD.encode(tag)))
    }

    /// A keyed hash for any other purpose (source locators, FHIR logical ids, observers, ...):
    /// `b64url(HMAC(purpose + "\0" + data))`, 43 characters.
    ///
    /// # Panics
    ///
    /// If `purpose` is not a label of `[a-z0-9._:-]+`, or is one of [`RESERVED_PURPOSES`]
    /// (`person`, `uid`, `dateshift`), which would let a keyed hash equal a pseudonym, a
    /// UID root or a date-shift draw. Purposes are constants of the calling program.
    pub fn keyed_hash(&self, purpose: &str, data: &[u8]) -> String {
        assert!(
            is_valid_label(purpose) && !RESERVED_PURPOSES.contains(&purpose),
            "invalid or reserved keyed-hash purpose {purpose:?}"
        );
        URL_SAFE_NO_PAD.encode(self.hmac(&[purpose.as_bytes(), b"\0", data]))
    }

    /// The raw digest behind [`Self::keyed_hash`] (same purposes, same rules), for callers
    /// that store keyed hashes as bytes.
    pub fn keyed_digest(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        assert!(
            is_valid_label(purpose) && !RESERVED_PURPOSES.contains(&purpose),
            "invalid or reserved keyed-hash purpose {purpose:?}"
        );
        self.hmac(&[purpose.as_bytes(), b"\0", data])
    }

    /// The keyed hash of a source locator (e.g. a file path): `keyed_hash("locator", ..)`.
    pub fn locator_hash(&self, locator: &str) -> String {
        self.keyed_hash("locator", locator.as_bytes())
    }

    /// The first 16 bytes of `HMAC("uid\0" + uid)`, as a big-endian `u128`: the root of a
    /// pseudonymous DICOM `2.25.` UID.
    pub fn uid_root_128(&self, uid: &str) -> u128 {
        let tag = self.hmac(&[b"uid\0", uid.as_bytes()]);
        let mut first = [0u8; 16];
        first.copy_from_slice(&tag[..16]);
        u128::from_be_bytes(first)
    }

    /// A pseudonymous UID for `uid`: `"2.25."` + the decimal [`uid_root_128`](Self::uid_root_128)
    /// (no leading zeros; at most 44 characters, within DICOM's 64).
    pub fn pseudo_uid(&self, uid: &str) -> String {
        format!("2.25.{}", self.uid_root_128(uid))
    }

    /// `HMAC("dateshift\0" + pseudonym)`, the draw behind the date shift.
    pub(crate) fn dateshift_draw(&self, person: &Pseudonym) -> u64 {
        let tag = self.hmac(&[b"dateshift\0", person.as_str().as_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag[..8]);
        u64::from_be_bytes(first)
    }
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("domain", &self.domain)
            .field("key_id", &self.key_id.0)
            .field("domain_key_id", &self.domain_key_id.0)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    const FIXED: [u8; 32] = [7u8; 32];

    fn pseudonymiser(domain: &str) -> Pseudonymiser {
        Key::from_bytes(FIXED)
            .domain(domain)
            .unwrap()
            .pseudonymiser()
    }

    /// A valid pre-2000 NISS (check 28 on 850730033).
    const NISS: &str = "85073003328";
    /// A valid NISS of someone born in 2001: the check (45) is on "2" + 010203123; the
    /// pre-2000 check would be 16.
    const NISS_2001: &str = "01020312345";

    #[test]
    fn pinned_pseudonyms() {
        // Computed once with an independent Python (hmac/hashlib) implementation of the
        // documented construction, and pinned: a change here breaks every existing registry.
        let p = pseudonymiser("person");
        assert_eq!(
            p.person(IdentifierType::Niss, NISS).unwrap().as_str(),
            "Tz97nYoAf8B-qcqv3vknAroETlt-Ih3_LPMAhNJhWEo"
        );
        assert_eq!(
            p.person(IdentifierType::Mrn, "mrn-123").unwrap().as_str(),
            "4i5wmSzn3Xa0h1Qe99FGKOTDYeftt2rmDuU_kCPK438"
        );
        assert_eq!(
            p.locator_hash("/data/in/file.csv"),
            "L4KrhZenPb5SKhmJWRGWC0LCKztRy321pGzpfCotyO0"
        );
        assert_eq!(
            p.pseudo_uid("1.2.840.113619.2.55.3"),
            "2.25.24884978452591485661608515490092297393"
        );
    }

    #[test]
    fn deterministic_across_instances() {
        let a = pseudonymiser("person");
        let b = Key::from_bytes(FIXED)
            .domain("person")
            .unwrap()
            .pseudonymiser();
        for (ty, raw) in [
            (IdentifierType::Niss, NISS),
            (IdentifierType::Niss, NISS_2001),
            (IdentifierType::Mrn, "A-1"),
            (IdentifierType::StudySubject, "BRCA-X/0042"),
        ] {
            let pa = a.person(ty, raw).unwrap();
            assert_eq!(pa, b.person(ty, raw).unwrap());
            assert_eq!(pa, a.person(ty, raw).unwrap());
            assert_eq!(pa, a.clone().person(ty, raw).unwrap());
            assert_eq!(pa.as_str().len(), 43);
            assert!(pa
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_eq!(Pseudonym::parse(pa.as_str()).unwrap(), pa);
        }
        assert_eq!(a.keyed_hash("fhir-id", b"x"), b.keyed_hash("fhir-id", b"x"));
        assert_eq!(a.uid_root_128("1.2.3"), b.uid_root_128("1.2.3"));
    }

    #[test]
    fn domains_keys_and_types_separate() {
        let person = pseudonymiser("person");
        let other = pseudonymiser("person2");
        let other_key = Key::from_bytes([9u8; 32])
            .domain("person")
            .unwrap()
            .pseudonymiser();
        let p = person.person(IdentifierType::Niss, NISS).unwrap();
        assert_ne!(p, other.person(IdentifierType::Niss, NISS).unwrap());
        assert_ne!(p, other_key.person(IdentifierType::Niss, NISS).unwrap());

        // Same text, different identifier types.
        let a = person.person(IdentifierType::Mrn, NISS).unwrap();
        let b = person.person(IdentifierType::StudySubject, NISS).unwrap();
        assert_ne!(p, a);
        assert_ne!(p, b);
        assert_ne!(a, b);

        // Different identifiers of one type.
        assert_ne!(p, person.person(IdentifierType::Niss, NISS_2001).unwrap());

        // Keyed hashes of different purposes differ, and differ from the pseudonym.
        let h1 = person.keyed_hash("locator", b"niss\0" as &[u8]);
        assert_ne!(h1, person.keyed_hash("fhir-id", b"niss\0"));
        assert_eq!(h1.len(), 43);
        assert_eq!(person.locator_hash("a"), person.keyed_hash("locator", b"a"));
        assert_ne!(person.locator_hash("a"), person.locator_hash("b"));
        assert_ne!(person.locator_hash("a"), other.locator_hash("a"));
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn keyed_hash_refuses_reserved_purpose() {
        // keyed_hash("person", "niss\0<digits>") would equal the person pseudonym.
        pseudonymiser("person").keyed_hash("person", b"niss\x0085073003328");
    }

    #[test]
    #[should_panic(expected = "invalid")]
    fn keyed_hash_refuses_bad_purpose() {
        pseudonymiser("person").keyed_hash("a\0b", b"");
    }

    #[test]
    fn niss_normalisation() {
        for formatted in [
            "85.07.30-033.28",
            "85 07 30 033 28",
            " 850730-033-28\n",
            "85073003328",
            "850730/033.28",
        ] {
            assert_eq!(normalise(IdentifierType::Niss, formatted).unwrap(), NISS);
        }
        let p = pseudonymiser("person");
        let expected = p.person(IdentifierType::Niss, NISS).unwrap();
        assert_eq!(
            p.person(IdentifierType::Niss, "85.07.30-033.28").unwrap(),
            expected
        );
        assert_eq!(
            normalise(IdentifierType::Niss, "01.02.03-123.45").unwrap(),
            NISS_2001
        );
        assert_eq!(
            p.person(IdentifierType::Niss, "01.02.03-123.45").unwrap(),
            p.person(IdentifierType::Niss, NISS_2001).unwrap()
        );
    }

    #[test]
    fn niss_rejections_never_quote_the_identifier() {
        let cases = [
            ("85073003329", "check digits"), // wrong check
            ("8507300332", "must have 11 digits"),
            ("850730033280", "must have 11 digits"),
            ("", "must have 11 digits"),
            ("85O73003328", "unexpected character"), // letter O
            ("BE85073003328", "unexpected character"),
        ];
        for (raw, reason) in cases {
            let err = normalise(IdentifierType::Niss, raw).unwrap_err();
            assert_eq!(err, NormaliseError::InvalidNiss { reason }, "{raw}");
            let msg = err.to_string();
            assert!(msg.starts_with("not a valid NISS"), "{msg}");
            if !raw.is_empty() {
                assert!(!msg.contains(raw), "{msg}");
                assert!(!msg.contains(&raw[..6]), "{msg}");
            }
            assert!(pseudonymiser("person")
                .person(IdentifierType::Niss, raw)
                .is_err());
        }
        // The same nine digits with the pre-2000 check (16) are valid too (born 1901).
        assert!(normalise(IdentifierType::Niss, "01020312316").is_ok());
        // Check digits 00 never match (97 - x is 1..=97), and every wrong check is refused.
        for check in 0..100u64 {
            let raw = format!("850730033{check:02}");
            assert_eq!(
                normalise(IdentifierType::Niss, &raw).is_ok(),
                check == 28 || check == 57,
                "{raw}"
            );
        }
    }

    #[test]
    fn mrn_and_study_subject_normalisation() {
        assert_eq!(
            normalise(IdentifierType::Mrn, "  ab-12c ").unwrap(),
            "AB-12C"
        );
        assert_eq!(normalise(IdentifierType::Mrn, "AB-12C").unwrap(), "AB-12C");
        let p = pseudonymiser("person");
        assert_eq!(
            p.person(IdentifierType::Mrn, " ab-12c\t").unwrap(),
            p.person(IdentifierType::Mrn, "AB-12C").unwrap()
        );
        assert_eq!(
            normalise(IdentifierType::Mrn, "   "),
            Err(NormaliseError::EmptyMrn)
        );
        let long = "x".repeat(65);
        let err = normalise(IdentifierType::Mrn, &long).unwrap_err();
        assert_eq!(err, NormaliseError::MrnTooLong { chars: 65 });
        assert!(!err.to_string().contains(&long));
        assert!(normalise(IdentifierType::Mrn, &"x".repeat(64)).is_ok());

        assert_eq!(
            normalise(IdentifierType::StudySubject, " Study-A/001 ").unwrap(),
            "Study-A/001"
        );
        // Study-subject ids keep their case.
        assert_ne!(
            p.person(IdentifierType::StudySubject, "a/1").unwrap(),
            p.person(IdentifierType::StudySubject, "A/1").unwrap()
        );
        assert_eq!(
            normalise(IdentifierType::StudySubject, "\t"),
            Err(NormaliseError::EmptyStudySubject)
        );
    }

    #[test]
    fn declared_types_normalise_check_and_are_their_own_domain() {
        let ssn = declare(DeclaredType {
            name: "test-ssn".into(),
            normalisation: Normalisation::Digits,
            min_len: 9,
            max_len: 9,
            check: None,
        })
        .unwrap();
        let sin = declare(DeclaredType {
            name: "test-sin".into(),
            normalisation: Normalisation::Digits,
            min_len: 9,
            max_len: 9,
            check: Some(CheckDigit::Luhn),
        })
        .unwrap();
        assert_eq!("test-ssn".parse::<IdentifierType>(), Ok(ssn));
        assert_eq!(normalise(ssn, " 123-45-6789 ").as_deref(), Ok("123456789"));
        let e = normalise(ssn, "12345").unwrap_err();
        assert_eq!(e.to_string(), "not a valid test-ssn (length)");
        assert!(normalise(ssn, "123-45-678x").is_err());
        // 046 454 286 is the Luhn-valid example SIN of the Canadian government
        assert_eq!(normalise(sin, "046 454 286").as_deref(), Ok("046454286"));
        assert_eq!(
            normalise(sin, "046 454 287").unwrap_err().to_string(),
            "not a valid test-sin (check digit)"
        );
        // the same declaration again is the same type; other rules under the name are refused
        let again = declare(DeclaredType {
            name: "test-ssn".into(),
            normalisation: Normalisation::Digits,
            min_len: 9,
            max_len: 9,
            check: None,
        });
        assert_eq!(again, Ok(ssn));
        let other = declare(DeclaredType {
            name: "test-ssn".into(),
            normalisation: Normalisation::Trim,
            min_len: 9,
            max_len: 9,
            check: None,
        });
        assert!(matches!(other, Err(DeclareError::Redeclared(_))));
        assert!(matches!(
            declare(DeclaredType {
                name: "mrn".into(),
                normalisation: Normalisation::Trim,
                min_len: 1,
                max_len: 9,
                check: None
            }),
            Err(DeclareError::BuiltIn(_))
        ));
        // mod 97: 12345678 -> 97 - 12345678 mod 97 = 97 - 3 = 94
        assert!(CheckDigit::Mod97.holds(b"1234567894"));
        assert!(!CheckDigit::Mod97.holds(b"1234567895"));
        // a declared type is a pseudonym domain of its own
        let p = pseudonymiser("d");
        assert_ne!(
            p.person(ssn, "123456789").unwrap(),
            p.person(IdentifierType::Mrn, "123456789").unwrap()
        );
    }

    #[test]
    fn identifier_type_text_and_serde() {
        for (ty, s) in [
            (IdentifierType::Niss, "niss"),
            (IdentifierType::Mrn, "mrn"),
            (IdentifierType::StudySubject, "study-subject"),
        ] {
            assert_eq!(ty.to_string(), s);
            assert_eq!(s.parse::<IdentifierType>().unwrap(), ty);
            assert_eq!(serde_json::to_string(&ty).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<IdentifierType>(&format!("\"{s}\"")).unwrap(),
                ty
            );
        }
        assert!("NISS".parse::<IdentifierType>().is_err());
        assert!("study_subject".parse::<IdentifierType>().is_err());
        assert!(serde_json::from_str::<IdentifierType>("\"Niss\"").is_err());
    }

    #[test]
    fn pseudonym_text_and_serde() {
        let p = pseudonymiser("person")
            .person(IdentifierType::Niss, NISS)
            .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("\"{}\"", p.as_str()));
        assert_eq!(serde_json::from_str::<Pseudonym>(&json).unwrap(), p);
        assert_eq!(p.to_string(), p.as_str());
        assert!(Pseudonym::parse("short").is_err());
        assert!(Pseudonym::parse(&format!("{}=", &p.as_str()[..42])).is_err());
        assert!(Pseudonym::parse(&"+".repeat(43)).is_err());
    }

    #[test]
    fn pseudo_uids() {
        let p = pseudonymiser("dicom");
        let uid = p.pseudo_uid("1.2.840.10008.1.2");
        assert!(uid.starts_with("2.25."));
        let digits = &uid[5..];
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert!(!digits.starts_with('0') || digits == "0");
        assert!(uid.len() <= 64);
        assert_eq!(
            digits.parse::<u128>().unwrap(),
            p.uid_root_128("1.2.840.10008.1.2")
        );
        assert_ne!(uid, p.pseudo_uid("1.2.840.10008.1.3"));
        assert_eq!(uid, p.pseudo_uid("1.2.840.10008.1.2"));
    }

    #[test]
    fn debug_hides_key() {
        let p = pseudonymiser("person");
        let dbg = format!("{p:?}");
        assert!(dbg.contains("person") && dbg.contains("k1-"), "{dbg}");
        assert_eq!(p.domain(), "person");
        assert_eq!(p.key_id(), &Key::from_bytes(FIXED).key_id());
        assert_ne!(p.domain_key_id(), p.key_id());
    }

    #[test]
    fn pseudonymiser_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pseudonymiser>();
    }
}
