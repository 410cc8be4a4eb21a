//! Small file helpers shared by the commands that write reports and exports.

use anyhow::{Context, Result};
use std::path::Path;

/// Write `bytes` to `dest` so that readers see the old file or the whole new one, never a
/// part: write a hidden sibling, then rename it over `dest`.
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
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", dest.display()))
}
