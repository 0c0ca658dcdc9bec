//! Pre-tokenization: the matchers of the supported patterns (one file each), special-token
//! splitting, and where text may be cut (`cuts`).
//!
//! Interface used by training and encoding (keep it stable):
//! - `GPT2_PATTERN`: the regex the GPT-2 pre-tokenizer (`gpt2.rs`) reproduces exactly.
//! - `for_each_pretoken(text, f)`: calls `f` on each pre-token of ordinary text, in order.
//! - `pretoken_end(bytes, pos)`: the end of the pre-token that starts at `pos` (byte ranges).
//! - `SpecialTokens`: splits text into ordinary segments and special tokens, longest first (the
//!   one special-token matcher, `special.rs`), and says whether a cut could split a token.
//! - `gpt2::is_safe_cut(bytes, p)`: the pattern's safe-cut rule (a `cuts::SafeCutRule`); each
//!   pattern supplies its own beside its matcher, with its proof.
//! - `Cuts`: a rule plus the special-token straddle check: the one place that decides where
//!   training and encoding may cut a stream.

pub mod cl100k;
mod custom;
pub mod cuts;
pub mod gpt2;
pub mod o200k;
pub mod special;
mod unicode;

pub use cl100k::CL100K_PATTERN;
pub use custom::CustomPattern;
pub use cuts::{Cuts, SafeCutRule};
pub use gpt2::*;
pub use o200k::O200K_PATTERN;
pub use special::{Segment, SpecialTokens};
