//! Pseudonymising a directory tree in parallel.
//!
//! One thread walks the input tree (sorted, symbolic links to directories not followed) and
//! feeds a bounded queue; `jobs` worker threads (`std::thread::scope`) take files from it, so
//! memory stays flat whatever the number of files: at most `jobs` files are in memory, plus the
//! queue of paths and one 16-byte entry per output file for duplicate detection. Each worker
//! reads a file, pseudonymises it and writes the result to a temporary file next to its
//! destination, then renames it into place: an output file is complete or absent. The input tree
//! is only read.
//!
//! Output layout: `<out>/<study uid>/<series uid>/<sop instance uid>.dcm` with the pseudonymous
//! UIDs, so paths reveal nothing. Files that cannot be pseudonymised are copied unchanged to
//! `<out>/quarantine/<locator hash>.dcm` and listed in `<out>/quarantine/report.jsonl` with a
//! reason; that folder holds identifying data and stays with the key holder.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use serde::Serialize;

use super::deid::{
    DicomPseudonymiser, Outcome, Quarantine, QuarantineReason, RuleCounts, SkipReason,
};
use super::write::WriteError;

/// The quarantine folder's name under the output directory.
pub const QUARANTINE_DIR: &str = "quarantine";
/// The quarantine report's name in the quarantine folder.
pub const QUARANTINE_REPORT: &str = "report.jsonl";

/// What happened to one input file. Holds no path and no value: the source is the keyed
/// locator hash of `"dicom/" + its path relative to the input directory`.
#[derive(Clone, Debug, Serialize)]
pub struct FileRecord {
    /// `locator_hash("dicom/<relative path>")`.
    pub source: String,
    /// `pseudonymised`, `skipped` or `quarantined`.
    pub status: &'static str,
    /// The reason code for skipped and quarantined files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Detail for quarantined files (tags and offsets, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The output path relative to the output directory (pseudonymised or quarantined copy).
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
    /// Files skipped (already pseudonymised, duplicates).
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
        }
    }
}

/// A run that could not go on (the output cannot be written, the directories overlap, ...).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Input and output directories are the same or nested.
    #[error("the output directory must not be inside the input directory (or contain it)")]
    Overlap,
    /// An I/O failure on the output side, or on the input directory itself.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (names the output path, never an input file).
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BatchError {
    let what = what.into();
    move |source| BatchError::Io { what, source }
}

/// Walks `dir` depth first in name order, sending regular files (and symbolic links to
/// regular files) with their path relative to the root.
fn walk(
    root: &Path,
    tx: &mpsc::SyncSender<(PathBuf, String)>,
    stop: &AtomicBool,
) -> Result<(), BatchError> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(io_err("cannot list a directory of the input tree"))?
            .collect::<Result<_, _>>()
            .map_err(io_err("cannot list a directory of the input tree"))?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let ft = e
                .file_type()
                .map_err(io_err("cannot stat an input entry"))?;
            let rel_path = rel.join(e.file_name());
            if ft.is_dir() {
                subdirs.push(rel_path);
            } else if ft.is_file() || (ft.is_symlink() && e.path().is_file()) {
                let text = rel_path.to_string_lossy().replace('\\', "/");
                if tx.send((e.path(), text)).is_err() {
                    return Ok(());
                }
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn write_atomically(
    dest: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let dir = dest.parent().expect("output paths have a parent");
    let name = dest
        .file_name()
        .expect("output paths have a name")
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.part-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| {
        // The folder usually exists already: create it only when the file cannot be (saves
        // a mkdir and a stat per file). One buffer for the whole file: one write call.
        let file = match fs::File::create(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                fs::File::create(&tmp)?
            }
            other => other?,
        };
        let mut f = BufWriter::with_capacity(1 << 20, file);
        write(&mut f)?;
        // No fsync: the rename makes the file appear whole or not at all to readers and
        // across an interrupted run; durability against power loss is the file system's.
        f.into_inner().map_err(|e| e.into_error())?;
        fs::rename(&tmp, dest)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

fn is_inside(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// Pseudonymises every file under `input` into `output`. `on_file` is called (from worker
/// threads) once per file, in no particular order, e.g. to write audit records.
pub fn run(
    d: &DicomPseudonymiser,
    input: &Path,
    output: &Path,
    opts: &BatchOptions,
    on_file: &(dyn Fn(&FileRecord) + Sync),
) -> Result<BatchSummary, BatchError> {
    let input = fs::canonicalize(input).map_err(io_err("cannot open the input directory"))?;
    let planned = absolute(output).map_err(io_err("cannot resolve the output directory"))?;
    if is_inside(&planned, &input) || is_inside(&input, &planned) {
        return Err(BatchError::Overlap);
    }
    fs::create_dir_all(output).map_err(io_err(format!("cannot create {}", output.display())))?;
    let output = fs::canonicalize(output).map_err(io_err("cannot open the output directory"))?;
    let quarantine_dir = output.join(QUARANTINE_DIR);
    let report = Mutex::new(None::<BufWriter<fs::File>>);
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
    let (tx, rx) = mpsc::sync_channel::<(PathBuf, String)>(jobs * 4);
    let rx = Mutex::new(rx);

    let fail = |e: BatchError| {
        stop.store(true, Ordering::Relaxed);
        let mut f = failure.lock().expect("lock");
        if f.is_none() {
            *f = Some(e);
        }
    };

    let process = |path: &Path, rel: &str| -> Result<FileRecord, BatchError> {
        let source = d.pseudonymiser().locator_hash(&format!("dicom/{rel}"));
        let mut rec = FileRecord {
            source,
            status: "pseudonymised",
            reason: None,
            detail: None,
            output: None,
            counts: RuleCounts::default(),
        };
        let stamp = if opts.incremental {
            file_stamp(path)
        } else {
            None
        };
        if let Some(st) = stamp {
            if known.get(&rec.source) == Some(&st) {
                rec.status = "skipped";
                rec.reason = Some("unchanged_input");
                return Ok(rec);
            }
        }
        let rec_source = rec.source.clone();
        let result = (|| -> Result<FileRecord, BatchError> {
            let (outcome, bytes) = match fs::read(path) {
                Ok(data) => {
                    let len = data.len() as u64;
                    (d.pseudonymise(&data), len)
                }
                Err(e) => (
                    Outcome::Quarantined(Quarantine {
                        reason: QuarantineReason::ReadError,
                        detail: format!("cannot read: {}", e.kind()),
                    }),
                    0,
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
                        match write_atomically(&dest, |w| p.write_to(w)) {
                            Ok(()) => return Ok(rec),
                            Err(WriteError::Encode(m)) => Outcome::Quarantined(Quarantine {
                                reason: QuarantineReason::EncodeError,
                                detail: m,
                            }),
                            Err(WriteError::Io(e)) => {
                                return Err(io_err(format!("cannot write {}", dest.display()))(e))
                            }
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
                    rec.status = "skipped";
                    rec.reason = Some(r.code());
                }
                Outcome::Quarantined(q) => {
                    rec.status = "quarantined";
                    rec.reason = Some(q.reason.code());
                    rec.detail = Some(q.detail);
                    if q.reason != QuarantineReason::ReadError {
                        let rel_out = format!("{QUARANTINE_DIR}/{}.dcm", rec.source);
                        let dest = output.join(&rel_out);
                        write_atomically(&dest, |w| {
                            let mut f = fs::File::open(path)?;
                            io::copy(&mut f, w)?;
                            Ok(())
                        })
                        .map_err(|e| BatchError::Io {
                            what: format!("cannot write {}", dest.display()),
                            source: match e {
                                WriteError::Io(e) => e,
                                WriteError::Encode(m) => io::Error::other(m),
                            },
                        })?;
                        rec.output = Some(rel_out);
                    }
                    let mut r = report.lock().expect("lock");
                    if r.is_none() {
                        fs::create_dir_all(&quarantine_dir).map_err(io_err(format!(
                            "cannot create {}",
                            quarantine_dir.display()
                        )))?;
                        let f = fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(quarantine_dir.join(QUARANTINE_REPORT))
                            .map_err(io_err("cannot open the quarantine report"))?;
                        *r = Some(BufWriter::new(f));
                    }
                    let line = serde_json::to_string(&rec).expect("records serialise");
                    let w = r.as_mut().expect("opened above");
                    writeln!(w, "{line}")
                        .and_then(|_| w.flush())
                        .map_err(io_err("cannot write the quarantine report"))?;
                }
            }
            Ok(rec)
        })();
        if let (Ok(_), Some(st)) = (&result, stamp) {
            processed.lock().expect("lock").push((rec_source, st));
        }
        result
    };

    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let next = rx.lock().expect("lock").recv();
                let Ok((path, rel)) = next else { return };
                if stop.load(Ordering::Relaxed) {
                    // Drain the queue so that the walker never blocks on a full one.
                    continue;
                }
                match process(&path, &rel) {
                    Ok(rec) => {
                        {
                            let mut sum = summary.lock().expect("lock");
                            sum.files += 1;
                            match rec.status {
                                "pseudonymised" => sum.pseudonymised += 1,
                                "skipped" => sum.skipped += 1,
                                _ => sum.quarantined += 1,
                            }
                            sum.counts.add(&rec.counts);
                        }
                        on_file(&rec);
                    }
                    Err(e) => fail(e),
                }
            });
        }
        if let Err(e) = walk(&input, &tx, &stop) {
            fail(e);
        }
        drop(tx);
    });

    // What was processed is recorded even when the run stops early: those outputs exist.
    if opts.incremental {
        let mut all = known;
        all.extend(processed.into_inner().expect("lock"));
        let mut text = String::with_capacity(all.len() * 80);
        let mut rows: Vec<_> = all.into_iter().collect();
        rows.sort();
        for (k, (size, mtime)) in rows {
            text.push_str(&format!("{k}\t{size}\t{mtime}\n"));
        }
        write_atomically(&state_path, |w| Ok(w.write_all(text.as_bytes())?)).map_err(|e| {
            BatchError::Io {
                what: format!("cannot write {}", state_path.display()),
                source: match e {
                    WriteError::Io(e) => e,
                    WriteError::Encode(m) => io::Error::other(m),
                },
            }
        })?;
    }
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(summary.into_inner().expect("lock"))
}
