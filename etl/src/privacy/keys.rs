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
