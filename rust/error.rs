//! One error type for the core, with a readable message per variant. `py.rs` maps each variant
//! to the matching Python exception class.

use std::fmt;

#[derive(Debug)]
pub enum BpeError {
    /// An I/O failure on a named path (missing, unreadable, ...).
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A directory was given where a file is expected.
    IsADirectory { path: String },
    /// Input bytes that are not UTF-8: the absolute byte offset of the first bad byte and the
    /// bad sequence (one byte, or a sequence cut short by the end of the input).
    InvalidUtf8 {
        path: String,
        offset: u64,
        bad: Vec<u8>,
    },
    /// A caller-supplied argument is out of range or inconsistent.
    InvalidArgument(String),
    /// A token id that the vocabulary does not contain.
    UnknownId(u64),
    /// The call was cancelled (its `CancelFlag` was set, e.g. on Ctrl-C, or a callback failed).
    Cancelled,
    /// A bug: an invariant failed or a task panicked.
    Internal(String),
    /// Worker threads could not be started.
    ThreadPool(String),
    /// A vocab or merges file that does not parse.
    MalformedFile {
        path: String,
        line: usize,
        reason: String,
    },
    /// A pre-token counts file (or its bytes) that is not one, is of another format version,
    /// or is damaged.
    MalformedCounts { path: String, reason: String },
}

impl fmt::Display for BpeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BpeError::Io { path, source } => write!(f, "{path}: {source}"),
            BpeError::IsADirectory { path } => write!(f, "{path}: is a directory, expected a file"),
            BpeError::InvalidUtf8 { path, offset, bad } => {
                let hex: Vec<String> = bad.iter().map(|b| format!("0x{b:02x}")).collect();
                let what = if bad.len() == 1 { "byte" } else { "bytes" };
                write!(
                    f,
                    "{path}: invalid UTF-8 at byte offset {offset} ({what} {})",
                    hex.join(" ")
                )
            }
            BpeError::InvalidArgument(msg) => write!(f, "{msg}"),
            BpeError::Cancelled => write!(f, "cancelled"),
            BpeError::Internal(msg) => write!(f, "internal error: {msg}"),
            BpeError::ThreadPool(msg) => write!(f, "{msg}"),
            BpeError::UnknownId(id) => write!(f, "token id {id} is not in the vocabulary"),
            BpeError::MalformedFile { path, line, reason } => {
                write!(f, "{path}:{line}: {reason}")
            }
            BpeError::MalformedCounts { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl std::error::Error for BpeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BpeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, BpeError>;
