//! The only file that knows about PyO3: classes, conversions, GIL release, error mapping.
//!
//! Every heavy call converts its inputs to owned Rust data, then runs inside `py.detach` so other
//! Python threads keep running. `BpeError` maps to the matching Python exception class.

use pyo3::exceptions::{
    PyIsADirectoryError, PyKeyError, PyOSError, PyOverflowError, PyRuntimeError,
    PyUnicodeDecodeError, PyValueError,
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
            BpeError::ThreadPool(_) => PyRuntimeError::new_err(msg),
        }
    }
}

/// A non-negative integer argument (an id, a size, a count) as u64; the core checks its range.
/// An int that does not fit (negative, or 2**64 and up) is a ValueError with `message(value)`,
/// where PyO3 alone would raise an OverflowError.
fn int_arg(obj: &Bound<'_, PyAny>, message: impl FnOnce(String) -> String) -> PyResult<u64> {
    obj.extract::<u64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            PyValueError::new_err(message(obj.to_string()))
        } else {
            e
        }
    })
}

/// An optional thread count, checked by the core (`threads::check`): negative or huge ints get
/// the core's message too; a non-int is a TypeError naming the argument.
fn threads_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if !obj.is_instance_of::<pyo3::types::PyInt>() || obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "num_threads must be an int or None, not {}",
            obj.get_type().name()?
        )));
    }
    let n = int_arg(obj, |v| crate::threads::range_message(&v))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    crate::threads::check(n)?;
    Ok(Some(n))
}

/// `int_arg` for a size: values beyond usize saturate (the core's range check reports them).
fn size_arg(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let v = int_arg(obj, |v| format!("{name} {v} is out of range"))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

// -- training ---------------------------------------------------------------------------------
// `train_bpe_files`, `train_bpe_iter`, and two helpers for the tests (`pretokenize`,
// `char_classes`). Python's `bpe336.train` validates types and wraps these.

use pyo3::types::{PyBytes, PyDict, PyList};

use crate::train::{self, Progress, StreamCounter, TrainOptions, TrainResult};

/// Forwards progress to a Python callable `(phase: str, done: int, total: int)`, taking the GIL
/// only for the call (the trainer reports at most about 100 times per phase). A Python
/// exception in the callback, or a pending signal such as Ctrl-C, cancels training; the
/// exception is kept to be raised instead of the cancellation error.
struct PyProgress {
    callback: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl PyProgress {
    fn report(&mut self, p: Progress) -> bool {
        let (phase, done, total) = match p {
            Progress::Counting { done, total } => ("count", done, total),
            Progress::Merging { done, total } => ("merge", done, total),
        };
        let result = Python::attach(|py| {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                cb.call1(py, (phase, done, total))?;
            }
            Ok::<(), PyErr>(())
        });
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    /// The error to raise: the callback's own exception if it caused the failure.
    fn into_err(self, err: crate::BpeError) -> PyErr {
        self.error.unwrap_or_else(|| err.into())
    }
}

fn train_options(
    vocab_size: &Bound<'_, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
) -> PyResult<TrainOptions> {
    let mut opts = TrainOptions::new(size_arg("vocab_size", vocab_size)?, special_tokens);
    opts.num_threads = threads_arg(num_threads)?;
    if let Some(c) = chunk_size {
        opts.chunk_size = size_arg("chunk_size", c)?;
    }
    Ok(opts)
}

/// (vocab as a list of `bytes` by id, merges as a list of `(bytes, bytes)`, stats dict).
fn result_to_py<'py>(py: Python<'py>, r: TrainResult) -> PyResult<Bound<'py, PyAny>> {
    let vocab = PyList::new(py, r.vocab.iter().map(|t| PyBytes::new(py, t)))?;
    let merges = PyList::new(
        py,
        r.merges
            .iter()
            .map(|(a, b)| (PyBytes::new(py, a), PyBytes::new(py, b))),
    )?;
    let stats = PyDict::new(py);
    stats.set_item("distinct_pretokens", r.distinct_pretokens)?;
    stats.set_item("total_pretokens", r.total_pretokens)?;
    stats.set_item("input_bytes", r.input_bytes)?;
    Ok((vocab, merges, stats).into_pyobject(py)?.into_any())
}

/// Trains on files (each an independent text). Returns (vocab list, merges list, stats).
#[pyfunction]
#[pyo3(signature = (paths, vocab_size, special_tokens, num_threads=None, chunk_size=None, progress=None))]
fn train_bpe_files<'py>(
    py: Python<'py>,
    paths: Vec<std::path::PathBuf>,
    vocab_size: &Bound<'py, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'py, PyAny>>,
    chunk_size: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = train_options(vocab_size, special_tokens, num_threads, chunk_size)?;
    let mut sink = PyProgress {
        callback: progress,
        error: None,
    };
    let result = py.detach(|| train::train_files(&paths, &opts, &mut |p| sink.report(p)));
    match result {
        Ok(r) => result_to_py(py, r),
        Err(e) => Err(sink.into_err(e)),
    }
}

/// Trains on the concatenation of the strings an iterable yields (one stream, as if they were
/// one file). Strings are pulled in batches under the GIL, then counted with the GIL released.
#[pyfunction]
#[pyo3(signature = (iterable, vocab_size, special_tokens, num_threads=None, chunk_size=None, progress=None))]
fn train_bpe_iter<'py>(
    py: Python<'py>,
    iterable: &Bound<'py, PyAny>,
    vocab_size: &Bound<'py, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'py, PyAny>>,
    chunk_size: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const BATCH_BYTES: usize = 8 << 20;
    const BATCH_ITEMS: usize = 8192;
    let opts = train_options(vocab_size, special_tokens, num_threads, chunk_size)?;
    opts.validate()?;
    let mut counter = StreamCounter::new(&opts.special_tokens, opts.chunk_size, opts.workers()?);
    counter.begin_stream("<iterator>");
    let mut sink = PyProgress {
        callback: progress,
        error: None,
    };
    let mut iter = iterable.try_iter()?;
    let mut index = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut done = false;
    let mut next_report = 0u64;
    while !done {
        // Refill under the GIL ...
        buf.clear();
        let mut items = 0;
        while items < BATCH_ITEMS && buf.len() < BATCH_BYTES {
            let Some(item) = iter.next() else {
                done = true;
                break;
            };
            let item = item?;
            let s = item.cast::<pyo3::types::PyString>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "the iterable must yield str, item {index} is {}",
                    item.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| "?".into())
                ))
            })?;
            buf.extend_from_slice(s.to_str()?.as_bytes());
            items += 1;
            index += 1;
        }
        // ... then count without it.
        py.detach(|| counter.push(&buf))?;
        if counter.input_bytes() >= next_report {
            next_report = counter.input_bytes() + (8 << 20);
            if !sink.report(Progress::Counting {
                done: counter.input_bytes(),
                total: 0,
            }) {
                return Err(sink.into_err(crate::BpeError::InvalidArgument("cancelled".into())));
            }
        }
    }
    let result = py.detach(|| {
        counter.end_stream()?;
        let (counts, input_bytes) = counter.finish()?;
        train::ensure_not_empty(&counts, "the iterable")?;
        train::train_from_counts(counts, input_bytes, &opts, &mut |p| sink.report(p))
    });
    match result {
        Ok(r) => result_to_py(py, r),
        Err(e) => Err(sink.into_err(e)),
    }
}

/// The GPT-2 pre-tokens of `text` (for tests against the `regex` module).
#[pyfunction]
fn pretokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    crate::pretokenize::for_each_pretoken(text, |p| out.push(p.to_string()));
    out
}

/// One byte per code point 0..=0x10FFFF: 0 letter, 1 number, 2 whitespace, 3 other
/// (surrogates, which never occur in text, read as other).
#[pyfunction]
fn char_classes(py: Python<'_>) -> Bound<'_, PyBytes> {
    let table: Vec<u8> = (0..0x11_0000u32)
        .map(|cp| char::from_u32(cp).map_or(3, |c| crate::pretokenize::char_class(c) as u8))
        .collect();
    PyBytes::new(py, &table)
}

/// Threads used when none are given: RAYON_NUM_THREADS, else the number of cores.
#[pyfunction]
fn default_threads() -> usize {
    crate::threads::default_threads()
}

/// The largest `num_threads` a call accepts.
#[pyfunction]
fn max_threads() -> usize {
    crate::threads::max_threads()
}

fn register_training(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_bpe_files, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_iter, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    m.add_function(wrap_pyfunction!(char_classes, m)?)?;
    m.add("DEFAULT_CHUNK_SIZE", train::DEFAULT_CHUNK_SIZE)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    Ok(())
}
// -- end training -----------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Encoding (rust/encode.rs): the `Encoder` class and live file progress.
// ---------------------------------------------------------------------------------------------

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyByteArray;

use crate::encode::{Encoder, Width};
use crate::threads::with_threads;

/// Input bytes done by a running `Encoder.encode_file`, readable from another Python thread.
#[pyclass(frozen, module = "bpe336._core")]
pub struct FileProgress {
    done: std::sync::Arc<AtomicU64>,
}

#[pymethods]
impl FileProgress {
    #[new]
    fn new() -> Self {
        FileProgress {
            done: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    #[getter]
    fn bytes_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// A token id argument (the core checks its range against the vocabulary).
fn token_id(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    int_arg(obj, |v| format!("token id {v} is out of range"))
}

/// A byte-level BPE encoder; immutable, so many Python threads may share one.
#[pyclass(frozen, name = "Encoder", module = "bpe336._core")]
pub struct PyEncoder {
    inner: Encoder,
    /// The Python int of every id, made once: id lists are built by taking references to
    /// these instead of allocating an int object per token.
    ints: Vec<Py<PyAny>>,
}

impl PyEncoder {
    /// The Python list of `ids` (all below the vocabulary size, as the encoder makes them).
    fn id_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, ids.iter().map(|&id| self.ints[id as usize].bind(py)))
    }
}

#[pymethods]
impl PyEncoder {
    /// vocab: [(id, bytes)], merges: [(bytes, bytes)] in rank order, special_tokens: [(str, id)].
    #[new]
    #[pyo3(signature = (vocab, merges, special_tokens=Vec::new()))]
    fn py_new(
        py: Python<'_>,
        vocab: Vec<(Bound<'_, PyAny>, Vec<u8>)>,
        merges: Vec<(Vec<u8>, Vec<u8>)>,
        special_tokens: Vec<(String, Bound<'_, PyAny>)>,
    ) -> PyResult<Self> {
        let vocab = vocab
            .into_iter()
            .map(|(id, bytes)| Ok((token_id(&id)?, bytes)))
            .collect::<PyResult<Vec<_>>>()?;
        let special_tokens = special_tokens
            .into_iter()
            .map(|(text, id)| Ok((text, token_id(&id)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = py.detach(|| Encoder::new(vocab, merges, special_tokens))?;
        // Gaps in the ids (bounded by `encode::id_limit`) get None: ids never name them.
        let ints = (0..inner.vocab_size() as u32)
            .map(|id| match inner.token_bytes(id) {
                Some(_) => Ok(id.into_pyobject(py)?.into_any().unbind()),
                None => Ok(py.None()),
            })
            .collect::<PyResult<_>>()?;
        Ok(PyEncoder { inner, ints })
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
    fn py_encode<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| self.inner.encode(text));
        self.id_list(py, &ids)
    }

    /// Ids of `text` with special tokens treated as ordinary text.
    #[pyo3(name = "encode_ordinary")]
    fn py_encode_ordinary<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| self.inner.encode_ordinary(text));
        self.id_list(py, &ids)
    }

    /// (ids, n): the ids of text[:n], where n (in characters) is the last safe cut; (ids of
    /// nothing, 0) when there is none. For streaming: keep text[n:] and append to it.
    #[pyo3(name = "encode_prefix")]
    fn py_encode_prefix<'py>(
        &self,
        py: Python<'py>,
        text: &str,
    ) -> PyResult<(Bound<'py, PyList>, usize)> {
        let (ids, cut) = py.detach(|| self.inner.encode_prefix(text));
        // Characters = bytes that are not UTF-8 continuation bytes.
        let chars = text.as_bytes()[..cut]
            .iter()
            .filter(|&&b| (b as i8) >= -0x40)
            .count();
        Ok((self.id_list(py, &ids)?, chars))
    }

    /// Ids of each text, encoded in parallel.
    #[pyo3(name = "encode_batch", signature = (texts, num_threads=None))]
    fn py_encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        num_threads: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Vec<u32>>> {
        let num_threads = threads_arg(num_threads)?;
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
        num_threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let width = Width::from_bytes(width)?;
        let num_threads = threads_arg(num_threads)?;
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
        header_len: &Bound<'_, PyAny>,
        width: usize,
        num_threads: Option<&Bound<'_, PyAny>>,
        progress: Option<Bound<'_, FileProgress>>,
    ) -> PyResult<(u64, u64, u64)> {
        let width = Width::from_bytes(width)?;
        let num_threads = threads_arg(num_threads)?;
        let header_len = int_arg(header_len, |v| format!("header_len {v} is out of range"))?;
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
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id > u32::MAX as i64) {
            return Err(PyKeyError::new_err(format!(
                "token id {bad} is not in the vocabulary"
            )));
        }
        let ids: Vec<u32> = ids.into_iter().map(|id| id as u32).collect();
        let bytes = py.detach(|| self.inner.decode_bytes(&ids))?;
        Ok(pyo3::types::PyBytes::new(py, &bytes))
    }

    /// The bytes of one token, or None.
    fn token_bytes<'py>(
        &self,
        py: Python<'py>,
        id: i64,
    ) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        let id = u32::try_from(id).ok()?;
        self.inner
            .token_bytes(id)
            .map(|b| pyo3::types::PyBytes::new(py, b))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    // -- training (rust/train.rs) registers here --
    register_training(m)?;
    // -- encoding (rust/encode.rs) registers here --
    m.add_class::<PyEncoder>()?;
    m.add_class::<FileProgress>()?;
    Ok(())
}
