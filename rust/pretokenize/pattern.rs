//! The pre-tokenization pattern of a tokenizer: one of the named patterns with a hand-written
//! matcher (GPT-2, cl100k, o200k), or any other regex run by fancy-regex (`CustomPattern`).
//! Training and encoding take a `Pattern` and ask it for pre-tokens and for its safe-cut rule.
//!
//! Resolution (`Pattern::new`): the names `"gpt2"`, `"cl100k"` and `"o200k"`, or a regex string
//! exactly equal to one of their regexes (or to tiktoken's spelling of the GPT-2 regex, which
//! splits text identically; the tests prove it on random text), give the hand-written matcher;
//! any other string compiles as a custom regex (an invalid one, or one whose matches can be
//! empty, is an error). A string of only letters, digits, `_` and `-` is taken for a name, so
//! an unknown one (`"gpt4"`, `"cl100k_base"`) is an error rather than a regex that matches
//! that word alone and drops all other text; such a regex is written `(?:gpt4)`.
//!
//! Speed: the variant is matched once per call on a whole segment of text
//! (`for_each_pretoken_range`), never per pre-token; each arm is the matcher's own loop with the
//! caller's closure inlined into it, so the GPT-2 path runs the same code as before patterns
//! were selectable.
//!
//! ```
//! # use _core::pretokenize::Pattern;
//! let p = Pattern::new("cl100k")?;
//! let mut pieces = Vec::new();
//! p.for_each_pretoken("I'm 12345", |t| pieces.push(t))?;
//! assert_eq!(pieces, ["I", "'m", " ", "123", "45"]);
//! # Ok::<(), _core::BpeError>(())
//! ```

use super::custom::{self, CustomPattern};
use super::cuts::{Cuts, SafeCutRule};
use super::{cl100k, gpt2, o200k, SpecialTokens, CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN};
use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};

/// tiktoken's spelling of the GPT-2 pattern (`r50k_base`, `gpt2`): possessive runs and
/// `\s++$|\s+(?!\S)|\s` for the whitespace alternatives. It splits every text exactly as
/// `GPT2_PATTERN` does (`custom.rs` tests it against the GPT-2 matcher), so it resolves to it.
pub const TIKTOKEN_GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";

/// The names of the patterns with a hand-written matcher, and their regexes.
pub const NAMED_PATTERNS: [(&str, &str); 3] = [
    ("gpt2", GPT2_PATTERN),
    ("cl100k", CL100K_PATTERN),
    ("o200k", O200K_PATTERN),
];

/// A pre-tokenization pattern (see the module docs).
#[derive(Debug, Clone, Default)]
pub enum Pattern {
    /// `GPT2_PATTERN`, the default.
    #[default]
    Gpt2,
    /// `CL100K_PATTERN` (GPT-3.5/GPT-4).
    Cl100k,
    /// `O200K_PATTERN` (GPT-4o).
    O200k,
    /// Any other regex.
    Custom(CustomPattern),
}

impl Pattern {
    /// Resolves a name (`"gpt2"`, `"cl100k"`, `"o200k"`) or a regex (see the module docs).
    pub fn new(spec: &str) -> Result<Pattern> {
        Ok(match spec {
            "gpt2" | GPT2_PATTERN | TIKTOKEN_GPT2_PATTERN => Pattern::Gpt2,
            "cl100k" | CL100K_PATTERN => Pattern::Cl100k,
            "o200k" | O200K_PATTERN => Pattern::O200k,
            name if looks_like_a_name(name) => {
                let names: Vec<String> = NAMED_PATTERNS
                    .iter()
                    .map(|(n, _)| format!("{n:?}"))
                    .collect();
                return Err(BpeError::InvalidArgument(format!(
                    "unknown pre-tokenization pattern name {name:?}: the names are {}; any other \
                     pattern is a regex (one that matches only the word itself, which would drop \
                     all other text, is written \"(?:{name})\")",
                    names.join(", ")
                )));
            }
            regex => Pattern::Custom(CustomPattern::new(regex)?),
        })
    }

    /// `"gpt2"`, `"cl100k"`, `"o200k"`, or `"custom"`.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Gpt2 => "gpt2",
            Pattern::Cl100k => "cl100k",
            Pattern::O200k => "o200k",
            Pattern::Custom(_) => "custom",
        }
    }

    /// The regex (for a named pattern its constant, whatever spelling it was resolved from).
    pub fn regex(&self) -> &str {
        match self {
            Pattern::Gpt2 => GPT2_PATTERN,
            Pattern::Cl100k => CL100K_PATTERN,
            Pattern::O200k => O200K_PATTERN,
            Pattern::Custom(c) => c.as_str(),
        }
    }

    /// Where text may be cut without changing its pre-tokens (see `cuts::SafeCutRule`): the rule
    /// proven beside each hand-written matcher; never for a custom regex, whose streams are then
    /// cut only at special tokens (`cuts::Cuts`) and at their ends.
    pub fn safe_cut_rule(&self) -> SafeCutRule {
        match self {
            Pattern::Gpt2 => gpt2::is_safe_cut,
            Pattern::Cl100k => cl100k::is_safe_cut,
            Pattern::O200k => o200k::is_safe_cut,
            Pattern::Custom(_) => custom::is_safe_cut,
        }
    }

    /// The safe cuts of this pattern with these special tokens.
    pub fn cuts<'a>(&self, specials: &'a SpecialTokens) -> Cuts<'a> {
        Cuts::new(self.safe_cut_rule(), specials)
    }

    /// Calls `f(start, end)` with the byte range of each pre-token of `text` (ordinary text, no
    /// special tokens), in order. Only a custom regex can fail: fancy-regex's backtracking
    /// limit, or `cancel` (checked between its matches; the named matchers are linear and fast,
    /// and their callers check `cancel` between chunks cut at safe cuts, which a custom regex
    /// lacks). The named patterns always return `Ok`.
    #[inline]
    pub fn for_each_pretoken_range(
        &self,
        text: &str,
        cancel: &CancelFlag,
        f: impl FnMut(usize, usize),
    ) -> Result<()> {
        match self {
            Pattern::Gpt2 => gpt2::for_each_pretoken_range(text.as_bytes(), f),
            Pattern::Cl100k => cl100k::for_each_pretoken_range(text.as_bytes(), f),
            Pattern::O200k => o200k::for_each_pretoken_range(text.as_bytes(), f),
            Pattern::Custom(c) => return c.for_each_pretoken_range(text, cancel, f),
        }
        Ok(())
    }

    /// Calls `f` on each pre-token of `text` (ordinary text, no special tokens), in order.
    pub fn for_each_pretoken<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) -> Result<()> {
        self.for_each_pretoken_range(text, &CancelFlag::default(), |i, j| f(&text[i..j]))
    }
}

/// Letters, digits, `_` and `-` only: a name (as a regex it would match one fixed word).
fn looks_like_a_name(spec: &str) -> bool {
    !spec.is_empty()
        && spec
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, random_text, Rng, NAMED};
    use super::*;

    fn pieces(p: &Pattern, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        p.for_each_pretoken(text, |t| out.push(t.to_string()))
            .unwrap();
        out
    }

    #[test]
    fn names_and_regexes_resolve_to_the_matchers() {
        for (name, regex) in NAMED_PATTERNS {
            for spec in [name, regex] {
                let p = Pattern::new(spec).unwrap();
                assert_eq!((p.name(), p.regex()), (name, regex), "{spec:?}");
            }
        }
        let p = Pattern::new(TIKTOKEN_GPT2_PATTERN).unwrap();
        assert_eq!((p.name(), p.regex()), ("gpt2", GPT2_PATTERN));
        assert_eq!(Pattern::default().name(), "gpt2");
        let custom = Pattern::new(r"\w+").unwrap();
        assert_eq!((custom.name(), custom.regex()), ("custom", r"\w+"));
        // Near misses of a name are errors, of a regex custom regexes: never a guess.
        for spec in ["GPT2", "gpt-2", "cl100k_base", "gpt4", "a", "o200k-harmony"] {
            let msg = Pattern::new(spec).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("unknown pre-tokenization pattern name {spec:?}")),
                "{msg}"
            );
        }
        for spec in [&format!("{GPT2_PATTERN} "), "(?:gpt4)", "a+", "."] {
            assert!(
                Pattern::new(spec).is_ok_and(|p| p.name() == "custom"),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn bad_regexes_are_errors() {
        for bad in ["(", "a*", "", r"\p{Nope}"] {
            let msg = Pattern::new(bad).unwrap_err().to_string();
            assert!(msg.starts_with("invalid pre-tokenization pattern"), "{msg}");
        }
    }

    /// Each variant splits as its own matcher (and a custom regex as fancy-regex) does.
    #[test]
    fn dispatch_reaches_each_matcher() {
        let mut rng = Rng(99);
        for (name, _, matcher) in NAMED {
            let p = Pattern::new(name).unwrap();
            for _ in 0..500 {
                let text = random_text(&mut rng, 30);
                let expected = testing::pretokens(matcher, &text);
                assert_eq!(pieces(&p, &text), expected, "{name} {text:?}");
            }
        }
        let p = Pattern::new(r"[a-z]+").unwrap();
        assert_eq!(pieces(&p, "ab 12 cd!"), ["ab", "cd"]);
        assert!(!(p.safe_cut_rule())(b"ab cd", 2));
        assert!((Pattern::Gpt2.safe_cut_rule())(b"ab cd", 2));
    }
}
