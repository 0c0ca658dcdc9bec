//! Special tokens: the one matcher that training and encoding split text with.
//!
//! Semantics: a left-to-right scan that, at each position, takes the longest special token
//! starting there and continues after it, or else moves on by one byte. So when `<|e|>` and
//! `<|e|><|e|>` are both special the double one wins where it occurs, and of overlapping `ab`
//! and `bc` in `abc` the leftmost, `ab`, wins. That is exactly aho-corasick's leftmost-longest
//! search (the earliest start wins, then the longest match starting there, then the search
//! resumes at its end), which runs in time linear in the text whatever the number of tokens;
//! trying each token at each candidate position cost 500x more with 10,000 tokens.
//!
//! ```ignore
//! let sp = SpecialTokens::new(&["<|endoftext|>".to_string()])?;
//! sp.for_each_segment(text, |seg| match seg { Segment::Text(t) => .., Segment::Special(i) => .. });
//! ```

use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind};

use crate::error::{BpeError, Result};

/// The most memory a DFA for the special tokens may take (see `SpecialTokens::new`).
const DFA_MAX_BYTES: usize = 64 << 20;
/// Up to this many special tokens, a substring search finds candidates (see `SpecialTokens::new`).
const PREFILTER_MAX_TOKENS: usize = 64;

/// A piece of text after special-token splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Ordinary text, to be pre-tokenized.
    Text(&'a str),
    /// The special token with this index into the token list.
    Special(usize),
}

/// A set of special tokens, matched leftmost-longest.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    tokens: Vec<String>,
    /// Leftmost-longest automaton over the distinct non-empty tokens, for unanchored scans
    /// (splitting) and anchored ones (the straddle check). None when there are no tokens.
    automaton: Option<AhoCorasick>,
    /// Pattern id of the automaton -> index into `tokens` (the first of equal tokens).
    index: Vec<usize>,
    /// `first[b]`: some token starts with byte `b`.
    first: Vec<bool>,
    max_len: usize,
}

impl SpecialTokens {
    /// The matcher for `tokens` (in id order; empty tokens never match, a repeated token
    /// matches as its first occurrence).
    pub fn new(tokens: &[String]) -> Result<Self> {
        let mut index = Vec::new();
        let mut patterns: Vec<&str> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        for (i, t) in tokens.iter().enumerate() {
            if !t.is_empty() && seen.insert(t.as_str()) {
                index.push(i);
                patterns.push(t);
            }
        }
        let mut first = vec![false; 256];
        for p in &patterns {
            first[p.as_bytes()[0] as usize] = true;
        }
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let automaton = if patterns.is_empty() {
            None
        } else {
            let mut builder = AhoCorasick::builder();
            builder
                .match_kind(MatchKind::LeftmostLongest)
                .start_kind(StartKind::Both)
                // A few tokens are found by a substring search (memmem, SIMD) that skips
                // text at gigabytes per second. For many tokens the search falls back to the
                // tokens' first bytes, and on text dense in them (`<` for `<|...|>` tokens)
                // stopping at each one costs more than running the automaton on every byte.
                .prefilter(patterns.len() <= PREFILTER_MAX_TOKENS);
            // A DFA takes one table lookup per byte, about 3x the speed of the default NFA on
            // text dense in the tokens' first bytes. Its tables hold (states x byte classes)
            // entries, twice (anchored and not): at most (token bytes x (distinct bytes + 1))
            // 4-byte entries each, 8 MB for 10,000 `<|tokN|>`. Larger sets get the NFA.
            let total: usize = patterns.iter().map(|p| p.len()).sum();
            let mut used = [false; 256];
            for b in patterns.iter().flat_map(|p| p.bytes()) {
                used[b as usize] = true;
            }
            let classes = used.iter().filter(|&&u| u).count() + 1;
            let dfa = (total.saturating_mul(classes).saturating_mul(8) <= DFA_MAX_BYTES)
                .then(|| {
                    builder
                        .kind(Some(AhoCorasickKind::DFA))
                        .build(&patterns)
                        .ok()
                })
                .flatten();
            match dfa {
                Some(ac) => Some(ac),
                None => Some(builder.kind(None).build(&patterns).map_err(|e| {
                    BpeError::InvalidArgument(format!("cannot match the special tokens: {e}"))
                })?),
            }
        };
        Ok(SpecialTokens {
            tokens: tokens.to_vec(),
            automaton,
            index,
            first,
            max_len,
        })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// Length in bytes of the longest special token (0 when there are none).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The matches in `text`, in order: (start, end, token index).
    pub fn find_iter<'a>(
        &'a self,
        text: &'a [u8],
    ) -> impl Iterator<Item = (usize, usize, usize)> + 'a {
        self.automaton.iter().flat_map(move |ac| {
            ac.find_iter(text)
                .map(|m| (m.start(), m.end(), self.index[m.pattern().as_usize()]))
        })
    }

    /// Calls `f` on each segment of `text`, in order. Empty text segments are skipped.
    pub fn for_each_segment<'a>(&self, text: &'a str, mut f: impl FnMut(Segment<'a>)) {
        let mut start = 0;
        for (s, e, i) in self.find_iter(text.as_bytes()) {
            // A special token is valid UTF-8, so `s` and `e` are char boundaries.
            if start < s {
                f(Segment::Text(&text[start..s]));
            }
            f(Segment::Special(i));
            start = e;
        }
        if start < text.len() {
            f(Segment::Text(&text[start..]));
        }
    }

    /// Whether an occurrence of some special token starts at byte `p` and ends within `bytes`.
    pub fn starts_at(&self, bytes: &[u8], p: usize) -> bool {
        let Some(ac) = &self.automaton else {
            return false;
        };
        if p >= bytes.len() || !self.first[bytes[p] as usize] {
            return false;
        }
        let end = bytes.len().min(p + self.max_len);
        let input = Input::new(bytes).range(p..end).anchored(Anchored::Yes);
        // An error cannot happen (anchored searches are enabled); false is always safe.
        ac.try_find(input).is_ok_and(|m| m.is_some())
    }

    /// Whether an occurrence of some special token covers both byte `p - 1` and byte `p` of
    /// `bytes`, so that cutting there could split it. Also true when one might: when a token
    /// could start before `p` and run past the end of `bytes`, whose continuation is unknown.
    /// (Occurrences, not the scan's matches: a superset, so a false answer is always safe.)
    pub fn straddles(&self, bytes: &[u8], p: usize) -> bool {
        let Some(ac) = &self.automaton else {
            return false;
        };
        if p == 0 || p >= bytes.len() {
            return false; // the ends of the text are never inside a token
        }
        // An occurrence covering p - 1 and p starts in lo..p and ends by hi.
        let lo = p.saturating_sub(self.max_len - 1);
        let hi = p - 1 + self.max_len;
        let mut starts = (lo..p)
            .filter(|&s| self.first[bytes[s] as usize])
            .peekable();
        if starts.peek().is_none() {
            return false;
        }
        if hi > bytes.len() {
            return true;
        }
        starts.any(|s| {
            // The longest token starting at s reaches furthest.
            let input = Input::new(bytes).range(s..hi).anchored(Anchored::Yes);
            match ac.try_find(input) {
                Ok(m) => m.is_some_and(|m| m.end() > p),
                Err(_) => true, // cannot happen (anchored searches are enabled); stay safe
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{word_salad, Rng};
    use super::*;

    fn specials(tokens: &[&str]) -> SpecialTokens {
        SpecialTokens::new(&tokens.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn segments<'a>(sp: &SpecialTokens, text: &'a str) -> Vec<Segment<'a>> {
        let mut out = Vec::new();
        sp.for_each_segment(text, |s| out.push(s));
        out
    }

    /// The definition: at each position the longest token starting there, else one byte on.
    fn naive_segments<'a>(tokens: &[&str], text: &'a str) -> Vec<Segment<'a>> {
        let b = text.as_bytes();
        let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
        while i < b.len() {
            let best = (0..tokens.len())
                .filter(|&k| !tokens[k].is_empty() && b[i..].starts_with(tokens[k].as_bytes()))
                .max_by(|&x, &y| tokens[x].len().cmp(&tokens[y].len()).then(y.cmp(&x)));
            match best {
                Some(k) => {
                    if start < i {
                        out.push(Segment::Text(&text[start..i]));
                    }
                    out.push(Segment::Special(k));
                    i += tokens[k].len();
                    start = i;
                }
                None => i += 1,
            }
        }
        if start < b.len() {
            out.push(Segment::Text(&text[start..]));
        }
        out
    }

    /// Occurrences (not matches) covering p - 1 and p, or possibly running past the end.
    fn naive_straddles(tokens: &[&str], b: &[u8], p: usize) -> bool {
        tokens.iter().filter(|t| !t.is_empty()).any(|t| {
            let t = t.as_bytes();
            (1..t.len()).any(|k| {
                p >= k && {
                    let end = (p - k + t.len()).min(b.len());
                    b[p - k..end] == t[..end - (p - k)]
                }
            })
        })
    }

    #[test]
    fn longest_first_and_leftmost() {
        let sp = specials(&["<|e|>", "<|e|><|e|>"]);
        assert_eq!(
            segments(&sp, "a<|e|><|e|>b<|e|>"),
            vec![
                Segment::Text("a"),
                Segment::Special(1),
                Segment::Text("b"),
                Segment::Special(0)
            ]
        );
        assert_eq!(sp.max_len(), 10);
        let sp = specials(&["ab", "bc"]);
        assert_eq!(
            segments(&sp, "abc"),
            vec![Segment::Special(0), Segment::Text("c")]
        );
        assert_eq!(
            segments(&sp, "xbcab"),
            vec![Segment::Text("x"), Segment::Special(1), Segment::Special(0)]
        );
        // Duplicates match as the first; empty tokens never match.
        let sp = specials(&["", "x", "x"]);
        assert_eq!(
            segments(&sp, "axa"),
            vec![Segment::Text("a"), Segment::Special(1), Segment::Text("a")]
        );
        assert!(specials(&[""]).is_empty() && specials(&[]).is_empty());
        assert_eq!(segments(&specials(&[]), "abc"), vec![Segment::Text("abc")]);
        assert_eq!(segments(&specials(&[]), ""), vec![]);
    }

    /// Against the definition, on token sets that overlap, nest and share prefixes.
    #[test]
    fn equals_the_naive_scan() {
        const SETS: &[&[&str]] = &[
            &["<|e|>", "<|e|><|e|>"],
            &["ab", "bc", "abc", "b", "c"],
            &["aa", "aaa", "a"],
            &["<|", "|>", "<|e|>", "e|><", "x"],
            &["中", "中文", "文。", "é", "\u{301}"],
            &["a b", " ", "b c", "  "],
        ];
        const PARTS: &[&str] = &[
            "a", "b", "c", "e", "x", " ", "<", "|", ">", "<|", "|>", "<|e|>", "中", "文", "。",
            "é", "\u{301}",
        ];
        let mut rng = Rng(99);
        for tokens in SETS {
            let sp = specials(tokens);
            for _ in 0..2000 {
                let text = word_salad(&mut rng, PARTS, 0..=29);
                assert_eq!(
                    segments(&sp, &text),
                    naive_segments(tokens, &text),
                    "{tokens:?} in {text:?}"
                );
                let b = text.as_bytes();
                for p in 0..=b.len() {
                    let naive = tokens.iter().any(|t| b[p..].starts_with(t.as_bytes()));
                    assert_eq!(sp.starts_at(b, p), naive, "{tokens:?} in {text:?} at {p}");
                }
                for p in 1..b.len() {
                    let naive = naive_straddles(tokens, b, p);
                    let fast = sp.straddles(b, p);
                    // Exact, except near the end where it may only err on the safe side.
                    if p + sp.max_len() - 1 <= b.len() {
                        assert_eq!(fast, naive, "{tokens:?} in {text:?} at {p}");
                    } else {
                        assert!(fast || !naive, "{tokens:?} in {text:?} at {p}");
                    }
                }
            }
        }
    }

    #[test]
    fn straddling() {
        let sp = specials(&["<|e|>"]);
        let b = b"ab<|e|>cd";
        assert!(!sp.straddles(b, 2));
        assert!(sp.straddles(b, 3));
        assert!(sp.straddles(b, 6));
        assert!(!sp.straddles(b, 7));
        assert!(sp.straddles(b"ab<|", 3)); // "<|e|>" may follow
        assert!(!sp.straddles(b"ab  ", 3)); // nothing can start there
        assert!(!specials(&[]).straddles(b"ab", 1));
        assert!(sp.starts_at(b, 2) && !sp.starts_at(b, 3) && !sp.starts_at(b"ab<|e|", 2));
        assert!(!specials(&[]).starts_at(b, 2));
    }

    #[test]
    fn many_tokens_are_linear() {
        let names: Vec<String> = (0..10_000).map(|i| format!("<|tok{i}|>")).collect();
        let sp = SpecialTokens::new(&names).unwrap();
        let text: String = (0..3000)
            .map(|i| format!("{} x<<", names[(i * 7) % 10_000]))
            .collect();
        let mut n = 0;
        sp.for_each_segment(&text, |s| n += matches!(s, Segment::Special(_)) as usize);
        assert_eq!(n, 3000);
    }
}
