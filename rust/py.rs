//! The only file that knows about PyO3: classes, conversions, GIL release, error mapping.
//!
//! Every heavy call converts its inputs to owned Rust data, then runs inside `py.detach` so other
//! Python threads keep running. `BpeError` maps to the matching Python exception class.

use pyo3::exceptions::{
    PyIsADirectoryError, PyKeyError, PyOSError, PyUnicodeDecodeError, PyValueError,
};
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
            BpeError::InvalidArgument(_) | BpeError::MalformedFile { .. } => {
                PyValueError::new_err(msg)
            }
            BpeError::UnknownId(_) => PyKeyError::new_err(msg),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding (rust/encode.rs): the `Encoder` class and live file progress.
// ---------------------------------------------------------------------------------------------

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyByteArray, PyBytes};

use crate::encode::{with_threads, Encoder, Width};

/// Input bytes done by a running `Encoder.encode_file`, readable from another Python thread.
#[pyclass(frozen, module = "bpe336._core")]
pub struct FileProgress {
    done: Arc<AtomicU64>,
}

#[pymethods]
impl FileProgress {
    #[new]
    fn new() -> Self {
        FileProgress {
            done: Arc::new(AtomicU64::new(0)),
        }
    }

    #[getter]
    fn bytes_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// A byte-level BPE encoder; immutable, so many Python threads may share one.
#[pyclass(frozen, name = "Encoder", module = "bpe336._core")]
pub struct PyEncoder {
    inner: Encoder,
}

#[pymethods]
impl PyEncoder {
    /// vocab: [(id, bytes)], merges: [(bytes, bytes)] in rank order, special_tokens: [(str, id)].
    #[new]
    #[pyo3(signature = (vocab, merges, special_tokens=Vec::new()))]
    fn py_new(
        py: Python<'_>,
        vocab: Vec<(u32, Vec<u8>)>,
        merges: Vec<(Vec<u8>, Vec<u8>)>,
        special_tokens: Vec<(String, u32)>,
    ) -> PyResult<Self> {
        let inner = py.detach(|| Encoder::new(vocab, merges, special_tokens))?;
        Ok(PyEncoder { inner })
    }

    /// One more than the largest token id.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn special_tokens(&self) -> Vec<String> {
        self.inner.special_tokens().to_vec()
    }

    /// Ids of `text`, special tokens recognised, on the calling thread.
    #[pyo3(name = "encode")]
    fn py_encode(&self, py: Python<'_>, text: &str) -> Vec<u32> {
        py.detach(|| self.inner.encode(text))
    }

    /// Ids of `text` with special tokens treated as ordinary text.
    #[pyo3(name = "encode_ordinary")]
    fn py_encode_ordinary(&self, py: Python<'_>, text: &str) -> Vec<u32> {
        py.detach(|| self.inner.encode_ordinary(text))
    }

    /// (ids, n): the ids of text[:n], where n (in characters) is the last safe cut; (ids of
    /// nothing, 0) when there is none. For streaming: keep text[n:] and append to it.
    #[pyo3(name = "encode_prefix")]
    fn py_encode_prefix(&self, py: Python<'_>, text: &str) -> (Vec<u32>, usize) {
        let (ids, cut) = py.detach(|| self.inner.encode_prefix(text));
        // Characters = bytes that are not UTF-8 continuation bytes.
        let chars = text.as_bytes()[..cut]
            .iter()
            .filter(|&&b| (b as i8) >= -0x40)
            .count();
        (ids, chars)
    }

    /// Ids of each text, encoded in parallel.
    #[pyo3(name = "encode_batch", signature = (texts, num_threads=None))]
    fn py_encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        num_threads: Option<usize>,
    ) -> PyResult<Vec<Vec<u32>>> {
        Ok(py.detach(|| with_threads(num_threads, || self.inner.encode_batch(&texts)))?)
    }

    /// The ids of `text` as little-endian integers of `width` bytes (2 or 4), encoded in
    /// parallel chunks; a bytearray for `np.frombuffer`.
    #[pyo3(name = "encode_to_bytes", signature = (text, width, num_threads=None))]
    fn py_encode_to_bytes<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        width: usize,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let width = Width::from_bytes(width)?;
        let buf = py.detach(|| {
            with_threads(num_threads, || self.inner.encode_to_le_bytes(text, width))
        })??;
        Ok(PyByteArray::new(py, &buf))
    }

    /// Encodes the UTF-8 file `input` into `output` (little-endian, `width` bytes per id, after
    /// `header_len` zero bytes). Returns (input bytes, tokens, chunks).
    #[pyo3(name = "encode_file", signature = (input, output, header_len, width, num_threads=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_encode_file(
        &self,
        py: Python<'_>,
        input: PathBuf,
        output: PathBuf,
        header_len: u64,
        width: usize,
        num_threads: Option<usize>,
        progress: Option<Bound<'_, FileProgress>>,
    ) -> PyResult<(u64, u64, u64)> {
        let width = Width::from_bytes(width)?;
        let done = progress.map(|p| p.get().done.clone()).unwrap_or_default();
        let stats = py.detach(|| {
            with_threads(num_threads, || {
                self.inner
                    .encode_file(&input, &output, header_len, width, &done)
            })
        })??;
        Ok((stats.bytes, stats.tokens, stats.chunks))
    }

    /// The concatenated bytes of `ids`; an id outside the vocabulary raises KeyError.
    #[pyo3(name = "decode_bytes")]
    fn py_decode_bytes<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id > u32::MAX as i64) {
            return Err(PyKeyError::new_err(format!(
                "token id {bad} is not in the vocabulary"
            )));
        }
        let ids: Vec<u32> = ids.into_iter().map(|id| id as u32).collect();
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The bytes of one token, or None.
    fn token_bytes<'py>(&self, py: Python<'py>, id: i64) -> Option<Bound<'py, PyBytes>> {
        let id = u32::try_from(id).ok()?;
        self.inner.token_bytes(id).map(|b| PyBytes::new(py, b))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    // -- training (rust/train.rs) registers here --
    // -- encoding (rust/encode.rs) registers here --
    m.add_class::<PyEncoder>()?;
    m.add_class::<FileProgress>()?;
    Ok(())
}
