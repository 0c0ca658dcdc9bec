//! Pre-tokenization: the matchers of the supported patterns (one file each), special-token
//! splitting, and where text may be cut (`cuts`).
//!
//! Interface used by training and encoding (keep it stable):
//! - `GPT2_PATTERN`: the regex the GPT-2 pre-tokenizer (`gpt2.rs`) reproduces exactly.
//! - `for_each_pretoken(text, f)`: calls `f` on each pre-token of ordinary text, in order.
//! - `pretoken_end(bytes, pos)`: the end of the pre-token that starts at `pos` (byte ranges).
//! - `SpecialSplitter`: splits text into ordinary segments and special tokens, longest first.
//! - `gpt2::is_safe_cut(bytes, p)`: the pattern's safe-cut rule (a `cuts::SafeCutRule`); each
//!   pattern supplies its own beside its matcher, with its proof.
//! - `Cuts`: a rule plus the special-token straddle check: the one place that decides where
//!   training and encoding may cut a stream.

pub mod cuts;
pub mod gpt2;

pub use cuts::{Cuts, SafeCutRule};
pub use gpt2::*;

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
    /// `first_byte[b]`: some special token starts with byte `b` (skips most positions cheaply).
    first_byte: Vec<bool>,
    /// The distinct first bytes, for a SIMD search (memchr) when there are at most three.
    first_bytes: Vec<u8>,
}

impl SpecialSplitter {
    pub fn new(tokens: &[String]) -> Self {
        let mut by_length: Vec<usize> = (0..tokens.len())
            .filter(|&i| !tokens[i].is_empty())
            .collect();
        by_length.sort_by(|&a, &b| tokens[b].len().cmp(&tokens[a].len()).then(a.cmp(&b)));
        let mut first_byte = vec![false; 256];
        for &i in &by_length {
            first_byte[tokens[i].as_bytes()[0] as usize] = true;
        }
        let first_bytes = (0..=255u8).filter(|&b| first_byte[b as usize]).collect();
        SpecialSplitter {
            tokens: tokens.to_vec(),
            by_length,
            first_byte,
            first_bytes,
        }
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.by_length.is_empty()
    }

    /// Length in bytes of the longest special token (0 when there are none).
    pub fn max_len(&self) -> usize {
        self.by_length.first().map_or(0, |&i| self.tokens[i].len())
    }

    /// The special token (index, length) that starts at byte `pos` of `text`, longest first.
    pub fn match_at(&self, text: &str, pos: usize) -> Option<(usize, usize)> {
        self.match_at_bytes(text.as_bytes(), pos)
    }

    /// `match_at` on raw bytes (used by the chunker before UTF-8 validation).
    pub fn match_at_bytes(&self, bytes: &[u8], pos: usize) -> Option<(usize, usize)> {
        let rest = &bytes[pos..];
        self.by_length
            .iter()
            .find(|&&i| rest.starts_with(self.tokens[i].as_bytes()))
            .map(|&i| (i, self.tokens[i].len()))
    }

    /// Whether an occurrence of some special token covers both byte `p - 1` and byte `p`, so
    /// that cutting the text at `p` could split it. An occurrence that runs past the end of
    /// `bytes` (the bytes there are a prefix of the token) counts: what follows is unknown.
    pub fn straddles(&self, bytes: &[u8], p: usize) -> bool {
        self.by_length.iter().any(|&i| {
            let tok = self.tokens[i].as_bytes();
            (1..tok.len()).any(|k| {
                p >= k && {
                    let end = (p - k + tok.len()).min(bytes.len());
                    bytes[p - k..end] == tok[..end - (p - k)]
                }
            })
        })
    }

    /// The first position at or after `pos` whose byte starts some special token.
    #[inline]
    fn next_candidate(&self, bytes: &[u8], pos: usize) -> Option<usize> {
        let rest = &bytes[pos..];
        let found = match self.first_bytes[..] {
            [a] => memchr::memchr(a, rest),
            [a, b] => memchr::memchr2(a, b, rest),
            [a, b, c] => memchr::memchr3(a, b, c, rest),
            _ => rest.iter().position(|&b| self.first_byte[b as usize]),
        };
        found.map(|i| pos + i)
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
            match self.next_candidate(bytes, pos) {
                Some(p) => pos = p,
                None => break,
            }
            if let Some((idx, len)) = self.match_at_bytes(bytes, pos) {
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

    #[test]
    fn specials_longest_first() {
        let sp = SpecialSplitter::new(&["<|e|>".to_string(), "<|e|><|e|>".to_string()]);
        let mut segs = Vec::new();
        sp.for_each_segment("a<|e|><|e|>b<|e|>", |s| segs.push(s));
        assert_eq!(
            segs,
            vec![
                Segment::Text("a"),
                Segment::Special(1),
                Segment::Text("b"),
                Segment::Special(0)
            ]
        );
        assert_eq!(sp.max_len(), 10);
    }

    #[test]
    fn straddling() {
        let sp = SpecialSplitter::new(&["<|e|>".to_string()]);
        let b = b"ab<|e|>cd";
        assert!(!sp.straddles(b, 2));
        assert!(sp.straddles(b, 3));
        assert!(sp.straddles(b, 6));
        assert!(!sp.straddles(b, 7));
        assert!(sp.straddles(b"ab<|", 3)); // "<|e|>" may follow
        assert!(!sp.straddles(b"ab<|x", 3));
    }
}
