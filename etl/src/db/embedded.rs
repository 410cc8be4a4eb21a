//! The embedded PostgreSQL cluster used when `DATABASE_URL` is unset.
//!
//! registrar finds the installed server binaries (`pg_config --bindir`, then
//! `/usr/lib/postgresql/*/bin`, newest first), runs `initdb` once into a private data
//! directory, and starts the server listening only on a unix socket inside that directory
//! (`listen_addresses = ''`), so it never clashes with another server's TCP port and only the
//! directory's owner (and root) can connect. Later runs reuse the running cluster;
//! `registrar db stop` stops it.
//!
//! `initdb` and `postgres` refuse to run as root. When registrar runs as root (as CI does), the
//! cluster runs as the unprivileged `postgres` system user, which owns the data directory.
//!
//! Starting is serialised with an exclusive lock on `<data-dir>.lock`, so parallel processes
//! (tests, a demo started twice) never race on `initdb` or `pg_ctl start`.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The superuser role `initdb` creates in an embedded cluster.
pub const SUPERUSER: &str = "registrar";
/// The database registrar uses inside the embedded cluster.
pub const DEFAULT_DATABASE: &str = "registrar";
/// Port number used only to name the unix socket (`.s.PGSQL.5432`); no TCP port is opened.
pub const SOCKET_PORT: u16 = 5432;

/// The OS account the server processes run as.
#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
    name: String,
}

/// A private PostgreSQL cluster in a data directory.
#[derive(Debug, Clone)]
pub struct EmbeddedCluster {
    data_dir: PathBuf,
    /// Found when first needed: a running cluster is used without its binaries.
    bin_dir: std::sync::OnceLock<PathBuf>,
    run_as: Option<RunAs>,
}

/// The default data directory: `$XDG_DATA_HOME/registrar/pgdata` (or
/// `~/.local/share/registrar/pgdata`); for root, `/var/lib/registrar/pgdata`, because the
/// unprivileged server user cannot enter root's home directory.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/registrar/pgdata");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("registrar").join("pgdata")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Find the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("REGISTRAR_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "REGISTRAR_PG_BINDIR={} does not contain initdb, pg_ctl and postgres",
            dir.display()
        );
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        return Ok(dir);
    }
    bail!(
        "no PostgreSQL server binaries found: looked for initdb, pg_ctl and postgres in \
         `pg_config --bindir` and /usr/lib/postgresql/*/bin.\n\
         Install the server (Debian/Ubuntu: `apt-get install postgresql`; Fedora: \
         `dnf install postgresql-server`; macOS: `brew install postgresql@15`), set \
         REGISTRAR_PG_BINDIR to its bin directory, or set DATABASE_URL to use an existing server."
    )
}

fn lookup_user(name: &str) -> Result<RunAs> {
    let cname = std::ffi::CString::new(name)?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy out at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        bail!(
            "registrar runs as root, and PostgreSQL refuses to run as root: the embedded cluster \
             needs the unprivileged system user `{name}` (create it, e.g. `useradd --system {name}`, \
             or run registrar as a normal user, or set DATABASE_URL)"
        );
    }
    // SAFETY: pw is non-null and points at a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(RunAs {
        uid,
        gid,
        name: name.to_string(),
    })
}

impl EmbeddedCluster {
    /// Describe the cluster in `data_dir` (nothing is created until [`Self::ensure_running`]).
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let data_dir = data_dir.into();
        let data_dir = if data_dir.is_absolute() {
            data_dir
        } else {
            std::env::current_dir()?.join(data_dir)
        };
        let run_as = if is_root() {
            let user = std::env::var("REGISTRAR_PG_USER").unwrap_or_else(|_| "postgres".into());
            Some(lookup_user(&user)?)
        } else {
            None
        };
        Ok(Self {
            data_dir,
            bin_dir: std::sync::OnceLock::new(),
            run_as,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the unix socket (the data directory itself).
    pub fn socket_dir(&self) -> &Path {
        &self.data_dir
    }

    fn initialised(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
    }

    fn bin_dir(&self) -> Result<&Path> {
        if let Some(d) = self.bin_dir.get() {
            return Ok(d);
        }
        let found = find_bin_dir()?;
        Ok(self.bin_dir.get_or_init(|| found))
    }

    fn command(&self, program: &str) -> Result<Command> {
        let mut cmd = Command::new(self.bin_dir()?.join(program));
        cmd.current_dir("/").stdin(Stdio::null());
        // Keep the server's environment small and predictable.
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some(r) = &self.run_as {
            cmd.uid(r.uid).gid(r.gid);
            cmd.env("HOME", "/")
                .env("USER", &r.name)
                .env("LOGNAME", &r.name);
        }
        Ok(cmd)
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
        let out = cmd
            .output()
            .with_context(|| format!("could not run {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    fn lock(&self) -> Result<File> {
        let parent = self
            .data_dir
            .parent()
            .ok_or_else(|| anyhow!("data directory {} has no parent", self.data_dir.display()))?;
        fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
        let lock_path = self.data_dir.with_extension("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("could not open lock file {}", lock_path.display()))?;
        f.lock()
            .with_context(|| format!("could not lock {}", lock_path.display()))?;
        Ok(f)
    }

    fn prepare_dirs(&self) -> Result<()> {
        fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("could not create {}", self.data_dir.display()))?;
        fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(0o700))?;
        if let Some(r) = &self.run_as {
            std::os::unix::fs::chown(&self.data_dir, Some(r.uid), Some(r.gid)).with_context(
                || {
                    format!(
                        "could not give {} to user {}",
                        self.data_dir.display(),
                        r.name
                    )
                },
            )?;
            // The server user must be able to walk down to its data directory.
            let mut p = self.data_dir.parent();
            while let Some(dir) = p {
                let mode = fs::metadata(dir)?.permissions().mode();
                if mode & 0o001 == 0 {
                    bail!(
                        "the server user {} cannot enter {} (mode {:o}); choose a data \
                         directory outside it with --data-dir",
                        r.name,
                        dir.display(),
                        mode & 0o7777
                    );
                }
                p = dir.parent();
            }
        }
        Ok(())
    }

    fn initdb(&self) -> Result<()> {
        self.prepare_dirs()?;
        let mut cmd = self.command("initdb")?;
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg("--no-instructions");
        self.run(cmd, "initdb")?;
        // Unix socket only, inside the (mode 0700) data directory.
        let conf = format!(
            "\n# added by registrar: private cluster, unix socket only\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             port = {SOCKET_PORT}\n\
             max_connections = 200\n\
             logging_collector = off\n",
            self.data_dir.display().to_string().replace('\'', "''")
        );
        let conf_path = self.data_dir.join("postgresql.conf");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .with_context(|| format!("could not open {}", conf_path.display()))?;
        std::io::Write::write_all(&mut f, conf.as_bytes())?;
        Ok(())
    }

    /// Whether the server of this data directory is running.
    pub fn is_running(&self) -> Result<bool> {
        if !self.initialised() {
            return Ok(false);
        }
        let mut cmd = self.command("pg_ctl")?;
        cmd.arg("status").arg("-D").arg(&self.data_dir);
        let out = cmd.output().context("could not run pg_ctl status")?;
        Ok(out.status.success())
    }

    /// Initialise (once) and start (if stopped) the cluster, and make sure the
    /// `registrar` database exists. Returns the connection target.
    pub fn ensure_running(&self) -> Result<super::DbTarget> {
        if let Some((target, _)) = self.connect_if_running() {
            return Ok(target);
        }
        let _lock = self.lock()?;
        if !self.initialised() {
            eprintln!(
                "registrar: creating the embedded PostgreSQL cluster in {}",
                self.data_dir.display()
            );
            self.initdb()?;
        }
        if !self.is_running()? {
            let mut cmd = self.command("pg_ctl")?;
            cmd.arg("start")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(self.data_dir.join("server.log"))
                .args(["-w", "-t", "120", "-s"]);
            self.run(cmd, "pg_ctl start").with_context(|| {
                format!(
                    "the embedded PostgreSQL did not start; see {}",
                    self.data_dir.join("server.log").display()
                )
            })?;
        }
        let target = self.target();
        super::ensure_database(&target, DEFAULT_DATABASE)?;
        Ok(target.with_dbname(DEFAULT_DATABASE))
    }

    /// A client on the `registrar` database when the server is up and the database exists
    /// (the usual case: no lock, no pg_config, no pg_ctl); `None` otherwise.
    pub fn connect_if_running(&self) -> Option<(super::DbTarget, postgres::Client)> {
        if !self.initialised() {
            return None;
        }
        let target = self.target().with_dbname(DEFAULT_DATABASE);
        let client = target.client().ok()?;
        Some((target, client))
    }

    /// The connection target (database `postgres`) of this cluster.
    pub fn target(&self) -> super::DbTarget {
        super::DbTarget::Socket {
            dir: self.socket_dir().to_path_buf(),
            port: SOCKET_PORT,
            user: SUPERUSER.to_string(),
            dbname: "postgres".to_string(),
        }
    }

    /// Stop the server (fast shutdown). Returns false if it was not running.
    pub fn stop(&self) -> Result<bool> {
        let _lock = self.lock()?;
        if !self.is_running()? {
            return Ok(false);
        }
        let mut cmd = self.command("pg_ctl")?;
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-s"]);
        self.run(cmd, "pg_ctl stop")?;
        Ok(true)
    }
}
