//! The `registrar` binary: parse the command line, run it, report errors.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the DICOM batch allocates and frees many small
/// values per file on every core, where glibc's malloc costs a tenth of the run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `registrar ... | head` should end quietly when the reader goes away, as other Unix
    // tools do, instead of panicking on a broken pipe.
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = registrar_etl::cli::Cli::parse();
    match registrar_etl::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
