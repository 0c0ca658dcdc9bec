//! Pre-tokenization by any other regex, run by fancy-regex (the engine tiktoken runs its patterns
//! with), for patterns that have no hand-written matcher.
//!
//! Semantics are tiktoken's, so that with the same pattern and ranks the ids equal
//! `tiktoken.Encoding(pat_str=..., mergeable_ranks=...)`: the pre-tokens are the successive
//! leftmost-first matches of the pattern (`find_iter`), and text that no match covers is dropped,
//! as tiktoken's `_encode_native` encodes only the matched pieces. NOTE: a pattern that does not
//! match every character therefore loses text in encoding and ignores it in training (HF's
//! `Split` pre-tokenizer would keep it as pieces of its own); the named patterns cover all text.
//!
//! Checks when compiling: an invalid regex, and a pattern whose matches may be empty (a pre-token
//! must never be empty), are errors. When matching: fancy-regex's backtracking limit, which a
//! pathological pattern can reach on some text, is an error, not a panic.
//!
//! Safe cuts: none. For an arbitrary regex no cut is provable from the bytes around it (a
//! lookahead or a greedy run can span any distance, a lookbehind can look back any distance),
//! so `is_safe_cut` is always false. The memory consequence: streaming work with a custom
//! pattern can only split text where a special token starts (`cuts::Cuts`) and at the ends of
//! streams, so the longest stretch of text between two special tokens is held in memory at
//! once (and counted or encoded by one thread).
//!
//! ```
//! # use _core::pretokenize::CustomPattern;
//! let words = CustomPattern::new(r"\w+")?;
//! let mut pieces = Vec::new();
//! words.for_each_pretoken("a, b!", |p| pieces.push(p))?;
//! assert_eq!(pieces, ["a", "b"]); // text no match covers is dropped
//! # Ok::<(), _core::BpeError>(())
//! ```

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};
use fancy_regex::{Expr, Regex};

/// A compiled pre-tokenization pattern run by fancy-regex.
#[derive(Debug, Clone)]
pub struct CustomPattern {
    regex: Regex,
}

impl CustomPattern {
    /// Compiles `pattern`; an error says why an invalid or possibly-empty pattern is refused.
    pub fn new(pattern: &str) -> Result<CustomPattern> {
        let invalid = |why: String| {
            BpeError::InvalidArgument(format!(
                "invalid pre-tokenization pattern {pattern:?}: {why}"
            ))
        };
        let regex = Regex::new(pattern).map_err(|e| invalid(describe(&e)))?;
        let tree = Expr::parse_tree(pattern).map_err(|e| invalid(describe(&e)))?;
        if min_len(&tree.expr) == 0 {
            return Err(invalid(
                "it can match the empty string, and a pre-token must not be empty \
                 (make every alternative consume at least one character)"
                    .to_string(),
            ));
        }
        Ok(CustomPattern { regex })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Calls `f(start, end)` with the byte range of each match of the pattern in `text`, in
    /// order. Text between matches is skipped (see the module documentation). `cancel` is
    /// checked before each match: a custom regex has no safe cuts, so one call may get the
    /// text between two special tokens whole, and a backtracking pattern can be slow on every
    /// match without reaching fancy-regex's limit.
    pub fn for_each_pretoken_range(
        &self,
        text: &str,
        cancel: &CancelFlag,
        mut f: impl FnMut(usize, usize),
    ) -> Result<()> {
        for m in self.regex.find_iter(text) {
            cancel.check()?;
            let m = m.map_err(|e| self.runtime_error(text, e))?;
            // Never empty (checked in `new`); skipping keeps the promise even if that check
            // were wrong.
            if m.start() < m.end() {
                f(m.start(), m.end());
            }
        }
        Ok(())
    }

    /// Calls `f` on each pre-token of `text` (ordinary text, no special tokens), in order.
    pub fn for_each_pretoken<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) -> Result<()> {
        self.for_each_pretoken_range(text, &CancelFlag::default(), |i, j| f(&text[i..j]))
    }

    /// Whether `p` is a safe cut: never (see `is_safe_cut`).
    pub fn is_safe_cut(&self, bytes: &[u8], p: usize) -> bool {
        is_safe_cut(bytes, p)
    }

    fn runtime_error(&self, text: &str, e: fancy_regex::Error) -> BpeError {
        BpeError::InvalidArgument(format!(
            "pre-tokenization pattern {:?} failed on a text of {} bytes: {e}; \
             simplify the pattern (fewer nested or ambiguous repetitions)",
            self.as_str(),
            text.len()
        ))
    }
}

/// The safe-cut rule of every custom pattern (a `cuts::SafeCutRule`): never, as nothing is
/// provable for an arbitrary regex (see the module documentation for what that costs).
pub fn is_safe_cut(_bytes: &[u8], _p: usize) -> bool {
    false
}

/// fancy-regex's message, or for a part it hands to the regex crate (a class, say) the regex
/// crate's own, which names the problem (fancy-regex's says only "error parsing pattern 0").
fn describe(e: &fancy_regex::Error) -> String {
    if let fancy_regex::Error::CompileError(ce) = e {
        if let fancy_regex::CompileError::InnerError(inner) = ce.as_ref() {
            if let Some(syntax) = inner.syntax_error() {
                return syntax.to_string();
            }
        }
    }
    e.to_string()
}

/// A lower bound on the length in characters of any match of `e` (0 where it cannot tell).
fn min_len(e: &Expr) -> usize {
    match e {
        Expr::Any { .. } | Expr::GeneralNewline { .. } | Expr::Delegate { .. } => 1,
        Expr::Literal { val, .. } => val.chars().count().min(1),
        Expr::LiteralBytes { bytes } => bytes.len().min(1),
        Expr::Concat(v) => v.iter().map(min_len).fold(0, usize::saturating_add),
        Expr::Alt(v) => v.iter().map(min_len).min().unwrap_or(0),
        Expr::Group(child) => min_len(child),
        Expr::AtomicGroup(child) => min_len(child),
        Expr::Repeat { child, lo, .. } => min_len(child).saturating_mul(*lo),
        Expr::Conditional {
            true_branch,
            false_branch,
            ..
        } => min_len(true_branch).min(min_len(false_branch)),
        // Zero-width (assertions, lookaround, `\K`, verbs), or not worth analysing (a backref may
        // repeat an empty group; subroutines, absent operators): treated as possibly empty.
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, dense_text, random_text, Rng, GPT2, NAMED};
    use super::super::{CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN};
    use super::*;

    fn pretokens<'a>(p: &CustomPattern, text: &'a str) -> Vec<&'a str> {
        let mut out = Vec::new();
        p.for_each_pretoken(text, |t| out.push(t)).unwrap();
        out
    }

    fn error(pattern: &str) -> String {
        CustomPattern::new(pattern).unwrap_err().to_string()
    }

    #[test]
    fn unmatched_text_is_dropped_as_tiktoken_does() {
        let p = CustomPattern::new(r"[a-z]+").unwrap();
        assert_eq!(pretokens(&p, "ab 12 cd!"), vec!["ab", "cd"]);
        assert_eq!(pretokens(&p, "123"), Vec::<&str>::new());
        assert_eq!(p.as_str(), "[a-z]+");
        let mut ranges = Vec::new();
        p.for_each_pretoken_range("xy z", &CancelFlag::default(), |i, j| ranges.push((i, j)))
            .unwrap();
        assert_eq!(ranges, vec![(0, 2), (3, 4)]);
    }

    #[test]
    fn invalid_class_names_are_named() {
        let msg = error(r"a\p{NoSuchClass}");
        assert!(msg.contains("Unicode property not found"), "{msg}");
    }

    #[test]
    fn invalid_patterns_are_refused_with_the_reason() {
        for bad in ["(", ")", "[a-", r"\p{NoSuchClass}", r"\k<nope>", "a**"] {
            let msg = error(bad);
            assert!(
                msg.starts_with(&format!("invalid pre-tokenization pattern {bad:?}: ")),
                "{msg}"
            );
        }
    }

    #[test]
    fn patterns_that_can_match_nothing_are_refused() {
        for empty in [
            "",
            "a*",
            "a?",
            "a|b*",
            "(a|)",
            "(?:ab)*",
            "^",
            "$",
            r"\b",
            "(?=a)",
            "(?!a)",
            r"(a?)\1",
            "a{0}",
            "a{0,3}",
            r"(?>a*)",
            r"\s*(?!\S)",
            r"(?:a|b?)+",
        ] {
            let msg = error(empty);
            assert!(
                msg.contains("can match the empty string"),
                "{empty:?}: {msg}"
            );
        }
    }

    #[test]
    fn patterns_that_always_consume_are_accepted() {
        for ok in [
            "a",
            "a+",
            r"\w+|\s",
            "(?:ab)*c",
            "(?=a)a",
            "a{2,3}",
            r"\p{L}++",
            "(?>a|b)",
            ".",
            r"\R",
            "(?i:x)",
            GPT2_PATTERN,
            CL100K_PATTERN,
            O200K_PATTERN,
        ] {
            assert!(CustomPattern::new(ok).is_ok(), "{ok:?}");
        }
    }

    /// The named patterns run as custom patterns give what their matchers give (a check of this
    /// path, which the named patterns never take in production).
    #[test]
    fn named_patterns_as_custom_equal_their_matchers() {
        let mut rng = Rng(31337);
        for (_, pattern, matcher) in NAMED {
            let custom = CustomPattern::new(pattern).unwrap();
            for _ in 0..2000 {
                let text = random_text(&mut rng, 24);
                let expected = testing::pretokens(matcher, &text);
                assert_eq!(pretokens(&custom, &text), expected, "{text:?}");
            }
        }
    }

    /// tiktoken spells the GPT-2 pattern differently (possessive runs, `\s++$|\s+(?!\S)|\s`);
    /// that spelling splits text as the GPT-2 matcher does, so it may be mapped to it.
    #[test]
    fn tiktokens_gpt2_spelling_equals_the_gpt2_matcher() {
        let r50k = CustomPattern::new(
            r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s",
        )
        .unwrap();
        let mut rng = Rng(2718);
        for round in 0..20_000 {
            let text = if round % 2 == 0 {
                random_text(&mut rng, 24)
            } else {
                dense_text(&mut rng, 16)
            };
            let expected = testing::pretokens(GPT2, &text);
            assert_eq!(pretokens(&r50k, &text), expected, "{text:?}");
        }
    }

    #[test]
    fn backtracking_limit_is_an_error_not_a_panic() {
        // Nested ambiguous repetition under a lookahead forces the backtracking VM.
        let p = CustomPattern::new(r"(?:a(?!c)|aa)+b").unwrap();
        let text = "a".repeat(60);
        let err = p.for_each_pretoken(&text, |_| {}).unwrap_err().to_string();
        assert!(err.contains("failed on a text of 60 bytes"), "{err}");
        assert!(!p.is_safe_cut(b"ab cd", 2));
    }
}
