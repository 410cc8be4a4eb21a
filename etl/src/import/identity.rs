//! What a file is: its source and its path relative to the root it was imported from (the
//! folder given on the command line, a nightly source's folder), never its bare name; and,
//! for a declared series (`[source] series = "rott2_*.csv"`), its place among the series'
//! versions.

use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// A file to import, and where it is imported from.
#[derive(Debug, Clone)]
pub struct FileInput {
    pub path: PathBuf,
    /// The folder the file's identity is relative to.
    pub root: PathBuf,
    /// The source: the mapping's name (command line) or the nightly source's name.
    pub source: String,
    /// How messages on the terminal name the file (never stored).
    pub label: String,
    /// The largest cell the file may hold, in bytes (a larger one rejects its row).
    pub max_cell_bytes: u64,
}

impl FileInput {
    /// The file's path relative to its root, with `/` between folders. Both are resolved
    /// first (symbolic links, `..`), so the same file always has the same relative path.
    pub fn relative_path(&self) -> Result<String> {
        let root = self
            .root
            .canonicalize()
            .with_context(|| format!("the import root {} cannot be opened", self.root.display()))?;
        let path = self
            .path
            .canonicalize()
            .with_context(|| format!("cannot open {}", self.label))?;
        let rel = path.strip_prefix(&root).map_err(|_| {
            anyhow::anyhow!(
                "{} lies outside the import root {}: a file's identity is its path relative to the \
                 root, so give --root (a folder that holds every input)",
                self.label,
                self.root.display()
            )
        })?;
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().to_string()),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            bail!("{} is a folder, not a file", self.label);
        }
        Ok(parts.join("/"))
    }
}

/// The locator hashed into a file's identity.
pub fn locator(source: &str, relative_path: &str) -> String {
    format!("file:{source}/{relative_path}")
}

/// The locator earlier registrar versions used: mapping name and bare file name.
pub fn legacy_locator(mapping: &str, relative_path: &str) -> String {
    let name = relative_path.rsplit('/').next().unwrap_or(relative_path);
    format!("{mapping}/{name}")
}

/// The folder part of a relative path ("" at the root).
pub fn folder_of(relative_path: &str) -> &str {
    relative_path.rsplit_once('/').map(|(f, _)| f).unwrap_or("")
}

/// What the `*` of a series pattern matched in a file name; `None` when the name is not a
/// member of the series.
pub fn series_label<'n>(pattern: &str, name: &'n str) -> Option<&'n str> {
    let (head, tail) = pattern.split_once('*')?;
    let mid = name.strip_prefix(head)?.strip_suffix(tail)?;
    (!mid.is_empty()).then_some(mid)
}

/// Whether a series label can order versions: digits and the separators of dates and version
/// numbers (`2026-12`, `20261201`, `v3`, `1.2`), so that it never holds anything else.
pub fn valid_label(label: &str) -> bool {
    let body = label.strip_prefix(['v', 'V']).unwrap_or(label);
    body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || b"-_.".contains(&b))
}

/// A key whose byte order is the natural order of labels: digit runs compare as numbers
/// (`9` before `10`), separators are ignored.
pub fn natural_key(label: &str) -> String {
    let body = label.strip_prefix(['v', 'V']).unwrap_or(label);
    let mut out = String::from("s");
    for run in body.split(|c: char| !c.is_ascii_digit()) {
        if run.is_empty() {
            continue;
        }
        let n = run.trim_start_matches('0');
        // Length first, then the digits: any number of digits orders correctly.
        out.push_str(&format!("{:03}{n}.", n.len()));
    }
    out
}

/// The version key of a unit that is not a series member: the order of import.
pub fn import_order_key(source_file_id: i64) -> String {
    format!("i{source_file_id:019}")
}

/// Whether a file's relative path matches a nightly source's pattern: `*` matches any run of
/// characters within one folder level, `**/` any number of folders (also none).
pub fn pattern_matches(pattern: &str, relative_path: &str) -> bool {
    fn seg(pattern: &str, name: &str) -> bool {
        let parts: Vec<&str> = pattern.split('*').collect();
        if parts.len() == 1 {
            return pattern == name;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !name.starts_with(first)
            || !name.ends_with(last)
            || name.len() < first.len() + last.len()
        {
            return false;
        }
        let mut rest = &name[first.len()..name.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }
    fn go(p: &[&str], n: &[&str]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(&"**"), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(ps), Some(ns)) => seg(ps, ns) && go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = relative_path.split('/').collect();
    go(&p, &n)
}

/// What [`find_files`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// (path, relative path), sorted by relative path.
    pub files: Vec<(PathBuf, String)>,
    /// What was passed over, and why (never a path).
    pub passed_over: Vec<String>,
}

/// The files under `root` whose relative path matches `pattern`, sorted by relative path;
/// symbolic links are followed to files, never into loops. Also says what was passed over
/// and why (a dangling link, a loop, a folder that cannot be opened).
pub fn find_files(root: &Path, pattern: &str) -> Result<Found> {
    let mut files = Vec::new();
    let mut passed = Vec::new();
    let recursive = pattern.contains('/');
    let mut seen_dirs = std::collections::HashSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let real = match dir.canonicalize() {
            Ok(r) => r,
            // The source folder itself: nothing can be read, which is an error, not a pass.
            Err(_) if rel.is_empty() => bail!("its folder does not exist or cannot be opened"),
            Err(_) => {
                passed.push("a folder that cannot be opened".into());
                continue;
            }
        };
        if !seen_dirs.insert(real) {
            passed.push("a folder link that loops".into());
            continue;
        }
        let entries = std::fs::read_dir(&dir).with_context(|| {
            if rel.is_empty() {
                "the source folder cannot be read".to_string()
            } else {
                "a folder of the source cannot be read".to_string()
            }
        })?;
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = e.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    if pattern_matches(pattern, &child_rel) {
                        files.push((path, child_rel));
                    }
                }
                Ok(m) if m.is_dir() => {
                    if recursive && !name.starts_with('.') {
                        stack.push((path, child_rel));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if pattern_matches(pattern, &child_rel) {
                        passed.push("a link to nothing (dangling)".into());
                    }
                }
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(Found {
        files,
        passed_over: passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_labels_order_naturally() {
        assert_eq!(
            series_label("rott2_*.csv", "rott2_2026-11.csv"),
            Some("2026-11")
        );
        assert_eq!(series_label("rott2_*.csv", "rott2_.csv"), None);
        assert_eq!(series_label("rott2_*.csv", "other.csv"), None);
        assert!(valid_label("2026-11") && valid_label("20261201") && valid_label("v3"));
        assert!(!valid_label("jansen") && !valid_label("2026-11-final") && !valid_label("-"));
        assert!(natural_key("2026-9") < natural_key("2026-10"));
        assert!(natural_key("2026-11") < natural_key("2026-12"));
        assert!(natural_key("9") < natural_key("10"));
        assert!(natural_key("v2") < natural_key("v10"));
        assert_eq!(natural_key("2026-01"), natural_key("2026-1"));
        assert!(import_order_key(9) < import_order_key(10));
    }

    #[test]
    fn patterns_match_relative_paths() {
        assert!(pattern_matches("*.csv", "lab.csv"));
        assert!(!pattern_matches("*.csv", "site/lab.csv"));
        assert!(pattern_matches("**/lab.csv", "lab.csv"));
        assert!(pattern_matches("**/lab.csv", "site-a/lab.csv"));
        assert!(pattern_matches("**/lab.csv", "a/b/lab.csv"));
        assert!(pattern_matches("*/lab*.csv", "site-b/lab_2026.csv"));
        assert!(!pattern_matches("*/lab*.csv", "lab_2026.csv"));
        assert!(pattern_matches(
            "measurements*.csv",
            "measurements_2026-11-26.csv"
        ));
        assert!(!pattern_matches("*.csv", "x.csv.bak"));
        assert!(pattern_matches("a*b*c", "a-x-b-y-c"));
        assert!(!pattern_matches("a*b*c", "a-x-c"));
    }

    #[test]
    fn relative_paths_are_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        for s in ["siteA", "siteB"] {
            std::fs::create_dir(dir.path().join(s)).unwrap();
            std::fs::write(dir.path().join(s).join("gbsg2.csv"), s).unwrap();
        }
        let input = |p: &str| FileInput {
            path: dir.path().join(p),
            root: dir.path().to_path_buf(),
            source: "gbsg2".into(),
            label: p.into(),
            max_cell_bytes: crate::sources::DEFAULT_MAX_CELL_BYTES,
        };
        assert_eq!(
            input("siteA/gbsg2.csv").relative_path().unwrap(),
            "siteA/gbsg2.csv"
        );
        assert_eq!(
            input("siteB/../siteB/gbsg2.csv").relative_path().unwrap(),
            "siteB/gbsg2.csv"
        );
        let outside = FileInput {
            root: dir.path().join("siteA"),
            ..input("siteB/gbsg2.csv")
        };
        assert!(outside.relative_path().is_err());
        assert_eq!(folder_of("siteA/gbsg2.csv"), "siteA");
        assert_eq!(folder_of("gbsg2.csv"), "");
        assert_eq!(
            legacy_locator("gbsg2", "siteA/gbsg2.csv"),
            "gbsg2/gbsg2.csv"
        );
    }
}
