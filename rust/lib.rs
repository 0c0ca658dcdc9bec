//! bpe336 core: byte-level BPE training and encoding.
//!
//! Design decisions (the "why" behind the modules):
//! - Pre-tokenization follows a `pretokenize::Pattern` exactly: GPT-2's (the default), cl100k's or
//!   o200k's, each by a hand-written matcher proven identical to its regex (no backtracking, a
//!   class table per code point), or any other regex through fancy-regex with tiktoken's
//!   semantics. The pattern is resolved once and matched once per segment of text, so each
//!   matcher's loop runs with its caller's closure inlined. Special tokens are hard boundaries,
//!   split out first by one aho-corasick matcher (leftmost-longest) for training and encoding
//!   (`pretokenize::SpecialTokens`).
//! - Streams (training input, files, large texts, `encode_iterable`) are cut only where cutting
//!   provably changes nothing (`pretokenize::Cuts`: the pattern's rule, proven beside its
//!   matcher, or the start of a special token, plus the special-token straddle check), so memory
//!   stays flat in any script. A custom regex has no rule, so its streams are cut only where
//!   special tokens start.
//! - Training counts distinct pre-tokens in parallel (rayon) over chunks cut at safe cuts, so
//!   memory is bounded by the number of distinct pre-tokens, not the input size. Counting is one
//!   reusable step (`train::count_files`, `count_stream`, `count_texts`, configured by one
//!   `train::CountOptions`: special tokens, pattern, threads, chunk size) before the merge loop.
//! - Counts can be kept (`counts::Counts`): sorted entries with their pattern and special
//!   tokens, so merging is a merge-join and the versioned, checksummed file is the entries as
//!   they are. A file splits into byte-range shards at cuts that neighbouring shards find from
//!   the bytes around a boundary alone (`shard`), so shards count and encode as the whole file.
//! - The merge loop keeps a pair index (pair -> words containing it) and a priority queue with
//!   lazy refresh; ties go to the lexicographically greatest pair of *bytes*, not of ids.
//! - Hashing uses rustc-hash (FxHash): keys are small and not attacker-chosen in this setting.
//! - Untrusted sizes never size an allocation: token ids are checked against the entry count,
//!   thread counts against `threads::max_threads()`, and every pool comes from `threads`.
//! - Long calls check a `cancel::CancelFlag` between units of work and read input through
//!   `input` (non-blocking opens, polled streams), so Ctrl-C always gets through.
//! - The PyO3 layer (`py`) is compiled only with the `python` feature, so `cargo test` links
//!   without libpython; everything else is plain Rust returning `Result<_, BpeError>`.

pub mod cancel;
pub mod counts;
pub mod encode;
pub mod error;
pub mod input;
pub mod pretokenize;
pub mod shard;
pub mod threads;
pub mod train;

#[cfg(feature = "python")]
mod py;

pub use error::BpeError;
