//! The cl100k pre-tokenizer (GPT-3.5/GPT-4's `cl100k_base`): a hand-written matcher for
//! `CL100K_PATTERN`, tiktoken's pattern string for that encoding, character for character.
//!
//! Why by hand: every alternative is a run of one character class, with at most one leading
//! character of another class and a one-character lookahead, so a small state machine over a
//! per-code-point class table (`unicode.rs`, built from the tables fancy-regex compiles `\p{L}`,
//! `\p{N}` and `\s` from) matches it with no backtracking, with ASCII fast paths; it is several
//! times faster than fancy-regex (`examples/pattern_speed.rs`).
//!
//! How it is proven: the tests compare every code point's class with fancy-regex and the whole
//! matcher with fancy-regex running `CL100K_PATTERN` on many thousands of random texts drawn to
//! reach every branch (and random code points); `is_safe_cut` is tested by cutting random texts
//! followed by random continuations.
//!
//! NOTE: older tiktoken releases spelled the pattern
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! (as some tokenizer.json files still do). The two differ on one case only: a run of whitespace
//! that ends the text and holds a line break followed by more whitespace (`"a\n  "`) is one
//! pre-token here (`\s++$`) and two there. That spelling runs as a custom pattern.
//!
//! ```
//! # use _core::pretokenize::cl100k;
//! let mut pieces = Vec::new();
//! cl100k::for_each_pretoken("I'm 12345 km\n", |p| pieces.push(p));
//! assert_eq!(pieces, ["I", "'m", " ", "123", "45", " km", "\n"]);
//! ```

use super::unicode::{
    ascii_letter_mask, char_start_before, chars_around, class_at, class_of, contraction_end,
    digits_end, last_line_break, table, ClassTable, COARSE, HIGH_BITS, LETTER, NUMBER, OTHER,
    SPACE,
};

/// tiktoken's `cl100k_base` pattern (`tiktoken_ext/openai_public.py`), exactly.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// End of the run of letters (`\p{L}`) starting at `i`.
#[inline(always)]
fn letters_end(t: &ClassTable, b: &[u8], mut i: usize) -> usize {
    let n = b.len();
    loop {
        // ASCII letters 8 at a time, then one character at a time until the next ASCII letter.
        while i + 8 <= n {
            let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
            let other = !ascii_letter_mask(w) & HIGH_BITS;
            if other != 0 {
                i += (other.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        if i >= n {
            return n;
        }
        let c = b[i];
        if c < 0x80 {
            if !c.is_ascii_alphabetic() {
                return i;
            }
            i += 1;
        } else {
            let (cls, len) = class_at(t, b, i);
            if cls & COARSE != LETTER {
                return i;
            }
            i += len;
        }
    }
}

/// End of the run of characters of coarse class `class` starting at `i`.
#[inline(always)]
fn run_end(t: &ClassTable, b: &[u8], mut i: usize, class: u8) -> usize {
    while i < b.len() {
        let (cls, len) = class_at(t, b, i);
        if cls & COARSE != class {
            return i;
        }
        i += len;
    }
    i
}

/// End of the `[\r\n]*` run starting at `i`.
#[inline(always)]
fn line_breaks_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b'\r' || b[i] == b'\n') {
        i += 1;
    }
    i
}

/// The end (exclusive byte offset) of the cl100k pre-token that starts at byte `i` of `b`.
///
/// `b` must be valid UTF-8 and `i < b.len()` a char boundary. The branches follow the
/// alternatives of the pattern in order, as leftmost-first matching tries them; the possessive
/// quantifiers never give back, and where the plain ones could, the proof is in the comment.
#[inline]
pub fn pretoken_end(b: &[u8], i: usize) -> usize {
    pretoken_end_with(table(), b, i)
}

#[inline(always)]
fn pretoken_end_with(t: &ClassTable, b: &[u8], i: usize) -> usize {
    let n = b.len();
    let c0 = b[i];
    // 1. '(?i:[sdmt]|ll|ve|re)
    if c0 == b'\'' {
        let e = contraction_end(b, i);
        if e > i {
            return e;
        }
    }
    let (cls, len) = class_at(t, b, i);
    let coarse = cls & COARSE;
    let j = i + len;
    match coarse {
        // 2. without the optional character (a letter is not in `[^\r\n\p{L}\p{N}]`).
        LETTER => return letters_end(t, b, j),
        // 3. \p{N}{1,3}+
        NUMBER => return digits_end(t, b, j),
        _ => {}
    }
    // `c0` is whitespace or other here; what follows it decides between 2, 4 and 5-8.
    let (next, next_len) = if j < n { class_at(t, b, j) } else { (SPACE, 0) };
    // 2. [^\r\n\p{L}\p{N}]?+\p{L}++ with the optional character present.
    if next & COARSE == LETTER && c0 != b'\r' && c0 != b'\n' {
        return letters_end(t, b, j + next_len);
    }
    // 4. ` ?[^\s\p{L}\p{N}]++[\r\n]*+`: a run of other characters, perhaps after one space.
    if coarse == OTHER {
        return line_breaks_end(b, run_end(t, b, j, OTHER));
    }
    if c0 == b' ' && j < n && next & COARSE == OTHER {
        return line_breaks_end(b, run_end(t, b, j + next_len, OTHER));
    }
    // 5.-8. `c0` is whitespace; `k` ends its run.
    let k = if j < n && next & COARSE == SPACE {
        run_end(t, b, j + next_len, SPACE)
    } else {
        j
    };
    // 5. \s++$: the run ends the text.
    if k == n {
        return n;
    }
    // 6. \s*[\r\n]: the greedy `\s*` backs off to the last line break of the run.
    if let Some(q) = last_line_break(b, i, k) {
        return q + 1;
    }
    // 7. \s+(?!\S): all but the last character, which leads the next pre-token. 8. \s when the
    // run is a single character.
    let last = char_start_before(b, k);
    if last > i {
        last
    } else {
        k
    }
}

/// Calls `f` on each pre-token of `text` (ordinary text, no special tokens), in order.
/// The pre-tokens concatenate back to `text`.
pub fn for_each_pretoken<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    for_each_pretoken_range(text.as_bytes(), |i, j| f(&text[i..j]));
}

/// Calls `f(start, end)` with the byte range of each pre-token of `b` (valid UTF-8), in order.
#[inline]
pub fn for_each_pretoken_range(b: &[u8], mut f: impl FnMut(usize, usize)) {
    let t = table();
    let mut i = 0;
    while i < b.len() {
        let j = pretoken_end_with(t, b, i);
        f(i, j);
        i = j;
    }
}

/// Classes for the safe-cut rule: letter, number, other, whitespace but `\r` and `\n`, line break.
const CUT_L: usize = 0;
const CUT_N: usize = 1;
const CUT_O: usize = 2;
const CUT_S: usize = 3;
const CUT_NL: usize = 4;

fn cut_class(c: char) -> usize {
    if c == '\r' || c == '\n' {
        return CUT_NL;
    }
    match class_of(c) & COARSE {
        LETTER => CUT_L,
        NUMBER => CUT_N,
        SPACE => CUT_S,
        _ => CUT_O,
    }
}

/// `SAFE[x][y]`: a cut between a character of cut class `x` and one of class `y` is safe.
const SAFE: [[bool; 5]; 5] = {
    const F: bool = false;
    const T: bool = true;
    [
        // y: L  N  O  S  NL
        [F, T, T, T, T], // x = letter
        [T, F, T, T, T], // x = number
        [F, T, F, T, F], // x = other
        [F, F, F, F, F], // x = whitespace (not \r \n)
        [T, T, T, F, F], // x = \r or \n
    ]
};

/// Whether `p` is a safe cut for the cl100k pattern: for every text that starts with `bytes`
/// (whatever follows), the pre-tokens of `text[..p]` followed by those of `text[p..]` are exactly
/// the pre-tokens of the text. Special tokens are not considered. `false` when `p` is 0, not
/// inside `bytes`, or not between two complete UTF-8 characters of `bytes`.
///
/// Let X be the character before `p` and Y the one at `p`. The cut is safe when X is not
/// whitespace and the pair is not one of (letter, letter), (number, number), (other, other),
/// (other, letter), (other, `\r`/`\n`); or when X is `\r` or `\n` and Y is not whitespace.
/// In text with spaces that leaves a cut at almost every word end; in text without them (CJK),
/// a cut after every letter or digit run that punctuation or a digit/letter follows, before
/// every digit that follows punctuation, and after every line break. There is none inside a run
/// of one class (such a run is one pre-token anyway, but for digits, which group by three and so
/// depend on where the run started), so memory held for a cut grows with the longest such run.
///
/// Proof. Matching at a position reads the text only forward (no lookbehind; `$` is the end
/// of the text), so what happens from `p` on depends on `text[p..]` alone, and the pattern
/// matches at every position (each character starts an alternative: a letter 2, a digit 3,
/// other 4, whitespace 8), so pre-tokens tile the text. It remains to show (a) no match
/// attempt made at a start `s < p` turns out differently in `text` and in `text[..p]`, and
/// (b) no pre-token of `text` contains both X and Y, so one ends exactly at `p`.
///
/// An attempt at `s < p` reads position `p` only after consuming all of `s..p`, X included.
/// Its next step is then either to test Y against the class of the item that may follow X, or
/// (only in the whitespace alternatives, after consuming whitespace) to test `$` or `(?!\S)`.
/// The pairs (X, Y) in which some alternative consumes Y right after X are:
/// 1. `'(?i:[sdmt]|ll|ve|re)`: (`'`, letter) and (letter, letter);
/// 2. `[^\r\n\p{L}\p{N}]?+\p{L}++`: (other or whitespace but `\r` `\n`, letter), (letter, letter);
/// 3. `\p{N}{1,3}+`: (number, number);
/// 4. ` ?[^\s\p{L}\p{N}]++[\r\n]*+`: (space, other), (other, other), (other, line break),
///    (line break, line break);
/// 5. to 8., whitespace: (whitespace, whitespace).
///
/// Case X not whitespace (letter, number, other): no `$` or lookahead is reached at `p`, and
/// for every pair marked safe no alternative consumes Y after X, so the test at `p` fails,
/// exactly as it fails at the end of `text[..p]`: every attempt takes the same path in both
/// texts (a), and no match runs through X into Y (b).
///
/// Case X a line break, Y not whitespace. After a line break only alternative 4 (consuming
/// `[\r\n]`) and 5-8 (consuming whitespace) continue, and Y is neither, so (b) holds. For
/// (a): a 4 attempt fails its next test at Y and at the end alike. A whitespace attempt at
/// `s` has consumed `s..p`, all whitespace ending in a line break; in `text`, 5 fails (`$`
/// sees Y) and 6 matches up to the last line break, which is X: `s..p`. In `text[..p]`, 5
/// matches the whole run, `s..p`. Same pre-token. Alternatives 2 and 4 tried at `s` before
/// them consume at most one whitespace character and then need a letter or other character
/// that the run cannot supply, and would reach `p` only if X were that first character,
/// which `[^\r\n...]` and ` ` exclude.
///
/// Unsafe pairs, each with a counterexample: X whitespace (`"a  "|"b"`: `\s+(?!\S)` keeps
/// one space for ` b`, the cut text ends in `\s++$`); (other, letter) (`"!"|"a"` is `!a`);
/// (number, number) (`"1234"` groups as `123`,`4`; cut after `12` it would group `12`,`34`);
/// (other, line break) (`"!\n"` is one pre-token).
pub fn is_safe_cut(bytes: &[u8], p: usize) -> bool {
    match chars_around(bytes, p) {
        Some((x, y)) => SAFE[cut_class(x)][cut_class(y)],
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        self, assert_cut_classes, assert_matches_regex, assert_matches_regex_on,
        assert_safe_cuts_keep_pretokens, dense_text, random_text, sampled_chars, word_salad,
        CutTable, CL100K,
    };
    use super::super::unicode::{CASELESS, LOWER, UPPER};
    use super::*;

    fn pretokens(text: &str) -> Vec<&str> {
        testing::pretokens(CL100K, text)
    }

    #[test]
    fn examples() {
        assert_eq!(
            pretokens("Hello, world! It's 2024."),
            vec!["Hello", ",", " world", "!", " It", "'s", " ", "202", "4", "."]
        );
        assert_eq!(pretokens(""), Vec::<&str>::new());
        assert_eq!(
            pretokens("I'M HE'LL 'x"),
            vec!["I", "'M", " HE", "'LL", " '", "x"]
        );
        assert_eq!(pretokens("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(pretokens("a\n\n  b"), vec!["a", "\n\n", " ", " b"]);
        assert_eq!(pretokens("x  \n"), vec!["x", "  \n"]);
        assert_eq!(pretokens("x\n  "), vec!["x", "\n  "]);
        assert_eq!(pretokens("x\n  y"), vec!["x", "\n", " ", " y"]);
        assert_eq!(pretokens("\tfoo(bar)\n\n"), vec!["\tfoo", "(bar", ")\n\n"]);
        assert_eq!(pretokens(" !?\r\n"), vec![" !?\r\n"]);
        assert_eq!(pretokens("1234567"), vec!["123", "456", "7"]);
        assert_eq!(pretokens("中文，中文。\n"), vec!["中文", "，中文", "。\n"]);
        assert_eq!(pretokens("\u{3000}a"), vec!["\u{3000}a"]);
        assert_eq!(pretokens("\u{301}a ſ's"), vec!["\u{301}a", " ſ", "'s"]);
    }

    #[test]
    fn pattern_is_tiktokens() {
        // A transcription error would show as a difference on random text; this pins the text.
        assert_eq!(CL100K_PATTERN.len(), 117);
        assert!(CL100K_PATTERN.starts_with(r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+"));
        assert!(CL100K_PATTERN.ends_with(r"|\s++$|\s*[\r\n]|\s+(?!\S)|\s"));
    }

    #[test]
    fn identical_to_fancy_regex_on_random_text() {
        let text = |rng: &mut _| random_text(rng, 24);
        assert_matches_regex(CL100K_PATTERN, CL100K, text, 0x9E37_79B9_7F4A_7C15, 30_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_dense_text() {
        let text = |rng: &mut _| dense_text(rng, 12);
        assert_matches_regex(CL100K_PATTERN, CL100K, text, 0xD15E_A5E5, 30_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_word_salad() {
        const PARTS: &[&str] = &[
            "the", " cat", "'s", "'LL", "'", " ", "  ", "\n", " \n", "\r\n", "12", "12345", " 3.5",
            "?!", "\u{3000}", "é", "中文", "。", "\t", "x", "  \n  ", "//", "😀",
        ];
        let text = |rng: &mut _| word_salad(rng, PARTS, 0..=11);
        assert_matches_regex(CL100K_PATTERN, CL100K, text, 99, 10_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_every_character_between_letters() {
        let texts = sampled_chars().map(|c| format!("a{c}b {c}{c}1\n{c} "));
        assert_matches_regex_on(CL100K_PATTERN, CL100K, texts);
    }

    #[test]
    fn safe_cuts_never_change_the_pretokens() {
        let rule = CutTable {
            matcher: CL100K,
            is_safe_cut,
            cut_class,
            safe: &SAFE,
            exceptions: &[],
        };
        assert_safe_cuts_keep_pretokens(&rule, 0xC0FF_EE00_1234_5678, 40_000);
    }

    #[test]
    fn safe_cut_examples() {
        let cut = |s: &str, p: usize| is_safe_cut(s.as_bytes(), p);
        assert!(cut("ab cd", 2)); // letter | space
        assert!(cut("ab\ncd", 2)); // letter | line break
        assert!(cut("ab\ncd", 3)); // line break | letter
        assert!(cut("ab12", 2) && cut("12ab", 2)); // letter | number and back
        assert!(cut("中文，", 6)); // letter | other
        assert!(!cut("ab", 1) && !cut("1234", 2) && !cut("!!", 1));
        assert!(!cut("!a", 1) && !cut("!\n", 1) && !cut("a  b", 2) && !cut("a \n", 2));
        assert!(!cut("ab", 0) && !cut("ab", 2) && !cut("é", 1));
        assert!(!cut("a \u{3000}", 1 + 1) && cut("a\u{3000}", 1));
    }

    /// Characters of every class of the alphabet get the class fancy-regex gives them through
    /// the pattern's own character classes.
    #[test]
    fn cut_classes_follow_the_regex_classes() {
        assert_cut_classes(
            cut_class,
            &[
                (r"\p{L}", &[CUT_L]),
                (r"\p{N}", &[CUT_N]),
                (r"[^\s\p{L}\p{N}]", &[CUT_O]),
                (r"[^\r\n\p{L}\p{N}]", &[CUT_O, CUT_S]),
            ],
        );
        // The case classes do not matter here, only that they are letters.
        for class in [UPPER, LOWER, CASELESS] {
            assert_eq!(class & COARSE, LETTER);
        }
    }
}
