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
    use super::*;
    use fancy_regex::Regex;

    fn pretokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for_each_pretoken(text, |p| out.push(p));
        out
    }

    fn regex_pretokens<'a>(re: &Regex, text: &'a str) -> Vec<&'a str> {
        re.find_iter(text)
            .map(|m| m.expect("no backtrack limit").as_str())
            .collect()
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

    /// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Characters that exercise every branch: ASCII of each class, the contraction letters,
    /// every kind of Unicode whitespace and near-whitespace, letters, marks, numbers, CJK, emoji.
    const ALPHABET: &[char] = &[
        'a',
        'b',
        's',
        'd',
        'm',
        't',
        'l',
        'v',
        'r',
        'e',
        'S',
        'L',
        'Z',
        '0',
        '7',
        '\'',
        '\'',
        '"',
        '.',
        ',',
        '!',
        '-',
        '_',
        '$',
        ' ',
        ' ',
        ' ',
        '\n',
        '\n',
        '\t',
        '\r',
        '\u{0B}',
        '\u{0C}',
        '\u{1C}',
        '\u{1F}',
        '\u{85}',
        '\u{A0}',
        '\u{1680}',
        '\u{2000}',
        '\u{2009}',
        '\u{200A}',
        '\u{200B}',
        '\u{180E}',
        '\u{2028}',
        '\u{2029}',
        '\u{202F}',
        '\u{205F}',
        '\u{3000}',
        '\u{FEFF}',
        'é',
        'ß',
        'Ω',
        'ж',
        'ª',
        'µ',
        '\u{301}',
        '\u{94D}',
        'क',
        '²',
        '½',
        '٣',
        'Ⅻ',
        '中',
        '文',
        '。',
        '、',
        'の',
        '한',
        '😀',
        '👍',
        '\u{1F3FD}',
        '\u{10FFFF}',
        '𝟘',
        '€',
    ];

    #[test]
    fn identical_to_fancy_regex_on_random_text() {
        let re = Regex::new(GPT2_PATTERN).unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let len = rng.below(24);
            let text: String = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            assert_eq!(
                pretokens(&text),
                regex_pretokens(&re, &text),
                "text {text:?}"
            );
        }
    }

    #[test]
    fn identical_to_fancy_regex_on_random_code_points() {
        let re = Regex::new(GPT2_PATTERN).unwrap();
        let mut rng = Rng(12345);
        for _ in 0..5_000 {
            let len = rng.below(16);
            let text: String = (0..len)
                .map(|_| match rng.below(3) {
                    0 => ALPHABET[rng.below(ALPHABET.len())],
                    1 => char::from_u32(rng.below(0x3000) as u32).unwrap_or(' '),
                    _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x'),
                })
                .collect();
            assert_eq!(
                pretokens(&text),
                regex_pretokens(&re, &text),
                "text {text:?}"
            );
        }
    }

    #[test]
    fn ascii_letter_mask_matches_the_class_table() {
        for byte in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[pos] = byte;
                let mask = ascii_letter_mask(u64::from_le_bytes(bytes));
                let is_letter = mask & (0x80u64 << (8 * pos)) != 0;
                assert_eq!(
                    is_letter,
                    byte.is_ascii_alphabetic(),
                    "byte {byte:#04x} at {pos}"
                );
                // The other bytes stay letters.
                assert_eq!(
                    mask.count_ones(),
                    7 + is_letter as u32,
                    "byte {byte:#04x} at {pos}"
                );
            }
        }
    }
}
