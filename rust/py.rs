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

// -- training ---------------------------------------------------------------------------------
// `train_bpe_files`, `train_bpe_iter`, and two helpers for the tests (`pretokenize`,
// `char_classes`). Python's `bpe336.train` validates types and wraps these.

use std::sync::Arc;

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
    vocab_size: usize,
    special_tokens: Vec<String>,
    num_threads: Option<usize>,
    chunk_size: Option<usize>,
) -> TrainOptions {
    let mut opts = TrainOptions::new(vocab_size, special_tokens);
    opts.num_threads = num_threads;
    if let Some(c) = chunk_size {
        opts.chunk_size = c;
    }
    opts
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
    vocab_size: usize,
    special_tokens: Vec<String>,
    num_threads: Option<usize>,
    chunk_size: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = train_options(vocab_size, special_tokens, num_threads, chunk_size);
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
    vocab_size: usize,
    special_tokens: Vec<String>,
    num_threads: Option<usize>,
    chunk_size: Option<usize>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const BATCH_BYTES: usize = 8 << 20;
    const BATCH_ITEMS: usize = 8192;
    let opts = train_options(vocab_size, special_tokens, num_threads, chunk_size);
    opts.validate()?;
    let pool = Arc::new(opts.build_pool()?);
    let mut counter = StreamCounter::new(&opts.special_tokens, opts.chunk_size, pool);
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

fn register_training(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_bpe_files, m)?)?;
    m.add_function(wrap_pyfunction!(train_bpe_iter, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    m.add_function(wrap_pyfunction!(char_classes, m)?)?;
    m.add("DEFAULT_CHUNK_SIZE", train::DEFAULT_CHUNK_SIZE)?;
    Ok(())
}
// -- end training -----------------------------------------------------------------------------

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    // -- training (rust/train.rs) registers here --
    register_training(m)?;
    // -- encoding (rust/encode.rs) registers here --
    Ok(())
}
