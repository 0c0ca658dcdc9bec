//! The only file that knows about PyO3: classes, conversions, GIL release, error mapping.
//!
//! Every heavy call converts its inputs to owned Rust data, then runs with the GIL released
//! through `Call::run`, which keeps Ctrl-C working during long calls. `BpeError` maps to the
//! matching Python exception class.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::{
    PyIsADirectoryError, PyKeyError, PyKeyboardInterrupt, PyOSError, PyOverflowError,
    PyRuntimeError, PyUnicodeDecodeError, PyValueError,
};
use pyo3::prelude::*;

use crate::cancel::CancelFlag;
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
            BpeError::InvalidUtf8 { offset, bad, .. } => {
                // (encoding, object, start, end, reason): start and end are absolute offsets in
                // the file, the object holds just the bad bytes (the file may be gigabytes), and
                // the reason names the path and the offset.
                let start = offset as usize;
                let end = start + bad.len();
                PyUnicodeDecodeError::new_err(("utf-8", bad, start, end, msg))
            }
            BpeError::InvalidArgument(_) | BpeError::MalformedFile { .. } => {
                PyValueError::new_err(msg)
            }
            BpeError::MalformedCounts { .. } => CountsFileError::new_err(msg),
            BpeError::UnknownId(_) => PyKeyError::new_err(msg),
            // Stopped by request (Ctrl-C, or Python code that set the call's flag). When Python
            // code raised, `Call::run` raises that exception instead.
            BpeError::Cancelled => PyKeyboardInterrupt::new_err(msg),
            BpeError::Internal(_) | BpeError::ThreadPool(_) => PyRuntimeError::new_err(msg),
        }
    }
}

// -- long calls -------------------------------------------------------------------------------

/// How often a waiting caller runs Python's signal handlers during a long call.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the core asks of Python during a long call (answered on the calling thread).
enum Ask {
    /// Report progress: (phase, done, total).
    Progress(&'static str, u64, u64),
    /// Append the next batch of an iterator's strings to this buffer and hand it back, with
    /// false once the iterator is exhausted.
    Batch(Vec<u8>),
}

enum Answer {
    Done,
    Batch(Vec<u8>, bool),
}

/// Answers `Ask`s with Python code; an exception it raises cancels the call.
type Handler<'a> = dyn FnMut(Python<'_>, Ask) -> PyResult<Answer> + Send + 'a;

/// The core's side of a call: asks Python (see `Call`) and waits for the answer.
struct Asker {
    tx: Option<Sender<(Ask, SyncSender<Option<Answer>>)>>,
}

impl Asker {
    /// The answer, or `Cancelled` when the Python code raised (its exception is kept).
    fn ask(&self, ask: Ask) -> crate::error::Result<Answer> {
        let Some(tx) = &self.tx else {
            return Err(BpeError::Internal("no Python handler for this call".into()));
        };
        let (reply, answer) = sync_channel(1);
        tx.send((ask, reply))
            .map_err(|_| BpeError::Internal("the caller stopped answering".into()))?;
        answer.recv().ok().flatten().ok_or(BpeError::Cancelled)
    }

    fn progress(&self, p: Progress) -> bool {
        let (phase, done, total) = match p {
            Progress::Counting { done, total } => ("count", done, total),
            Progress::Merging { done, total } => ("merge", done, total),
        };
        self.ask(Ask::Progress(phase, done, total)).is_ok()
    }
}

/// One long call into the core, run with the GIL released and still stoppable with Ctrl-C.
///
/// Python runs signal handlers only on its main thread, and only while that thread runs Python
/// code or holds the GIL. So the core works on a scoped helper thread while the calling thread
/// waits for its questions (`Ask`: progress reports, batches of an iterator's strings), answers
/// them with Python code, and between questions takes the GIL every `SIGNAL_CHECK_INTERVAL` to
/// run the signal handlers. All Python code thus runs on the calling thread, as if there were
/// no helper: a blocking read in an iterator is interrupted by Ctrl-C as usual. The first
/// exception (KeyboardInterrupt from a handler, or whatever a callback or iterator raises) sets
/// the call's `CancelFlag`, the core stops at its next check, and that exception is raised as
/// itself. A panic in the core becomes a RuntimeError.
struct Call {
    cancel: CancelFlag,
    error: Mutex<Option<PyErr>>,
}

impl Call {
    fn new(cancel: CancelFlag) -> Call {
        Call {
            cancel,
            error: Mutex::new(None),
        }
    }

    /// Keeps the first Python exception and cancels the call.
    fn fail(&self, e: PyErr) {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
        self.cancel.cancel();
    }

    /// Runs `work` on a helper thread with the GIL released, answering its questions with
    /// `handler` (see the type's docs).
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        handler: &mut Handler<'_>,
        work: impl FnOnce(&Asker, &CancelFlag) -> crate::error::Result<T> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| {
            std::thread::scope(|scope| {
                let (tx, questions) = channel();
                let helper = scope.spawn(move || {
                    let asker = Asker { tx: Some(tx) };
                    std::panic::catch_unwind(AssertUnwindSafe(|| work(&asker, &self.cancel)))
                    // `asker` drops here: the loop below sees the channel close.
                });
                loop {
                    match questions.recv_timeout(SIGNAL_CHECK_INTERVAL) {
                        Ok((ask, reply)) => {
                            let answer = match Python::attach(|py| handler(py, ask)) {
                                Ok(a) => Some(a),
                                Err(e) => {
                                    self.fail(e);
                                    None
                                }
                            };
                            let _ = reply.send(answer);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                self.fail(e);
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                match helper.join() {
                    Ok(Ok(r)) => r,
                    Ok(Err(panic)) | Err(panic) => Err(BpeError::Internal(panic_message(&panic))),
                }
            })
        });
        self.finish(result)
    }

    /// `run` without questions, for work that may be short: small inputs run directly (a
    /// helper thread per call would cost more than they do, and they finish long before a
    /// person can press Ctrl-C).
    fn run_sized<T: Send>(
        &self,
        py: Python<'_>,
        bytes: usize,
        work: impl FnOnce(&CancelFlag) -> crate::error::Result<T> + Send,
    ) -> PyResult<T> {
        /// Inputs below this many bytes take well under a second.
        const WATCH_MIN_BYTES: usize = 1 << 20;
        if bytes < WATCH_MIN_BYTES {
            let result = py.detach(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| work(&self.cancel)))
                    .unwrap_or_else(|panic| Err(BpeError::Internal(panic_message(&panic))))
            });
            return self.finish(result);
        }
        self.run(py, &mut |_, _| Ok(Answer::Done), |_, cancel| work(cancel))
    }

    /// The call's outcome: a kept Python exception wins, even over a result that was ready
    /// just as it came; otherwise the core's error, mapped.
    fn finish<T>(&self, result: crate::error::Result<T>) -> PyResult<T> {
        let kept = self
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (kept, result) {
            (Some(e), _) => Err(e),
            (None, r) => r.map_err(PyErr::from),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("a task panicked: {what}")
}

/// Runs a panicking task the way every long call runs (for the tests of the error mapping).
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    Call::new(CancelFlag::default()).run(
        py,
        &mut |_, _| Ok(Answer::Done),
        |_, _| -> crate::error::Result<()> { panic!("deliberate panic") },
    )
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

// -- patterns ---------------------------------------------------------------------------------
// `resolve_pattern`, `pretokenize` and the pattern constants. Every `pattern` argument is a str:
// a name ("gpt2", "cl100k", "o200k") or a regex, resolved by `pretokenize::Pattern::new` (a bad
// one is a ValueError).

use crate::pretokenize::Pattern;

/// The `pattern` argument as a `Pattern`, resolved with the GIL released (a custom regex
/// compiles there).
fn pattern_arg(py: Python<'_>, pattern: &str) -> PyResult<Pattern> {
    Ok(py.detach(|| Pattern::new(pattern))?)
}

/// (name, regex) of a pattern argument: name is "gpt2", "cl100k", "o200k" or "custom"; regex is
/// the named pattern's regex, or the argument itself. ValueError for an invalid regex.
#[pyfunction]
fn resolve_pattern(py: Python<'_>, pattern: &str) -> PyResult<(&'static str, String)> {
    let p = pattern_arg(py, pattern)?;
    // A name stands for its regex; a regex (even another spelling of a named one) is kept.
    let regex = if pattern == p.name() {
        p.regex()
    } else {
        pattern
    };
    Ok((p.name(), regex.to_string()))
}

/// The pre-tokens of `text` with `pattern` (for tests against the `regex` module).
#[pyfunction]
#[pyo3(signature = (text, pattern="gpt2"))]
fn pretokenize(py: Python<'_>, text: &str, pattern: &str) -> PyResult<Vec<String>> {
    let p = pattern_arg(py, pattern)?;
    let mut out = Vec::new();
    py.detach(|| p.for_each_pretoken(text, |t| out.push(t.to_string())))?;
    Ok(out)
}

fn register_patterns(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GPT2_PATTERN", crate::pretokenize::GPT2_PATTERN)?;
    m.add("CL100K_PATTERN", crate::pretokenize::CL100K_PATTERN)?;
    m.add("O200K_PATTERN", crate::pretokenize::O200K_PATTERN)?;
    m.add(
        "TIKTOKEN_GPT2_PATTERN",
        crate::pretokenize::TIKTOKEN_GPT2_PATTERN,
    )?;
    m.add(
        "PATTERN_NAMES",
        crate::pretokenize::NAMED_PATTERNS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>(),
    )?;
    m.add_function(wrap_pyfunction!(resolve_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    Ok(())
}

// -- training ---------------------------------------------------------------------------------
// `train_bpe_files`, `train_bpe_iter`, and a helper for the tests (`char_classes`). Python's
// `bpe336.train` validates types and wraps these.

use pyo3::types::{PyBytes, PyDict, PyIterator, PyList};

use crate::train::{self, Progress, TrainOptions, TrainResult};

/// Answers the trainer's progress reports with a Python callable `(phase: str, done: int,
/// total: int)` (called at most about 100 times per phase), and the streaming trainer's
/// requests for text with batches of `iter`'s strings.
fn training_handler(
    callback: Option<Py<PyAny>>,
    iter: Option<Py<PyIterator>>,
) -> impl FnMut(Python<'_>, Ask) -> PyResult<Answer> + Send {
    let mut index = 0usize;
    move |py, ask| match ask {
        Ask::Progress(phase, done, total) => {
            if let Some(cb) = &callback {
                cb.call1(py, (phase, done, total))?;
            }
            Ok(Answer::Done)
        }
        Ask::Batch(mut buf) => match &iter {
            Some(it) => {
                let more = pull_batch(py, it, &mut index, &mut buf)?;
                Ok(Answer::Batch(buf, more))
            }
            None => Ok(Answer::Batch(buf, false)),
        },
    }
}

fn train_options(
    py: Python<'_>,
    vocab_size: &Bound<'_, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
    pattern: &str,
) -> PyResult<TrainOptions> {
    let mut opts = TrainOptions::new(size_arg("vocab_size", vocab_size)?, special_tokens);
    opts.count.num_threads = threads_arg(num_threads)?;
    if let Some(c) = chunk_size {
        opts.count.chunk_size = size_arg("chunk_size", c)?;
    }
    opts.count.pattern = pattern_arg(py, pattern)?;
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
#[pyo3(signature = (paths, vocab_size, special_tokens, num_threads=None, chunk_size=None, progress=None, pattern="gpt2"))]
#[allow(clippy::too_many_arguments)]
fn train_bpe_files<'py>(
    py: Python<'py>,
    paths: Vec<std::path::PathBuf>,
    vocab_size: &Bound<'py, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'py, PyAny>>,
    chunk_size: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
    pattern: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = train_options(
        py,
        vocab_size,
        special_tokens,
        num_threads,
        chunk_size,
        pattern,
    )?;
    let mut handler = training_handler(progress, None);
    let r = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
        train::train_files(&paths, &opts, &mut |p| asker.progress(p), cancel)
    })?;
    result_to_py(py, r)
}

/// Trains on the concatenation of the strings an iterable yields (one stream, as if they were
/// one file). The core's streaming loop (`train::train_stream`) runs with the GIL released and
/// takes it only to pull the next batch of strings.
#[pyfunction]
#[pyo3(signature = (iterable, vocab_size, special_tokens, num_threads=None, chunk_size=None, progress=None, pattern="gpt2"))]
#[allow(clippy::too_many_arguments)]
fn train_bpe_iter<'py>(
    py: Python<'py>,
    iterable: &Bound<'py, PyAny>,
    vocab_size: &Bound<'py, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'py, PyAny>>,
    chunk_size: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
    pattern: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = train_options(
        py,
        vocab_size,
        special_tokens,
        num_threads,
        chunk_size,
        pattern,
    )?;
    let iter: Py<PyIterator> = iterable.try_iter()?.unbind();
    let mut handler = training_handler(progress, Some(iter));
    let r = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
        let mut next_batch = |buf: &mut Vec<u8>| next_batch_from(asker, buf);
        train::train_stream(
            "the iterable",
            &mut next_batch,
            &opts,
            &mut |p| asker.progress(p),
            cancel,
        )
    })?;
    result_to_py(py, r)
}

/// The core's side of `pull_batch`: asks the caller for the next batch of strings, appended to
/// `buf`; false once the iterable is exhausted.
fn next_batch_from(asker: &Asker, buf: &mut Vec<u8>) -> crate::error::Result<bool> {
    match asker.ask(Ask::Batch(std::mem::take(buf)))? {
        Answer::Batch(filled, more) => {
            *buf = filled;
            Ok(more)
        }
        Answer::Done => Ok(false),
    }
}

/// Appends the UTF-8 of up to a batch of strings from `iter` to `buf`; false once it is
/// exhausted. `index` counts the items pulled, for the message about a non-str item.
fn pull_batch(
    py: Python<'_>,
    iter: &Py<PyIterator>,
    index: &mut usize,
    buf: &mut Vec<u8>,
) -> PyResult<bool> {
    const BATCH_BYTES: usize = 8 << 20;
    const BATCH_ITEMS: usize = 8192;
    let mut iter = iter.bind(py).clone();
    for _ in 0..BATCH_ITEMS {
        let Some(item) = iter.next() else {
            return Ok(false);
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
        *index += 1;
        if buf.len() >= BATCH_BYTES {
            break;
        }
    }
    Ok(true)
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
    m.add_function(wrap_pyfunction!(char_classes, m)?)?;
    m.add("DEFAULT_CHUNK_SIZE", train::DEFAULT_CHUNK_SIZE)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    Ok(())
}
// -- end training -----------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Kept counts (rust/counts.rs): the `PretokenCounts` class, counting into it, byte-range shards.
// ---------------------------------------------------------------------------------------------

use std::sync::Arc;

use crate::counts::Counts;
use crate::shard::ByteRange;

/// Pre-token counts with their pattern and special tokens; immutable (merging makes new ones).
#[pyclass(frozen, name = "PretokenCounts", module = "bpe336._core")]
pub struct PyCounts {
    inner: Arc<Counts>,
}

impl PyCounts {
    fn wrap(c: Counts) -> PyCounts {
        PyCounts { inner: Arc::new(c) }
    }
}

/// Counting arguments: special tokens, threads, chunk size and pattern (as for training).
fn count_options(
    py: Python<'_>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
    pattern: &str,
) -> PyResult<train::CountOptions> {
    let mut opts = train::CountOptions::new(special_tokens);
    opts.num_threads = threads_arg(num_threads)?;
    if let Some(c) = chunk_size {
        opts.chunk_size = size_arg("chunk_size", c)?;
    }
    opts.pattern = pattern_arg(py, pattern)?;
    opts.validate()?;
    Ok(opts)
}

/// Keeps what counting gave, sorted on the call's threads.
fn keep(
    counted: (train::PretokenCounts, u64),
    opts: &train::CountOptions,
) -> crate::error::Result<Counts> {
    let (counts, bytes) = counted;
    let (pattern, specials) = (opts.pattern.clone(), opts.special_tokens.clone());
    with_threads(opts.num_threads, || {
        Counts::new(counts, bytes, pattern, specials)
    })?
}

/// Counts the pre-tokens of files (each an independent text).
#[pyfunction]
#[pyo3(signature = (paths, special_tokens, num_threads=None, chunk_size=None, progress=None, pattern="gpt2"))]
fn count_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
    progress: Option<Py<PyAny>>,
    pattern: &str,
) -> PyResult<PyCounts> {
    let opts = count_options(py, special_tokens, num_threads, chunk_size, pattern)?;
    let mut handler = training_handler(progress, None);
    let c = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
        let counted = train::count_files(&paths, &opts, &mut |p| asker.progress(p), cancel)?;
        keep(counted, &opts)
    })?;
    Ok(PyCounts::wrap(c))
}

/// Counts the concatenation of the strings an iterable yields (one text).
#[pyfunction]
#[pyo3(signature = (iterable, special_tokens, num_threads=None, chunk_size=None, progress=None, pattern="gpt2"))]
fn count_iter(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
    progress: Option<Py<PyAny>>,
    pattern: &str,
) -> PyResult<PyCounts> {
    let opts = count_options(py, special_tokens, num_threads, chunk_size, pattern)?;
    let iter: Py<PyIterator> = iterable.try_iter()?.unbind();
    let mut handler = training_handler(progress, Some(iter));
    let c = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
        let mut next_batch = |buf: &mut Vec<u8>| next_batch_from(asker, buf);
        let counted = train::count_stream(
            "the iterable",
            &mut next_batch,
            &opts,
            &mut |p| asker.progress(p),
            cancel,
        )?;
        keep(counted, &opts)
    })?;
    Ok(PyCounts::wrap(c))
}

/// Counts the bytes of a regular file that the shard given `start..end` owns
/// (rust/shard.rs). Returns (counts, (first, last) owned, or None when it owns nothing).
#[pyfunction]
#[pyo3(signature = (path, start, end, special_tokens, num_threads=None, chunk_size=None, progress=None, pattern="gpt2"))]
#[allow(clippy::too_many_arguments)]
fn count_range(
    py: Python<'_>,
    path: PathBuf,
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    special_tokens: Vec<String>,
    num_threads: Option<&Bound<'_, PyAny>>,
    chunk_size: Option<&Bound<'_, PyAny>>,
    progress: Option<Py<PyAny>>,
    pattern: &str,
) -> PyResult<(PyCounts, Option<ByteRange>)> {
    let (start, end) = (offset_arg(start)?, offset_arg(end)?);
    let opts = count_options(py, special_tokens, num_threads, chunk_size, pattern)?;
    let mut handler = training_handler(progress, None);
    let (c, owned) = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
        let (counts, bytes, owned) =
            train::count_file_range(&path, start, end, &opts, &mut |p| asker.progress(p), cancel)?;
        Ok((keep((counts, bytes), &opts)?, owned))
    })?;
    Ok((PyCounts::wrap(c), owned))
}

/// The bytes `(first, last)` of a regular file that the shard given `start..end` owns with this
/// pattern and these special tokens, or None (rust/shard.rs).
#[pyfunction]
#[pyo3(signature = (path, start, end, special_tokens, pattern="gpt2"))]
fn owned_range(
    py: Python<'_>,
    path: PathBuf,
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    special_tokens: Vec<String>,
    pattern: &str,
) -> PyResult<Option<ByteRange>> {
    let (start, end) = (offset_arg(start)?, offset_arg(end)?);
    let pattern = pattern_arg(py, pattern)?;
    let specials = crate::pretokenize::SpecialTokens::new(&special_tokens)?;
    Call::new(CancelFlag::default()).run(py, &mut |_, _| Ok(Answer::Done), |_, cancel| {
        crate::shard::owned_range(&path, start, end, &pattern.cuts(&specials), cancel)
    })
}

/// A byte offset in a file.
fn offset_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    int_arg(obj, |v| format!("byte offset {v} is out of range"))
}

#[pymethods]
impl PyCounts {
    /// Number of distinct pre-tokens.
    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    /// Number of pre-tokens counted, with multiplicity.
    #[getter]
    fn total(&self) -> u64 {
        self.inner.total()
    }

    /// Bytes of text counted.
    #[getter]
    fn input_bytes(&self) -> u64 {
        self.inner.input_bytes()
    }

    /// The pre-tokenization regex (a named pattern's constant).
    #[getter]
    fn pattern(&self) -> &str {
        self.inner.pattern().regex()
    }

    /// "gpt2", "cl100k", "o200k" or "custom".
    #[getter]
    fn pattern_name(&self) -> &'static str {
        self.inner.pattern().name()
    }

    #[getter]
    fn special_tokens(&self) -> Vec<String> {
        self.inner.special_tokens().to_vec()
    }

    /// Each distinct pre-token and its count, sorted by bytes.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.iter().map(|(k, v)| (PyBytes::new(py, k), v)))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyCounts>().is_ok_and(|o| {
            Arc::ptr_eq(&self.inner, &o.get().inner) || *self.inner == *o.get().inner
        })
    }

    /// The counts file's bytes (the format of `save`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let inner = Arc::clone(&self.inner);
        let data = py.detach(move || inner.to_bytes());
        PyBytes::new(py, &data)
    }

    /// Counts from a counts file's bytes (`to_bytes`); CountsFileError when they are not one.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<PyCounts> {
        let c = py.detach(|| Counts::from_bytes(data, "<bytes>"))?;
        Ok(PyCounts::wrap(c))
    }

    /// Writes the counts file to `path` (created or replaced; the caller makes it atomic).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let inner = Arc::clone(&self.inner);
        Ok(py.detach(move || inner.write(&path))?)
    }

    /// Reads a counts file; CountsFileError when it is not one (another version, damaged).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyCounts> {
        Ok(PyCounts::wrap(py.detach(|| Counts::read(&path))?))
    }

    /// These counts plus `others` (same pattern and special tokens), as new counts.
    fn merge(&self, py: Python<'_>, others: Vec<Bound<'_, PyCounts>>) -> PyResult<PyCounts> {
        let mut parts = vec![Arc::clone(&self.inner)];
        parts.extend(others.iter().map(|o| Arc::clone(&o.get().inner)));
        let merged = py.detach(move || {
            let refs: Vec<&Counts> = parts.iter().map(|c| c.as_ref()).collect();
            Counts::merge(&refs)
        })?;
        Ok(PyCounts::wrap(merged))
    }

    /// Trains on the counts: (vocab list, merges list, stats), as `train_bpe_files`. The
    /// special tokens and pattern must be the counts' own.
    #[pyo3(signature = (vocab_size, special_tokens, num_threads=None, progress=None, pattern=None))]
    fn train<'py>(
        &self,
        py: Python<'py>,
        vocab_size: &Bound<'py, PyAny>,
        special_tokens: Vec<String>,
        num_threads: Option<&Bound<'py, PyAny>>,
        progress: Option<Py<PyAny>>,
        pattern: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pattern = pattern.unwrap_or(self.inner.pattern().regex()).to_string();
        let opts = train_options(py, vocab_size, special_tokens, num_threads, None, &pattern)?;
        let inner = Arc::clone(&self.inner);
        let mut handler = training_handler(progress, None);
        let r = Call::new(CancelFlag::default()).run(py, &mut handler, |asker, cancel| {
            inner.train(&opts, &mut |p| asker.progress(p), cancel)
        })?;
        result_to_py(py, r)
    }
}

fn register_counts(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCounts>()?;
    m.add_function(wrap_pyfunction!(count_files, m)?)?;
    m.add_function(wrap_pyfunction!(count_iter, m)?)?;
    m.add_function(wrap_pyfunction!(count_range, m)?)?;
    m.add_function(wrap_pyfunction!(owned_range, m)?)?;
    m.add("CountsFileError", m.py().get_type::<CountsFileError>())?;
    m.add("COUNTS_FORMAT_VERSION", crate::counts::VERSION)?;
    Ok(())
}

pyo3::create_exception!(
    _core,
    CountsFileError,
    PyValueError,
    "A pre-token counts file that is not one, is of another format version, or is damaged."
);
// -- end counts -------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Encoding (rust/encode.rs): the `Encoder` class and live file progress.
// ---------------------------------------------------------------------------------------------

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyByteArray;

use crate::encode::{Encoder, Width};
use crate::threads::with_threads;

/// Input bytes done by a running `Encoder.encode_file`, readable from another Python thread,
/// and a way to stop it from there (`cancel`).
#[pyclass(frozen, module = "bpe336._core")]
pub struct FileProgress {
    done: std::sync::Arc<AtomicU64>,
    cancel: CancelFlag,
}

#[pymethods]
impl FileProgress {
    #[new]
    fn new() -> Self {
        FileProgress {
            done: std::sync::Arc::new(AtomicU64::new(0)),
            cancel: CancelFlag::default(),
        }
    }

    #[getter]
    fn bytes_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Asks the running `encode_file` to stop; it then raises KeyboardInterrupt.
    fn cancel(&self) {
        self.cancel.cancel();
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

    /// What `Call::run_sized` weighs encoding `text` on one thread as, so that a call that
    /// may take long runs where Ctrl-C reaches it: for a custom regex 64 times its bytes (a
    /// backtracking pattern can be slow on every match); for a named pattern a 32nd of them,
    /// so only texts of 32 MiB and more (a quarter of a second) are watched, as the watched
    /// work runs on a new thread whose cache starts cold (about 15% slower on such a text).
    fn cost(&self, text: &str) -> usize {
        match self.inner.pattern() {
            Pattern::Custom(_) => text.len().saturating_mul(64),
            _ => text.len() / 32,
        }
    }
}

#[pymethods]
impl PyEncoder {
    /// vocab: [(id, bytes)], merges: [(bytes, bytes)] in rank order, special_tokens: [(str, id)],
    /// pattern: a name ("gpt2", "cl100k", "o200k") or a regex.
    #[new]
    #[pyo3(signature = (vocab, merges, special_tokens=Vec::new(), pattern="gpt2"))]
    fn py_new(
        py: Python<'_>,
        vocab: Vec<(Bound<'_, PyAny>, Vec<u8>)>,
        merges: Vec<(Vec<u8>, Vec<u8>)>,
        special_tokens: Vec<(String, Bound<'_, PyAny>)>,
        pattern: &str,
    ) -> PyResult<Self> {
        let pattern = pattern_arg(py, pattern)?;
        let vocab = vocab
            .into_iter()
            .map(|(id, bytes)| Ok((token_id(&id)?, bytes)))
            .collect::<PyResult<Vec<_>>>()?;
        let special_tokens = special_tokens
            .into_iter()
            .map(|(text, id)| Ok((text, token_id(&id)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = py.detach(|| Encoder::new(vocab, merges, special_tokens, pattern))?;
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

    /// The pre-tokenization regex (a named pattern's constant).
    #[getter]
    fn pattern(&self) -> &str {
        self.inner.pattern().regex()
    }

    /// "gpt2", "cl100k", "o200k" or "custom".
    #[getter]
    fn pattern_name(&self) -> &'static str {
        self.inner.pattern().name()
    }

    /// Ids of `text`, special tokens recognised, on the calling thread (Ctrl-C stops a long one).
    #[pyo3(name = "encode")]
    fn py_encode<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = Call::new(CancelFlag::default()).run_sized(py, self.cost(text), |cancel| {
            self.inner.encode_on_this_thread(text, true, cancel)
        })?;
        self.id_list(py, &ids)
    }

    /// Ids of `text` with special tokens treated as ordinary text.
    #[pyo3(name = "encode_ordinary")]
    fn py_encode_ordinary<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let ids = Call::new(CancelFlag::default()).run_sized(py, self.cost(text), |cancel| {
            self.inner.encode_on_this_thread(text, false, cancel)
        })?;
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
        let (ids, cut) =
            Call::new(CancelFlag::default()).run_sized(py, self.cost(text), |cancel| {
                self.inner.encode_prefix(text, cancel)
            })?;
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
        let bytes = texts.iter().map(|t| t.len()).sum();
        Call::new(CancelFlag::default()).run_sized(py, bytes, |cancel| {
            with_threads(num_threads, || self.inner.encode_batch(&texts, cancel))?
        })
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
        let buf = Call::new(CancelFlag::default()).run_sized(py, text.len(), |cancel| {
            with_threads(num_threads, || {
                self.inner.encode_to_le_bytes(text, width, cancel)
            })?
        })?;
        Ok(PyByteArray::new(py, &buf))
    }

    /// Encodes the UTF-8 file `input` into `output` (little-endian, `width` bytes per id, after
    /// `header_len` zero bytes). Returns (input bytes, tokens, chunks). `input` may be a FIFO or
    /// a pipe; Ctrl-C (or `progress.cancel()`) stops it with KeyboardInterrupt, and the output
    /// is then incomplete (the caller removes it).
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
        let header_len = int_arg(header_len, |v| format!("header_len {v} is out of range"))?;
        let num_threads = threads_arg(num_threads)?;
        let (done, cancel) = match &progress {
            Some(p) => (p.get().done.clone(), p.get().cancel.clone()),
            None => Default::default(),
        };
        let stats = Call::new(cancel).run(py, &mut |_, _| Ok(Answer::Done), |_, cancel| {
            with_threads(num_threads, || {
                self.inner
                    .encode_file(&input, &output, header_len, width, &done, cancel)
            })?
        })?;
        Ok((stats.bytes, stats.tokens, stats.chunks))
    }

    /// `encode_file` for the bytes of the regular file `input` that the shard given
    /// `start..end` owns (rust/shard.rs, with this encoder's special tokens and pattern).
    /// Returns (input bytes, tokens, chunks, (first, last) owned or None when it owns nothing).
    #[pyo3(name = "encode_file_range", signature = (input, start, end, output, header_len, width, num_threads=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_encode_file_range(
        &self,
        py: Python<'_>,
        input: PathBuf,
        start: &Bound<'_, PyAny>,
        end: &Bound<'_, PyAny>,
        output: PathBuf,
        header_len: &Bound<'_, PyAny>,
        width: usize,
        num_threads: Option<&Bound<'_, PyAny>>,
        progress: Option<Bound<'_, FileProgress>>,
    ) -> PyResult<(u64, u64, u64, Option<ByteRange>)> {
        let (start, end) = (offset_arg(start)?, offset_arg(end)?);
        let width = Width::from_bytes(width)?;
        let header_len = int_arg(header_len, |v| format!("header_len {v} is out of range"))?;
        let num_threads = threads_arg(num_threads)?;
        let (done, cancel) = match &progress {
            Some(p) => (p.get().done.clone(), p.get().cancel.clone()),
            None => Default::default(),
        };
        let (stats, owned) =
            Call::new(cancel).run(py, &mut |_, _| Ok(Answer::Done), |_, cancel| {
                with_threads(num_threads, || {
                    self.inner.encode_file_range(
                        &input, start, end, &output, header_len, width, &done, cancel,
                    )
                })?
            })?;
        Ok((stats.bytes, stats.tokens, stats.chunks, owned))
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
    register_patterns(m)?;
    // -- training (rust/train.rs) registers here --
    register_training(m)?;
    register_counts(m)?;
    // -- encoding (rust/encode.rs) registers here --
    m.add_class::<PyEncoder>()?;
    m.add_class::<FileProgress>()?;
    Ok(())
}
