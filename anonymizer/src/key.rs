//! The registry key, its key file, its key id and the domain keys derived from it.
//!
//! A registry has exactly one [`Key`]: 32 random bytes in a file of one line,
//! `registrar-key-v1:<base64url without padding>\n`, mode `0600`. Everything secret in
//! the registry is derived from it with HKDF-SHA256 ([`Key::domain`]), so that one purpose
//! (say, person pseudonyms) never shares a key with another (say, source locators).
//!
//! Neither [`Key`] nor [`DomainKey`] can be printed: their `Debug` shows only the key id,
//! which is a one-way function of the key that names it in logs and in the database. No
//! [`KeyError`] contains key material or key-file content; errors name the path only.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::pseudonym::Pseudonymiser;

/// Length of a registry key and of every derived domain key, in bytes.
pub const KEY_LEN: usize = 32;

/// First part of the single line of a key file.
pub const KEY_FILE_PREFIX: &str = "registrar-key-v1:";

/// Largest key file that [`Key::load`] reads (a valid one is 61 bytes).
const MAX_KEY_FILE_LEN: u64 = 1024;

const KEY_ID_LABEL: &[u8] = b"registrar/key-id/v1";
const HKDF_SALT: &[u8] = b"registrar/v1";
const HKDF_INFO_PREFIX: &[u8] = b"domain:";

/// Errors of key generation, key files and key derivation.
///
/// No variant carries key bytes or file content: they name the path and the reason only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// [`Key::write_new`] found a file (or anything else) already at the path.
    #[error("key file {} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The key file's path.
        path: PathBuf,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {}` and try again",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The key file's path.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The key file exists but is not a registrar key file.
    #[error("{} is not a valid registrar key file: {reason}", path.display())]
    Malformed {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong, without quoting the content.
        reason: &'static str,
    },
    /// Reading, writing or opening the key file failed.
    #[error("cannot {action} key file {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "read", "create", "write").
        action: &'static str,
        /// The key file's path.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate a key: the system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A domain name given to [`Key::domain`] is not of the form `[a-z0-9._:-]+`.
    #[error(
        "invalid key domain name {domain:?}: it must be non-empty and contain only \
         a-z, 0-9, '.', '_', ':' and '-'"
    )]
    InvalidDomain {
        /// The rejected domain name (a label chosen by the program, not a secret).
        domain: String,
    },
}

/// The id of a key: `"k1-"` followed by 16 lowercase hex digits.
///
/// It is `"k1-" + hex(HMAC-SHA256(key, "registrar/key-id/v1"))[..16]`: stable, safe to log
/// and to store, and useless for recovering the key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    fn of(bytes: &[u8; KEY_LEN]) -> KeyId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC takes any key");
        mac.update(KEY_ID_LABEL);
        let tag = mac.finalize().into_bytes();
        KeyId(format!("k1-{}", hex::encode(&tag[..8])))
    }

    /// The id as text, e.g. `k1-0123456789abcdef`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser may not remove.
#[allow(unsafe_code)]
pub(crate) fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// The registry's secret key: 32 bytes, zeroed when dropped.
///
/// The bytes live on the heap so that moving a `Key` does not leave copies behind. It has no
/// `Display`, and its `Debug` prints only the [`KeyId`].
pub struct Key {
    bytes: Box<[u8; KEY_LEN]>,
}

impl Key {
    /// A new random key from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the system random number generator fails (see [`Key::try_generate`]).
    pub fn generate() -> Key {
        Key::try_generate().expect("the system random number generator failed")
    }

    /// A new random key, or an error if the system random number generator fails.
    pub fn try_generate() -> Result<Key, KeyError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        getrandom::getrandom(&mut bytes[..]).map_err(KeyError::Random)?;
        Ok(Key { bytes })
    }

    /// A key with the given bytes (tests and fixed test vectors; real keys come from
    /// [`Key::generate`] or [`Key::load`]). The caller's array is a copy that is not wiped.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key {
            bytes: Box::new(bytes),
        }
    }

    /// Generates a new key and writes it to a new file at `path`.
    ///
    /// The file is created with `O_CREAT | O_EXCL` and mode `0600`: an existing file, even an
    /// empty one or a dangling symlink, is never overwritten ([`KeyError::AlreadyExists`]).
    /// Its content is the single line `registrar-key-v1:<base64url, no padding>\n`, and it is
    /// flushed to disk before the key is returned. If writing fails, the partial file is
    /// removed.
    pub fn write_new(path: &Path) -> Result<Key, KeyError> {
        let key = Key::try_generate()?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    KeyError::AlreadyExists {
                        path: path.to_path_buf(),
                    }
                } else {
                    KeyError::Io {
                        action: "create",
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })?;
        let written = (|| -> io::Result<()> {
            // The umask can only remove bits from 0600, but make the mode explicit anyway.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            let mut line = key.to_file_line();
            let result = file.write_all(line.as_bytes());
            wipe_string(&mut line);
            result?;
            file.sync_all()
        })();
        if let Err(source) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(KeyError::Io {
                action: "write",
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(key)
    }

    /// Loads the key from the key file at `path` (symlinks are followed).
    ///
    /// Refuses a file whose mode has any group or other bit (`mode & 0o077 != 0`), telling
    /// the user to `chmod 600` it, and anything that is not exactly one line
    /// `registrar-key-v1:<43 base64url characters>` (a single final `\n` is optional) that
    /// decodes to 32 bytes. Errors name the path, never the content.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let io_err = |action: &'static str| {
            move |source: io::Error| KeyError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let malformed = |reason: &'static str| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        // Non-blocking: opening a FIFO (or a device) must not wait for a writer forever; it is
        // refused below. Reads of a regular file are not affected.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(io_err("open"))?
        };
        // Check the file that was opened, not the path, so the check and the read agree.
        let meta = file.metadata().map_err(io_err("inspect"))?;
        if !meta.is_file() {
            return Err(malformed("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut content = Vec::with_capacity(128);
        let read = file
            .take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut content)
            .map_err(io_err("read"));
        let parsed = read.and_then(|_| parse_key_line(&content).map_err(malformed));
        wipe(&mut content);
        parsed
    }

    /// The key's id (`k1-` + 16 hex digits), safe to log and store.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.bytes)
    }

    /// Derives the key of a domain: HKDF-SHA256 with salt `registrar/v1`, this key as input
    /// keying material and info `domain:<domain>`.
    ///
    /// Domain names are labels chosen by the program (e.g. `person`, `locator`,
    /// `dicom-uid`): non-empty, only `[a-z0-9._:-]`. Anything else is
    /// [`KeyError::InvalidDomain`].
    pub fn domain(&self, domain: &str) -> Result<DomainKey, KeyError> {
        if !is_valid_label(domain) {
            return Err(KeyError::InvalidDomain {
                domain: domain.to_string(),
            });
        }
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.bytes[..]);
        let mut bytes = Box::new([0u8; KEY_LEN]);
        hk.expand_multi_info(&[HKDF_INFO_PREFIX, domain.as_bytes()], &mut bytes[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let domain_key_id = KeyId::of(&bytes);
        Ok(DomainKey {
            domain: domain.to_string(),
            bytes,
            key_id: self.key_id(),
            domain_key_id,
        })
    }

    fn to_file_line(&self) -> String {
        let mut line = String::with_capacity(KEY_FILE_PREFIX.len() + 44);
        line.push_str(KEY_FILE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&self.bytes[..], &mut line);
        line.push('\n');
        line
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        wipe(&mut self.bytes[..]);
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("key_id", &self.key_id().0)
            .finish_non_exhaustive()
    }
}

fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    wipe(&mut bytes);
}

fn parse_key_line(content: &[u8]) -> Result<Key, &'static str> {
    if content.len() as u64 > MAX_KEY_FILE_LEN {
        return Err("file is too large");
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let encoded = body
        .strip_prefix(KEY_FILE_PREFIX.as_bytes())
        .ok_or("it does not start with `registrar-key-v1:`")?;
    // 32 bytes are exactly 43 base64 characters without padding.
    if encoded.len() != 43 {
        return Err("the key is not 43 base64url characters on a single line");
    }
    let mut bytes = Box::new([0u8; KEY_LEN]);
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut bytes[..]) {
        Ok(KEY_LEN) => Ok(Key { bytes }),
        Ok(_) | Err(_) => {
            wipe(&mut bytes[..]);
            Err("the key is not valid base64url of 32 bytes")
        }
    }
}

/// `[a-z0-9._:-]+`: domain names and hash purposes.
pub(crate) fn is_valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b':' | b'-')
        })
}

/// A key derived from the registry [`Key`] for one domain (see [`Key::domain`]).
///
/// Zeroed on drop; its `Debug` shows only the domain and the key ids.
pub struct DomainKey {
    domain: String,
    bytes: Box<[u8; KEY_LEN]>,
    key_id: KeyId,
    domain_key_id: KeyId,
}

impl DomainKey {
    /// The domain name this key was derived for.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The id of the registry key this was derived from (the parent's [`Key::key_id`]).
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The id of this derived key itself (same scheme as [`Key::key_id`], over the derived
    /// bytes).
    pub fn domain_key_id(&self) -> &KeyId {
        &self.domain_key_id
    }

    /// A [`Pseudonymiser`] keyed with this domain key. Build it once and reuse it: it holds
    /// the pre-keyed HMAC state, and it is cheap to clone and `Send + Sync`.
    pub fn pseudonymiser(&self) -> Pseudonymiser {
        Pseudonymiser::new(
            &self.bytes[..],
            &self.domain,
            &self.key_id,
            &self.domain_key_id,
        )
    }
}

impl Drop for DomainKey {
    fn drop(&mut self) {
        wipe(&mut self.bytes[..]);
    }
}

impl fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainKey")
            .field("domain", &self.domain)
            .field("key_id", &self.key_id.0)
            .field("domain_key_id", &self.domain_key_id.0)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXED: [u8; KEY_LEN] = [7u8; KEY_LEN];

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_fifo_as_key_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(made.success());
        let t0 = std::time::Instant::now();
        let e = Key::load(&p).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "no hang");
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn key_id_is_pinned_and_well_formed() {
        let id = Key::from_bytes(FIXED).key_id();
        assert_eq!(id.as_str(), "k1-22dbc3b1850462bf");
        assert_eq!(id.to_string(), id.0);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{}\"", id.0));
        let back: KeyId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
        let other = Key::from_bytes([8u8; KEY_LEN]).key_id();
        assert_ne!(id, other);
    }

    #[test]
    fn generated_keys_differ() {
        let a = Key::generate();
        let b = Key::generate();
        assert_ne!(a.key_id(), b.key_id());
        assert_ne!(*a.bytes, [0u8; KEY_LEN]);
    }

    #[test]
    fn debug_shows_only_key_id() {
        let key = Key::from_bytes(FIXED);
        let line = key.to_file_line();
        let encoded = line.trim_end().strip_prefix(KEY_FILE_PREFIX).unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains(key.key_id().as_str()), "{dbg}");
        assert!(!dbg.contains(encoded));
        assert!(!dbg.contains("7, 7"));
        let dk = key.domain("person").unwrap();
        let dbg = format!("{dk:?}");
        assert!(dbg.contains("person") && dbg.contains(key.key_id().as_str()));
        assert!(!dbg.contains("bytes"));
        let dk_encoded = URL_SAFE_NO_PAD.encode(&dk.bytes[..]);
        assert!(!dbg.contains(&dk_encoded));
    }

    #[test]
    fn write_new_creates_0600_file_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let key = Key::write_new(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(KEY_FILE_PREFIX) && text.ends_with('\n'));
        assert_eq!(text.len(), KEY_FILE_PREFIX.len() + 43 + 1);
        assert_eq!(text.lines().count(), 1);
        let loaded = Key::load(&path).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        assert_eq!(*loaded.bytes, *key.bytes);
    }

    #[test]
    fn write_new_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let first = Key::write_new(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Key::write_new(&path).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("already exists"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(Key::load(&path).unwrap().key_id(), first.key_id());

        // Not even an empty file or a dangling symlink is replaced.
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            Key::write_new(&empty),
            Err(KeyError::AlreadyExists { .. })
        ));
        let dangling = dir.path().join("dangling.key");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            Key::write_new(&dangling),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn load_refuses_group_or_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let key = Key::write_new(&path).unwrap();
        let content = std::fs::read_to_string(&path).unwrap();
        let encoded = content.trim_end().strip_prefix(KEY_FILE_PREFIX).unwrap();

        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            set_mode(&path, mode);
            let err = Key::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::InsecurePermissions { .. }),
                "{mode:o}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(!msg.contains(encoded), "{msg}");
            assert!(!format!("{err:?}").contains(encoded));
        }
        for mode in [0o600, 0o400] {
            set_mode(&path, mode);
            assert_eq!(Key::load(&path).unwrap().key_id(), key.key_id());
        }
    }

    #[test]
    fn load_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let key = Key::write_new(&path).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(Key::load(&link).unwrap().key_id(), key.key_id());
    }

    #[test]
    fn load_parses_strictly_and_never_quotes_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes(FIXED);
        let good = key.to_file_line();
        let encoded = good
            .trim_end()
            .strip_prefix(KEY_FILE_PREFIX)
            .unwrap()
            .to_string();

        let write = |name: &str, content: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            set_mode(&p, 0o600);
            p
        };
        // Accepted: the canonical line, and the same without its final newline.
        let p = write("good.key", &good);
        assert_eq!(Key::load(&p).unwrap().key_id(), key.key_id());
        let p = write("no-newline.key", good.trim_end());
        assert_eq!(Key::load(&p).unwrap().key_id(), key.key_id());

        let mut last_char_changed = encoded.clone();
        last_char_changed.pop();
        last_char_changed.push('x'); // non-zero trailing bits: not canonical base64
        let bad = [
            ("empty", String::new()),
            ("v2", format!("registrar-key-v2:{encoded}\n")),
            ("padded", format!("{KEY_FILE_PREFIX}{encoded}=\n")),
            ("short", format!("{KEY_FILE_PREFIX}{}\n", &encoded[..42])),
            ("two-lines", format!("{good}{good}")),
            ("crlf", format!("{KEY_FILE_PREFIX}{encoded}\r\n")),
            ("space", format!("{KEY_FILE_PREFIX} {encoded}\n")),
            ("trailing-space", format!("{KEY_FILE_PREFIX}{encoded} \n")),
            (
                "std-alphabet",
                format!("{KEY_FILE_PREFIX}{}+\n", &encoded[..42]),
            ),
            ("bits", format!("{KEY_FILE_PREFIX}{last_char_changed}\n")),
            ("huge", "a".repeat(5000)),
        ];
        for (name, content) in bad {
            let p = write(name, &content);
            let err = Key::load(&p).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{name}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(!msg.contains(&encoded[..20]), "{name}: {msg}");
            assert!(!format!("{err:?}").contains(&encoded[..20]), "{name}");
        }

        let err = Key::load(&dir.path().join("missing.key")).unwrap_err();
        assert!(
            matches!(err, KeyError::Io { action: "open", .. }),
            "{err:?}"
        );
        let err = Key::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::Malformed { .. } | KeyError::Io { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn domains_are_validated_and_independent() {
        let key = Key::from_bytes(FIXED);
        for bad in ["", "Person", "per son", "person/x", "é", "a\0b"] {
            let err = key.domain(bad).unwrap_err();
            assert!(matches!(err, KeyError::InvalidDomain { .. }), "{bad:?}");
        }
        let a = key.domain("person").unwrap();
        let b = key.domain("locator").unwrap();
        let a2 = key.domain("person").unwrap();
        assert_eq!(*a.bytes, *a2.bytes);
        assert_ne!(*a.bytes, *b.bytes);
        assert_ne!(*a.bytes, *key.bytes);
        assert_eq!(a.domain(), "person");
        assert_eq!(a.key_id(), &key.key_id());
        assert_eq!(b.key_id(), &key.key_id());
        assert_ne!(a.domain_key_id(), b.domain_key_id());
        assert_ne!(a.domain_key_id(), &key.key_id());
        assert!(a.domain_key_id().as_str().starts_with("k1-"));
        assert_eq!(a.domain_key_id(), a2.domain_key_id());
        key.domain("dicom.uid:v1_x-y").unwrap();
    }

    #[test]
    fn hkdf_matches_the_documented_construction() {
        // HKDF-SHA256 with a 32-byte output is T(1) = HMAC(PRK, info || 0x01) where
        // PRK = HMAC(salt, ikm): recompute it with plain HMAC.
        let key = Key::from_bytes(FIXED);
        let mut extract = <Hmac<Sha256> as Mac>::new_from_slice(HKDF_SALT).unwrap();
        extract.update(&FIXED);
        let prk = extract.finalize().into_bytes();
        let mut expand = <Hmac<Sha256> as Mac>::new_from_slice(&prk).unwrap();
        expand.update(b"domain:person");
        expand.update(&[1]);
        let expected = expand.finalize().into_bytes();
        assert_eq!(&key.domain("person").unwrap().bytes[..], &expected[..]);
    }

    #[test]
    fn wipe_zeroes() {
        let mut buf = [0xAAu8; 40];
        wipe(&mut buf);
        assert_eq!(buf, [0u8; 40]);
    }
}
