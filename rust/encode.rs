//! Encoding: rank-ordered merging of one pre-token, cached, plus batch and file encoding.
//!
//! An `Encoder` is built once from the vocabulary, the merges (in rank order), the special
//! tokens and the pre-tokenization pattern (`pretokenize::Pattern`: GPT-2 by default, cl100k,
//! o200k or a custom regex). Encoding splits text at special tokens (longest first),
//! pre-tokenizes each ordinary segment with the pattern and merges each pre-token by repeatedly
//! merging its lowest-rank adjacent pair, leftmost first, which reproduces GPT-2 (and tiktoken
//! with the same pattern and ranks) exactly.
//!
//! Speed comes from three layers, tried in order for each pre-token:
//! 1. `whole`: vocabulary tokens whose own BPE is themselves (checked once at construction), so
//!    most pre-tokens of real text are a single hash lookup;
//! 2. a bounded cache of pre-token bytes -> ids for the rest (per thread for large work, per
//!    call for small texts and streaming, so `encode_iterable` memory stays flat);
//! 3. merging: a scan over a small array for short pieces, a linked list plus a heap for long
//!    ones, so one huge pre-token costs O(n log n), not O(n^2).
//!
//! Parallel work (large texts, files) and streaming cut text only at *safe cuts*: positions where
//! the encoding of the two halves concatenates to the encoding of the whole
//! (`pretokenize::Cuts`: the pattern's rule and the special-token checks). A custom regex has
//! no safe cut inside text, so its text is cut only where special tokens start: a stretch
//! without one is encoded whole, by one thread.
//!
//! Encoding fails only for a custom regex that reaches fancy-regex's backtracking limit; with a
//! named pattern every `Result` here is `Ok` for valid input.
//!
//! ```ignore
//! let enc = Encoder::new(vocab, merges, specials, Pattern::new("cl100k")?)?;
//! let ids = enc.encode("Hello, world!")?;
//! ```

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};
use crate::input::{self, Input};
use crate::pretokenize::{Cuts, Pattern, SpecialTokens};
use crate::shard;

/// Ids may leave gaps (tiktoken's specials sit above the ranks), but only this many beyond twice
/// the number of tokens: the id table is sized by the largest id, so an id must never be able
/// to size it beyond the input that names it (an id of 2^31 would otherwise ask for 32 GiB).
pub const ID_SLACK: u64 = 1 << 20;

/// One more than the largest id a vocabulary of `entries` tokens may use: `2 * entries +
/// ID_SLACK`, and never `u32::MAX` (which marks "no id" inside the encoder).
pub fn id_limit(entries: usize) -> u64 {
    (2 * entries as u64 + ID_SLACK).min(u32::MAX as u64)
}

/// Pieces up to this many bytes merge with the array scan; longer ones use the heap.
const SCAN_MAX_PIECE: usize = 64;
/// Pieces longer than this are not cached (they are rare and would bloat the cache).
const CACHE_MAX_PIECE: usize = 256;
/// The cache is cleared when it reaches this many entries, so memory stays bounded.
const CACHE_MAX_ENTRIES: usize = 1 << 18;
/// Texts shorter than this are encoded on the calling thread even by the parallel entry points.
const PARALLEL_MIN_BYTES: usize = 1 << 17;
/// `encode` of texts at least this long uses the thread's long-lived cache.
const THREAD_CACHE_MIN_BYTES: usize = 1 << 20;
/// Target chunk size for parallel encoding of one text or file.
const CHUNK_BYTES: usize = 1 << 20;
/// The most input `encode_file` reads ahead (one block, cut into chunks).
const MAX_BLOCK_BYTES: usize = 64 << 20;
/// The largest header `encode_file` reserves before the ids (a `.npy` header needs 128).
pub const MAX_HEADER_LEN: u64 = 1 << 16;
/// Pre-tokens looked up together by `encode_ordinary_into`.
const BATCH: usize = 32;
/// No id: marks dead nodes in the heap merge and "no pair" in the scan merge.
const NONE: u32 = u32::MAX;

/// Width of the little-endian integers written by the array and file encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    U16,
    U32,
}

impl Width {
    pub fn from_bytes(n: usize) -> Result<Width> {
        match n {
            2 => Ok(Width::U16),
            4 => Ok(Width::U32),
            _ => Err(BpeError::InvalidArgument(format!(
                "token width must be 2 or 4 bytes, not {n}"
            ))),
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Width::U16 => 2,
            Width::U32 => 4,
        }
    }

    fn max_id(self) -> u64 {
        match self {
            Width::U16 => u16::MAX as u64,
            Width::U32 => u32::MAX as u64,
        }
    }

    /// Appends `ids` to `out` as little-endian integers of this width.
    pub fn extend_le(self, ids: &[u32], out: &mut Vec<u8>) {
        match self {
            Width::U16 => {
                out.reserve(ids.len() * 2);
                for &id in ids {
                    out.extend_from_slice(&(id as u16).to_le_bytes());
                }
            }
            Width::U32 => {
                out.reserve(ids.len() * 4);
                for &id in ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
    }
}

/// Pieces of up to this many bytes are keyed by one integer (bytes plus length), so lookups
/// hash and compare integers instead of calling memcmp; up to 7 bytes fit a u64 (half the slot
/// size, so more of the table stays in cache), up to 15 a u128.
const SHORT_PIECE: usize = 7;
const MID_PIECE: usize = 15;

/// The bytes of `b` (at most 8) as a little-endian integer, zero-padded, without a memcpy:
/// two overlapping 4-byte loads (overlapping bytes are equal, so OR-ing them is exact).
#[inline(always)]
fn load_le(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n <= 8);
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        lo | (hi << (8 * (n - 4)))
    } else if n > 0 {
        (b[0] as u64) | ((b[n / 2] as u64) << (8 * (n / 2))) | ((b[n - 1] as u64) << (8 * (n - 1)))
    } else {
        0
    }
}

/// Key of a piece of at most 7 bytes: the bytes, and the length in the top byte.
#[inline(always)]
fn pack_short(b: &[u8]) -> u64 {
    load_le(b) | ((b.len() as u64) << 56)
}

/// Key of a piece of 8 to 15 bytes: the bytes, and the length in the top byte.
#[inline(always)]
fn pack_mid(b: &[u8]) -> u128 {
    let lo = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let hi = load_le(&b[8..]) | ((b.len() as u64) << 56);
    (lo as u128) | ((hi as u128) << 64)
}

/// A map keyed by pre-token bytes: short keys packed into integers, long ones boxed.
#[derive(Clone)]
struct PieceMap<V> {
    short: FxHashMap<u64, V>,
    mid: FxHashMap<u128, V>,
    long: FxHashMap<Box<[u8]>, V>,
}

impl<V: Copy> PieceMap<V> {
    fn new() -> Self {
        PieceMap {
            short: FxHashMap::default(),
            mid: FxHashMap::default(),
            long: FxHashMap::default(),
        }
    }

    #[inline]
    fn get(&self, piece: &[u8]) -> Option<V> {
        if piece.len() <= SHORT_PIECE {
            self.short.get(&pack_short(piece)).copied()
        } else if piece.len() <= MID_PIECE {
            self.mid.get(&pack_mid(piece)).copied()
        } else {
            self.long.get(piece).copied()
        }
    }

    fn insert(&mut self, piece: &[u8], v: V) {
        if piece.len() <= SHORT_PIECE {
            self.short.insert(pack_short(piece), v);
        } else if piece.len() <= MID_PIECE {
            self.mid.insert(pack_mid(piece), v);
        } else {
            self.long.insert(piece.into(), v);
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.mid.len() + self.long.len()
    }

    fn clear(&mut self) {
        self.short.clear();
        self.mid.clear();
        self.long.clear();
    }
}

/// A bounded cache of pre-token bytes -> ids. One per call, or one per worker thread for the
/// parallel paths (tagged with the encoder it belongs to); never shared between threads.
pub struct Cache {
    map: PieceMap<(u32, u32)>,
    ids: Vec<u32>,
    owner: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            map: PieceMap::new(),
            ids: Vec::new(),
            owner: 0,
        }
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn get(&self, piece: &[u8]) -> Option<&[u32]> {
        self.map
            .get(piece)
            .map(|(start, len)| &self.ids[start as usize..(start + len) as usize])
    }

    fn insert(&mut self, piece: &[u8], ids: &[u32]) {
        if self.map.len() >= CACHE_MAX_ENTRIES {
            self.clear();
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(ids);
        self.map.insert(piece, (start, ids.len() as u32));
    }

    fn clear(&mut self) {
        self.map.clear();
        self.ids.clear();
    }
}

thread_local! {
    /// A thread's long-lived cache: used by rayon workers across the tasks they run, and by
    /// `encode` on large texts.
    static WORKER_CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

/// Distinct ids for encoders, so a worker cache never serves ids of another vocabulary.
static NEXT_ENCODER_UID: AtomicU64 = AtomicU64::new(1);

/// Statistics of one `encode_file` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub bytes: u64,
    pub tokens: u64,
    pub chunks: u64,
}

/// A byte-level BPE encoder: vocabulary, merge ranks and special tokens, built once.
pub struct Encoder {
    /// id -> token bytes (`None` for ids the vocabulary skips).
    tokens: Vec<Option<Box<[u8]>>>,
    byte_ids: [u32; 256],
    /// (left id, right id) -> (rank, merged id).
    ranks: FxHashMap<u64, (u32, u32)>,
    /// Tokens whose own BPE is the single token: a pre-token equal to one is that id.
    whole: PieceMap<u32>,
    /// Tags this encoder's entries in the worker caches.
    uid: u64,
    /// The special tokens (their names, in the order given), matched longest first.
    specials: SpecialTokens,
    special_ids: Vec<u32>,
    /// The pre-tokenization pattern of ordinary text.
    pattern: Pattern,
}

impl Encoder {
    /// Builds an encoder.
    ///
    /// Args: `vocab` as (id, bytes) pairs; `merges` in rank order as (left bytes, right bytes);
    /// `specials` as (text, id) pairs, each id already in `vocab` with the text's UTF-8 bytes;
    /// `pattern` the pre-tokenization pattern.
    /// Every single byte must have a token; each merge's parts and result must be tokens. Ids
    /// must be below `id_limit(vocab.len())` (checked before anything is allocated by id).
    pub fn new(
        vocab: Vec<(u64, Vec<u8>)>,
        merges: Vec<(Vec<u8>, Vec<u8>)>,
        specials: Vec<(String, u64)>,
        pattern: Pattern,
    ) -> Result<Self> {
        let arg = |msg: String| BpeError::InvalidArgument(msg);
        // 1. id -> bytes, rejecting ids out of range (before the table is sized by them) and
        // duplicate ids.
        let limit = id_limit(vocab.len());
        if let Some(&(id, _)) = vocab.iter().find(|&&(id, _)| id >= limit) {
            return Err(arg(format!(
                "token id {id} is out of range: a vocabulary of {} tokens may use ids below {limit} \
                 (twice the number of tokens plus {ID_SLACK})",
                vocab.len()
            )));
        }
        let max_id = vocab.iter().map(|&(id, _)| id).max().unwrap_or(0);
        let mut tokens: Vec<Option<Box<[u8]>>> = vec![None; max_id as usize + 1];
        for (id, bytes) in vocab {
            if bytes.is_empty() {
                return Err(arg(format!("token id {id} has empty bytes")));
            }
            let slot = &mut tokens[id as usize];
            if slot.is_some() {
                return Err(arg(format!(
                    "token id {id} appears twice in the vocabulary"
                )));
            }
            *slot = Some(bytes.into_boxed_slice());
        }
        // 2. bytes -> id (lowest id wins on duplicates).
        let mut special_ids = Vec::with_capacity(specials.len());
        for (text, id) in &specials {
            let found = usize::try_from(*id)
                .ok()
                .and_then(|i| tokens.get(i))
                .and_then(|t| t.as_deref());
            match found {
                Some(b) if b == text.as_bytes() => special_ids.push(*id as u32),
                _ => {
                    return Err(arg(format!(
                        "special token {text:?} does not have id {id} in the vocabulary"
                    )))
                }
            }
        }
        let mut by_bytes: FxHashMap<&[u8], u32> = FxHashMap::default();
        for (id, t) in tokens.iter().enumerate() {
            if let Some(t) = t {
                by_bytes.entry(&t[..]).or_insert(id as u32);
            }
        }
        let mut byte_ids = [NONE; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *by_bytes
                .get(&[b as u8][..])
                .ok_or_else(|| arg(format!("the vocabulary has no token for byte 0x{b:02x}")))?;
        }
        // 3. merge ranks; the first occurrence of a repeated merge keeps its rank.
        let mut ranks = FxHashMap::default();
        ranks.reserve(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let lookup = |t: &[u8]| {
                by_bytes.get(t).copied().ok_or_else(|| {
                    arg(format!(
                        "merge {rank} ({} + {}): token {} is not in the vocabulary",
                        show(a),
                        show(b),
                        show(t)
                    ))
                })
            };
            let ia = lookup(a)?;
            let ib = lookup(b)?;
            let joined = [&a[..], &b[..]].concat();
            let ij = lookup(&joined)?;
            ranks.entry(pair_key(ia, ib)).or_insert((rank as u32, ij));
        }
        let names: Vec<String> = specials.iter().map(|(t, _)| t.clone()).collect();
        drop(by_bytes);
        let mut enc = Encoder {
            tokens,
            byte_ids,
            ranks,
            whole: PieceMap::new(),
            uid: NEXT_ENCODER_UID.fetch_add(1, Ordering::Relaxed),
            specials: SpecialTokens::new(&names)?,
            special_ids,
            pattern,
        };
        // 4. the whole-token fast path: only tokens that BPE actually produces from their bytes.
        let mut whole = PieceMap::new();
        let mut out = Vec::new();
        for (id, t) in enc.tokens.iter().enumerate() {
            let Some(bytes) = t else { continue };
            out.clear();
            enc.merge_piece(bytes, &mut out);
            if out.len() == 1 && out[0] == id as u32 {
                whole.insert(bytes, id as u32);
            }
        }
        enc.whole = whole;
        Ok(enc)
    }

    /// One more than the largest id.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).and_then(|t| t.as_deref())
    }

    pub fn special_tokens(&self) -> &[String] {
        self.specials.tokens()
    }

    /// The pre-tokenization pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    // --------------------------------------------------------------------------------------
    // One pre-token
    // --------------------------------------------------------------------------------------

    fn rank(&self, a: u32, b: u32) -> (u32, u32) {
        self.ranks
            .get(&pair_key(a, b))
            .copied()
            .unwrap_or((NONE, NONE))
    }

    /// Merges `piece` (the bytes of one pre-token) by rank and appends the ids to `out`.
    /// No cache, no whole-token shortcut: this is the definition the fast paths must equal.
    pub fn merge_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SCAN_MAX_PIECE {
            self.merge_scan(piece, out)
        } else {
            self.merge_heap(piece, out)
        }
    }

    /// Short pieces: ids and pair ranks in stack arrays; each step scans for the lowest rank
    /// (leftmost on ties), merges, and refreshes the two neighbouring pairs.
    fn merge_scan(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        debug_assert!(n <= SCAN_MAX_PIECE);
        let mut ids = [0u32; SCAN_MAX_PIECE];
        // pairs[i] = (rank, merged id) of (ids[i], ids[i + 1]).
        let mut pairs = [(NONE, NONE); SCAN_MAX_PIECE];
        for (i, &b) in piece.iter().enumerate() {
            ids[i] = self.byte_ids[b as usize];
        }
        for i in 0..n.saturating_sub(1) {
            pairs[i] = self.rank(ids[i], ids[i + 1]);
        }
        let mut len = n;
        while len > 1 {
            let mut best = NONE;
            let mut at = 0;
            for (i, p) in pairs[..len - 1].iter().enumerate() {
                if p.0 < best {
                    best = p.0;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            ids[at] = pairs[at].1;
            ids.copy_within(at + 2..len, at + 1);
            pairs.copy_within(at + 2..len, at + 1);
            len -= 1;
            if at + 1 < len {
                pairs[at] = self.rank(ids[at], ids[at + 1]);
            } else {
                pairs[at] = (NONE, NONE);
            }
            if at > 0 {
                pairs[at - 1] = self.rank(ids[at - 1], ids[at]);
            }
        }
        out.extend_from_slice(&ids[..len]);
    }

    /// Long pieces: a doubly linked list of tokens and a min-heap of (rank, position) with lazy
    /// invalidation; O(n log n) however the merges fall.
    fn merge_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        // Entries are rank << 32 | position, so the smallest is the lowest rank, leftmost;
        // built in one O(n) heapify.
        let entry = |rank: u32, pos: u32| Reverse(((rank as u64) << 32) | pos as u64);
        let mut heap: BinaryHeap<Reverse<u64>> = (0..n - 1)
            .filter_map(|i| {
                let (r, _) = self.rank(ids[i], ids[i + 1]);
                (r != NONE).then(|| entry(r, i as u32))
            })
            .collect();
        while let Some(Reverse(e)) = heap.pop() {
            let (r, i) = ((e >> 32) as u32, (e as u32) as usize);
            if ids[i] == NONE {
                continue;
            }
            let j = next[i] as usize;
            if j >= n {
                continue;
            }
            // A rank names exactly one pair, so an equal rank means the entry is still current.
            let (cur, merged) = self.rank(ids[i], ids[j]);
            if cur != r {
                continue;
            }
            ids[i] = merged;
            ids[j] = NONE;
            let k = next[j];
            next[i] = k;
            if (k as usize) < n {
                prev[k as usize] = i as u32;
                let (rk, _) = self.rank(merged, ids[k as usize]);
                if rk != NONE {
                    heap.push(entry(rk, i as u32));
                }
            }
            let p = prev[i];
            if p != NONE {
                let (rp, _) = self.rank(ids[p as usize], merged);
                if rp != NONE {
                    heap.push(entry(rp, p));
                }
            }
        }
        out.extend(ids.into_iter().filter(|&id| id != NONE));
    }

    /// Encodes one pre-token through the whole-token table, the cache, then merging (the
    /// one-piece form of `encode_batch_of_pieces`, for tests).
    #[cfg(test)]
    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>, cache: &mut Cache) {
        match self.whole.get(piece) {
            Some(id) => out.push(id),
            None => self.encode_rare_piece(piece, out, cache),
        }
    }

    /// A pre-token that is not a whole token: the cache, else merging (then cached).
    fn encode_rare_piece(&self, piece: &[u8], out: &mut Vec<u32>, cache: &mut Cache) {
        if piece.len() > CACHE_MAX_PIECE {
            self.merge_piece(piece, out);
            return;
        }
        if let Some(ids) = cache.get(piece) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        self.merge_piece(piece, out);
        cache.insert(piece, &out[start..]);
    }

    // --------------------------------------------------------------------------------------
    // Text
    // --------------------------------------------------------------------------------------

    /// Encodes text with no special tokens recognised (they are ordinary text). `cancel` stops
    /// a custom regex between its matches (see `Pattern::for_each_pretoken_range`).
    pub fn encode_ordinary_into(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        cache: &mut Cache,
        cancel: &CancelFlag,
    ) -> Result<()> {
        // Pre-tokens are collected in batches and looked up in a separate tight loop: the
        // lookups are independent, so the CPU overlaps their cache misses instead of waiting
        // for each one inside the branchy pre-tokenizer loop. The pattern is matched once
        // here; its matcher's loop runs with this closure inlined.
        let b = text.as_bytes();
        let mut batch = [(0usize, 0usize); BATCH];
        let mut n = 0;
        let result = self.pattern.for_each_pretoken_range(text, cancel, |i, j| {
            batch[n] = (i, j);
            n += 1;
            if n == BATCH {
                self.encode_batch_of_pieces(b, &batch, out, cache);
                n = 0;
            }
        });
        self.encode_batch_of_pieces(b, &batch[..n], out, cache);
        result
    }

    /// Encodes the pre-tokens `b[i..j]` for each `(i, j)` of `pieces`.
    #[inline]
    fn encode_batch_of_pieces(
        &self,
        b: &[u8],
        pieces: &[(usize, usize)],
        out: &mut Vec<u32>,
        cache: &mut Cache,
    ) {
        let mut found = [NONE; BATCH];
        for (f, &(i, j)) in found.iter_mut().zip(pieces) {
            let len = j - i;
            let id = if len <= SHORT_PIECE && i + 8 <= b.len() {
                // One unaligned load and a mask (pre-tokens are never empty, so the shift is
                // at most 56): the same key as `pack_short`, without its length branches.
                let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
                let key = (w & (u64::MAX >> (64 - 8 * len))) | ((len as u64) << 56);
                self.whole.short.get(&key).copied()
            } else {
                self.whole.get(&b[i..j])
            };
            if let Some(id) = id {
                *f = id;
            }
        }
        for (&f, &(i, j)) in found.iter().zip(pieces) {
            if f != NONE {
                out.push(f);
            } else {
                self.encode_rare_piece(&b[i..j], out, cache);
            }
        }
    }

    /// Encodes text, turning each special token (longest first) into its id.
    pub fn encode_into(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        cache: &mut Cache,
        cancel: &CancelFlag,
    ) -> Result<()> {
        let mut start = 0;
        for (s, e, idx) in self.specials.find_iter(text.as_bytes()) {
            // A special token is valid UTF-8, so `s` and `e` are char boundaries.
            self.encode_ordinary_into(&text[start..s], out, cache, cancel)?;
            out.push(self.special_ids[idx]);
            start = e;
        }
        self.encode_ordinary_into(&text[start..], out, cache, cancel)
    }

    /// Runs `f` with this thread's worker cache, emptied first if it holds another encoder's ids.
    fn with_worker_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        WORKER_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.owner != self.uid {
                c.clear();
                c.owner = self.uid;
            }
            f(&mut c)
        })
    }

    /// Encodes text on the calling thread (special tokens recognised); `encode_on_this_thread`
    /// without a way to stop it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_on_this_thread(text, true, &CancelFlag::default())
    }

    /// Encodes text on the calling thread with special tokens treated as ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_on_this_thread(text, false, &CancelFlag::default())
    }

    /// Encodes text on the calling thread, special tokens recognised or (`specials` false)
    /// treated as ordinary text. A large text is encoded in pieces of about `CHUNK_BYTES` cut
    /// at safe cuts, with `cancel` checked between them (and between a custom regex's matches,
    /// as it has no safe cuts).
    ///
    /// Large texts use this thread's long-lived cache (bounded; see `CACHE_MAX_ENTRIES`), so
    /// rare pre-tokens are merged once per thread rather than once per call; small ones use a
    /// cache that lives only for the call, which keeps streaming memory flat.
    pub fn encode_on_this_thread(
        &self,
        text: &str,
        specials: bool,
        cancel: &CancelFlag,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut run = |cache: &mut Cache| -> Result<()> {
            let bounds = if text.len() > CHUNK_BYTES {
                // A cut safe with special tokens recognised is safe for ordinary text too.
                self.chunk_bounds(text.as_bytes(), CHUNK_BYTES, true)
            } else {
                vec![0, text.len()]
            };
            for w in bounds.windows(2) {
                cancel.check()?;
                let piece = &text[w[0]..w[1]];
                if specials {
                    self.encode_into(piece, &mut out, cache, cancel)?;
                } else {
                    self.encode_ordinary_into(piece, &mut out, cache, cancel)?;
                }
            }
            Ok(())
        };
        if text.len() >= THREAD_CACHE_MIN_BYTES {
            self.with_worker_cache(|cache| run(cache))?;
        } else {
            run(&mut Cache::new())?;
        }
        Ok(out)
    }

    /// Encodes many texts in parallel (current rayon pool), one id list per text. Each text
    /// checks `cancel` before it starts.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        cancel: &CancelFlag,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| {
                cancel.check()?;
                let t = t.as_ref();
                let mut out = Vec::with_capacity(t.len() / 3 + 1);
                self.with_worker_cache(|cache| self.encode_into(t, &mut out, cache, cancel))?;
                Ok(out)
            })
            .collect()
    }

    /// Encodes one (large) text in parallel chunks cut at safe cuts; the ids are those of
    /// `encode`. Returns one id vector per chunk, in order. Each chunk checks `cancel` first.
    pub fn encode_chunks(&self, text: &str, cancel: &CancelFlag) -> Result<Vec<Vec<u32>>> {
        if text.len() < PARALLEL_MIN_BYTES {
            return Ok(vec![self.encode_on_this_thread(text, true, cancel)?]);
        }
        let chunk = (text.len() / (4 * rayon::current_num_threads())).clamp(1 << 16, CHUNK_BYTES);
        let bounds = self.chunk_bounds(text.as_bytes(), chunk, true);
        bounds
            .par_windows(2)
            .map(|w| {
                cancel.check()?;
                let piece = &text[w[0]..w[1]];
                let mut out = Vec::with_capacity(piece.len() / 3 + 1);
                self.with_worker_cache(|cache| self.encode_into(piece, &mut out, cache, cancel))?;
                Ok(out)
            })
            .collect()
    }

    /// `encode` in parallel, as little-endian integers of `width`.
    pub fn encode_to_le_bytes(
        &self,
        text: &str,
        width: Width,
        cancel: &CancelFlag,
    ) -> Result<Vec<u8>> {
        self.check_width(width)?;
        let chunks = self.encode_chunks(text, cancel)?;
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut out = Vec::with_capacity(total * width.bytes());
        for c in &chunks {
            width.extend_le(c, &mut out);
        }
        Ok(out)
    }

    /// Encodes the longest prefix of `text` that ends at a safe cut and returns the ids and the
    /// prefix length in bytes (0 and no ids when there is no safe cut). Streaming encoders call
    /// this on a buffer and keep the unencoded tail for the next call.
    pub fn encode_prefix(&self, text: &str, cancel: &CancelFlag) -> Result<(Vec<u32>, usize)> {
        let bytes = text.as_bytes();
        match self.cuts().last(bytes) {
            Some(p) => {
                // A per-call cache, never the thread's: streaming must not grow memory.
                let mut out = Vec::with_capacity(p / 3 + 1);
                self.encode_into(&text[..p], &mut out, &mut Cache::new(), cancel)?;
                Ok((out, p))
            }
            None => Ok((Vec::new(), 0)),
        }
    }

    fn check_width(&self, width: Width) -> Result<()> {
        let top = self.tokens.len() as u64 - 1;
        if top > width.max_id() {
            return Err(BpeError::InvalidArgument(format!(
                "a {}-byte token array cannot hold ids up to {top}; use a wider dtype",
                width.bytes()
            )));
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------
    // Safe cuts
    // --------------------------------------------------------------------------------------

    /// Where this encoder may cut text: the pattern's rule plus the special-token checks
    /// (`pretokenize::Cuts`, which proves that both halves then encode to the whole's ids).
    pub fn cuts(&self) -> Cuts<'_> {
        self.pattern.cuts(&self.specials)
    }

    /// Whether cutting `bytes` at `p` leaves the encoding unchanged: for every text that
    /// starts with `bytes`, encode(text[..p]) followed by encode(text[p..]) equals encode(text).
    pub fn is_safe_cut(&self, bytes: &[u8], p: usize) -> bool {
        self.cuts().is_safe(bytes, p)
    }

    /// Chunk boundaries [0, c1, c2, ..., end] for `bytes`, each cut safe and about `chunk`
    /// bytes apart. With `last` false the final boundary is the last safe cut found (the rest
    /// is left for the caller to carry); with `last` true it is `bytes.len()`.
    fn chunk_bounds(&self, bytes: &[u8], chunk: usize, last: bool) -> Vec<usize> {
        let cuts = self.cuts();
        let mut bounds = vec![0];
        let mut pos = 0;
        while pos + chunk < bytes.len() {
            match cuts.first_from(bytes, pos + chunk) {
                Some(p) => {
                    bounds.push(p);
                    pos = p;
                }
                None => break,
            }
        }
        if last && pos < bytes.len() {
            bounds.push(bytes.len());
        }
        bounds
    }

    // --------------------------------------------------------------------------------------
    // Files
    // --------------------------------------------------------------------------------------

    /// Encodes the UTF-8 file `input` into `output` as little-endian integers of `width`,
    /// starting at byte `header_len` of `output` (the bytes before it are zeros, for the caller
    /// to fill with a header). The file is read in blocks, cut at safe cuts into chunks encoded
    /// in parallel on the current rayon pool and written in order; memory is bounded by the
    /// block size (plus twice the longest stretch of text without a safe cut: with a custom
    /// regex, the longest stretch between two special tokens). `progress` counts the
    /// input bytes done. Invalid UTF-8 is reported with its absolute byte offset.
    pub fn encode_file(
        &self,
        input: &Path,
        output: &Path,
        header_len: u64,
        width: Width,
        progress: &AtomicU64,
        cancel: &CancelFlag,
    ) -> Result<FileStats> {
        self.check_output(header_len, width)?;
        // Opened before the output exists, and without blocking (a FIFO may have no writer yet).
        let reader = Input::open(input, cancel)?;
        self.encode_input(reader, output, header_len, width, progress, cancel)
    }

    /// Checks the arguments that shape an output file.
    fn check_output(&self, header_len: u64, width: Width) -> Result<()> {
        self.check_width(width)?;
        if header_len > MAX_HEADER_LEN {
            return Err(BpeError::InvalidArgument(format!(
                "header_len {header_len} is too large (at most {MAX_HEADER_LEN} bytes)"
            )));
        }
        Ok(())
    }

    /// `encode_file` for the bytes of the regular file `input` that the shard given
    /// `start..end` owns (`shard::owned_range`, with this encoder's cuts): the arrays of the
    /// shards of any partition of a file, concatenated in order, are `encode_file`'s array of
    /// the whole. Returns the statistics and the owned range (None when the shard owns nothing;
    /// `output` then holds no ids).
    #[allow(clippy::too_many_arguments)]
    pub fn encode_file_range(
        &self,
        input: &Path,
        start: u64,
        end: u64,
        output: &Path,
        header_len: u64,
        width: Width,
        progress: &AtomicU64,
        cancel: &CancelFlag,
    ) -> Result<(FileStats, Option<shard::ByteRange>)> {
        self.check_output(header_len, width)?;
        let owned = shard::owned_range(input, start, end, &self.cuts(), cancel)?;
        let (first, last) = owned.unwrap_or((0, 0));
        let reader = Input::open_range(input, first, last, cancel)?;
        let stats = self.encode_input(reader, output, header_len, width, progress, cancel)?;
        Ok((stats, owned))
    }

    /// The body of `encode_file`, reading from `reader` (a whole input or a range of one).
    fn encode_input(
        &self,
        mut reader: Input,
        output: &Path,
        header_len: u64,
        width: Width,
        progress: &AtomicU64,
        cancel: &CancelFlag,
    ) -> Result<FileStats> {
        let out_name = output.display().to_string();
        let io_out = |e: std::io::Error| BpeError::Io {
            path: out_name.clone(),
            source: e,
        };
        let mut writer = BufWriter::with_capacity(1 << 20, File::create(output).map_err(io_out)?);
        writer
            .write_all(&vec![0u8; header_len as usize])
            .map_err(io_out)?;

        // Four chunks per thread keep every thread busy; the cap bounds the buffer however
        // many threads the caller asks for.
        let threads = rayon::current_num_threads().max(1);
        let block = (CHUNK_BYTES * threads * 4).min(MAX_BLOCK_BYTES);
        let mut stats = FileStats::default();
        // `buf` holds the carried tail of the previous block followed by newly read bytes;
        // `base` is the absolute file offset of buf[0].
        let mut buf: Vec<u8> = Vec::with_capacity(block + CHUNK_BYTES);
        let mut base: u64 = reader.start();
        let mut eof = false;
        let mut bytes_out = Vec::new();
        while !eof {
            // 1. Fill the buffer to at least one block beyond the carried tail (or to EOF). A
            // tail longer than a block (no safe cut in it) doubles instead, so text without
            // cuts is searched for one a logarithmic number of times, not once per block.
            let want = buf.len() + block.max(buf.len());
            while buf.len() < want {
                let old = buf.len();
                buf.resize(want, 0);
                let n = reader.read(&mut buf[old..], cancel)?;
                buf.truncate(old + n);
                if n == 0 {
                    eof = true;
                    break;
                }
            }
            // 2. Cut into chunks at safe cuts; without EOF the tail after the last cut waits.
            let bounds = self.chunk_bounds(&buf, CHUNK_BYTES, eof);
            // 3. Validate and encode the chunks in parallel.
            let results: Vec<Result<Vec<u32>>> = bounds
                .par_windows(2)
                .map(|w| {
                    cancel.check()?;
                    let piece = &buf[w[0]..w[1]];
                    let text = input::utf8(reader.name(), base + w[0] as u64, piece)?;
                    let mut out = Vec::with_capacity(piece.len() / 3 + 1);
                    self.with_worker_cache(|cache| {
                        self.encode_into(text, &mut out, cache, cancel)
                    })?;
                    progress.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    Ok(out)
                })
                .collect();
            // 4. Write in order; the first error in file order wins.
            for r in results {
                let ids = r?;
                stats.tokens += ids.len() as u64;
                stats.chunks += 1;
                bytes_out.clear();
                width.extend_le(&ids, &mut bytes_out);
                writer.write_all(&bytes_out).map_err(io_out)?;
            }
            let done = *bounds.last().unwrap_or(&0);
            stats.bytes += done as u64;
            base += done as u64;
            buf.drain(..done);
        }
        debug_assert!(buf.is_empty());
        let file = writer.into_inner().map_err(|e| io_out(e.into_error()))?;
        file.sync_all().map_err(io_out)?;
        Ok(stats)
    }

    // --------------------------------------------------------------------------------------
    // Decoding
    // --------------------------------------------------------------------------------------

    /// Concatenates the bytes of `ids`; an id the vocabulary lacks is `BpeError::UnknownId`.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id).ok_or(BpeError::UnknownId(id as u64))?);
        }
        Ok(out)
    }
}

/// One integer per pair of ids: one multiply to hash instead of two.
#[inline(always)]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Token bytes for messages: the text when UTF-8, else the escaped bytes.
fn show(t: &[u8]) -> String {
    match std::str::from_utf8(t) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("{:?}", t.escape_ascii().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::with_threads;

    /// A deterministic xorshift generator, so the tests need no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn byte_vocab() -> Vec<(u64, Vec<u8>)> {
        (0..256u64).map(|b| (b, vec![b as u8])).collect()
    }

    /// Vocabulary: the 256 bytes (id = byte value), then one id per merge, in order.
    fn encoder(merges: &[(&str, &str)], specials: &[&str]) -> Encoder {
        let mut vocab = byte_vocab();
        let merges: Vec<(Vec<u8>, Vec<u8>)> = merges
            .iter()
            .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
            .collect();
        for (i, (a, b)) in merges.iter().enumerate() {
            vocab.push((256 + i as u64, [&a[..], &b[..]].concat()));
        }
        let mut next = vocab.len() as u64;
        let specials = specials
            .iter()
            .map(|s| {
                vocab.push((next, s.as_bytes().to_vec()));
                next += 1;
                (s.to_string(), next - 1)
            })
            .collect();
        Encoder::new(vocab, merges, specials, Pattern::Gpt2).unwrap()
    }

    /// Random merges over a small alphabet, so pieces merge deeply and in varied orders.
    fn random_encoder(seed: u64, n_merges: usize) -> Encoder {
        let mut rng = Rng(seed);
        let mut tokens: Vec<Vec<u8>> = b"ab c\n".iter().map(|&b| vec![b]).collect();
        let mut merges = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while merges.len() < n_merges {
            let a = tokens[rng.below(tokens.len())].clone();
            let b = tokens[rng.below(tokens.len())].clone();
            let joined = [&a[..], &b[..]].concat();
            if joined.len() > 12 || !seen.insert(joined.clone()) {
                continue;
            }
            tokens.push(joined);
            merges.push((a, b));
        }
        let mut vocab = byte_vocab();
        for (i, (a, b)) in merges.iter().enumerate() {
            vocab.push((256 + i as u64, [&a[..], &b[..]].concat()));
        }
        Encoder::new(vocab, merges, vec![], Pattern::Gpt2).unwrap()
    }

    /// The textbook algorithm: merge the lowest-rank pair, all occurrences left to right.
    fn naive_bpe(enc: &Encoder, piece: &[u8]) -> Vec<u32> {
        let mut ids: Vec<u32> = piece.iter().map(|&b| enc.byte_ids[b as usize]).collect();
        loop {
            let best = ids
                .windows(2)
                .filter_map(|w| enc.ranks.get(&pair_key(w[0], w[1])))
                .min();
            let Some(&(rank, new)) = best else { return ids };
            let mut out = Vec::with_capacity(ids.len());
            let mut i = 0;
            while i < ids.len() {
                if i + 1 < ids.len()
                    && enc.ranks.get(&pair_key(ids[i], ids[i + 1])).map(|r| r.0) == Some(rank)
                {
                    out.push(new);
                    i += 2;
                } else {
                    out.push(ids[i]);
                    i += 1;
                }
            }
            ids = out;
        }
    }

    #[test]
    fn merges_by_rank() {
        // "ab" first, then "abc"; "bc" ranks after "ab", so "abc" never becomes a + bc.
        let enc = encoder(&[("a", "b"), ("b", "c"), ("ab", "c")], &[]);
        assert_eq!(enc.encode("abc").unwrap(), vec![258]);
        assert_eq!(enc.encode("bc").unwrap(), vec![257]);
        assert_eq!(enc.encode("abab").unwrap(), vec![256, 256]);
        assert_eq!(
            enc.encode("xbc ab").unwrap(),
            vec![b'x' as u32, 257, b' ' as u32, 256]
        );
        assert_eq!(enc.encode("").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn overlapping_pairs_merge_left_to_right() {
        let enc = encoder(&[("a", "a")], &[]);
        assert_eq!(enc.encode("aaa").unwrap(), vec![256, b'a' as u32]);
        assert_eq!(enc.encode("aaaa").unwrap(), vec![256, 256]);
        let enc = encoder(&[("a", "a"), ("aa", "aa")], &[]);
        assert_eq!(enc.encode("aaaaa").unwrap(), vec![257, b'a' as u32]);
    }

    #[test]
    fn token_not_reachable_by_its_own_merges_is_not_a_shortcut() {
        // "abc" = a + bc, but "ab" merges first, so BPE of "abc" is [ab, c], never the token.
        let enc = encoder(&[("a", "b"), ("b", "c"), ("a", "bc")], &[]);
        assert_eq!(enc.encode("abc").unwrap(), vec![256, b'c' as u32]);
        assert_eq!(enc.decode_bytes(&[258]).unwrap(), b"abc");
    }

    #[test]
    fn scan_and_heap_equal_naive_bpe() {
        for seed in 1..6 {
            let enc = random_encoder(seed, 300);
            let mut rng = Rng(seed * 7919);
            for _ in 0..300 {
                let n = 1 + rng.below(300);
                let piece: Vec<u8> = (0..n).map(|_| b"ab c\n"[rng.below(5)]).collect();
                let expect = naive_bpe(&enc, &piece);
                let (mut scan, mut heap) = (Vec::new(), Vec::new());
                if n <= SCAN_MAX_PIECE {
                    enc.merge_scan(&piece, &mut scan);
                    assert_eq!(scan, expect);
                }
                enc.merge_heap(&piece, &mut heap);
                assert_eq!(heap, expect, "piece {:?}", String::from_utf8_lossy(&piece));
                let mut cached = Vec::new();
                let mut cache = Cache::new();
                enc.encode_piece(&piece, &mut cached, &mut cache);
                enc.encode_piece(&piece, &mut cached, &mut cache);
                assert_eq!(cached, [expect.clone(), expect].concat());
            }
        }
    }

    #[test]
    fn one_huge_pretoken_is_fast_and_exact() {
        let enc = random_encoder(3, 300);
        let piece = "ab".repeat(200_000) + "a";
        let ids = enc.encode(&piece).unwrap();
        assert_eq!(enc.decode_bytes(&ids).unwrap(), piece.as_bytes());
        assert_eq!(ids, naive_bpe(&enc, piece.as_bytes()));
    }

    #[test]
    fn specials_longest_first_and_never_split() {
        let enc = encoder(&[("<", "|")], &["<|e|>", "<|e|><|e|>"]);
        let e1 = enc.special_ids[0];
        let e2 = enc.special_ids[1];
        assert_eq!(enc.encode("<|e|><|e|><|e|>").unwrap(), vec![e2, e1]);
        assert_eq!(
            enc.encode("x<|e|>y").unwrap(),
            vec![b'x' as u32, e1, b'y' as u32]
        );
        // Undeclared look-alike and specials in encode_ordinary are plain text.
        assert_eq!(
            enc.encode("<|f|>").unwrap(),
            vec![256, b'f' as u32, b'|' as u32, b'>' as u32]
        );
        assert_eq!(
            enc.encode_ordinary("<|e|>").unwrap(),
            vec![256, b'e' as u32, b'|' as u32, b'>' as u32]
        );
    }

    #[test]
    fn many_specials() {
        let names: Vec<String> = (0..500).map(|i| format!("<tok{i}>")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let enc = encoder(&[], &refs);
        let text: String = (0..2000)
            .map(|i| format!("{} x", names[(i * 7) % 500]))
            .collect();
        let ids = enc.encode(&text).unwrap();
        assert_eq!(ids.iter().filter(|&&id| id >= 256).count(), 2000);
        assert_eq!(enc.decode_bytes(&ids).unwrap(), text.as_bytes());
    }

    fn random_text(rng: &mut Rng, n: usize) -> String {
        const PARTS: &[&str] = &[
            "a", "b", "c", " ", " ", "\n", "\n\n", "\t", "\r\n", "'s", "'", "1", "22", "!", "?.",
            "é", "ß", "中", "\u{a0}", "\u{3000}", "\u{2028}", "😀", "<|e|>", "<|", "|>", "  ", "ж",
            "дом", "。", "，", "½", "٣", "\u{301}", "\u{1C}", "x'", "'ll", "_",
        ];
        (0..n).map(|_| PARTS[rng.below(PARTS.len())]).collect()
    }

    /// `enc`'s vocabulary and merges with `specials` added (after the last id) and `pattern`.
    fn rebuild(enc: &Encoder, specials: &[&str], pattern: &str) -> Encoder {
        let base = enc.vocab_size() as u64;
        let mut vocab: Vec<(u64, Vec<u8>)> = (0..base)
            .map(|i| (i, enc.token_bytes(i as u32).unwrap().to_vec()))
            .collect();
        let mut m: Vec<_> = enc
            .ranks
            .iter()
            .map(|(&k, &(r, _))| (r, (k >> 32) as u32, k as u32))
            .collect();
        m.sort();
        let merges = m
            .into_iter()
            .map(|(_, a, b)| {
                (
                    enc.token_bytes(a).unwrap().to_vec(),
                    enc.token_bytes(b).unwrap().to_vec(),
                )
            })
            .collect();
        let specials = specials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                vocab.push((base + i as u64, s.as_bytes().to_vec()));
                (s.to_string(), base + i as u64)
            })
            .collect();
        Encoder::new(vocab, merges, specials, Pattern::new(pattern).unwrap()).unwrap()
    }

    /// Custom regexes for the tests: one that covers all text, one that drops some.
    const CUSTOM_ALL: &str = r"\p{L}+(?=\s)|\p{L}+|\p{N}{1,2}|\s+|.";
    const CUSTOM_SOME: &str = r"[a-c ]+|\p{N}";

    #[test]
    fn safe_cuts_do_not_change_the_encoding() {
        // Specials: one plain, one containing a cut pattern ("e\n" is printable + whitespace).
        let specials = ["<|e|>", "x\ny"];
        // (pattern, fewest safe cuts the texts must reach)
        let patterns = [
            ("gpt2", 500),
            ("cl100k", 500),
            ("o200k", 500),
            (CUSTOM_ALL, 100),
            (CUSTOM_SOME, 100),
        ];
        for (pattern, min_cuts) in patterns {
            let enc = rebuild(&random_encoder(5, 200), &specials, pattern);
            let mut rng = Rng(42);
            let mut cuts = 0;
            for round in 0..400 {
                let n = 1 + rng.below(40);
                let mut text = random_text(&mut rng, n);
                if round % 3 == 0 {
                    text = text.replace('c', "x\ny");
                }
                let whole = enc.encode(&text).unwrap();
                let b = text.as_bytes();
                for p in 1..b.len() {
                    if enc.is_safe_cut(b, p) {
                        cuts += 1;
                        let mut split = enc.encode(&text[..p]).unwrap();
                        split.extend(enc.encode(&text[p..]).unwrap());
                        assert_eq!(split, whole, "{pattern}: cut at {p} of {text:?}");
                    }
                }
                // The streaming prefix and the parallel chunks agree with the whole.
                let (mut ids, used) = enc.encode_prefix(&text, &CancelFlag::default()).unwrap();
                ids.extend(enc.encode(&text[used..]).unwrap());
                assert_eq!(ids, whole, "{pattern}: {text:?}");
            }
            assert!(
                cuts > min_cuts,
                "{pattern}: too few safe cuts exercised: {cuts}"
            );
            // A cut inside "x\ny" is never safe.
            assert!(!enc.is_safe_cut(b"ax\nyb", 2));
            // Nor one whose special might continue past the end of the buffer.
            assert!(!enc.is_safe_cut(b"ax\n", 2));
        }
    }

    /// Every parallel and streaming path with each pattern gives `encode`'s ids; a custom regex
    /// (no safe cut inside text) still splits at special tokens.
    #[test]
    fn every_path_equals_encode_with_each_pattern() {
        let base = encoder(&[("a", "b"), (" ", "ab"), ("c", "c"), ("2", "2")], &[]);
        let mut rng = Rng(77);
        let text = random_text(&mut rng, 300_000);
        let none = CancelFlag::default();
        let input = temp_path("patterns-in.txt");
        std::fs::write(&input, &text).unwrap();
        for pattern in ["gpt2", "cl100k", "o200k", CUSTOM_ALL, CUSTOM_SOME] {
            let enc = rebuild(&base, &["<|e|>"], pattern);
            assert_eq!(enc.pattern().name(), Pattern::new(pattern).unwrap().name());
            let whole = enc.encode(&text).unwrap();
            let chunks = with_threads(Some(2), || enc.encode_chunks(&text, &none))
                .unwrap()
                .unwrap();
            assert!(chunks.len() > 1, "{pattern}: one chunk");
            assert_eq!(chunks.concat(), whole, "{pattern}");
            let batch = enc.encode_batch(&[&text[..1000], &text], &none).unwrap();
            assert_eq!(batch[1], whole, "{pattern}");
            let output = temp_path("patterns-out.bin");
            let done = AtomicU64::new(0);
            with_threads(Some(2), || {
                enc.encode_file(&input, &output, 0, Width::U32, &done, &none)
            })
            .unwrap()
            .unwrap();
            let ids: Vec<u32> = std::fs::read(&output)
                .unwrap()
                .chunks(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(ids, whole, "{pattern}");
            // Shards of a partition (boundaries anywhere, inside characters too) concatenate to
            // the whole file's ids.
            let len = text.len() as u64;
            let mut bounds: Vec<u64> = (0..6).map(|_| rng.below(len as usize) as u64).collect();
            bounds.extend([0, len, len / 3 + 1]);
            bounds.sort_unstable();
            let (mut ids, mut next) = (Vec::new(), 0);
            for w in bounds.windows(2) {
                let (stats, owned) = enc
                    .encode_file_range(&input, w[0], w[1], &output, 0, Width::U32, &done, &none)
                    .unwrap();
                let part: Vec<u32> = std::fs::read(&output)
                    .unwrap()
                    .chunks(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                assert_eq!(part.len() as u64, stats.tokens);
                match owned {
                    Some((s, e)) => {
                        assert_eq!((s, stats.bytes), (next, e - s), "{pattern}");
                        next = e;
                    }
                    None => assert!(part.is_empty()),
                }
                ids.extend(part);
            }
            assert_eq!(next, len, "{pattern}");
            assert_eq!(ids, whole, "{pattern}: shards of {bounds:?}");
        }
        // Without special tokens a custom regex has no cut: one chunk, the same ids.
        let enc = rebuild(&base, &[], CUSTOM_ALL);
        let chunks = with_threads(Some(2), || enc.encode_chunks(&text, &none))
            .unwrap()
            .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0], enc.encode(&text).unwrap());
        assert_eq!(
            enc.encode_prefix(&text, &CancelFlag::default()).unwrap(),
            (vec![], 0)
        );
    }

    /// A large text on the calling thread is encoded in pieces cut at safe cuts, with the ids
    /// of one unchunked pass, and a set `CancelFlag` stops it (a custom regex, which has no cuts
    /// here, between its matches).
    #[test]
    fn large_texts_on_this_thread_are_chunked_and_stoppable() {
        let specials = ["<|e|>"];
        let mut rng = Rng(7);
        let mut text = String::new();
        while text.len() <= 3 * CHUNK_BYTES {
            text.push_str(&random_text(&mut rng, 30));
            text.push_str(if rng.below(4) == 0 { "<|e|>" } else { " " });
        }
        let none = CancelFlag::default();
        let stopped = CancelFlag::default();
        stopped.cancel();
        for pattern in ["gpt2", "cl100k", "o200k", CUSTOM_ALL] {
            let enc = rebuild(&random_encoder(5, 200), &specials, pattern);
            let (mut whole, mut ordinary) = (Vec::new(), Vec::new());
            enc.encode_into(&text, &mut whole, &mut Cache::new(), &none)
                .unwrap();
            enc.encode_ordinary_into(&text, &mut ordinary, &mut Cache::new(), &none)
                .unwrap();
            assert_eq!(enc.encode(&text).unwrap(), whole, "{pattern}");
            assert_eq!(enc.encode_ordinary(&text).unwrap(), ordinary, "{pattern}");
            for specials in [true, false] {
                assert!(matches!(
                    enc.encode_on_this_thread(&text, specials, &stopped),
                    Err(BpeError::Cancelled)
                ));
            }
        }
        let enc = rebuild(&random_encoder(5, 200), &[], CUSTOM_ALL);
        let mut out = Vec::new();
        assert!(matches!(
            enc.encode_ordinary_into(&text, &mut out, &mut Cache::new(), &stopped),
            Err(BpeError::Cancelled)
        ));
        assert!(out.is_empty());
    }

    /// A custom regex that hits fancy-regex's backtracking limit fails every path with an
    /// error naming the pattern, never a panic.
    #[test]
    fn custom_pattern_failures_are_errors() {
        let enc = rebuild(&encoder(&[], &[]), &["<|e|>"], r"(?:a(?!c)|aa)+b|.");
        let text = format!("x<|e|>{}", "a".repeat(60)).repeat(5000);
        let none = CancelFlag::default();
        let is_pattern_error = |r: Result<_>| matches!(r, Err(BpeError::InvalidArgument(m)) if m.contains("failed on a text"));
        assert!(is_pattern_error(enc.encode(&text).map(|_| ())));
        assert!(is_pattern_error(enc.encode_ordinary(&text).map(|_| ())));
        assert!(is_pattern_error(
            enc.encode_prefix(&text, &CancelFlag::default()).map(|_| ())
        ));
        assert!(is_pattern_error(
            with_threads(Some(2), || enc.encode_chunks(&text, &none))
                .unwrap()
                .map(|_| ())
        ));
        assert!(is_pattern_error(
            enc.encode_batch(&[&text], &none).map(|_| ())
        ));
        let input = temp_path("backtrack-in.txt");
        std::fs::write(&input, &text).unwrap();
        let output = temp_path("backtrack-out.bin");
        let done = AtomicU64::new(0);
        assert!(is_pattern_error(
            enc.encode_file(&input, &output, 0, Width::U16, &done, &none)
                .map(|_| ())
        ));
    }

    #[test]
    fn chunks_batch_and_le_bytes_equal_encode() {
        let enc = encoder(&[("a", "b"), (" ", "ab"), ("c", "c")], &["<|e|>"]);
        let mut rng = Rng(9);
        let text = random_text(&mut rng, 200_000);
        let whole = enc.encode(&text).unwrap();
        let none = CancelFlag::default();
        let chunked: Vec<u32> = with_threads(Some(2), || enc.encode_chunks(&text, &none))
            .unwrap()
            .unwrap()
            .concat();
        assert_eq!(chunked, whole);
        let bytes = enc.encode_to_le_bytes(&text, Width::U16, &none).unwrap();
        let back: Vec<u32> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
            .collect();
        assert_eq!(back, whole);
        let texts = vec![text.as_str(), "", "ab ab<|e|>"];
        let batch = enc.encode_batch(&texts, &none).unwrap();
        assert_eq!(
            batch,
            texts
                .iter()
                .map(|t| enc.encode(t).unwrap())
                .collect::<Vec<_>>()
        );
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bpe336-encode-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn file_encoding_equals_encode() {
        let enc = encoder(&[("a", "b"), (" ", "ab"), ("c", "c")], &["<|e|>"]);
        let mut rng = Rng(11);
        let text = random_text(&mut rng, 1_500_000);
        let input = temp_path("in.txt");
        let output = temp_path("out.bin");
        std::fs::write(&input, &text).unwrap();
        let done = AtomicU64::new(0);
        let stats = with_threads(Some(2), || {
            enc.encode_file(
                &input,
                &output,
                16,
                Width::U32,
                &done,
                &CancelFlag::default(),
            )
        })
        .unwrap()
        .unwrap();
        let raw = std::fs::read(&output).unwrap();
        assert_eq!(&raw[..16], &[0u8; 16]);
        let ids: Vec<u32> = raw[16..]
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(ids, enc.encode(&text).unwrap());
        assert_eq!(stats.bytes, text.len() as u64);
        assert_eq!(stats.tokens, ids.len() as u64);
        assert!(stats.chunks > 1);
        assert_eq!(done.load(Ordering::Relaxed), text.len() as u64);
    }

    #[test]
    fn file_errors_say_where() {
        let enc = encoder(&[], &[]);
        let input = temp_path("bad.txt");
        let output = temp_path("bad.bin");
        let mut data = "hello world\n".repeat(300_000).into_bytes();
        let at = 2_500_001;
        data[at] = 0xff;
        std::fs::write(&input, &data).unwrap();
        let done = AtomicU64::new(0);
        match enc.encode_file(
            &input,
            &output,
            0,
            Width::U16,
            &done,
            &CancelFlag::default(),
        ) {
            Err(BpeError::InvalidUtf8 { offset, bad, .. }) => {
                assert_eq!(offset, at as u64);
                assert_eq!(bad, [0xff]);
            }
            other => panic!("expected InvalidUtf8, got {other:?}"),
        }
        // Cancelled before the work: no output file is made.
        let cancel = CancelFlag::default();
        cancel.cancel();
        let never = temp_path("never.bin");
        assert!(matches!(
            enc.encode_file(&input, &never, 0, Width::U16, &done, &cancel),
            Err(BpeError::Cancelled)
        ));
        assert!(!never.exists());
        let missing = temp_path("missing.txt");
        assert!(matches!(
            enc.encode_file(
                &missing,
                &output,
                0,
                Width::U16,
                &done,
                &CancelFlag::default()
            ),
            Err(BpeError::Io { .. })
        ));
        let dir = std::env::temp_dir();
        assert!(matches!(
            enc.encode_file(&dir, &output, 0, Width::U16, &done, &CancelFlag::default()),
            Err(BpeError::IsADirectory { .. })
        ));
    }

    #[test]
    fn bad_vocabularies_are_errors() {
        let err = |r: Result<Encoder>| match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error"),
        };
        let missing_byte: Vec<(u64, Vec<u8>)> = (1..256u64).map(|b| (b, vec![b as u8])).collect();
        assert!(
            err(Encoder::new(missing_byte, vec![], vec![], Pattern::Gpt2)).contains("byte 0x00")
        );
        let msg = err(Encoder::new(
            byte_vocab(),
            vec![(b"a".to_vec(), b"b".to_vec())],
            vec![],
            Pattern::Gpt2,
        ));
        assert!(msg.contains("merge 0") && msg.contains("\"ab\""), "{msg}");
        let mut dup = byte_vocab();
        dup.push((5, b"zz".to_vec()));
        assert!(err(Encoder::new(dup, vec![], vec![], Pattern::Gpt2)).contains("twice"));
        let enc = encoder(&[("a", "b")], &[]);
        assert!(matches!(
            enc.decode_bytes(&[257]),
            Err(BpeError::UnknownId(257))
        ));
        assert_eq!(enc.decode_bytes(&[256, 99]).unwrap(), b"abc");
        // Ids far beyond the entry count are refused before the id table is sized by them.
        for huge in [
            1u64 << 31,
            (1 << 32) - 2,
            u32::MAX as u64,
            1 << 40,
            id_limit(257),
        ] {
            let mut v = byte_vocab();
            v.push((huge, b"zz".to_vec()));
            let msg = err(Encoder::new(v, vec![], vec![], Pattern::Gpt2));
            assert!(msg.contains("out of range"), "{msg}");
        }
        let mut v = byte_vocab();
        v.push((id_limit(257) - 1, b"zz".to_vec()));
        assert_eq!(
            Encoder::new(v, vec![], vec![], Pattern::Gpt2)
                .unwrap()
                .vocab_size() as u64,
            id_limit(257)
        );
        let msg = err(Encoder::new(
            byte_vocab(),
            vec![],
            vec![("a".into(), 1 << 40)],
            Pattern::Gpt2,
        ));
        assert!(msg.contains("does not have id"), "{msg}");
        let mut big = byte_vocab();
        big.push((70_000, b"zz".to_vec()));
        let big = Encoder::new(big, vec![], vec![], Pattern::Gpt2).unwrap();
        assert!(big
            .encode_to_le_bytes("a", Width::U16, &CancelFlag::default())
            .is_err());
        assert!(with_threads(Some(0), || ()).is_err());
    }
}
