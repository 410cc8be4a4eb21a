//! Pseudonymising a directory tree in parallel.
//!
//! `jobs` worker threads (`std::thread::scope`) take the next file of the input tree in turn
//! (walked depth first in name order, symbolic links to directories not followed), so memory
//! stays flat whatever the number of files: at most `jobs` files are in memory (only the head
//! of an image whose pixel data ends the file: the kernel copies the pixel data), plus one
//! folder's listing and one 16-byte entry per output file for duplicate detection. Each worker
//! reads a file, pseudonymises it and writes the result so that it appears complete or not at
//! all ([`outfile`](super::outfile)). The input tree is only read.
//!
//! Output layout: `<out>/<study uid>/<series uid>/<sop instance uid>.dcm` with the pseudonymous
//! UIDs, so paths reveal nothing. Files that cannot be pseudonymised are copied unchanged to
//! the quarantine folder, `<quarantine>/<locator hash>.dcm`, and listed in
//! `<quarantine>/report.jsonl` with a reason. That folder holds identifying data and stays
//! with the key holder: it lies outside the output tree (by default `<out>.quarantine`, a
//! sibling; one inside the output, or overlapping the input, is refused), its folders are
//! mode 0700 and its files 0600, whatever the umask.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use serde::Serialize;

use super::deid::{
    DicomPseudonymiser, Outcome, Quarantine, QuarantineReason, RuleCounts, SkipReason,
};
use super::outfile::OutputFiles;
use super::write::WriteError;

/// The quarantine folder's name under the output directory in trees made by earlier
/// versions (skipped when a tree is read).
pub const QUARANTINE_DIR: &str = "quarantine";

/// The default quarantine folder of an output directory: its sibling `<out>.quarantine`.
pub fn default_quarantine(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "dicom".into());
    name.push(".quarantine");
    output.with_file_name(name)
}
/// The quarantine report's name in the quarantine folder.
pub const QUARANTINE_REPORT: &str = "report.jsonl";

/// What became of an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Pseudonymised and written to the output tree.
    Pseudonymised,
    /// Not written, with a reason (already pseudonymised, a duplicate, unchanged since the
    /// last incremental run, a symbolic link that is not followed or leads nowhere).
    Skipped,
    /// Copied unchanged to the quarantine folder (or, for `read_error`, not even that), with
    /// a reason.
    Quarantined,
}

/// Why an entry of the input tree was not read (besides [`SkipReason`]s of the object).
pub mod skip {
    /// The input has not changed since the incremental run that pseudonymised it.
    pub const UNCHANGED_INPUT: &str = "unchanged_input";
    /// A symbolic link to a directory: not followed (a tree is read as it lies, and a link
    /// back up would loop).
    pub const SYMLINK_TO_DIRECTORY: &str = "symlink_to_directory";
    /// A symbolic link whose target does not exist.
    pub const DANGLING_SYMLINK: &str = "dangling_symlink";
    /// A symbolic link that leads back to itself (too many levels of links).
    pub const SYMLINK_LOOP: &str = "symlink_loop";
    /// Neither a file nor a directory (a socket, a pipe, a device).
    pub const NOT_A_FILE: &str = "not_a_regular_file";
}

/// What happened to one input file. Holds no path and no value: the source is the keyed
/// locator hash of `"dicom/" + its path relative to the input directory`.
#[derive(Clone, Debug, Serialize)]
pub struct FileRecord {
    /// `locator_hash("dicom/<relative path>")`.
    pub source: String,
    /// What became of it.
    pub status: FileStatus,
    /// The reason code for skipped and quarantined files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Detail for quarantined files (tags and offsets, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The output path relative to the output directory (pseudonymised file) or to the
    /// quarantine folder (quarantined copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Counts per rule (pseudonymised files).
    pub counts: RuleCounts,
}

/// Totals of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchSummary {
    /// Files found.
    pub files: u64,
    /// Files pseudonymised and written.
    pub pseudonymised: u64,
    /// Files skipped (already pseudonymised, duplicates, unchanged, symbolic links not
    /// followed).
    pub skipped: u64,
    /// Files quarantined.
    pub quarantined: u64,
    /// Input bytes read.
    pub bytes_in: u64,
    /// Counts per rule over all files.
    pub counts: RuleCounts,
    /// The CID 7050 code meanings recorded in every output.
    pub method: Vec<String>,
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Worker threads (at least 1).
    pub jobs: usize,
    /// Skip input files already processed into this output (same keyed path, size and
    /// modification time, as recorded in [`INPUT_STATE`]); for drop folders read every night.
    pub incremental: bool,
    /// Where quarantined originals go (default: [`default_quarantine`] of the output).
    pub quarantine: Option<PathBuf>,
}

/// The output tree's record of the inputs it was made from (keyed hash of the input's
/// relative path, size, modification time in nanoseconds): no path, nothing identifying.
pub const INPUT_STATE: &str = ".registrar-inputs.tsv";

fn read_input_state(path: &Path) -> HashMap<String, (u64, i128)> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let k = f.next()?.to_string();
            let size = f.next()?.parse().ok()?;
            let mtime = f.next()?.parse().ok()?;
            Some((k, (size, mtime)))
        })
        .collect()
}

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    let m = fs::metadata(path).ok()?;
    let t = m.modified().ok()?;
    let ns = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some((m.len(), ns))
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            incremental: false,
            quarantine: None,
        }
    }
}

/// A run that could not go on (the output cannot be written, the directories overlap, ...).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Input and output directories are the same or nested.
    #[error("the output directory must not be inside the input directory (or contain it)")]
    Overlap,
    /// The quarantine folder is inside the output tree or the input, or holds one of them.
    #[error(
        "the quarantine folder must lie outside the output and input directories (it holds \
         identifying originals; the default is <output>.quarantine, beside the output)"
    )]
    QuarantineOverlap,
    /// The output tree was made under another key (or pseudonym domain): writing into it
    /// would give every patient and UID a second pseudonym.
    #[error(
        "the output tree was made under key {tree} and this run uses key {this}: its \
         pseudonyms would not match; use the tree's key, or write to a new output folder"
    )]
    OtherKey {
        /// The tree's key id and domain.
        tree: String,
        /// This run's key id and domain.
        this: String,
    },
    /// The caller's check before the first write refused the run (say, its audit entry could
    /// not be written): nothing was written.
    #[error("the run may not write: {0}")]
    Refused(String),
    /// An I/O failure on the output side, or on the input directory itself.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the output path, never an input file).
        what: String,
        /// The error.
        source: io::Error,
    },
}

/// A run that stopped: the error, and what had been done by then (files written before the
/// failure exist, and are counted here and in the records already given to `on_file`).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BatchFailure {
    /// Why the run stopped.
    #[source]
    pub error: BatchError,
    /// What was done before it stopped (nothing when it stopped before the first file).
    pub summary: Box<BatchSummary>,
}

impl From<BatchError> for BatchFailure {
    fn from(error: BatchError) -> Self {
        BatchFailure {
            error,
            summary: Box::default(),
        }
    }
}

/// An output file that could not be written, as a run error naming it.
fn output_failed(dest: &Path) -> impl FnOnce(WriteError) -> BatchError + '_ {
    move |e| BatchError::Io {
        what: format!("cannot write {}", dest.display()),
        source: match e {
            WriteError::Io(e) => e,
            WriteError::Encode(m) => io::Error::other(m),
        },
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BatchError {
    let what = what.into();
    move |source| BatchError::Io { what, source }
}

/// The input tree, walked depth first in name order by whichever worker needs the next
/// file (under a lock: no walker thread, no hand-off between threads). Holds one directory's
/// entries at a time, plus the folders still to visit.
struct Walker {
    root: PathBuf,
    /// Folders to visit, relative to the root (the next one last).
    folders: Vec<PathBuf>,
    /// The current folder's entries still to hand out (the next one last): absolute path,
    /// path relative to the root with `/` separators, and why it is skipped (`None`: a file to
    /// read).
    files: Vec<Entry>,
}

/// An entry of the input tree handed to a worker.
struct Entry {
    path: PathBuf,
    rel: String,
    skip: Option<&'static str>,
}

impl Walker {
    fn new(root: &Path) -> Self {
        Walker {
            root: root.to_path_buf(),
            folders: vec![PathBuf::new()],
            files: Vec::new(),
        }
    }

    /// The next entry that is not a directory: a regular file (or a symbolic link to one)
    /// to read, or an entry skipped with its reason; `None` at the end.
    fn next(&mut self) -> Result<Option<Entry>, BatchError> {
        loop {
            if let Some(f) = self.files.pop() {
                return Ok(Some(f));
            }
            let Some(rel) = self.folders.pop() else {
                return Ok(None);
            };
            let dir = self.root.join(&rel);
            let mut entries: Vec<_> = fs::read_dir(&dir)
                .map_err(io_err("cannot list a directory of the input tree"))?
                .collect::<Result<_, _>>()
                .map_err(io_err("cannot list a directory of the input tree"))?;
            entries.sort_by_key(|e| e.file_name());
            let mut subdirs = Vec::new();
            for e in entries {
                let ft = e
                    .file_type()
                    .map_err(io_err("cannot stat an input entry"))?;
                let rel_path = rel.join(e.file_name());
                if ft.is_dir() {
                    subdirs.push(rel_path);
                    continue;
                }
                let skip = if ft.is_file() {
                    None
                } else if ft.is_symlink() {
                    match fs::metadata(e.path()) {
                        Ok(m) if m.is_file() => None,
                        Ok(m) if m.is_dir() => Some(skip::SYMLINK_TO_DIRECTORY),
                        Ok(_) => Some(skip::NOT_A_FILE),
                        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                            Some(skip::SYMLINK_LOOP)
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {
                            Some(skip::DANGLING_SYMLINK)
                        }
                        // Unreadable for the moment (permissions): read, and quarantined as
                        // a read error, so that the next run tries again.
                        Err(_) => None,
                    }
                } else {
                    Some(skip::NOT_A_FILE)
                };
                let text = rel_path.to_string_lossy().replace('\\', "/");
                self.files.push(Entry {
                    path: e.path(),
                    rel: text,
                    skip,
                });
            }
            self.files.reverse();
            self.folders.extend(subdirs.into_iter().rev());
        }
    }
}

/// The stack of each worker thread.
const WORKER_STACK: usize = 16 << 20;

/// How much of a file is read first: everything up to the pixel data of an image, whose
/// value then stays in the file until the kernel copies it to the output.
const HEAD: usize = 64 << 10;

/// Reads and pseudonymises one input file: its head only when its pixel data runs to the end
/// (see [`DicomPseudonymiser::pseudonymise_head`]), else the whole file. Returns the outcome,
/// the file's size and the open file (the source of pixel data left in it).
fn read_input(d: &DicomPseudonymiser, path: &Path) -> io::Result<(Outcome, u64, fs::File)> {
    use std::io::Read;
    thread_local! {
        /// Each worker's read buffer, reused from file to file (parsing copies what it keeps).
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let limits = d.profile().limits;
    if size > limits.max_file_bytes {
        let q = Quarantine {
            reason: QuarantineReason::TooLarge,
            detail: format!("the file is larger than {} bytes", limits.max_file_bytes),
        };
        return Ok((Outcome::Quarantined(q), 0, file));
    }
    BUFFER.with(|cell| {
        let mut data = cell.take();
        data.clear();
        let result = (|| {
            if size as usize > HEAD {
                data.reserve(HEAD);
                (&mut file).take(HEAD as u64).read_to_end(&mut data)?;
                if let Some(outcome) = isolated(|| d.pseudonymise_head(&data, size)) {
                    return Ok((outcome, size));
                }
            }
            data.reserve((size as usize + 1).saturating_sub(data.len()));
            file.read_to_end(&mut data)?;
            let outcome = isolated(|| Some(d.pseudonymise(&data))).expect("always an outcome");
            Ok((outcome, data.len() as u64))
        })();
        if data.capacity() <= 8 << 20 {
            cell.replace(data);
        }
        result.map(|(outcome, len)| (outcome, len, file))
    })
}

/// Runs the pseudonymisation of one file so that a defect it meets (a panic) quarantines the
/// file as `internal_error` instead of ending the run. (Recursion is bounded by
/// [`Limits::max_depth`](super::parse::Limits), so no input exhausts a worker's stack.)
fn isolated(f: impl FnOnce() -> Option<Outcome>) -> Option<Outcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Some(Outcome::Quarantined(Quarantine {
            reason: QuarantineReason::InternalError,
            detail: "the pseudonymiser failed on this file (a defect: please report it)".into(),
        }))
    })
}

/// The canonical form of a path that may not exist yet: its nearest existing ancestor,
/// canonicalised, joined with the rest.
fn absolute(p: &Path) -> io::Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut rest = Vec::new();
    let mut cur = p.as_path();
    loop {
        match fs::canonicalize(cur) {
            Ok(c) => return Ok(rest.iter().rev().fold(c, |acc, r| acc.join(r))),
            Err(_) => match (cur.parent(), cur.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    cur = parent;
                }
                _ => return Ok(p),
            },
        }
    }
}

/// Refuse an output tree made under another key: its files say which key made them (the
/// De-identification Method's `key <id> domain <domain>`); one of them is read.
fn check_tree_key(output: &Path, d: &DicomPseudonymiser) -> Result<(), BatchError> {
    let this = d
        .method_text()
        .into_iter()
        .find(|m| m.starts_with("key "))
        .unwrap_or_default();
    let Some(file) = first_output(output, 0) else {
        return Ok(());
    };
    let Ok(bytes) = fs::read(&file) else {
        return Ok(());
    };
    let Ok(parsed) = super::parse::parse(&bytes) else {
        return Ok(());
    };
    let Some(method) = parsed
        .dataset
        .element(dicom_core::Tag(0x0012, 0x0063))
        .ok()
        .and_then(|e| e.value().to_bytes().ok().map(|b| b.to_vec()))
    else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&method).to_string();
    match text
        .split('\\')
        .map(str::trim)
        .find(|v| v.starts_with("key "))
    {
        Some(tree) if tree != this => Err(BatchError::OtherKey {
            tree: tree.trim_start_matches("key ").to_string(),
            this: this.trim_start_matches("key ").to_string(),
        }),
        _ => Ok(()),
    }
}

/// The first `.dcm` file of an output tree (the quarantine folder excluded).
fn first_output(dir: &Path, depth: usize) -> Option<PathBuf> {
    if depth > 4 {
        return None;
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth == 0 && p.file_name().is_some_and(|n| n == QUARANTINE_DIR) {
                continue;
            }
            if let Some(f) = first_output(&p, depth + 1) {
                return Some(f);
            }
        } else if p.extension().is_some_and(|x| x == "dcm") {
            return Some(p);
        }
    }
    None
}

fn is_inside(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// Create `dir` (and missing parents) mode 0700, and make it 0700 if it exists.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Pseudonymises every file under `input` into `output`. `on_file` is called (from worker
/// threads) once per entry of the tree that is not a directory, in no particular order, e.g.
/// to write audit records, after the entry's output (if any) is complete. `before_write` is
/// called once, before the first file is written (output, quarantine copy or input state),
/// while the workers already read and pseudonymise: an error there stops the run with
/// [`BatchError::Refused`] and nothing written (the caller's audit entry of the run's start
/// is written meanwhile). A run that stops part-way returns what it had done
/// ([`BatchFailure::summary`]).
pub fn run(
    d: &DicomPseudonymiser,
    input: &Path,
    output: &Path,
    opts: &BatchOptions,
    on_file: &(dyn Fn(&FileRecord) + Sync),
    before_write: &(dyn Fn() -> Result<(), String> + Sync),
) -> Result<BatchSummary, BatchFailure> {
    let input = fs::canonicalize(input).map_err(io_err("cannot open the input directory"))?;
    let planned = absolute(output).map_err(io_err("cannot resolve the output directory"))?;
    if is_inside(&planned, &input) || is_inside(&input, &planned) {
        return Err(BatchError::Overlap.into());
    }
    let quarantine_dir = absolute(
        &opts
            .quarantine
            .clone()
            .unwrap_or_else(|| default_quarantine(&planned)),
    )
    .map_err(io_err("cannot resolve the quarantine folder"))?;
    if [&planned, &input]
        .iter()
        .any(|d| is_inside(&quarantine_dir, d) || is_inside(d, &quarantine_dir))
    {
        return Err(BatchError::QuarantineOverlap.into());
    }
    fs::create_dir_all(output).map_err(io_err(format!("cannot create {}", output.display())))?;
    let output = fs::canonicalize(output).map_err(io_err("cannot open the output directory"))?;
    check_tree_key(&output, d)?;
    // Opened with the first quarantined file: (how files are written there, the report).
    let quarantine = Mutex::new(None::<(OutputFiles, BufWriter<fs::File>)>);
    let open_quarantine = || -> Result<(OutputFiles, BufWriter<fs::File>), BatchError> {
        private_dir(&quarantine_dir).map_err(io_err("cannot create the quarantine folder"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(quarantine_dir.join(QUARANTINE_REPORT))
            .and_then(|f| {
                f.set_permissions(fs::Permissions::from_mode(0o600))
                    .map(|()| f)
            })
            .map_err(io_err("cannot open the quarantine report"))?;
        Ok((OutputFiles::probe(&quarantine_dir), BufWriter::new(f)))
    };
    let seen: Mutex<HashSet<u128>> = Mutex::new(HashSet::new());
    let summary = Mutex::new(BatchSummary {
        method: d
            .method_codes()
            .iter()
            .map(|c| c.meaning.to_string())
            .collect(),
        ..Default::default()
    });
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<BatchError>> = Mutex::new(None);
    let state_path = output.join(INPUT_STATE);
    let known = if opts.incremental {
        read_input_state(&state_path)
    } else {
        HashMap::new()
    };
    let processed: Mutex<Vec<(String, (u64, i128))>> = Mutex::new(Vec::new());
    let jobs = opts.jobs.max(1);
    let walker = Mutex::new(Walker::new(&input));
    let files = OutputFiles::probe(&output);

    let gate: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let may_write = || {
        gate.get_or_init(before_write)
            .clone()
            .map_err(BatchError::Refused)
    };
    let fail = |e: BatchError| {
        stop.store(true, Ordering::Relaxed);
        let mut f = failure.lock().expect("lock");
        if f.is_none() {
            *f = Some(e);
        }
    };

    let process = |entry: &Entry| -> Result<FileRecord, BatchError> {
        let (path, rel) = (entry.path.as_path(), entry.rel.as_str());
        let source = d.pseudonymiser().locator_hash(&format!("dicom/{rel}"));
        let mut rec = FileRecord {
            source,
            status: FileStatus::Pseudonymised,
            reason: None,
            detail: None,
            output: None,
            counts: RuleCounts::default(),
        };
        if let Some(reason) = entry.skip {
            rec.status = FileStatus::Skipped;
            rec.reason = Some(reason);
            return Ok(rec);
        }
        let stamp = if opts.incremental {
            file_stamp(path)
        } else {
            None
        };
        if let Some(st) = stamp {
            if known.get(&rec.source) == Some(&st) {
                rec.status = FileStatus::Skipped;
                rec.reason = Some(skip::UNCHANGED_INPUT);
                return Ok(rec);
            }
        }
        let rec_source = rec.source.clone();
        let result = (|| -> Result<FileRecord, BatchError> {
            let (outcome, bytes, source) = match read_input(d, path) {
                Ok((outcome, len, file)) => (outcome, len, Some(file)),
                Err(e) => (
                    Outcome::Quarantined(Quarantine {
                        reason: QuarantineReason::ReadError,
                        detail: format!("cannot read: {}", e.kind()),
                    }),
                    0,
                    None,
                ),
            };
            summary.lock().expect("lock").bytes_in += bytes;
            let outcome = match outcome {
                Outcome::Pseudonymised(p) => {
                    let root = d.pseudonymiser().uid_root_128(&p.sop_instance_uid);
                    if !seen.lock().expect("lock").insert(root) {
                        Outcome::Skipped(SkipReason::DuplicateSopInstance)
                    } else {
                        let dest = output.join(&p.relative_path);
                        rec.output = Some(p.relative_path.clone());
                        rec.counts = p.counts.clone();
                        let source = source.as_ref().expect("a pseudonymised file was read");
                        may_write()?;
                        match files.write(&dest, |w| p.write_file(w, source)) {
                            Ok(()) => return Ok(rec),
                            Err(WriteError::Encode(m)) => Outcome::Quarantined(Quarantine {
                                reason: QuarantineReason::EncodeError,
                                detail: m,
                            }),
                            Err(e) => return Err(output_failed(&dest)(e)),
                        }
                    }
                }
                o => o,
            };
            rec.output = None;
            rec.counts = RuleCounts::default();
            match outcome {
                Outcome::Pseudonymised(_) => unreachable!("handled above"),
                Outcome::Skipped(r) => {
                    rec.status = FileStatus::Skipped;
                    rec.reason = Some(r.code());
                }
                Outcome::Quarantined(q) => {
                    rec.status = FileStatus::Quarantined;
                    rec.reason = Some(q.reason.code());
                    rec.detail = Some(q.detail);
                    may_write()?;
                    let mut r = quarantine.lock().expect("lock");
                    if r.is_none() {
                        *r = Some(open_quarantine()?);
                    }
                    let (qfiles, w) = r.as_mut().expect("opened above");
                    if q.reason != QuarantineReason::ReadError {
                        let rel_out = format!("{}.dcm", rec.source);
                        let dest = quarantine_dir.join(&rel_out);
                        qfiles
                            .write(&dest, |w| {
                                // Private before the first byte is written.
                                w.set_permissions(fs::Permissions::from_mode(0o600))?;
                                let mut f = fs::File::open(path)?;
                                io::copy(&mut f, w)?;
                                Ok(())
                            })
                            .map_err(|e| BatchError::Io {
                                what: "cannot write a file of the quarantine folder".into(),
                                source: match e {
                                    WriteError::Io(e) => e,
                                    WriteError::Encode(m) => io::Error::other(m),
                                },
                            })?;
                        rec.output = Some(rel_out);
                    }
                    let line = serde_json::to_string(&rec).expect("records serialise");
                    writeln!(w, "{line}")
                        .and_then(|_| w.flush())
                        .map_err(io_err("cannot write the quarantine report"))?;
                }
            }
            Ok(rec)
        })();
        // Only what was processed is recorded as processed: a file that could not be read
        // is tried again by the next incremental run.
        let retry =
            matches!(&result, Ok(r) if r.reason == Some(QuarantineReason::ReadError.code()));
        if let (Ok(_), Some(st), false) = (&result, stamp, retry) {
            processed.lock().expect("lock").push((rec_source, st));
        }
        result
    };

    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let next = walker.lock().expect("lock").next();
            let entry = match next {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => return fail(e),
            };
            match process(&entry) {
                Ok(rec) => {
                    {
                        let mut sum = summary.lock().expect("lock");
                        sum.files += 1;
                        match rec.status {
                            FileStatus::Pseudonymised => sum.pseudonymised += 1,
                            FileStatus::Skipped => sum.skipped += 1,
                            FileStatus::Quarantined => sum.quarantined += 1,
                        }
                        sum.counts.add(&rec.counts);
                    }
                    on_file(&rec);
                }
                Err(e) => fail(e),
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs {
            // A stack of a known size (the default of spawned threads is smaller than the
            // main thread's): with the reader's depth bound, deep but legal files fit.
            let spawned = std::thread::Builder::new()
                .name("dicom-worker".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, worker);
            if let Err(e) = spawned {
                fail(BatchError::Io {
                    what: "cannot start a worker thread".into(),
                    source: e,
                });
                break;
            }
        }
    });

    // What was processed is recorded even when the run stops early: those outputs exist. The
    // first failure is the one reported (a full disk fails the state file too).
    let mut state_result = Ok(());
    if opts.incremental && may_write().is_ok() {
        let mut all = known;
        all.extend(processed.into_inner().expect("lock"));
        let mut text = String::with_capacity(all.len() * 80);
        let mut rows: Vec<_> = all.into_iter().collect();
        rows.sort();
        for (k, (size, mtime)) in rows {
            text.push_str(&format!("{k}\t{size}\t{mtime}\n"));
        }
        state_result = files
            .write(&state_path, |w| Ok(w.write_all(text.as_bytes())?))
            .map_err(output_failed(&state_path));
    }
    let summary = summary.into_inner().expect("lock");
    let error = match (failure.into_inner().expect("lock"), state_result) {
        (Some(e), _) | (None, Err(e)) => e,
        (None, Ok(())) => return Ok(summary),
    };
    Err(BatchFailure {
        error,
        summary: Box::new(summary),
    })
}
