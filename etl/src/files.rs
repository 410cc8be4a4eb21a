//! Small file helpers shared by the commands that write reports and exports.
//!
//! Reports and exports are mode 0640 (owner and group, never others), whatever the umask:
//! they hold counts and pseudonymous data that only the registry's team reads.

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every report and export file registrar writes.
pub const REPORT_MODE: u32 = 0o640;

/// Create (or truncate) a report or export file, mode [`REPORT_MODE`].
pub fn create_report(dest: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(REPORT_MODE)
        .open(dest)?;
    f.set_permissions(std::fs::Permissions::from_mode(REPORT_MODE))?;
    Ok(f)
}

/// Write `bytes` to `dest` so that readers see the old file or the whole new one, never a
/// part: write a hidden sibling (mode [`REPORT_MODE`]), then rename it over `dest`.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .with_context(|| format!("{}: not a file path", dest.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.part-{}", std::process::id()));
    let result = create_report(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", dest.display()))
}
