//! The only file that knows about PyO3: classes, conversions, GIL release, error mapping.
//!
//! Every heavy call converts its inputs to owned Rust data, then runs inside `py.detach` so other
//! Python threads keep running. `BpeError` maps to the matching Python exception class.

use pyo3::exceptions::{PyIsADirectoryError, PyKeyError, PyOSError, PyUnicodeDecodeError, PyValueError};
use pyo3::prelude::*;

use crate::error::BpeError;

impl From<BpeError> for PyErr {
    fn from(err: BpeError) -> PyErr {
        let msg = err.to_string();
        match err {
            BpeError::Io { source, .. } => {
                // Keep errno so Python raises the matching OSError subclass (FileNotFoundError, ...).
                match source.raw_os_error() {
                    Some(code) => PyOSError::new_err((code, msg)),
                    None => PyOSError::new_err(msg),
                }
            }
            BpeError::IsADirectory { .. } => PyIsADirectoryError::new_err(msg),
            BpeError::InvalidUtf8 { byte, .. } => {
                // UnicodeDecodeError takes (encoding, object, start, end, reason); the reason
                // carries the path and the absolute offset, which the window alone cannot.
                PyUnicodeDecodeError::new_err(("utf-8", vec![byte], 0usize, 1usize, msg))
            }
            BpeError::InvalidArgument(_) | BpeError::MalformedFile { .. } => PyValueError::new_err(msg),
            BpeError::UnknownId(_) => PyKeyError::new_err(msg),
        }
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    // -- training (rust/train.rs) registers here --
    // -- encoding (rust/encode.rs) registers here --
    Ok(())
}
