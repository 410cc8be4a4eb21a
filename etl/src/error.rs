//! The errors the `etl` crate gives its callers, and the exit codes they stand for. Inside
//! the crate errors are `anyhow` chains with context; at its boundary they are one of these.

/// Why a command did not finish as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing ran: the command line, the configuration, a mapping, a key, a lock or the
    /// registry database is wrong or unreachable (exit code 3).
    #[error("{0:#}")]
    Setup(anyhow::Error),
    /// A source failed part-way: what it committed stays, and is counted (exit code 2).
    #[error("{0:#}")]
    SourceFailed(anyhow::Error),
}

impl Error {
    /// The process exit code (0 and 1 are for commands that finished).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Setup(_) => 3,
            Error::SourceFailed(_) => 2,
        }
    }
}

impl From<anyhow::Error> for Error {
    /// An `Error` carried inside an `anyhow` chain keeps its kind; anything else is `Setup`.
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(e) => e,
            Err(e) => Error::Setup(e),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
