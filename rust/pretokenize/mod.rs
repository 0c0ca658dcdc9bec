//! Pre-tokenization: the pattern a tokenizer splits ordinary text with (`Pattern`: GPT-2,
//! cl100k, o200k, each with a hand-written matcher in its own file, or any other regex run by
//! fancy-regex), special-token splitting, and where text may be cut (`cuts`).
//!
//! Interface used by training and encoding (keep it stable):
//! - `Pattern`: resolved from a name (`"gpt2"`, `"cl100k"`, `"o200k"`) or a regex; gives the
//!   pre-tokens of ordinary text (`for_each_pretoken_range`, matched once per segment) and the
//!   pattern's safe-cut rule (`safe_cut_rule`, `cuts`).
//! - `GPT2_PATTERN`, `CL100K_PATTERN`, `O200K_PATTERN`: the regexes the matchers (`gpt2.rs`,
//!   `cl100k.rs`, `o200k.rs`) reproduce exactly; each file also has `for_each_pretoken`,
//!   `pretoken_end` and its `is_safe_cut` rule (a `cuts::SafeCutRule`) with its proof.
//! - `CustomPattern` (`custom.rs`): any other regex, with tiktoken's semantics (text no match
//!   covers is dropped) and no safe cut.
//! - `SpecialTokens`: splits text into ordinary segments and special tokens, longest first (the
//!   one special-token matcher, `special.rs`), and says whether a cut could split a token.
//! - `Cuts`: a rule plus the special-token checks: the one place that decides where training
//!   and encoding may cut a stream.

pub mod cl100k;
mod custom;
pub mod cuts;
pub mod gpt2;
pub mod o200k;
mod pattern;
pub mod special;
#[cfg(test)]
pub(crate) mod testing;
mod unicode;

pub use cl100k::CL100K_PATTERN;
pub use custom::CustomPattern;
pub use cuts::{Cuts, SafeCutRule};
pub use gpt2::*;
pub use o200k::O200K_PATTERN;
pub use pattern::{Pattern, NAMED_PATTERNS, TIKTOKEN_GPT2_PATTERN};
pub use special::{Segment, SpecialTokens};
