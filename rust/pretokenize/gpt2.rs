//! The GPT-2 pre-tokenizer: a hand-written matcher for
//! `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//!
//! The pattern needs only a character class per code point (letter, number, whitespace, other)
//! and a one-character lookahead, so it runs as a small state machine with an ASCII fast path
//! instead of a backtracking regex (about 10x faster). The classes for non-ASCII code points come
//! from the shared table of `unicode.rs` (regex-syntax's Unicode tables, which fancy-regex itself
//! uses), so `\p{L}`, `\p{N}` and `\s` mean exactly what they mean in the regex. The tests compare it with fancy-regex on
//! random text; the Python tests compare it with the `regex` module.

use super::unicode::{self, ascii_letter_mask, decode_non_ascii, table, ClassTable, HIGH_BITS};

/// The GPT-2 pre-tokenization pattern, exactly as SPEC §1 gives it.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The character class of a code point, as the pattern sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CharClass {
    /// `\p{L}`
    Letter = 0,
    /// `\p{N}`
    Number = 1,
    /// `\s` (Unicode White_Space)
    Space = 2,
    /// everything else: `[^\s\p{L}\p{N}]`
    Other = 3,
}

const L: u8 = CharClass::Letter as u8;
const N: u8 = CharClass::Number as u8;
const S: u8 = CharClass::Space as u8;
const O: u8 = CharClass::Other as u8;
// The shared table's coarse classes are these.
const _: () = assert!(
    L == unicode::LETTER && N == unicode::NUMBER && S == unicode::SPACE && O == unicode::OTHER
);

/// Classes of the ASCII range (`\s` = 0x09..=0x0D and 0x20; 0x1C..=0x1F are not White_Space).
const ASCII_CLASS: [u8; 128] = {
    let mut t = [O; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() {
            L
        } else if b.is_ascii_digit() {
            N
        } else if b == b' ' || (b >= 0x09 && b <= 0x0D) {
            S
        } else {
            O
        };
        c += 1;
    }
    t
};

/// The class of one character (exposed for the tests that compare every code point).
pub fn char_class(c: char) -> CharClass {
    match unicode::class_of(c) & unicode::COARSE {
        L => CharClass::Letter,
        N => CharClass::Number,
        S => CharClass::Space,
        _ => CharClass::Other,
    }
}

/// Class and byte length of the character starting at `i` (a char boundary of valid UTF-8).
#[inline(always)]
fn class_at(t: &ClassTable, b: &[u8], i: usize) -> (u8, usize) {
    let c0 = b[i];
    if c0 < 0x80 {
        return (ASCII_CLASS[c0 as usize], 1);
    }
    let (cp, len) = decode_non_ascii(b, i);
    (t.get(cp) & unicode::COARSE, len)
}

/// End of the run of characters of class `class` starting at `i`.
#[inline(always)]
fn run_end(t: &ClassTable, b: &[u8], mut i: usize, class: u8) -> usize {
    let n = b.len();
    if class == L {
        // ASCII letters 8 at a time; the byte loop below takes over at the first other byte.
        while i + 8 <= n {
            let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
            let other = !ascii_letter_mask(w) & HIGH_BITS;
            if other != 0 {
                i += (other.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
    }
    while i < n {
        let c = b[i];
        if c < 0x80 {
            if ASCII_CLASS[c as usize] != class {
                return i;
            }
            i += 1;
        } else {
            let (cls, len) = class_at(t, b, i);
            if cls != class {
                return i;
            }
            i += len;
        }
    }
    n
}

/// The end (exclusive byte offset) of the GPT-2 pre-token that starts at byte `i` of `b`.
///
/// `b` must be valid UTF-8 and `i < b.len()` a char boundary; pre-tokenization of a text is
/// `i = 0; while i < len { j = pretoken_end(b, i); emit b[i..j]; i = j }`. The branches follow
/// the alternatives of the pattern in order, as leftmost-first matching tries them.
#[inline]
pub fn pretoken_end(b: &[u8], i: usize) -> usize {
    pretoken_end_with(table(), b, i)
}

#[inline(always)]
fn pretoken_end_with(t: &ClassTable, b: &[u8], i: usize) -> usize {
    let n = b.len();
    let c0 = b[i];
    // 1. '(?:[sdmt]|ll|ve|re)
    if c0 == b'\'' && i + 1 < n {
        match b[i + 1] {
            b's' | b'd' | b'm' | b't' => return i + 2,
            b'l' if i + 2 < n && b[i + 2] == b'l' => return i + 3,
            b'v' | b'r' if i + 2 < n && b[i + 2] == b'e' => return i + 3,
            _ => {}
        }
    }
    let (cls, len) = class_at(t, b, i);
    if cls != S {
        // 2.-4. \p{L}+, \p{N}+, [^\s\p{L}\p{N}]+ (the apostrophe falls here when 1. fails).
        return run_end(t, b, i + len, cls);
    }
    // 2.-4. with the optional leading space: ` ?X+` where the next char is not whitespace.
    if c0 == b' ' && i + 1 < n {
        let (cls1, len1) = class_at(t, b, i + 1);
        if cls1 != S {
            return run_end(t, b, i + 1 + len1, cls1);
        }
    }
    // 5. \s+(?!\S): the whole run if it reaches the end of the text (or is followed by
    // whitespace, which a maximal run never is); otherwise back off one character so the last
    // whitespace char can lead the next pre-token. 6. \s+ when the run is a single char.
    let k = run_end(t, b, i + len, S);
    if k == n {
        return k;
    }
    let mut last = k - 1;
    while b[last] & 0xC0 == 0x80 {
        last -= 1;
    }
    if last > i {
        last
    } else {
        k
    }
}

/// Whether text may be cut at byte `p` without changing its GPT-2 pre-tokens: for every text
/// that starts with `bytes`, pre-tokenizing `text[..p]` and `text[p..]` separately gives the
/// pre-tokens of the whole. The rule reads only the character `c1` that ends at `p` and the
/// character `c2` that starts there (both must be whole, valid UTF-8 inside `bytes`), so it
/// holds whatever comes before `c1` and after `c2`; special tokens are the caller's business
/// (`cuts::Cuts`).
///
/// The rule: `c1` is not whitespace, and either `c2` is whitespace, or `c2` is of another class
/// than `c1` (letter, number, other: `\p{L}`, `\p{N}`, `[^\s\p{L}\p{N}]`) and is not a letter
/// after an apostrophe. So cuts fall between words and spaces, and where scripts, digits or
/// punctuation meet: text without whitespace (CJK with punctuation, code, `a1b2`) cuts too.
///
/// Proof. The pattern `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// is matched leftmost-first from the start, each match starting where the last ended, and has
/// no lookbehind. Three things make the cut exact:
/// 1. The whole has a pre-token boundary at `p`. `c1` is not whitespace, so it is not the
///    optional leading space of a ` ?X+` branch, and the match holding it is either a run `X+`
///    of `c1`'s class, or a contraction. A run stops before `c2` because `c2` is whitespace or
///    of another class. A contraction `'s` ... `'re` is ASCII and could reach past `p` only if
///    it started at `c1` (`c1` = `'`, `c2` a letter: excluded) or one byte before it (`c1` one
///    of `l v r` and `c2` one of `l e`, both letters: the same class, so no cut).
/// 2. The left half gives the same pre-tokens up to `p`. A match that ends before `p` read at
///    most one character past its end (the character that stops a run, the one after a
///    whitespace run for `(?!\S)`, up to two after an apostrophe), and reads `c2` only if it
///    ends at `c1` or is a contraction attempt at or one byte before `c1`. Where the whole
///    reads `c2`, the half reads the end of the text, with the same outcome: a run of `c1`'s
///    class stops (at `c2`, as it is whitespace or another class; at the end just as well),
///    and a contraction attempt fails (`c2` is not one of the letters it needs, by the cases
///    in 1.). So every match before `p` is the same in the half.
/// 3. The right half gives the same pre-tokens from `p`: the whole's next match starts at `p`
///    (by 1.), and with no lookbehind it depends only on the text from `p` on.
///
/// `is_safe_cut(b"ab cd", 2)` (before the space) is true; at 3 (after it) false: the space
/// joins `cd`, and alone at the end of the left half it would be a pre-token of its own.
pub fn is_safe_cut(bytes: &[u8], p: usize) -> bool {
    let (Some(c1), Some(c2)) = (char_before(bytes, p), char_at(bytes, p)) else {
        return false;
    };
    let (k1, k2) = (char_class(c1), char_class(c2));
    match (k1, k2) {
        (CharClass::Space, _) => false,
        (_, CharClass::Space) => true,
        _ => k1 != k2 && !(c1 == '\'' && k2 == CharClass::Letter),
    }
}

/// The character starting at byte `p`, if `bytes[p..]` starts with a whole valid one.
#[inline]
fn char_at(bytes: &[u8], p: usize) -> Option<char> {
    let lead = *bytes.get(p)?;
    if lead < 0x80 {
        return Some(lead as char);
    }
    let len = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(bytes.get(p..p + len)?).ok()?;
    s.chars().next()
}

/// The character ending at byte `p`, if `bytes[..p]` ends with a whole valid one.
#[inline]
fn char_before(bytes: &[u8], p: usize) -> Option<char> {
    if p == 0 || p > bytes.len() {
        return None;
    }
    let last = bytes[p - 1];
    if last < 0x80 {
        return Some(last as char);
    }
    if last & 0xC0 != 0x80 {
        return None; // a lead byte cannot end a character
    }
    let start = (p.saturating_sub(4)..p - 1)
        .rev()
        .find(|&i| bytes[i] & 0xC0 != 0x80)?;
    let mut chars = std::str::from_utf8(&bytes[start..p]).ok()?.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// Calls `f` on each pre-token of `text` (ordinary text, no special tokens), in order.
/// The pre-tokens concatenate back to `text`.
pub fn for_each_pretoken<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    for_each_pretoken_range(text.as_bytes(), |i, j| f(&text[i..j]));
}

/// Calls `f` on each pre-token of `text` as a byte slice (the counting hot path: no char
/// boundary checks on the slices).
#[inline]
pub fn for_each_pretoken_bytes<'a>(text: &'a str, mut f: impl FnMut(&'a [u8])) {
    let b = text.as_bytes();
    for_each_pretoken_range(b, |i, j| f(&b[i..j]));
}

/// Calls `f(start, end)` with the byte range of each pre-token of `b` (valid UTF-8), in
/// order: the form the counter needs, which reads the bytes around a pre-token itself.
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

#[cfg(test)]
mod tests {
    use super::super::testing::{
        self, assert_matches_regex, dense_text, regex_pretokens, split_pretokens, Rng, ALPHABET,
        GPT2,
    };
    use super::*;
    use fancy_regex::Regex;

    fn pretokens(text: &str) -> Vec<&str> {
        testing::pretokens(GPT2, text)
    }

    #[test]
    fn gpt2_examples() {
        assert_eq!(
            pretokens("Hello, world!"),
            vec!["Hello", ",", " world", "!"]
        );
        assert_eq!(pretokens("it's  ok\n"), vec!["it", "'s", " ", " ok", "\n"]);
        assert_eq!(pretokens(""), Vec::<&str>::new());
        assert_eq!(pretokens("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(pretokens("a\n\nb"), vec!["a", "\n", "\n", "b"]);
        assert_eq!(pretokens("x  \n"), vec!["x", "  \n"]);
        assert_eq!(
            pretokens(" 's 'll 'x"),
            vec![" '", "s", " '", "ll", " '", "x"]
        );
        assert_eq!(pretokens("we'll've"), vec!["we", "'ll", "'ve"]);
        assert_eq!(pretokens("\"'s"), vec!["\"'", "s"]);
        assert_eq!(pretokens("ab12 34½ ³"), vec!["ab", "12", " 34½", " ³"]);
        assert_eq!(
            pretokens("a\u{3000}\u{3000}b"),
            vec!["a", "\u{3000}", "\u{3000}", "b"]
        );
    }

    #[test]
    fn classes_of_tricky_code_points() {
        for c in [
            '\u{85}', '\u{A0}', '\u{1680}', '\u{2000}', '\u{200A}', '\u{2028}', '\u{2029}',
            '\u{202F}', '\u{205F}', '\u{3000}',
        ] {
            assert_eq!(char_class(c), CharClass::Space, "{:04X}", c as u32);
        }
        for c in [
            '\u{180E}', '\u{200B}', '\u{1C}', '\u{1F}', '\u{FEFF}', '\u{301}',
        ] {
            assert_eq!(char_class(c), CharClass::Other, "{:04X}", c as u32);
        }
        for c in ['ª', 'µ', 'º', 'ß', '中', 'ǅ', 'ʰ'] {
            assert_eq!(char_class(c), CharClass::Letter, "{:04X}", c as u32);
        }
        for c in ['²', '½', 'Ⅻ', '٣', '𝟘'] {
            assert_eq!(char_class(c), CharClass::Number, "{:04X}", c as u32);
        }
    }

    /// Every code point gets the class fancy-regex gives it.
    #[test]
    fn classes_match_fancy_regex_on_all_code_points() {
        let l = Regex::new(r"^\p{L}$").unwrap();
        let n = Regex::new(r"^\p{N}$").unwrap();
        let s = Regex::new(r"^\s$").unwrap();
        // Every 7th code point plus all of the first 0x3100 keeps the test fast in debug builds.
        for cp in (0..0x11_0000u32).filter(|cp| *cp < 0x3100 || cp % 7 == 0) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let mut buf = [0u8; 4];
            let text = c.encode_utf8(&mut buf);
            let expected = if l.is_match(text).unwrap() {
                CharClass::Letter
            } else if n.is_match(text).unwrap() {
                CharClass::Number
            } else if s.is_match(text).unwrap() {
                CharClass::Space
            } else {
                CharClass::Other
            };
            assert_eq!(char_class(c), expected, "U+{cp:04X}");
        }
    }

    #[test]
    fn identical_to_fancy_regex_on_random_text() {
        let text = |rng: &mut Rng| -> String {
            (0..rng.below(24))
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect()
        };
        assert_matches_regex(GPT2_PATTERN, GPT2, text, 0x9E37_79B9_7F4A_7C15, 20_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_random_code_points() {
        let text = |rng: &mut Rng| -> String {
            (0..rng.below(16))
                .map(|_| match rng.below(3) {
                    0 => ALPHABET[rng.below(ALPHABET.len())],
                    1 => char::from_u32(rng.below(0x3000) as u32).unwrap_or(' '),
                    _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x'),
                })
                .collect()
        };
        assert_matches_regex(GPT2_PATTERN, GPT2, text, 12345, 5_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_dense_text() {
        let text = |rng: &mut _| dense_text(rng, 12);
        assert_matches_regex(GPT2_PATTERN, GPT2, text, 0xD15E_A5E5, 10_000);
    }

    /// One character of each kind the rule and the pattern tell apart: letters (contraction
    /// letters in both cases, other scripts), numbers, every kind of whitespace, the
    /// apostrophe and other punctuation, marks, symbols, and an emoji.
    const CUT_ALPHABET: &[char] = &[
        'a', 's', 'l', 'v', 'e', 'r', 'S', 'ж', '中', '0', '½', ' ', '\n', '\t', '\u{A0}',
        '\u{3000}', '\'', '"', '.', '\u{301}', '\u{1C}', '。', '😀',
    ];

    /// Every window of four characters `c0 c1 | c2 c3`, cut between `c1` and `c2`: where the
    /// rule says safe, the halves give the pre-tokens of the whole, also with text before and
    /// after the window.
    #[test]
    fn safe_cuts_are_exact_on_every_window() {
        let n = CUT_ALPHABET.len();
        let mut safe = 0;
        for i in 0..n.pow(4) {
            let w: Vec<char> = (0..4).map(|k| CUT_ALPHABET[(i / n.pow(k)) % n]).collect();
            let text: String = w.iter().collect();
            let p = w[0].len_utf8() + w[1].len_utf8();
            let c2_end = p + w[2].len_utf8();
            let cut = is_safe_cut(text.as_bytes(), p);
            // The rule reads only c1 and c2.
            assert_eq!(cut, is_safe_cut(&text.as_bytes()[..c2_end], p), "{text:?}");
            assert_eq!(
                cut,
                is_safe_cut(&text.as_bytes()[w[0].len_utf8()..], w[1].len_utf8())
            );
            if !cut {
                continue;
            }
            safe += 1;
            assert_eq!(
                split_pretokens(GPT2, &text, p),
                pretokens(&text),
                "{text:?} at {p}"
            );
            for (pre, post) in [("x", "'s"), (" ", "  "), ("'", "ll"), ("1", "\n")] {
                let long = format!("{pre}{text}{post}");
                let q = pre.len() + p;
                assert!(is_safe_cut(long.as_bytes(), q));
                assert_eq!(
                    split_pretokens(GPT2, &long, q),
                    pretokens(&long),
                    "{long:?} at {q}"
                );
            }
        }
        // Most windows have a class change or a space after a non-space.
        assert!(safe > n.pow(4) / 3, "{safe}");
    }

    /// Random text mixing every class: every cut the rule allows, on the text or on any
    /// prefix that holds `c2`, gives the pre-tokens of the whole, by our matcher and by
    /// fancy-regex running the pattern itself.
    #[test]
    fn safe_cuts_are_exact_on_random_text() {
        let re = Regex::new(GPT2_PATTERN).unwrap();
        let mut rng = Rng(0xC0FFEE);
        let mut cuts = 0;
        for round in 0..3_000 {
            let len = 1 + rng.below(30);
            let text: String = (0..len)
                .map(|_| match rng.below(4) {
                    0 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x'),
                    _ => ALPHABET[rng.below(ALPHABET.len())],
                })
                .collect();
            let whole = pretokens(&text);
            let b = text.as_bytes();
            for p in 1..b.len() {
                if !is_safe_cut(b, p) {
                    continue;
                }
                cuts += 1;
                assert!(text.is_char_boundary(p));
                assert_eq!(split_pretokens(GPT2, &text, p), whole, "{text:?} at {p}");
                let c2_end = (p + 1..=b.len())
                    .find(|&q| text.is_char_boundary(q))
                    .unwrap();
                assert!(is_safe_cut(&b[..c2_end], p));
                if round % 10 == 0 {
                    let mut split = regex_pretokens(&re, &text[..p]);
                    split.extend(regex_pretokens(&re, &text[p..]));
                    assert_eq!(split, regex_pretokens(&re, &text), "{text:?} at {p}");
                }
            }
        }
        assert!(cuts > 10_000, "{cuts}");
    }

    #[test]
    fn safe_cuts_in_every_script() {
        let cuts = |t: &str| {
            (1..t.len())
                .filter(|&p| is_safe_cut(t.as_bytes(), p))
                .count()
        };
        assert_eq!(cuts("привет мир"), 1); // before the space
        assert_eq!(cuts("中文，中文。中文"), 4); // where letters and punctuation meet
        assert_eq!(cuts("abc123!?x"), 3);
        assert_eq!(cuts("x's"), 1); // before the apostrophe, never after it
        assert_eq!(cuts("a   b"), 1);
        assert_eq!(cuts("aaaaaaaa"), 0);
        assert_eq!(cuts("\n\n\n"), 0);
        // Not at the ends, inside a character, or next to invalid UTF-8.
        assert!(!is_safe_cut(b"a ", 0) && !is_safe_cut(b"a ", 2));
        assert!(!is_safe_cut("ж ".as_bytes(), 1));
        assert!(!is_safe_cut(b"a\xff ", 2) && !is_safe_cut(b"\xff ", 1));
        assert!(!is_safe_cut(b"a\xe4\xb8", 1)); // c2 cut short
        assert!(is_safe_cut("1中".as_bytes(), 1) && !is_safe_cut("a中".as_bytes(), 1));
    }
}
