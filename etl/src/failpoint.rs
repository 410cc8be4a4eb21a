//! A test hook for the fault harness (`tests/faults.rs`): abort the process at a named
//! event, as `kill -9` would (no unwinding, no cleanup, no report), so that a test can
//! interrupt a run at exactly the point it wants instead of after a guessed delay.
//!
//! Set `REGISTRAR_ABORT_AT=EVENT:N` to abort at the N-th time EVENT happens in this process
//! (N from 1). Events:
//!
//! - `unit:SOURCE`: a unit (a file, a page, a DICOM index) of source SOURCE was committed;
//! - `dicom-file:SOURCE`: a DICOM file of source SOURCE was written (or quarantined);
//! - `report`: the nightly is about to write its report.
//!
//! Unset (the normal case), [`hit`] is one relaxed load of a `OnceLock`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The environment variable naming the abort point.
pub const VAR: &str = "REGISTRAR_ABORT_AT";

fn target() -> &'static Option<(String, u64)> {
    static T: OnceLock<Option<(String, u64)>> = OnceLock::new();
    T.get_or_init(|| {
        let v = std::env::var(VAR).ok()?;
        let (event, n) = v.rsplit_once(':')?;
        Some((event.to_string(), n.parse().ok().filter(|&n| n >= 1)?))
    })
}

/// Count one `event`; abort the process if it is the configured one, the configured time.
pub fn hit(event: &str) {
    let Some((want, n)) = target() else {
        return;
    };
    if want != event {
        return;
    }
    static COUNTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut counts = COUNTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let c = counts.entry(event.to_string()).or_default();
    *c += 1;
    if *c == *n {
        std::process::abort();
    }
}
