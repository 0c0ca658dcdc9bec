//! Special-token splitting and GPT-2 pre-tokenization.
//!
//! Interface used by training and encoding (keep it stable):
//! - `GPT2_PATTERN`: the regex the pre-tokenizer must reproduce exactly.
//! - `for_each_pretoken(text, f)`: calls `f` on each pre-token of ordinary text, in order.
//! - `SpecialSplitter`: splits text into ordinary segments and special tokens, longest first.
//!
//! NOTE: this first version drives fancy-regex; a hand-written matcher that is proven identical
//! replaces it.

use fancy_regex::Regex;
use std::sync::OnceLock;

/// The GPT-2 pre-tokenization pattern, exactly as SPEC §1 gives it.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

fn gpt2_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(GPT2_PATTERN).expect("GPT-2 pattern compiles"))
}

/// Calls `f` on each pre-token of `text` (ordinary text, no special tokens), in order.
/// The pre-tokens concatenate back to `text`.
pub fn for_each_pretoken<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    for m in gpt2_regex().find_iter(text) {
        // The pattern always matches at the current position (its last branches accept any
        // whitespace and any other character), so it cannot fail on valid UTF-8.
        let m = m.expect("GPT-2 pattern does not backtrack catastrophically");
        f(m.as_str());
    }
}

/// A piece of text after special-token splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Ordinary text, to be pre-tokenized.
    Text(&'a str),
    /// The special token with this index into the splitter's token list.
    Special(usize),
}

/// Splits text at special tokens, matching greedily and longest first at each position.
#[derive(Debug, Clone, Default)]
pub struct SpecialSplitter {
    tokens: Vec<String>,
    /// Indices into `tokens`, longest first, so the first hit at a position is the longest.
    by_length: Vec<usize>,
}

impl SpecialSplitter {
    pub fn new(tokens: &[String]) -> Self {
        let mut by_length: Vec<usize> = (0..tokens.len()).filter(|&i| !tokens[i].is_empty()).collect();
        by_length.sort_by(|&a, &b| tokens[b].len().cmp(&tokens[a].len()).then(a.cmp(&b)));
        SpecialSplitter { tokens: tokens.to_vec(), by_length }
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.by_length.is_empty()
    }

    /// The special token (index, length) that starts at byte `pos` of `text`, longest first.
    pub fn match_at(&self, text: &str, pos: usize) -> Option<(usize, usize)> {
        let rest = &text.as_bytes()[pos..];
        self.by_length
            .iter()
            .find(|&&i| rest.starts_with(self.tokens[i].as_bytes()))
            .map(|&i| (i, self.tokens[i].len()))
    }

    /// Calls `f` on each segment of `text`, in order. Empty text segments are skipped.
    pub fn for_each_segment<'a>(&self, text: &'a str, mut f: impl FnMut(Segment<'a>)) {
        if self.is_empty() {
            if !text.is_empty() {
                f(Segment::Text(text));
            }
            return;
        }
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut pos = 0;
        while pos < bytes.len() {
            if let Some((idx, len)) = self.match_at(text, pos) {
                if start < pos {
                    f(Segment::Text(&text[start..pos]));
                }
                f(Segment::Special(idx));
                pos += len;
                start = pos;
            } else {
                pos += 1;
            }
        }
        if start < bytes.len() {
            f(Segment::Text(&text[start..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for_each_pretoken(text, |p| out.push(p));
        out
    }

    #[test]
    fn gpt2_examples() {
        assert_eq!(pretokens("Hello, world!"), vec!["Hello", ",", " world", "!"]);
        assert_eq!(pretokens("it's  ok\n"), vec!["it", "'s", " ", " ok", "\n"]);
        assert_eq!(pretokens(""), Vec::<&str>::new());
    }

    #[test]
    fn specials_longest_first() {
        let sp = SpecialSplitter::new(&["<|e|>".to_string(), "<|e|><|e|>".to_string()]);
        let mut segs = Vec::new();
        sp.for_each_segment("a<|e|><|e|>b<|e|>", |s| segs.push(s));
        assert_eq!(
            segs,
            vec![Segment::Text("a"), Segment::Special(1), Segment::Text("b"), Segment::Special(0)]
        );
    }
}
