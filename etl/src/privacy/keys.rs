//! Which key a command uses: `--key-file` or `REGISTRAR_KEY_FILE`, never a database value.

use anyhow::{bail, Context, Result};
use registrar_anonymizer::key::Key;
use registrar_anonymizer::pseudonym::Pseudonymiser;
use std::path::{Path, PathBuf};

/// The default pseudonymisation domain of a registry.
pub const DEFAULT_DOMAIN: &str = "registry";

/// Key and domain options shared by every command that pseudonymises.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyOpts {
    /// The registry key file (made by `registrar key new`; mode 0600).
    #[arg(long, env = "REGISTRAR_KEY_FILE", value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// Pseudonymisation domain: `registry` for this registry, a study export name
    /// (e.g. `study:neoadj-2019`) so its pseudonyms cannot be joined with another's, or a
    /// federated network name shared by the registries of that network.
    #[arg(long, env = "REGISTRAR_DOMAIN", default_value = DEFAULT_DOMAIN, global = true)]
    pub domain: String,
    /// During a key rotation: the previous key, used to find persons already in the person
    /// map and bridge them to the new key's pseudonyms. May be repeated.
    #[arg(long, value_name = "FILE", global = true)]
    pub previous_key_file: Vec<PathBuf>,
}

/// A loaded key, reduced to what commands need.
pub struct Keys {
    pub current: Pseudonymiser,
    pub previous: Vec<Pseudonymiser>,
}

impl KeyOpts {
    /// The key file path, or a clear error saying how to provide one.
    pub fn key_path(&self) -> Result<&Path> {
        match &self.key_file {
            Some(p) => Ok(p),
            None => bail!(
                "no key: pass --key-file FILE or set REGISTRAR_KEY_FILE (create a key with \
                 `registrar key new --out FILE` and keep it outside the database host's backups)"
            ),
        }
    }

    /// Load the current (and previous) keys and derive this domain's pseudonymisers.
    pub fn load(&self) -> Result<Keys> {
        let current = load_pseudonymiser(self.key_path()?, &self.domain)?;
        let mut previous = Vec::new();
        for p in &self.previous_key_file {
            let prev = load_pseudonymiser(p, &self.domain)?;
            if prev.key_id() == current.key_id() {
                bail!("--previous-key-file {} is the current key", p.display());
            }
            previous.push(prev);
        }
        Ok(Keys { current, previous })
    }
}

/// Once a key is in memory, this process must not leave it in a core dump: core dumps are
/// disabled (RLIMIT_CORE = 0) and the process is marked non-dumpable, which also keeps other
/// processes of the same user from attaching to it or reading its memory.
fn forbid_core_dumps() {
    // SAFETY: plain system calls on this process with valid arguments; failure is harmless.
    unsafe {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn load_pseudonymiser(path: &Path, domain: &str) -> Result<Pseudonymiser> {
    forbid_core_dumps();
    let key = Key::load(path).context("cannot use the key file")?;
    let dk = key
        .domain(domain)
        .with_context(|| format!("invalid pseudonymisation domain `{domain}`"))?;
    Ok(dk.pseudonymiser())
}

/// Refuse to work with a key (or pseudonym domain) other than the registry's before anything
/// is read or written: under another key every person would get a second pseudonym and a
/// second person_id. The first key a registry sees becomes its key; `registrar key rotate`
/// changes it.
pub fn check_registry_key(db: &mut impl postgres::GenericClient, keys: &Keys) -> Result<()> {
    use crate::ledger::Ledger;
    let key_id = keys.current.key_id().as_str();
    let domain = keys.current.domain();
    let known = Ledger::registry_keys(db)?;
    if known.is_empty() {
        return Ledger::set_registry_key(db, key_id, domain);
    }
    let Some((cur_key, cur_domain, _)) = known.iter().find(|k| k.2) else {
        bail!("the registry records keys but none as current; run `registrar key rotate`");
    };
    if cur_key == key_id && cur_domain == domain {
        return Ok(());
    }
    let retired = known
        .iter()
        .any(|(k, d, current)| !current && k == key_id && d == domain);
    if retired {
        bail!(
            "the key file holds key {key_id}, which the registry retired in a key rotation; its \
             current key is {cur_key}: use that key (--key-file), with --previous-key-file for \
             the old one while the rotation lasts. Nothing was read or written."
        );
    }
    if cur_key == key_id {
        bail!(
            "the registry's pseudonyms are in domain `{cur_domain}`, this run asks for \
             `{domain}`: every person would be pseudonymised anew. Use --domain {cur_domain} \
             (or [registry] domain). Nothing was read or written."
        );
    }
    bail!(
        "the key file holds key {key_id}, but the registry's key is {cur_key}: importing with \
         it would give every person a second pseudonym and person_id. Put the registry's key \
         back; to change keys, run `registrar key rotate --key-file NEW --previous-key-file OLD` \
         first. Nothing was read or written."
    )
}

/// Read a small secret file (a signing key): it must be a regular file (a FIFO is refused at
/// once, never waited on) that only its owner can read. Errors name the path, never the
/// content.
pub fn read_secret_file(path: &Path, what: &str) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open the {what} file {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("the {what} file {} is not a regular file", path.display());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "the {what} file {} can be read by others (mode {mode:o}): chmod 600 it",
            path.display()
        );
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    Ok(text)
}

/// Write a new secret file, mode 0600, refusing to overwrite anything.
pub fn write_secret_file(path: &Path, what: &str, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create the {what} file {} (it must not exist yet)",
                path.display()
            )
        })?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}
