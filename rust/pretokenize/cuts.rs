//! Where a stream of text may be cut: positions where pre-tokenizing (so counting and encoding)
//! the two halves separately gives exactly what the whole gives. Training cuts its input into
//! chunks there; encoding cuts files, large texts and `encode_iterable`'s buffer there.
//!
//! A cut at byte `p` is safe when
//! 1. the pattern's rule allows it (a `SafeCutRule`, written and proven beside each pattern's
//!    matcher, e.g. `gpt2::is_safe_cut`), or an occurrence of a special token starts at `p` and
//!    ends within the bytes (`SpecialTokens::starts_at`), and
//! 2. no occurrence of a special token covers both byte `p - 1` and byte `p`
//!    (`SpecialTokens::straddles`; one that might continue past the end of the bytes counts).
//!
//! Why these suffice: special tokens are split out first, by a left-to-right scan that takes
//! the longest special token starting at each position. With no occurrence across `p` (2.), no
//! match crosses it: the scan of the whole reaches `p` with nothing pending, the scan of the left
//! half makes the same matches before `p` (each ends by `p`, so it fits in the half, and no
//! longer one is lost), and from `p` on the scan reads only the text from `p`. So the halves
//! have the special tokens of the whole. Then, by 1., either
//! - a special token starts at `p`: the scan, reaching `p` with nothing pending, takes a match
//!   there, so `p` is the edge of an ordinary segment and the segments of the halves are those
//!   of the whole, whatever the pattern (this is the only cut a custom regex gets, whose rule
//!   never allows one); or
//! - the rule allows `p`: `p` is the edge of an ordinary segment (safe as it is) or lies inside
//!   one, where the characters around `p` are that segment's and the rule, which reads only
//!   them, applies to the segment as to any text.
//!
//! Two more facts make cuts usable on shards of a file (`crate::shard`):
//! - Locality: `is_safe(bytes, p)` reads only `bytes[p - margin .. p + margin]` (`Cuts::margin`):
//!   the rule the characters at `p - 1` and `p` (at most 4 bytes each side), the special-token
//!   checks the occurrences that start in `p - max_len + 1 ..= p`. So on any window of a text
//!   holding that range (or reaching the text's edge where the range does) it answers as on
//!   the whole text.
//! - Composition: if `p < q` are safe cuts of a text, `q - p` is a safe cut of `text[p..]`: the
//!   rule reads the same two characters (the one before `q` starts at or after `p`, a character
//!   boundary), an occurrence starting at `q` is one of `text[p..]` too, and the occurrences of
//!   `text[p..]` are among the text's, so the straddle check finds no more. Applying the theorem
//!   above to `text[p..]`, and so on from left to right, cutting a text at any set of its safe
//!   cuts gives pieces whose special tokens and pre-tokens, in order, are the whole's.
//!
//! ```ignore
//! let cuts = Cuts::new(gpt2::is_safe_cut, &specials);  // or pattern.cuts(&specials)
//! if let Some(p) = cuts.last(&buf) { /* process buf[..p], keep buf[p..] */ }
//! ```

use super::SpecialTokens;

/// A pattern's safe-cut rule: `rule(bytes, p)` may be true only if, for every text that starts
/// with `bytes`, pre-tokenizing `text[..p]` and `text[p..]` separately gives the pre-tokens of
/// the whole. It ignores special tokens (see the module docs), and is called on windows of a
/// longer text whose characters near `p` may belong to special tokens, so it must decide from
/// the characters at `p - 1` and `p` (as every rule here does) or prove that nothing else it
/// reads can mislead it; and it must read no further than 4 bytes on either side of `p`
/// (`Cuts::margin` relies on it). False is always allowed: it costs only a later cut.
pub type SafeCutRule = fn(&[u8], usize) -> bool;

/// The safe cuts of a pattern with a set of special tokens.
#[derive(Clone, Copy)]
pub struct Cuts<'a> {
    rule: SafeCutRule,
    specials: &'a SpecialTokens,
}

impl<'a> Cuts<'a> {
    pub fn new(rule: SafeCutRule, specials: &'a SpecialTokens) -> Self {
        Cuts { rule, specials }
    }

    /// Whether cutting `bytes` (the start of a text, or of a stretch that follows a safe cut)
    /// at `p` is safe (see the module docs).
    #[inline]
    pub fn is_safe(&self, bytes: &[u8], p: usize) -> bool {
        ((self.rule)(bytes, p) || self.specials.starts_at(bytes, p))
            && !self.specials.straddles(bytes, p)
    }

    /// How far `is_safe(bytes, p)` reads on each side of `p` (see the module docs): the
    /// longest special token, plus the 4 bytes of a character.
    pub fn margin(&self) -> usize {
        self.specials.max_len() + 4
    }

    /// The last safe cut of `bytes`, searching backward from the end.
    pub fn last(&self, bytes: &[u8]) -> Option<usize> {
        (1..bytes.len()).rev().find(|&p| self.is_safe(bytes, p))
    }

    /// The first safe cut at or after `from`.
    pub fn first_from(&self, bytes: &[u8], from: usize) -> Option<usize> {
        (from.max(1)..bytes.len()).find(|&p| self.is_safe(bytes, p))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{pieces, word_salad, Rng};
    use super::super::{gpt2, Pattern};
    use super::*;

    /// Specials that overlap each other, nest, contain spaces and class changes, and share
    /// prefixes: every safe cut splits the text into halves with the pieces of the whole, for
    /// each named pattern and for custom regexes (cut only where a special token starts).
    #[test]
    fn safe_cuts_keep_specials_and_pretokens() {
        let names: Vec<String> = ["<|e|>", "<|e|><|e|>", "ab", "bc", "b c", "x'", "中。", " "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        const PARTS: &[&str] = &[
            "a", "b", "c", " ", "  ", "\n", "'", "s", "x", "1", "中", "。", "ж", "<|", "e", "|>",
            "<|e|>", "!", "\u{3000}", "A", "/", "\r\n", "123",
        ];
        // (pattern, fewest safe cuts the random texts must reach)
        let patterns = [
            ("gpt2", 5_000),
            ("cl100k", 5_000),
            ("o200k", 5_000),
            (r"[a-z]+|\s", 500),
            (r"\p{L}+(?=\s)|\p{N}{1,2}|.", 500),
        ];
        for (spec, min_cuts) in patterns {
            let pattern = Pattern::new(spec).unwrap();
            let mut rng = Rng(7);
            let mut cuts_seen = 0;
            for n_specials in [0, 1, 3, names.len()] {
                let sp = SpecialTokens::new(&names[..n_specials]).unwrap();
                let cuts = pattern.cuts(&sp);
                for _ in 0..1500 {
                    let text = word_salad(&mut rng, PARTS, 1..=25);
                    let whole = pieces(&text, &sp, &pattern);
                    let b = text.as_bytes();
                    for p in 1..b.len() {
                        if !cuts.is_safe(b, p) {
                            continue;
                        }
                        cuts_seen += 1;
                        let mut split = pieces(&text[..p], &sp, &pattern);
                        split.extend(pieces(&text[p..], &sp, &pattern));
                        assert_eq!(
                            split, whole,
                            "{spec}: {text:?} cut at {p} with {n_specials} specials"
                        );
                        // Safe on any prefix that holds the character after the cut as well.
                        let end = (p + 1..=b.len())
                            .find(|&q| text.is_char_boundary(q))
                            .unwrap();
                        for q in (end..=b.len()).filter(|&q| text.is_char_boundary(q)) {
                            if cuts.is_safe(&b[..q], p) {
                                let t = &text[..q];
                                let mut split = pieces(&t[..p], &sp, &pattern);
                                split.extend(pieces(&t[p..], &sp, &pattern));
                                assert_eq!(
                                    split,
                                    pieces(t, &sp, &pattern),
                                    "{spec}: {t:?} cut at {p}"
                                );
                            }
                        }
                    }
                    if let Some(p) = cuts.last(b) {
                        assert!(
                            cuts.is_safe(b, p) && !(p + 1..b.len()).any(|q| cuts.is_safe(b, q))
                        );
                    }
                }
            }
            assert!(cuts_seen > min_cuts, "{spec}: {cuts_seen}");
        }
    }

    #[test]
    fn a_special_that_may_continue_past_the_end_blocks_the_cut() {
        let sp = SpecialTokens::new(&["a b".to_string()]).unwrap();
        let cuts = Cuts::new(gpt2::is_safe_cut, &sp);
        assert!(!cuts.is_safe(b"xa b", 2));
        assert!(!cuts.is_safe(b"xa ", 2)); // "a b" may follow
        assert!(cuts.is_safe(b"xa c", 2));
        assert!(cuts.is_safe(b"xc ", 2)); // no token can start at "c"
                                          // Where a special token starts, a cut is safe whatever the rule says (`y|a` is not).
        assert_eq!(cuts.last(b"x ya bz"), Some(3));
        assert_eq!(cuts.first_from(b"x ya bz", 4), None);
        let never = Cuts::new(|_, _| false, &sp);
        assert_eq!(never.last(b"x ya bz"), Some(3));
        assert_eq!(never.last(b"x ya "), None); // "a b" may follow, or not
    }
}
