//! BPE training: streaming pre-token counting, then the merge loop.
//!
//! 1. Counting (`StreamCounter`, driven by `count_files`, `count_stream` and `count_texts`, each
//!    configured by one `CountOptions`: special tokens, pattern, threads, chunk size): input
//!    streams (files, or text pushed from an iterator) are cut into chunks at positions where
//!    cutting provably changes nothing (`pretokenize::Cuts`, with the pattern's rule), each
//!    chunk is validated as UTF-8 (errors carry the absolute byte offset) and counted by a rayon
//!    task (`PretokenCounts`): pre-tokens under 16 bytes are packed into an integer key (no
//!    allocation, no memcmp), longer ones are looked up by borrowed slice and allocated only
//!    on first sight; a small per-chunk map that stays in cache is folded into the worker's
//!    total once per chunk. At most two chunks per thread are in flight, so memory is bounded
//!    by the distinct pre-tokens, not the input. NOTE: a custom regex has no safe cut inside
//!    text, so its streams are cut only where special tokens start: the longest stretch between
//!    two special tokens is then held (and counted by one thread) at once.
//! 2. Merging (`merge_counts`): each distinct pre-token becomes a word (symbol ids, in one
//!    arena) with its count. One hash map holds each pair's count and the words it occurs in,
//!    and a binary heap gives the best pair. Heap entries are refreshed lazily: a pair that
//!    loses count keeps its old (too high) entry, which is pushed back with the current count
//!    when it reaches the top; a pair that gains count (new pairs of the new token) gets a
//!    fresh entry after each merge. Only the words listed for the merged pair are touched.
//!    Pairs are pairs of token *bytes*: a merge that re-creates an existing token's bytes
//!    reuses its symbol, as a bytes-keyed reference implementation would.
//!
//! Order of pairs: higher count first, ties to the lexicographically greatest
//! `(bytes_a, bytes_b)` (Python tuple order on the token *bytes*, not on ids).

use std::cmp::Ordering;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry as MapEntry;

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};
use crate::input::{self, Input};
use crate::pretokenize::{Pattern, Segment, SpecialTokens};
use crate::shard;
use crate::threads::{self, Workers};

/// Distinct pre-tokens (their bytes) and how often each occurs.
pub type CountMap = FxHashMap<Box<[u8]>, u64>;

/// Default chunk size for streaming (bytes). Large enough to amortise task overhead, small
/// enough that a few chunks in flight stay far below the memory of the counts themselves.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

/// The largest streaming chunk (1 GiB): a chunk is held in memory whole.
pub const MAX_CHUNK_SIZE: usize = 1 << 30;

/// What the trainer reports while it runs (at most about 100 calls per phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Counting pre-tokens: input bytes read so far (of `total` when known, else 0).
    Counting { done: u64, total: u64 },
    /// Merging: merges made so far, of at most `total`.
    Merging { done: u64, total: u64 },
}

/// A progress sink. Returning `false` cancels training (it then returns `BpeError::Cancelled`).
pub type ProgressFn<'a> = dyn FnMut(Progress) -> bool + 'a;

/// Counting arguments, shared by every entry point that counts pre-tokens (training, and any
/// caller that keeps counts): the counts depend on the special tokens and the pattern only.
#[derive(Debug, Clone)]
pub struct CountOptions {
    /// Special tokens: hard boundaries that never enter the counts.
    pub special_tokens: Vec<String>,
    /// The pre-tokenization pattern.
    pub pattern: Pattern,
    /// Worker threads (None: rayon's default, which honours RAYON_NUM_THREADS).
    pub num_threads: Option<usize>,
    /// Streaming chunk size in bytes; results never depend on it.
    pub chunk_size: usize,
}

impl CountOptions {
    /// GPT-2 pattern, default threads and chunk size.
    pub fn new(special_tokens: Vec<String>) -> Self {
        CountOptions {
            special_tokens,
            pattern: Pattern::default(),
            num_threads: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// Rejects inconsistent arguments with a readable message.
    pub fn validate(&self) -> Result<()> {
        let mut seen = rustc_hash::FxHashSet::default();
        for (i, tok) in self.special_tokens.iter().enumerate() {
            if tok.is_empty() {
                return Err(BpeError::InvalidArgument(format!(
                    "special token {i} is empty"
                )));
            }
            if !seen.insert(tok) {
                return Err(BpeError::InvalidArgument(format!(
                    "special token {tok:?} is given twice"
                )));
            }
        }
        if let Some(n) = self.num_threads {
            threads::check(n)?;
        }
        if !(1..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(BpeError::InvalidArgument(format!(
                "chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes, got {}",
                self.chunk_size
            )));
        }
        Ok(())
    }

    /// The worker threads the counting runs on (`threads::Workers`).
    pub fn workers(&self) -> Result<Workers> {
        Workers::new(self.num_threads)
    }
}

/// Training arguments shared by all entry points: the vocabulary size and how to count.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Final vocabulary size: specials + 256 bytes + merges.
    pub vocab_size: usize,
    /// Special tokens (in id order), pattern, threads, chunk size.
    pub count: CountOptions,
}

impl TrainOptions {
    /// GPT-2 pattern, default threads and chunk size.
    pub fn new(vocab_size: usize, special_tokens: Vec<String>) -> Self {
        TrainOptions {
            vocab_size,
            count: CountOptions::new(special_tokens),
        }
    }

    /// Special tokens, in id order.
    pub fn special_tokens(&self) -> &[String] {
        &self.count.special_tokens
    }

    /// Rejects inconsistent arguments with a readable message.
    pub fn validate(&self) -> Result<()> {
        let n_specials = self.count.special_tokens.len();
        let min = 256 + n_specials;
        if self.vocab_size < min {
            return Err(BpeError::InvalidArgument(format!(
                "vocab_size {} is too small: it must be at least 256 + {n_specials} special tokens = {min}",
                self.vocab_size,
            )));
        }
        if self.vocab_size > u32::MAX as usize {
            return Err(BpeError::InvalidArgument(format!(
                "vocab_size {} is too large",
                self.vocab_size
            )));
        }
        self.count.validate()
    }
}

/// The trained tokenizer and a few statistics.
#[derive(Debug, Clone)]
pub struct TrainResult {
    /// Token bytes by id: specials, the 256 bytes, then one per merge.
    pub vocab: Vec<Vec<u8>>,
    /// Merges in creation order, as token bytes.
    pub merges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Number of distinct pre-tokens counted.
    pub distinct_pretokens: usize,
    /// Number of pre-tokens counted (with multiplicity).
    pub total_pretokens: u64,
    /// Input bytes read.
    pub input_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// 1. Counting
// ---------------------------------------------------------------------------------------------

/// Adds each pre-token of the ordinary text in `text` (special tokens removed) to `counts`, on
/// the calling thread.
///
/// `count_text("a a", .., &Pattern::Gpt2, ..)` -> `{b"a": 1, b" a": 1}`.
pub fn count_text(
    text: &str,
    specials: &SpecialTokens,
    pattern: &Pattern,
    counts: &mut CountMap,
) -> Result<()> {
    let mut packed = PretokenCounts::default();
    packed.count_text(text, specials, pattern, &CancelFlag::default())?;
    packed.drain_into(counts);
    Ok(())
}

/// Hasher for integer keys (packed pre-tokens, packed pairs): one folded 64x64->128-bit
/// multiply, which mixes every input bit into every output bit. FxHash's multiply only
/// carries differences upward, so packed keys that differ only in their high bytes (the last
/// characters of an 8-byte pre-token) would all share a bucket.
#[derive(Default, Clone, Copy)]
pub struct MixHasher(u64);

#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for MixHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = folded_mul(self.0 ^ i ^ 0x243F_6A88_85A3_08D3, 0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.0 = folded_mul(
            self.0 ^ (i as u64) ^ 0x243F_6A88_85A3_08D3,
            ((i >> 64) as u64) ^ 0x9E37_79B9_7F4A_7C15,
        );
    }
}

/// A hash map keyed by integers, hashed with `MixHasher`.
pub type IntMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<MixHasher>>;

/// A packed pre-token as two `u64` halves: 24-byte map entries instead of the 32 that a
/// 16-byte-aligned `u128` key costs (the counting maps are bound by cache misses).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PackedKey {
    lo: u64,
    hi: u64,
}

impl From<u128> for PackedKey {
    #[inline]
    fn from(k: u128) -> Self {
        PackedKey {
            lo: k as u64,
            hi: (k >> 64) as u64,
        }
    }
}

impl From<PackedKey> for u128 {
    #[inline]
    fn from(k: PackedKey) -> u128 {
        ((k.hi as u128) << 64) | k.lo as u128
    }
}

impl std::hash::Hash for PackedKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(*self));
    }
}

/// The bytes of a counted pre-token: unpacked from a packed key (no allocation) or borrowed.
pub enum KeyBytes<'a> {
    /// A packed key's bytes; the length is in the last byte.
    Packed([u8; 16]),
    Slice(&'a [u8]),
}

impl AsRef<[u8]> for KeyBytes<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        match self {
            KeyBytes::Packed(b) => &b[..b[15] as usize],
            KeyBytes::Slice(s) => s,
        }
    }
}

/// Pre-token counts of one worker. Pre-tokens under 16 bytes (nearly all of them) are packed
/// into a `u128` (bytes, zero padded, length in the top byte), so hashing and comparing a key
/// is a few integer instructions instead of a slice hash and a `memcmp`; longer ones are
/// keyed by their bytes, allocated only on first sight.
#[derive(Default)]
pub struct PretokenCounts {
    short: IntMap<PackedKey, u64>,
    long: CountMap,
}

impl PretokenCounts {
    /// Counts the pre-tokens of the ordinary text of `text`. Only a custom regex can fail, or
    /// be stopped by `cancel` (see `Pattern::for_each_pretoken_range`).
    pub fn count_text(
        &mut self,
        text: &str,
        specials: &SpecialTokens,
        pattern: &Pattern,
        cancel: &CancelFlag,
    ) -> Result<()> {
        let mut result = Ok(());
        specials.for_each_segment(text, |seg| {
            if let Segment::Text(t) = seg {
                if result.is_ok() {
                    result = self.count_segment(t, pattern, cancel);
                }
            }
        });
        result
    }

    /// Counts one ordinary segment: the pattern is matched once here, and its matcher's loop
    /// runs with this closure inlined.
    #[inline]
    fn count_segment(&mut self, text: &str, pattern: &Pattern, cancel: &CancelFlag) -> Result<()> {
        let b = text.as_bytes();
        let (short, long) = (&mut self.short, &mut self.long);
        pattern.for_each_pretoken_range(text, cancel, |i, j| {
            let len = j - i;
            if len < 16 {
                let key = if i + 16 <= b.len() {
                    // One unaligned load, then mask off the bytes past the pre-token.
                    let word = u128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"));
                    word & ((1u128 << (8 * len)) - 1)
                } else {
                    let mut buf = [0u8; 16];
                    buf[..len].copy_from_slice(&b[i..j]);
                    u128::from_le_bytes(buf)
                } | ((len as u128) << 120);
                *short.entry(PackedKey::from(key)).or_insert(0) += 1;
            } else if let Some(c) = long.get_mut(&b[i..j]) {
                *c += 1;
            } else {
                long.insert(b[i..j].into(), 1);
            }
        })
    }

    /// Number of distinct pre-tokens.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds these counts to `other`.
    pub fn merge_into(self, other: &mut PretokenCounts) {
        for (k, v) in self.short {
            *other.short.entry(k).or_insert(0) += v;
        }
        for (k, v) in self.long {
            *other.long.entry(k).or_insert(0) += v;
        }
    }

    /// Adds these counts to `other` and empties `self`, keeping its capacity for reuse.
    pub fn drain_merge_into(&mut self, other: &mut PretokenCounts) {
        for (k, v) in self.short.drain() {
            *other.short.entry(k).or_insert(0) += v;
        }
        for (k, v) in self.long.drain() {
            *other.long.entry(k).or_insert(0) += v;
        }
    }

    /// Each distinct pre-token's bytes and count, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyBytes<'_>, u64)> + '_ {
        let short = self
            .short
            .iter()
            .map(|(k, &v)| (KeyBytes::Packed(u128::from(*k).to_le_bytes()), v));
        let long = self.long.iter().map(|(k, &v)| (KeyBytes::Slice(k), v));
        short.chain(long)
    }

    /// Number of pre-tokens counted, with multiplicity.
    pub fn total(&self) -> u64 {
        self.short.values().sum::<u64>() + self.long.values().sum::<u64>()
    }

    /// Moves the counts into a map keyed by the pre-token bytes.
    pub fn drain_into(self, out: &mut CountMap) {
        out.reserve(self.len());
        for (k, v) in self.short {
            let bytes = u128::from(k).to_le_bytes();
            let len = bytes[15] as usize;
            *out.entry(bytes[..len].into()).or_insert(0) += v;
        }
        for (k, v) in self.long {
            *out.entry(k).or_insert(0) += v;
        }
    }
}

/// A worker's counts: the current chunk is counted into a small map that stays in cache (most
/// lookups of a chunk hit the same few thousand pre-tokens), then folded into the worker's
/// total once per chunk, so the large total map sees one lookup per distinct pre-token of a
/// chunk instead of one per pre-token.
#[derive(Default)]
struct WorkerCounts {
    chunk: PretokenCounts,
    total: PretokenCounts,
}

/// Locks a mutex, ignoring poisoning (counting tasks catch their own panics).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks one chunk as done when dropped, and wakes the reader.
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *lock(&self.0.in_flight) -= 1;
        self.0.idle.notify_all();
    }
}

/// State shared between the reader and the counting tasks.
struct Shared {
    specials: SpecialTokens,
    pattern: Pattern,
    /// The first error of a counting task (a custom regex's backtracking limit, or cancelled).
    error: Mutex<Option<BpeError>>,
    /// The call's stop request, which the tasks check too: with a custom regex one task may
    /// hold all the text between two special tokens.
    cancel: CancelFlag,
    /// One map per pool thread (uncontended locks), merged at the end.
    maps: Vec<Mutex<WorkerCounts>>,
    /// Chunks handed to the pool and not yet counted.
    in_flight: Mutex<usize>,
    idle: Condvar,
    /// Set when a counting task panicked (a bug): `finish` then fails instead of the process
    /// aborting or the reader waiting forever.
    failed: AtomicBool,
}

/// Counts pre-tokens of one or more input streams, in parallel, in bounded memory.
///
/// Each stream (a file, or the text of an iterator) is a unit: pre-tokens never cross from one
/// stream into the next. Push bytes with `push`, close a stream with `end_stream`, and collect
/// the counts with `finish`.
pub struct StreamCounter {
    shared: Arc<Shared>,
    workers: Workers,
    chunk_size: usize,
    max_in_flight: usize,
    /// Bytes of the current stream not yet handed to the pool.
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]` in the current stream (for error messages).
    offset: u64,
    /// Buffer length at which to look for a cut again (doubles while no cut is found).
    next_try: usize,
    /// Name of the current stream, for error messages.
    name: String,
    input_bytes: u64,
}

impl StreamCounter {
    /// A counter for `opts` (its special tokens, pattern, chunk size and threads); its tasks
    /// stop when `cancel` is set.
    pub fn new(opts: &CountOptions, cancel: &CancelFlag) -> Result<Self> {
        let workers = opts.workers()?;
        let chunk_size = opts.chunk_size;
        let threads = workers.num_threads();
        let shared = Shared {
            specials: SpecialTokens::new(&opts.special_tokens)?,
            pattern: opts.pattern.clone(),
            error: Mutex::new(None),
            cancel: cancel.clone(),
            maps: (0..threads)
                .map(|_| Mutex::new(WorkerCounts::default()))
                .collect(),
            in_flight: Mutex::new(0),
            idle: Condvar::new(),
            failed: AtomicBool::new(false),
        };
        let chunk_size = chunk_size.max(1);
        Ok(StreamCounter {
            shared: Arc::new(shared),
            workers,
            chunk_size,
            max_in_flight: 2 * threads,
            buf: Vec::new(),
            offset: 0,
            next_try: chunk_size,
            name: String::new(),
            input_bytes: 0,
        })
    }

    /// Starts a new stream; `name` appears in error messages (a path, or "<iterator>").
    pub fn begin_stream(&mut self, name: &str) {
        self.begin_stream_at(name, 0);
    }

    /// Starts a new stream whose first byte is at `offset` of its source (a byte range of a
    /// file), so UTF-8 errors give offsets in the source.
    pub fn begin_stream_at(&mut self, name: &str, offset: u64) {
        self.buf.clear();
        self.offset = offset;
        self.next_try = self.chunk_size;
        self.name = name.to_string();
    }

    /// Appends bytes of the current stream; full chunks are counted in the background.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.input_bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.next_try {
            match self
                .shared
                .pattern
                .cuts(&self.shared.specials)
                .last(&self.buf)
            {
                Some(p) => {
                    let rest = self.buf[p..].to_vec();
                    let chunk = std::mem::replace(&mut self.buf, rest);
                    self.dispatch(chunk, p)?;
                    self.next_try = self.chunk_size.max(self.buf.len() + 1);
                }
                // No safe cut (megabytes of pathological text, or a custom regex between two
                // special tokens): wait for twice the bytes, so the searches stay linear.
                None => self.next_try = self.buf.len() * 2,
            }
        }
        Ok(())
    }

    /// Ends the current stream: its remaining bytes are counted.
    pub fn end_stream(&mut self) -> Result<()> {
        let chunk = std::mem::take(&mut self.buf);
        let len = chunk.len();
        self.dispatch(chunk, len)
    }

    /// Validates `chunk[..len]` as UTF-8 and hands it to the pool.
    fn dispatch(&mut self, mut chunk: Vec<u8>, len: usize) -> Result<()> {
        chunk.truncate(len);
        let offset = self.offset;
        self.offset += len as u64;
        let text = input::utf8_string(&self.name, offset, chunk)?;
        if let Some(e) = lock(&self.shared.error).take() {
            return Err(e); // stop reading once a chunk failed
        }
        if text.is_empty() {
            return Ok(());
        }
        // Bound the chunks in memory: wait while the pool is busy.
        {
            let mut n = lock(&self.shared.in_flight);
            while *n >= self.max_in_flight {
                n = self
                    .shared
                    .idle
                    .wait(n)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *n += 1;
        }
        let shared = Arc::clone(&self.shared);
        self.workers.spawn(move || {
            // Decrements the in-flight count even if counting unwinds.
            let _done = InFlight(&shared);
            let counted = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let idx = rayon::current_thread_index().unwrap_or(0) % shared.maps.len();
                let mut guard = lock(&shared.maps[idx]);
                let WorkerCounts { chunk, total } = &mut *guard;
                let result =
                    chunk.count_text(&text, &shared.specials, &shared.pattern, &shared.cancel);
                chunk.drain_merge_into(total);
                result
            }));
            match counted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    lock(&shared.error).get_or_insert(e);
                }
                Err(_) => shared.failed.store(true, AtomicOrdering::SeqCst),
            }
        });
        Ok(())
    }

    /// Waits for all chunks and returns the merged counts and the input size in bytes.
    pub fn finish(self) -> Result<(PretokenCounts, u64)> {
        {
            let mut n = lock(&self.shared.in_flight);
            while *n > 0 {
                n = self
                    .shared
                    .idle
                    .wait(n)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        let mut maps: Vec<PretokenCounts> = self
            .shared
            .maps
            .iter()
            .map(|m| std::mem::take(&mut lock(m).total))
            .collect();
        // Merge into the largest map: fewest insertions.
        maps.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut maps = maps.into_iter();
        let mut merged = maps.next().unwrap_or_default();
        for m in maps {
            m.merge_into(&mut merged);
        }
        let total = merged;
        if self.shared.failed.load(AtomicOrdering::SeqCst) {
            return Err(BpeError::Internal("a counting task panicked".to_string()));
        }
        if let Some(e) = lock(&self.shared.error).take() {
            return Err(e);
        }
        Ok((total, self.input_bytes))
    }

    /// Input bytes pushed so far.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }
}

/// Counts the pre-tokens of several files (each an independent stream) with `opts`, and returns
/// the counts and the input size in bytes. Files may be FIFOs or pipes; every wait for input
/// checks `cancel`.
pub fn count_files<P: AsRef<Path>>(
    paths: &[P],
    opts: &CountOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<(PretokenCounts, u64)> {
    opts.validate()?;
    // Open everything first, so a missing file fails before any work.
    let mut inputs = Vec::with_capacity(paths.len());
    for p in paths {
        inputs.push(Input::open(p.as_ref(), cancel)?);
    }
    count_inputs(inputs, opts, progress, cancel)
}

/// Counts the bytes of the regular file `path` that the shard given `start..end` owns
/// (`shard::owned_range`: cut where both neighbouring shards cut, so the counts of the shards
/// of any partition of a file sum to the counts of the whole file). Returns the counts, the
/// bytes counted and the owned range (None, with empty counts, when it owns nothing).
pub fn count_file_range(
    path: &Path,
    start: u64,
    end: u64,
    opts: &CountOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<(PretokenCounts, u64, Option<shard::ByteRange>)> {
    opts.validate()?;
    let specials = SpecialTokens::new(&opts.special_tokens)?;
    let cuts = opts.pattern.cuts(&specials);
    let Some((first, last)) = shard::owned_range(path, start, end, &cuts, cancel)? else {
        return Ok((PretokenCounts::default(), 0, None));
    };
    let input = Input::open_range(path, first, last, cancel)?;
    let (counts, bytes) = count_inputs(vec![input], opts, progress, cancel)?;
    Ok((counts, bytes, Some((first, last))))
}

/// Counts opened inputs, each an independent stream (see `count_files`).
fn count_inputs(
    inputs: Vec<Input>,
    opts: &CountOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<(PretokenCounts, u64)> {
    let total: u64 = inputs.iter().map(Input::size).sum();
    let mut counter = StreamCounter::new(opts, cancel)?;
    let read_size = opts.chunk_size.clamp(1, 1 << 20);
    let mut block = vec![0u8; read_size];
    let step = (total / 100).max(1);
    let mut next_report = 0u64;
    for mut input in inputs {
        counter.begin_stream_at(input.name(), input.start());
        loop {
            let n = input.read(&mut block, cancel)?;
            if n == 0 {
                break;
            }
            counter.push(&block[..n])?;
            if counter.input_bytes() >= next_report {
                next_report = counter.input_bytes() + step;
                if !progress(Progress::Counting {
                    done: counter.input_bytes(),
                    total,
                }) {
                    return Err(BpeError::Cancelled);
                }
            }
        }
        counter.end_stream()?;
    }
    if !progress(Progress::Counting {
        done: counter.input_bytes(),
        total,
    }) {
        return Err(BpeError::Cancelled);
    }
    counter.finish()
}

/// Counts one stream of text that `next` supplies in pieces: each call appends the next piece's
/// bytes to the buffer it is given and returns false once the stream is over (the pieces are
/// one text, as if concatenated). `cancel` is checked between pieces.
pub fn count_stream(
    name: &str,
    next: &mut dyn FnMut(&mut Vec<u8>) -> Result<bool>,
    opts: &CountOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<(PretokenCounts, u64)> {
    /// Report progress about every this many bytes (the total is unknown).
    const REPORT_BYTES: u64 = 8 << 20;
    opts.validate()?;
    let mut counter = StreamCounter::new(opts, cancel)?;
    counter.begin_stream(name);
    let mut piece = Vec::new();
    let mut next_report = 0u64;
    loop {
        cancel.check()?;
        piece.clear();
        let more = next(&mut piece)?;
        counter.push(&piece)?;
        if counter.input_bytes() >= next_report || !more {
            next_report = counter.input_bytes() + REPORT_BYTES;
            if !progress(Progress::Counting {
                done: counter.input_bytes(),
                total: 0,
            }) {
                return Err(BpeError::Cancelled);
            }
        }
        if !more {
            break;
        }
    }
    counter.end_stream()?;
    counter.finish()
}

/// Counts in-memory texts (each an independent stream).
pub fn count_texts(texts: &[&str], opts: &CountOptions) -> Result<(PretokenCounts, u64)> {
    opts.validate()?;
    let mut counter = StreamCounter::new(opts, &CancelFlag::default())?;
    for t in texts {
        counter.begin_stream("<text>");
        counter.push(t.as_bytes())?;
        counter.end_stream()?;
    }
    counter.finish()
}

// ---------------------------------------------------------------------------------------------
// 2. Merging
// ---------------------------------------------------------------------------------------------

/// Token bytes by symbol id, and the merges as symbol-id pairs.
pub type MergeOutput = (Vec<Vec<u8>>, Vec<(u32, u32)>);

/// A pair of symbol ids packed as `a << 32 | b` (one cheap hash key).
type Pair = u64;

#[inline]
fn pair(a: u32, b: u32) -> Pair {
    ((a as u64) << 32) | b as u64
}

#[inline]
fn unpair(p: Pair) -> (u32, u32) {
    ((p >> 32) as u32, p as u32)
}

/// A heap entry: a pair and its count when pushed (possibly stale; see the module docs), plus
/// the first 8 bytes of each token (big-endian, zero padded), which decide most ties without
/// touching the token table.
#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    prefix_a: u64,
    prefix_b: u64,
    pair: Pair,
}

/// First 8 bytes as a big-endian integer: if two prefixes differ, they order the two byte
/// strings as a lexicographic comparison would (a shorter string pads with zeros, which is
/// never greater than a real continuation).
#[inline]
fn prefix(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

impl Entry {
    fn new(count: u64, pair: Pair, tokens: &[Vec<u8>]) -> Entry {
        let (a, b) = unpair(pair);
        Entry {
            count,
            prefix_a: prefix(&tokens[a as usize]),
            prefix_b: prefix(&tokens[b as usize]),
            pair,
        }
    }
}

/// Pair order: count, then the greater `(bytes_a, bytes_b)`.
#[inline]
fn cmp_entries(x: &Entry, y: &Entry, tokens: &[Vec<u8>]) -> Ordering {
    x.count.cmp(&y.count).then_with(|| {
        let (xa, xb) = unpair(x.pair);
        let (ya, yb) = unpair(y.pair);
        if x.prefix_a != y.prefix_a {
            return x.prefix_a.cmp(&y.prefix_a);
        }
        if xa == ya {
            // Same first token: the second decides.
            return x
                .prefix_b
                .cmp(&y.prefix_b)
                .then_with(|| tokens[xb as usize].cmp(&tokens[yb as usize]));
        }
        (&tokens[xa as usize][..], &tokens[xb as usize][..])
            .cmp(&(&tokens[ya as usize][..], &tokens[yb as usize][..]))
    })
}

/// A max-heap whose order needs the token bytes (std's BinaryHeap cannot borrow them).
#[derive(Default)]
struct PairHeap {
    items: Vec<Entry>,
}

impl PairHeap {
    /// Builds the heap from unordered entries in linear time.
    fn from_vec(items: Vec<Entry>, tokens: &[Vec<u8>]) -> PairHeap {
        let mut heap = PairHeap { items };
        for i in (0..heap.items.len() / 2).rev() {
            heap.sift_down(i, tokens);
        }
        heap
    }

    fn push(&mut self, e: Entry, tokens: &[Vec<u8>]) {
        self.items.push(e);
        let mut i = self.items.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if cmp_entries(&self.items[i], &self.items[parent], tokens) != Ordering::Greater {
                break;
            }
            self.items.swap(i, parent);
            i = parent;
        }
    }

    fn pop(&mut self, tokens: &[Vec<u8>]) -> Option<Entry> {
        let last = self.items.pop()?;
        if self.items.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.items[0], last);
        self.sift_down(0, tokens);
        Some(top)
    }

    fn sift_down(&mut self, mut i: usize, tokens: &[Vec<u8>]) {
        let n = self.items.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < n && cmp_entries(&self.items[l], &self.items[best], tokens) == Ordering::Greater
            {
                best = l;
            }
            if r < n && cmp_entries(&self.items[r], &self.items[best], tokens) == Ordering::Greater
            {
                best = r;
            }
            if best == i {
                break;
            }
            self.items.swap(i, best);
            i = best;
        }
    }
}

/// Per-pair state: the current count and the words that contain (or once contained) the
/// pair. Stale word entries are harmless: merging a word without the pair changes nothing.
#[derive(Default)]
struct PairStat {
    count: i64,
    words: Vec<u32>,
}

/// Header slots of a word in the arena: current length, then the count as two halves.
const WORD_HEADER: usize = 3;

/// The merge loop state: words, pair stats, and the heap.
struct Merger {
    /// All words, each as `[len, count_lo, count_hi, sym0, sym1, ...]`, addressed by the offset
    /// of its header. One contiguous array: visiting a word costs one cache miss, not three
    /// (vector header, symbols, count), and words shrink in place.
    arena: Vec<u32>,
    /// Token bytes by symbol id: the 256 bytes, then one per merge.
    tokens: Vec<Vec<u8>>,
    pairs: IntMap<Pair, PairStat>,
    heap: PairHeap,
    /// Symbol of each merged token's bytes (the first merge that made them).
    by_bytes: FxHashMap<Vec<u8>, u32>,
    /// Reused buffer for the pairs that gained count in a merge.
    scratch: Vec<Pair>,
}

impl Merger {
    fn new<K: AsRef<[u8]>>(counts: impl IntoIterator<Item = (K, u64)>) -> Result<Merger> {
        let mut arena: Vec<u32> = Vec::new();
        let mut pairs: IntMap<Pair, PairStat> = IntMap::default();
        // Pair counts are `i64` (merges move count between pairs by signed deltas). Their sum,
        // each word's count times its pairs, only falls as merges join symbols, and no count
        // (even for a moment inside `apply`) exceeds it, so bounding it here bounds them all.
        // Text never comes near (it would take 2^63 bytes); counts files and sums of counts
        // can, and would otherwise wrap into wrong merges without a word.
        let mut pair_total: i64 = 0;
        for (k, c) in counts {
            let k = k.as_ref();
            // Single bytes have no pairs and never change.
            if k.len() < 2 {
                continue;
            }
            pair_total = i64::try_from(c)
                .ok()
                .and_then(|c| c.checked_mul(k.len() as i64 - 1))
                .and_then(|w| pair_total.checked_add(w))
                .ok_or_else(|| {
                    BpeError::InvalidArgument(format!(
                        "the counts are too large to train on: their adjacent pairs, weighted by \
                         count, add up to more than 2^63 - 1 (at the pre-token {:?}, counted {c} \
                         times)",
                        String::from_utf8_lossy(k)
                    ))
                })?;
            let w = u32::try_from(arena.len()).map_err(|_| {
                BpeError::InvalidArgument(
                    "too many distinct pre-tokens for the merge arena (4 G symbols)".into(),
                )
            })?;
            arena.extend_from_slice(&[k.len() as u32, c as u32, (c >> 32) as u32]);
            arena.extend(k.iter().map(|&b| b as u32));
            for s in k.windows(2) {
                let stat = pairs.entry(pair(s[0] as u32, s[1] as u32)).or_default();
                stat.count += c as i64;
                if stat.words.last() != Some(&w) {
                    stat.words.push(w);
                }
            }
        }
        let tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let items = pairs
            .iter()
            .map(|(&p, st)| Entry::new(st.count as u64, p, &tokens))
            .collect();
        let heap = PairHeap::from_vec(items, &tokens);
        Ok(Merger {
            arena,
            tokens,
            pairs,
            heap,
            by_bytes: FxHashMap::default(),
            scratch: Vec::new(),
        })
    }

    /// The best pair with its exact current count, or None when no pair has a positive count.
    fn pop_best(&mut self) -> Option<(Pair, u64)> {
        while let Some(e) = self.heap.pop(&self.tokens) {
            let current = self.pairs.get(&e.pair).map_or(0, |st| st.count);
            if current <= 0 {
                continue;
            }
            if current as u64 == e.count {
                return Some((e.pair, e.count));
            }
            // Stale: re-queue at the current count. (Entries below the current count are
            // harmless: whenever a pair gains count, `apply` pushes its new count.)
            self.heap.push(
                Entry {
                    count: current as u64,
                    ..e
                },
                &self.tokens,
            );
        }
        None
    }

    /// Merges `best` into a new token everywhere and updates pair stats and heap.
    fn apply(&mut self, best: Pair) -> u32 {
        let (a, b) = unpair(best);
        let mut merged = self.tokens[a as usize].clone();
        merged.extend_from_slice(&self.tokens[b as usize]);
        // Pairs are pairs of *bytes* (SPEC §1): if an earlier merge already made these bytes
        // (another split of the same string), words use that symbol, so its pairs are counted
        // together. The vocabulary still gets one id per merge.
        let n = match self.by_bytes.get(&merged) {
            Some(&id) => id,
            None => {
                let id = self.tokens.len() as u32;
                self.by_bytes.insert(merged.clone(), id);
                id
            }
        };
        self.tokens.push(merged);

        // Every occurrence of `best` goes now, and no later merge can create it again (new
        // pairs always contain the new token), so its stats can go too.
        let mut ws = self
            .pairs
            .remove(&best)
            .map(|st| st.words)
            .unwrap_or_default();
        ws.sort_unstable();
        ws.dedup();
        let mut new_pairs = std::mem::take(&mut self.scratch);
        new_pairs.clear();
        let pairs = &mut self.pairs;
        for &w in &ws {
            let o = w as usize;
            let len = self.arena[o] as usize;
            let c = (self.arena[o + 1] as u64 | (self.arena[o + 2] as u64) << 32) as i64;
            let word = &mut self.arena[o + WORD_HEADER..o + WORD_HEADER + len];
            let mut add = |p: Pair, delta: i64| match pairs.entry(p) {
                MapEntry::Occupied(mut o) => {
                    let st = o.get_mut();
                    st.count += delta;
                    if st.count == 0 {
                        // No word holds the pair any more: drop it (keeps the map small).
                        o.remove();
                    } else if delta > 0 {
                        new_pairs.push(p);
                        if st.words.last() != Some(&w) {
                            st.words.push(w);
                        }
                    }
                }
                MapEntry::Vacant(v) => {
                    let mut st = PairStat {
                        count: delta,
                        words: Vec::new(),
                    };
                    if delta > 0 {
                        new_pairs.push(p);
                        st.words.push(w);
                    }
                    v.insert(st);
                }
            };
            // In place: `out` is the write index, never ahead of the read index `i`, so the
            // right neighbour word[i + 2] is still unmerged and word[out - 1] is the merged left.
            let (mut i, mut out) = (0, 0);
            while i < len {
                if i + 1 < len && word[i] == a && word[i + 1] == b {
                    if out > 0 {
                        let left = word[out - 1];
                        add(pair(left, a), -c);
                        add(pair(left, n), c);
                    }
                    if i + 2 < len {
                        let right = word[i + 2];
                        add(pair(b, right), -c);
                        add(pair(n, right), c);
                    }
                    word[out] = n;
                    i += 2;
                } else {
                    word[out] = word[i];
                    i += 1;
                }
                out += 1;
            }
            self.arena[o] = out as u32;
        }
        // Decrements of `best` itself (overlaps such as a a a) re-created an entry; drop it.
        self.pairs.remove(&best);
        // Pairs that gained count: new pairs, or (after a byte-identical merge) old pairs of
        // the reused symbol, whose heap entries are now too low; push their current count.
        new_pairs.sort_unstable();
        new_pairs.dedup();
        for &p in &new_pairs {
            let c = self.pairs.get(&p).map_or(0, |st| st.count);
            if c > 0 {
                let e = Entry::new(c as u64, p, &self.tokens);
                self.heap.push(e, &self.tokens);
            }
        }
        self.scratch = new_pairs;
        n
    }
}

/// Runs up to `num_merges` merges on the counted pre-tokens. Returns the token bytes by symbol
/// id (256 bytes, then one per merge) and the merges as symbol-id pairs. Stops early when no
/// pair is left.
pub fn merge_counts<K: AsRef<[u8]>>(
    counts: impl IntoIterator<Item = (K, u64)>,
    num_merges: usize,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<MergeOutput> {
    let mut m = Merger::new(counts)?;
    // `num_merges` comes from the caller's vocab_size and may be far above what the text can
    // give (training stops when pairs run out): never size an allocation by it.
    let mut merges = Vec::with_capacity(num_merges.min(m.pairs.len()));
    let step = (num_merges / 100).max(1);
    while merges.len() < num_merges {
        cancel.check()?;
        let Some((best, _count)) = m.pop_best() else {
            break;
        };
        m.apply(best);
        merges.push(unpair(best));
        if merges.len() % step == 0
            && !progress(Progress::Merging {
                done: merges.len() as u64,
                total: num_merges as u64,
            })
        {
            return Err(BpeError::Cancelled);
        }
    }
    if !progress(Progress::Merging {
        done: merges.len() as u64,
        total: num_merges as u64,
    }) {
        return Err(BpeError::Cancelled);
    }
    Ok((m.tokens, merges))
}

/// Turns counts into the final vocabulary and merges (specials first, then bytes, then
/// merges), as SPEC §1 numbers them.
pub fn train_from_counts(
    counts: PretokenCounts,
    input_bytes: u64,
    opts: &TrainOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<TrainResult> {
    let (distinct, total) = (counts.len(), counts.total());
    train_from_entries(
        counts.iter(),
        distinct,
        total,
        input_bytes,
        opts,
        progress,
        cancel,
    )
}

/// `train_from_counts` for counts given as (pre-token bytes, count) entries, each pre-token
/// once (kept counts, `counts::Counts`); `distinct_pretokens` and `total_pretokens` are
/// reported as given.
pub fn train_from_entries<K: AsRef<[u8]>>(
    entries: impl IntoIterator<Item = (K, u64)>,
    distinct_pretokens: usize,
    total_pretokens: u64,
    input_bytes: u64,
    opts: &TrainOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<TrainResult> {
    opts.validate()?;
    let num_merges = opts.vocab_size - 256 - opts.special_tokens().len();
    let (tokens, merge_ids) = merge_counts(entries, num_merges, progress, cancel)?;
    let mut vocab: Vec<Vec<u8>> = opts
        .special_tokens()
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let merges = merge_ids
        .iter()
        .map(|&(a, b)| (tokens[a as usize].clone(), tokens[b as usize].clone()))
        .collect();
    vocab.extend(tokens);
    Ok(TrainResult {
        vocab,
        merges,
        distinct_pretokens,
        total_pretokens,
        input_bytes,
    })
}

/// An empty corpus is an error: a tokenizer trained on nothing is never what the caller meant.
fn check_not_empty(counts: &PretokenCounts, what: &str) -> Result<()> {
    check_distinct_not_zero(counts.len(), what)
}

/// `check_not_empty` given the number of distinct pre-tokens.
pub fn check_distinct_not_zero(distinct: usize, what: &str) -> Result<()> {
    if distinct == 0 {
        return Err(BpeError::InvalidArgument(format!(
            "{what} contains no text to train on (empty, or only special tokens)"
        )));
    }
    Ok(())
}

/// Trains on one or more files (each an independent stream of text).
pub fn train_files<P: AsRef<Path>>(
    paths: &[P],
    opts: &TrainOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<TrainResult> {
    opts.validate()?;
    if paths.is_empty() {
        return Err(BpeError::InvalidArgument(
            "no input files given".to_string(),
        ));
    }
    let (counts, input_bytes) = count_files(paths, &opts.count, progress, cancel)?;
    let what = if paths.len() == 1 {
        paths[0].as_ref().display().to_string()
    } else {
        "the input".to_string()
    };
    check_not_empty(&counts, &what)?;
    train_from_counts(counts, input_bytes, opts, progress, cancel)
}

/// Trains on one stream of text supplied in pieces (see `count_stream`): the core of
/// `train_bpe_from_iterator`, where `next` pulls a batch of strings from Python.
pub fn train_stream(
    name: &str,
    next: &mut dyn FnMut(&mut Vec<u8>) -> Result<bool>,
    opts: &TrainOptions,
    progress: &mut ProgressFn,
    cancel: &CancelFlag,
) -> Result<TrainResult> {
    opts.validate()?;
    let (counts, input_bytes) = count_stream(name, next, &opts.count, progress, cancel)?;
    check_not_empty(&counts, name)?;
    train_from_counts(counts, input_bytes, opts, progress, cancel)
}

/// Trains on in-memory texts (each an independent stream). Used by tests and small callers.
pub fn train_texts(
    texts: &[&str],
    opts: &TrainOptions,
    progress: &mut ProgressFn,
) -> Result<TrainResult> {
    opts.validate()?;
    let (counts, input_bytes) = count_texts(texts, &opts.count)?;
    check_not_empty(&counts, "the input")?;
    train_from_counts(counts, input_bytes, opts, progress, &CancelFlag::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_progress() -> impl FnMut(Progress) -> bool {
        |_| true
    }

    fn counts_of(words: &[(&str, u64)]) -> CountMap {
        words
            .iter()
            .map(|(w, c)| (w.as_bytes().to_vec().into_boxed_slice(), *c))
            .collect()
    }

    fn merges_of(words: &[(&str, u64)], n: usize) -> Vec<(String, String)> {
        let (tokens, merges) = merge_counts(
            counts_of(words),
            n,
            &mut no_progress(),
            &CancelFlag::default(),
        )
        .unwrap();
        merges
            .iter()
            .map(|&(a, b)| {
                (
                    String::from_utf8(tokens[a as usize].clone()).unwrap(),
                    String::from_utf8(tokens[b as usize].clone()).unwrap(),
                )
            })
            .collect()
    }

    fn s(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    /// Counts whose weighted pairs reach 2^63 (only counts files and sums of counts can) are an
    /// error, never wrapped pair counts and so wrong merges; up to the bound they train exactly.
    #[test]
    fn pair_counts_beyond_i64_are_an_error() {
        let big = 1u64 << 62;
        let fits = [("ab", big + 5), ("cd", big - 10)];
        assert_eq!(merges_of(&fits, 5), vec![s("a", "b"), s("c", "d")]);
        assert_eq!(merges_of(&[("ab", i64::MAX as u64)], 5), vec![s("a", "b")]);
        for words in [
            vec![("ab", i64::MAX as u64 + 1)],
            vec![("abab", big), ("cd", big - 10)],
            vec![("aaaa", u64::MAX)],
            vec![("ab", big), ("cd", big)],
        ] {
            let err = merge_counts(
                counts_of(&words),
                5,
                &mut no_progress(),
                &CancelFlag::default(),
            )
            .map(|_| ())
            .unwrap_err()
            .to_string();
            assert!(err.contains("too large to train on"), "{words:?}: {err}");
        }
    }

    #[test]
    fn hand_built_example() {
        // The classic example: low x5, lower x2, widest x3, newest x6.
        let words = [("low", 5), ("lower", 2), ("widest", 3), ("newest", 6)];
        let got = merges_of(&words, 6);
        assert_eq!(
            got,
            vec![
                s("s", "t"),
                s("e", "st"),
                s("o", "w"),
                s("l", "ow"),
                s("w", "est"),
                s("n", "e")
            ]
        );
    }

    #[test]
    fn overlapping_pairs_merge_left_to_right() {
        // "aaa": pair (a,a) counts 2 occurrences but merges as [aa, a]; then (aa, a).
        let got = merges_of(&[("aaa", 1)], 5);
        assert_eq!(got, vec![s("a", "a"), s("aa", "a")]);
        // "aaaa" -> [aa, aa] -> [aaaa].
        let got = merges_of(&[("aaaa", 1)], 5);
        assert_eq!(got, vec![s("a", "a"), s("aa", "aa")]);
    }

    #[test]
    fn chained_merges_and_early_stop() {
        let got = merges_of(&[("abcd", 3)], 100);
        // All pairs tie at 3: greatest bytes first.
        assert_eq!(got, vec![s("c", "d"), s("b", "cd"), s("a", "bcd")]);
    }

    #[test]
    fn tie_break_on_bytes_not_ids() {
        // ("BA","A") beats ("B","ZZ"): b"BA" > b"B" although "ZZ" > "A".
        let words = [("BA", 10), ("ZZ", 10), ("BAA", 1), ("BZZ", 1)];
        let got = merges_of(&words, 4);
        assert_eq!(&got[..2], &[s("Z", "Z"), s("B", "A")]);
        assert_eq!(got[2], s("BA", "A"));
        assert_eq!(got[3], s("B", "ZZ"));
    }

    #[test]
    fn empty_input() {
        let (tokens, merges) = merge_counts(
            CountMap::default(),
            10,
            &mut no_progress(),
            &CancelFlag::default(),
        )
        .unwrap();
        assert_eq!(tokens.len(), 256);
        assert!(merges.is_empty());
        let opts = TrainOptions::new(300, vec!["<|e|>".into()]);
        assert!(matches!(
            train_texts(&[""], &opts, &mut no_progress()),
            Err(BpeError::InvalidArgument(_))
        ));
        assert!(matches!(
            train_texts(&["<|e|><|e|>"], &opts, &mut no_progress()),
            Err(BpeError::InvalidArgument(_))
        ));
    }

    #[test]
    fn specials_never_split_or_counted() {
        let specials = vec!["<|e|>".to_string()];
        let opts = TrainOptions::new(256 + 1 + 50, specials);
        let r = train_texts(&["ab<|e|>ab<|e|>ab<|e|>"], &opts, &mut no_progress()).unwrap();
        assert_eq!(r.vocab[0], b"<|e|>");
        assert_eq!(r.vocab[1], vec![0u8]);
        assert_eq!(r.merges, vec![(b"a".to_vec(), b"b".to_vec())]);
        assert_eq!(r.vocab.len(), 1 + 256 + 1);
        for (a, b) in &r.merges {
            assert!(!a.contains(&b'<') && !b.contains(&b'<'));
        }
    }

    #[test]
    fn ids_specials_then_bytes_then_merges() {
        let opts = TrainOptions::new(256 + 2 + 1, vec!["<a>".into(), "<b>".into()]);
        let r = train_texts(&["xyxy"], &opts, &mut no_progress()).unwrap();
        assert_eq!(r.vocab[0], b"<a>");
        assert_eq!(r.vocab[1], b"<b>");
        assert_eq!(r.vocab[2 + 65], b"A");
        assert_eq!(r.vocab[258], b"xy");
    }

    #[test]
    fn validation() {
        let mk = |v, sp: &[&str]| {
            TrainOptions::new(v, sp.iter().map(|s| s.to_string()).collect()).validate()
        };
        assert!(mk(256, &[]).is_ok());
        assert!(mk(256, &["<a>"]).is_err());
        assert!(mk(300, &["<a>", "<a>"]).is_err());
        assert!(mk(300, &[""]).is_err());
    }

    /// With each pattern, chunking (every size from one byte to 40, and one chunk), threads and
    /// pieces never change the counts; a custom regex is cut only where special tokens start, or
    /// not at all.
    #[test]
    fn cuts_never_change_counts() {
        let texts = [
            "Hello  world,\n\n it's <|e|>  a test\u{3000}\u{3000}x ok.<|e|>\n中文。\n\t\tend  \n",
            "Hello  world,\n\n it's <|e|>  a TEST\u{3000}\u{3000}x ok.<|e|>\n中文。12345\n\t\tend  \n\
             HTMLParser's DON'T 3.14159 жили-были <|e|><|e|>\r\n\r\n  /path/to\n",
        ];
        let patterns = [
            "gpt2",
            "cl100k",
            "o200k",
            r"\p{L}+|\p{N}{1,2}|\s+|.",
            r"[a-z]+",
        ];
        for (text, pattern) in texts.iter().flat_map(|t| patterns.map(|p| (t, p))) {
            for specials in [vec![], vec!["<|e|>".to_string()]] {
                let mut opts = CountOptions::new(specials.clone());
                opts.pattern = Pattern::new(pattern).unwrap();
                let sp = SpecialTokens::new(&specials).unwrap();
                let mut whole = CountMap::default();
                count_text(text, &sp, &opts.pattern, &mut whole).unwrap();
                assert!(!whole.is_empty());
                for chunk_size in (1..=40).chain([1 << 20]) {
                    for threads in [1, 2] {
                        opts.num_threads = Some(threads);
                        opts.chunk_size = chunk_size;
                        let mut c = StreamCounter::new(&opts, &CancelFlag::default()).unwrap();
                        c.begin_stream("t");
                        for piece in text.as_bytes().chunks(3) {
                            c.push(piece).unwrap();
                        }
                        c.end_stream().unwrap();
                        let mut got = CountMap::default();
                        c.finish().unwrap().0.drain_into(&mut got);
                        assert_eq!(
                            got, whole,
                            "{pattern} chunk size {chunk_size}, {threads} threads: {text:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn training_with_a_pattern_uses_it() {
        let text = "1234567 1234567 1234567 abc";
        let mut opts = TrainOptions::new(256 + 3, vec![]);
        let gpt2 = train_texts(&[text], &opts, &mut no_progress()).unwrap();
        opts.count.pattern = Pattern::new("cl100k").unwrap();
        let cl100k = train_texts(&[text], &opts, &mut no_progress()).unwrap();
        // GPT-2 keeps digit runs whole; cl100k groups them by three ("123", "456", "7").
        let m = |a: &str, b: &str| (a.as_bytes().to_vec(), b.as_bytes().to_vec());
        assert_eq!(gpt2.merges, [m("6", "7"), m("5", "67"), m("4", "567")]);
        assert_eq!(cl100k.merges, [m("5", "6"), m("4", "56"), m("2", "3")]);
        assert_eq!(gpt2.total_pretokens, 4);
        assert_eq!(cl100k.total_pretokens, 12);
        // A custom regex drops what it does not match.
        opts.count.pattern = Pattern::new("[a-z]+").unwrap();
        let custom = train_texts(&[text], &opts, &mut no_progress()).unwrap();
        assert_eq!(custom.total_pretokens, 1);
        assert_eq!(custom.merges[0], (b"b".to_vec(), b"c".to_vec()));
        // ... and a text it matches nowhere is an empty corpus.
        opts.count.pattern = Pattern::new("[x-z]+").unwrap();
        assert!(matches!(
            train_texts(&[text], &opts, &mut no_progress()),
            Err(BpeError::InvalidArgument(m)) if m.contains("no text to train on")
        ));
    }

    /// A custom regex that hits fancy-regex's backtracking limit in a counting task is an
    /// error, whichever thread counts it, and the reader stops.
    #[test]
    fn custom_pattern_failure_is_an_error() {
        let text = format!("x<|e|>{}", "a".repeat(60)).repeat(2000);
        let mut opts = TrainOptions::new(300, vec!["<|e|>".into()]);
        opts.count.pattern = Pattern::new(r"(?:a(?!c)|aa)+b|.").unwrap();
        for (threads, chunk_size) in [(1, 1 << 20), (2, 100)] {
            opts.count.num_threads = Some(threads);
            opts.count.chunk_size = chunk_size;
            assert!(matches!(
                train_texts(&[&text], &opts, &mut no_progress()),
                Err(BpeError::InvalidArgument(m)) if m.contains("failed on a text")
            ));
        }
    }

    #[test]
    fn invalid_utf8_offset_is_absolute() {
        let mut data = b"abc def ghi jkl mno pqr ".repeat(10);
        data.push(0xFF);
        data.extend_from_slice(b" more text");
        for chunk_size in [1, 7, 64, 1 << 20] {
            let mut opts = CountOptions::new(vec![]);
            opts.num_threads = Some(1);
            opts.chunk_size = chunk_size;
            let mut c = StreamCounter::new(&opts, &CancelFlag::default()).unwrap();
            c.begin_stream("f");
            let r = c.push(&data).and_then(|_| c.end_stream());
            match r {
                Err(BpeError::InvalidUtf8 { offset, bad, .. }) => {
                    assert_eq!(offset, 240);
                    assert_eq!(bad, [0xFF]);
                }
                other => panic!("expected InvalidUtf8, got {other:?}"),
            }
        }
    }

    #[test]
    fn stream_of_pieces_equals_one_text() {
        let text = "the cat sat on the mat; the cat's hat.<|e|> dogs and cats 123 ".repeat(40);
        let opts = TrainOptions::new(256 + 1 + 60, vec!["<|e|>".into()]);
        let whole = train_texts(&[&text], &opts, &mut no_progress()).unwrap();
        for piece_len in [1, 3, 7, 64, 1000, 1 << 20] {
            let mut pieces = text.as_bytes().chunks(piece_len);
            let mut next = |buf: &mut Vec<u8>| {
                Ok(match pieces.next() {
                    Some(p) => {
                        buf.extend_from_slice(p);
                        true
                    }
                    None => false,
                })
            };
            let mut small = opts.clone();
            small.count.chunk_size = 97;
            let r = train_stream(
                "pieces",
                &mut next,
                &small,
                &mut no_progress(),
                &CancelFlag::default(),
            )
            .unwrap();
            assert_eq!(r.merges, whole.merges, "pieces of {piece_len}");
            assert_eq!(r.vocab, whole.vocab);
            assert_eq!(r.input_bytes, text.len() as u64);
        }
        // An empty stream, and a source that fails, are errors.
        let mut empty = |_: &mut Vec<u8>| Ok(false);
        assert!(matches!(
            train_stream("nothing", &mut empty, &opts, &mut no_progress(), &CancelFlag::default()),
            Err(BpeError::InvalidArgument(m)) if m.contains("nothing")
        ));
        let mut failing = |_: &mut Vec<u8>| Err(BpeError::Cancelled);
        assert!(matches!(
            train_stream(
                "x",
                &mut failing,
                &opts,
                &mut no_progress(),
                &CancelFlag::default()
            ),
            Err(BpeError::Cancelled)
        ));
    }

    #[test]
    fn cancellation_stops_counting_and_merging() {
        let text = "abcdefgh ijklmnop ".repeat(100);
        let opts = TrainOptions::new(256 + 100, vec![]);
        // The flag, set before the work or by the progress callback in the middle of merging.
        let cancel = CancelFlag::default();
        cancel.cancel();
        let mut once = Some(text.as_bytes());
        let mut next =
            |buf: &mut Vec<u8>| Ok(once.take().map(|t| buf.extend_from_slice(t)).is_some());
        assert!(matches!(
            train_stream("t", &mut next, &opts, &mut no_progress(), &cancel),
            Err(BpeError::Cancelled)
        ));
        let cancel = CancelFlag::default();
        let mut merges_seen = 0;
        let flag = cancel.clone();
        let mut progress = |p: Progress| {
            if let Progress::Merging { done, .. } = p {
                merges_seen = done;
                if done >= 10 {
                    flag.cancel();
                }
            }
            true
        };
        let mut once = Some(text.as_bytes());
        let mut next =
            |buf: &mut Vec<u8>| Ok(once.take().map(|t| buf.extend_from_slice(t)).is_some());
        assert!(matches!(
            train_stream("t", &mut next, &opts, &mut progress, &cancel),
            Err(BpeError::Cancelled)
        ));
        assert!((10..20).contains(&merges_seen), "{merges_seen}");
        // A progress callback that returns false cancels too.
        assert!(matches!(
            train_texts(&[&text], &opts, &mut |_| false),
            Err(BpeError::Cancelled)
        ));
    }

    #[test]
    fn thread_count_and_chunking_do_not_change_results() {
        let text = "the cat sat on the mat; the cat's hat. ".repeat(50)
            + "<|e|>"
            + &"dogs and cats 123 ".repeat(30);
        let mut base = TrainOptions::new(256 + 1 + 40, vec!["<|e|>".into()]);
        let r1 = train_texts(&[&text], &base, &mut no_progress()).unwrap();
        base.count.num_threads = Some(2);
        base.count.chunk_size = 17;
        let r2 = train_texts(&[&text], &base, &mut no_progress()).unwrap();
        assert_eq!(r1.merges, r2.merges);
        assert_eq!(r1.vocab, r2.vocab);
        assert!(r1.merges.len() >= 20, "{}", r1.merges.len());
    }
}
