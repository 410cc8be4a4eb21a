//! Output files that appear whole or not at all.
//!
//! On Linux a file is written unnamed (`O_TMPFILE` in its folder) and given its name when it
//! is complete (`linkat`): one directory update per file, no temporary name to clean up after
//! an interrupted run (an unnamed file vanishes with the process). Where the file system does
//! not support unnamed files (checked once per run), and on other systems, the file is written
//! under a temporary name next to its destination and renamed into place. Either way a reader
//! never sees a partial file. No fsync: durability against power loss is the file system's.

use std::fs;
use std::io;
use std::path::Path;

use super::write::WriteError;

/// How files are made complete in an output tree.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutputFiles {
    unnamed: bool,
}

/// Opens a new file in `dir` with `open`; the folder usually exists already, so it is
/// created only when the file cannot be (saves a mkdir and a stat per file).
fn create_in(dir: &Path, open: impl Fn() -> io::Result<fs::File>) -> io::Result<fs::File> {
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            open()
        }
        other => other,
    }
}

impl OutputFiles {
    /// Checks once whether unnamed files can be written and linked in `dir` (an existing
    /// folder of the output tree).
    pub(crate) fn probe(dir: &Path) -> Self {
        OutputFiles {
            unnamed: unnamed::probe(dir),
        }
    }

    /// Writes `dest` with `write` (which writes large pieces: the file is not buffered); on
    /// failure nothing is left at `dest` (an earlier file there stays as it was). The folder
    /// is created when missing.
    pub(crate) fn write(
        self,
        dest: &Path,
        write: impl FnOnce(&mut fs::File) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let dir = dest.parent().expect("output paths have a parent");
        if self.unnamed {
            let mut file = create_in(dir, || unnamed::create(dir))?;
            write(&mut file)?;
            return Ok(unnamed::link(&file, dest)?);
        }
        let tmp = temporary_name(dest);
        let result = (|| {
            let mut file = create_in(dir, || fs::File::create(&tmp))?;
            write(&mut file)?;
            fs::rename(&tmp, dest)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// `.<name>.part-<pid>-<thread>` next to `dest`.
fn temporary_name(dest: &Path) -> std::path::PathBuf {
    let name = dest
        .file_name()
        .expect("output paths have a name")
        .to_string_lossy();
    dest.with_file_name(format!(
        ".{name}.part-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ))
}

#[cfg(target_os = "linux")]
mod unnamed {
    use std::ffi::CString;
    use std::fs;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// An unnamed regular file in `dir`.
    pub(super) fn create(dir: &Path) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o666)
            .open(dir)
    }

    /// Whether `linkat(fd, "", AT_EMPTY_PATH)` works here (Linux 6.10 allows it for the
    /// opener of the file; older kernels want CAP_DAC_READ_SEARCH): 0 unknown, 1 yes, 2 no.
    static EMPTY_PATH: AtomicU8 = AtomicU8::new(0);

    /// Links an open file at `dest`: by the descriptor itself where the kernel allows it, else
    /// by its `/proc/self/fd` name (std's `hard_link` follows neither).
    fn link_at(file: &fs::File, dest: &Path) -> io::Result<()> {
        let to = CString::new(dest.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        if EMPTY_PATH.load(Ordering::Relaxed) != 2 {
            match by_descriptor(file, &to) {
                Ok(()) => {
                    EMPTY_PATH.store(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::ENOENT | libc::EPERM | libc::EINVAL)
                        if EMPTY_PATH.load(Ordering::Relaxed) == 0 =>
                    {
                        EMPTY_PATH.store(2, Ordering::Relaxed);
                    }
                    _ => return Err(e),
                },
            }
        }
        by_proc_name(file, &to)
    }

    /// `linkat(fd, "", AT_FDCWD, to, AT_EMPTY_PATH)`.
    #[allow(unsafe_code)]
    fn by_descriptor(file: &fs::File, to: &CString) -> io::Result<()> {
        // SAFETY: the path arguments are valid NUL-terminated strings that outlive the call;
        // the descriptor is open.
        let rc = unsafe {
            libc::linkat(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        result(rc)
    }

    /// `linkat(AT_FDCWD, "/proc/self/fd/<fd>", AT_FDCWD, to, AT_SYMLINK_FOLLOW)`.
    #[allow(unsafe_code)]
    fn by_proc_name(file: &fs::File, to: &CString) -> io::Result<()> {
        let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("no NUL in a number");
        // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        result(rc)
    }

    /// A libc return code as a result.
    fn result(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[cfg(test)]
    #[test]
    fn both_ways_of_linking_give_the_written_file() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        for (name, way) in [
            (
                "a",
                by_descriptor as fn(&fs::File, &CString) -> io::Result<()>,
            ),
            ("b", by_proc_name),
        ] {
            let mut f = create(dir.path()).unwrap();
            f.write_all(name.as_bytes()).unwrap();
            let dest = dir.path().join(name);
            let to = CString::new(dest.as_os_str().as_bytes()).unwrap();
            match way(&f, &to) {
                Ok(()) => assert_eq!(fs::read(&dest).unwrap(), name.as_bytes()),
                // Kernels before 6.10 let only privileged callers link by descriptor.
                Err(e) if name == "a" => {
                    assert!(
                        matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM)),
                        "{e}"
                    );
                    continue;
                }
                Err(e) => panic!("{name}: {e}"),
            }
            // An existing name is refused, not replaced.
            let again = create(dir.path()).unwrap();
            assert_eq!(
                way(&again, &to).map_err(|e| e.kind()),
                Err(io::ErrorKind::AlreadyExists)
            );
        }
    }

    /// Gives the complete file its name. An existing file of that name is replaced atomically
    /// (linked under a temporary name, renamed over it).
    pub(super) fn link(file: &fs::File, dest: &Path) -> io::Result<()> {
        match link_at(file, dest) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let tmp = super::temporary_name(dest);
                let _ = fs::remove_file(&tmp);
                link_at(file, &tmp)?;
                fs::rename(&tmp, dest).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            }
            other => other,
        }
    }

    /// Whether an unnamed file can be created and linked in `dir`.
    pub(super) fn probe(dir: &Path) -> bool {
        let name = dir.join(format!(".registrar-probe-{}", std::process::id()));
        let _ = fs::remove_file(&name);
        let ok = create(dir).and_then(|f| link_at(&f, &name)).is_ok();
        let _ = fs::remove_file(&name);
        ok
    }
}

#[cfg(not(target_os = "linux"))]
mod unnamed {
    use std::fs;
    use std::io;
    use std::path::Path;

    pub(super) fn create(_dir: &Path) -> io::Result<fs::File> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(super) fn link(_file: &fs::File, _dest: &Path) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(super) fn probe(_dir: &Path) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn whole_or_nothing_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let probed = OutputFiles::probe(dir.path());
        #[cfg(target_os = "linux")]
        assert!(probed.unnamed, "tmpfs and ext4 support O_TMPFILE");
        for (i, mode) in [probed, OutputFiles { unnamed: false }]
            .into_iter()
            .enumerate()
        {
            let sub = dir.path().join(format!("m{i}/a/b"));
            let dest = sub.join("x.dcm");
            // A missing folder is created; the file appears with its content.
            mode.write(&dest, |w| Ok(w.write_all(b"first")?)).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"first");
            // An existing file is replaced.
            mode.write(&dest, |w| Ok(w.write_all(b"second")?)).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"second");
            // A failed write leaves the earlier file and no temporary file.
            let err = mode.write(&dest, |w| {
                w.write_all(b"partial")?;
                Err(WriteError::Encode("refused".into()))
            });
            assert!(err.is_err());
            assert_eq!(fs::read(&dest).unwrap(), b"second");
            assert_eq!(files(&sub), vec!["x.dcm".to_string()]);
        }
        // No probe file is left behind.
        assert_eq!(files(dir.path()), vec!["m0".to_string(), "m1".to_string()]);
    }
}
