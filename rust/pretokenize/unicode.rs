//! Unicode character classes and UTF-8 helpers shared by the hand-written pre-tokenizers
//! (`gpt2.rs`, `cl100k.rs`, `o200k.rs`).
//!
//! One table gives every code point a class byte. Its low two bits are the coarse class that the
//! GPT-2 and cl100k patterns need (`\p{L}`, `\p{N}`, `\s`, other); the bits above split letters
//! by case and separate combining marks, which o200k's case-sensitive letter classes need
//! (`[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` and `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`). The sets come from
//! regex-syntax's Unicode tables, the tables fancy-regex itself compiles patterns with, so a class
//! here means exactly what it means in the regex; the tests compare every code point.
//!
//! ```ignore
//! let (class, len) = class_at(table(), "Éa".as_bytes(), 0); // (UPPER, 2)
//! ```

use regex_syntax::hir::{Class, HirKind};
use std::sync::OnceLock;

/// Coarse class `\p{L}` (any letter).
pub const LETTER: u8 = 0;
/// Coarse class `\p{N}`.
pub const NUMBER: u8 = 1;
/// Coarse class `\s` (Unicode White_Space).
pub const SPACE: u8 = 2;
/// Coarse class of everything else, `[^\s\p{L}\p{N}]` (marks included).
pub const OTHER: u8 = 3;
/// `class & COARSE` is the coarse class.
pub const COARSE: u8 = 3;

/// `\p{Lu}` or `\p{Lt}`: a letter only in o200k's upper-case class.
pub const UPPER: u8 = LETTER | (1 << 2);
/// `\p{Ll}`: a letter only in o200k's lower-case class.
pub const LOWER: u8 = LETTER | (2 << 2);
/// `\p{Lm}` or `\p{Lo}`: a letter in both of o200k's case classes (CJK, Thai, modifiers...).
pub const CASELESS: u8 = LETTER | (3 << 2);
/// `\p{M}`: a combining mark. Not a letter, yet in both of o200k's case classes.
pub const MARK: u8 = OTHER | (4 << 2);

/// Classes of the ASCII range (`\s` is 0x09..=0x0D and 0x20; 0x1C..=0x1F are not White_Space).
pub const ASCII: [u8; 128] = {
    let mut t = [OTHER; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_uppercase() {
            UPPER
        } else if b.is_ascii_lowercase() {
            LOWER
        } else if b.is_ascii_digit() {
            NUMBER
        } else if b == b' ' || (b >= 0x09 && b <= 0x0D) {
            SPACE
        } else {
            OTHER
        };
        c += 1;
    }
    t
};

/// The Unicode sets behind the classes, as regex syntax, with the class each one gives. The sets
/// are disjoint (general categories, and White_Space holds only Zs, Zl, Zp and Cc characters);
/// `ClassTable::build` checks it.
const SETS: [(&str, u8); 8] = [
    (r"\p{Lu}", UPPER),
    (r"\p{Lt}", UPPER),
    (r"\p{Ll}", LOWER),
    (r"\p{Lm}", CASELESS),
    (r"\p{Lo}", CASELESS),
    (r"\p{M}", MARK),
    (r"\p{N}", NUMBER),
    (r"\s", SPACE),
];

/// Two-level table over all code points: `blocks[index[cp >> 8]][cp & 0xFF]` is the class.
/// Identical 256-code-point blocks are shared, so it stays near 100 KB.
pub struct ClassTable {
    index: Vec<u16>,
    blocks: Vec<[u8; 256]>,
}

impl ClassTable {
    fn build() -> ClassTable {
        let mut classes = vec![OTHER; 0x11_0000];
        for (pattern, class) in SETS {
            for (start, end) in unicode_ranges(pattern) {
                for cp in start..=end {
                    assert_eq!(classes[cp as usize], OTHER, "U+{cp:04X} is in two sets");
                    classes[cp as usize] = class;
                }
            }
        }
        let mut index = Vec::with_capacity(0x1100);
        let mut blocks: Vec<[u8; 256]> = Vec::new();
        let mut seen: rustc_hash::FxHashMap<[u8; 256], u16> = Default::default();
        for chunk in classes.chunks_exact(256) {
            let block: [u8; 256] = chunk.try_into().expect("chunks_exact yields 256 items");
            let id = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                (blocks.len() - 1) as u16
            });
            index.push(id);
        }
        ClassTable { index, blocks }
    }

    /// The class of code point `cp` (`cp <= 0x10FFFF`).
    #[inline(always)]
    pub fn get(&self, cp: u32) -> u8 {
        self.blocks[self.index[(cp >> 8) as usize] as usize][(cp & 0xFF) as usize]
    }
}

/// The code point ranges of a Unicode class, from regex-syntax (the parser behind fancy-regex).
fn unicode_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("built-in Unicode class parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => unreachable!("{pattern} parses to a Unicode class, got {other:?}"),
    }
}

/// The table, built on first use (a few milliseconds).
pub fn table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(ClassTable::build)
}

/// The class of one character.
pub fn class_of(c: char) -> u8 {
    table().get(c as u32)
}

/// Code point and byte length of the character starting at `i` (a char boundary of valid
/// UTF-8, not ASCII).
#[inline(always)]
pub fn decode_non_ascii(b: &[u8], i: usize) -> (u32, usize) {
    let c0 = b[i];
    if c0 < 0xE0 {
        ((((c0 & 0x1F) as u32) << 6) | (b[i + 1] & 0x3F) as u32, 2)
    } else if c0 < 0xF0 {
        let cp = (((c0 & 0x0F) as u32) << 12)
            | (((b[i + 1] & 0x3F) as u32) << 6)
            | (b[i + 2] & 0x3F) as u32;
        (cp, 3)
    } else {
        let cp = (((c0 & 0x07) as u32) << 18)
            | (((b[i + 1] & 0x3F) as u32) << 12)
            | (((b[i + 2] & 0x3F) as u32) << 6)
            | (b[i + 3] & 0x3F) as u32;
        (cp, 4)
    }
}

/// Class and byte length of the character starting at `i` (a char boundary of valid UTF-8).
#[inline(always)]
pub fn class_at(t: &ClassTable, b: &[u8], i: usize) -> (u8, usize) {
    let c0 = b[i];
    if c0 < 0x80 {
        return (ASCII[c0 as usize], 1);
    }
    let (cp, len) = decode_non_ascii(b, i);
    (t.get(cp), len)
}

/// End of `\p{N}{1,3}` (the cl100k and o200k number rule) after the first digit, which ends at `j`.
#[inline(always)]
pub fn digits_end(t: &ClassTable, b: &[u8], mut j: usize) -> usize {
    for _ in 0..2 {
        if j >= b.len() {
            break;
        }
        let (cls, len) = class_at(t, b, j);
        if cls != NUMBER {
            break;
        }
        j += len;
    }
    j
}

/// Position of the last `\r` or `\n` in `b[i..k]` (a plain loop: runs are short, and memchr's
/// setup costs more than it saves on them).
#[inline(always)]
pub fn last_line_break(b: &[u8], i: usize, mut k: usize) -> Option<usize> {
    while k > i {
        k -= 1;
        if b[k] == b'\n' || b[k] == b'\r' {
            return Some(k);
        }
    }
    None
}

/// Start of the character that ends at byte `end` (> 0) of valid UTF-8.
#[inline(always)]
pub fn char_start_before(b: &[u8], end: usize) -> usize {
    let mut s = end - 1;
    while b[s] & 0xC0 == 0x80 {
        s -= 1;
    }
    s
}

/// The character ending at byte `p` and the one starting there, for safe-cut rules that may be
/// asked about any position of any bytes (a chunk not yet validated as UTF-8): `None` unless
/// both are complete, valid UTF-8 characters.
pub fn chars_around(bytes: &[u8], p: usize) -> Option<(char, char)> {
    if p == 0 || p >= bytes.len() {
        return None;
    }
    let mut s = p - 1;
    while s > 0 && p - s < 4 && bytes[s] & 0xC0 == 0x80 {
        s -= 1;
    }
    // `s..p` holds exactly one character when the bytes there are valid UTF-8.
    let x = std::str::from_utf8(&bytes[s..p]).ok()?.chars().next()?;
    let after = &bytes[p..bytes.len().min(p + 4)];
    let valid = match std::str::from_utf8(after) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&after[..e.valid_up_to()]).expect("valid prefix"),
    };
    let y = valid.chars().next()?;
    Some((x, y))
}

/// The high bit of every byte.
pub const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of the result is set iff that byte of `w` is an ASCII letter.
/// (SWAR: `| 0x20` folds upper case onto lower case; with the high bit cleared first, adding
/// per-byte constants cannot carry into the next byte.)
#[inline(always)]
pub fn ascii_letter_mask(w: u64) -> u64 {
    let v = (w | 0x2020_2020_2020_2020) & 0x7F7F_7F7F_7F7F_7F7F;
    let at_least_a = v.wrapping_add(0x1F1F_1F1F_1F1F_1F1F); // high bit iff v >= 0x61 ('a')
    let above_z = v.wrapping_add(0x0505_0505_0505_0505); // high bit iff v >= 0x7B ('z' + 1)
    at_least_a & !above_z & !w & HIGH_BITS
}

/// The high bit of each byte of the result is set iff that byte of `w` is `a`..=`z` (as
/// `ascii_letter_mask`, without folding the case).
#[inline(always)]
pub fn ascii_lower_mask(w: u64) -> u64 {
    let v = w & 0x7F7F_7F7F_7F7F_7F7F;
    let at_least_a = v.wrapping_add(0x1F1F_1F1F_1F1F_1F1F);
    let above_z = v.wrapping_add(0x0505_0505_0505_0505);
    at_least_a & !above_z & !w & HIGH_BITS
}

/// End of an optional case-insensitive English contraction at `e`: `'s`, `'t`, `'re`, `'ve`,
/// `'m`, `'ll` or `'d` in any case, as `(?i:'s|'t|'re|'ve|'m|'ll|'d)` matches it (equal to
/// `'(?i:[sdmt]|ll|ve|re)`). Unicode case folding adds one non-ASCII letter: U+017F LONG S
/// folds to `s`. Returns `e` when there is none.
#[inline(always)]
pub fn contraction_end(b: &[u8], e: usize) -> usize {
    let n = b.len();
    if e + 1 >= n || b[e] != b'\'' {
        return e;
    }
    let second = |c: u8| e + 2 < n && b[e + 2] | 0x20 == c;
    match b[e + 1] | 0x20 {
        b's' | b't' | b'm' | b'd' => e + 2,
        b'r' | b'v' if second(b'e') => e + 3,
        b'l' if second(b'l') => e + 3,
        // U+017F is C5 BF; `| 0x20` keeps 0xC5 distinct from every ASCII letter.
        0xE5 if b[e + 1] == 0xC5 && e + 2 < n && b[e + 2] == 0xBF => e + 3,
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Rng;
    use super::*;
    use fancy_regex::Regex;

    /// Every code point gets the class that the character classes of the patterns, as
    /// fancy-regex compiles them, give it. Each regex runs once over a text of all code points,
    /// which is fast enough to check all of them in debug builds too.
    #[test]
    fn classes_match_fancy_regex_on_every_code_point() {
        let everything: String = (0..0x11_0000u32).filter_map(char::from_u32).collect();
        let members = |pattern: &str| -> Vec<bool> {
            let mut is = vec![false; 0x11_0000];
            for m in Regex::new(pattern).unwrap().find_iter(&everything) {
                for c in m.unwrap().as_str().chars() {
                    is[c as usize] = true;
                }
            }
            is
        };
        // The classes as the patterns spell them, independent of `SETS`.
        let upper = members(r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]");
        let lower = members(r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]");
        let letter = members(r"\p{L}");
        let number = members(r"\p{N}");
        let space = members(r"\s");
        let expected = |cp: usize| match (upper[cp], lower[cp], letter[cp], number[cp], space[cp]) {
            (true, false, true, false, false) => UPPER,
            (false, true, true, false, false) => LOWER,
            (true, true, true, false, false) => CASELESS,
            (true, true, false, false, false) => MARK,
            (false, false, false, true, false) => NUMBER,
            (false, false, false, false, true) => SPACE,
            (false, false, false, false, false) => OTHER,
            other => panic!("U+{cp:04X} has classes {other:?}"),
        };
        let t = table();
        let mut buf = [0u8; 4];
        for c in (0..0x11_0000u32).filter_map(char::from_u32) {
            let cp = c as usize;
            let got = t.get(c as u32);
            assert_eq!(got, expected(cp), "U+{cp:04X}");
            if cp < 0x80 {
                assert_eq!(ASCII[cp], got, "U+{cp:04X}");
            }
            let text = c.encode_utf8(&mut buf).as_bytes();
            assert_eq!(class_at(t, text, 0), (got, text.len()));
            assert_eq!(char_start_before(text, text.len()), 0);
        }
        // Spot checks that the sets mean what their names say.
        for (c, class) in [
            ('A', UPPER),
            ('ǅ', UPPER),
            ('ß', LOWER),
            ('ʰ', CASELESS),
            ('中', CASELESS),
            ('\u{301}', MARK),
            ('٣', NUMBER),
            ('\u{3000}', SPACE),
            ('\u{200B}', OTHER),
        ] {
            assert_eq!(class_of(c), class, "{c:?}");
        }
    }

    #[test]
    fn contractions_fold_case_as_the_regex_does() {
        let re = Regex::new(r"^(?i:'s|'t|'re|'ve|'m|'ll|'d)").unwrap();
        let mut rng = Rng(7);
        let letters = [
            's', 'S', 'ſ', 't', 'T', 'r', 'R', 'e', 'E', 'v', 'l', 'L', 'm', 'd', 'x',
        ];
        for _ in 0..5000 {
            let mut text = String::from("'");
            for _ in 0..rng.below(4) {
                text.push(letters[rng.below(letters.len())]);
            }
            let expected = re.find(&text).unwrap().map_or(0, |m| m.end());
            assert_eq!(contraction_end(text.as_bytes(), 0), expected, "{text:?}");
        }
        // No other code point folds to a contraction letter.
        let one = Regex::new(r"^(?i:[stmdrvel])$").unwrap();
        for c in (0x80..0x11_0000u32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            assert_eq!(
                one.is_match(c.encode_utf8(&mut buf)).unwrap(),
                c == 'ſ',
                "{c:?}"
            );
        }
    }

    #[test]
    fn chars_around_rejects_what_is_not_utf8() {
        let b = "aé中😀".as_bytes();
        assert_eq!(chars_around(b, 1), Some(('a', 'é')));
        assert_eq!(chars_around(b, 3), Some(('é', '中')));
        assert_eq!(chars_around(b, 6), Some(('中', '😀')));
        assert_eq!(chars_around(b, 2), None);
        assert_eq!(chars_around(b, 0), None);
        assert_eq!(chars_around(b, b.len()), None);
        assert_eq!(chars_around(&b[..8], 6), None); // the char at p is cut off
        assert_eq!(chars_around(b"\xff\x80a", 2), None);
        assert_eq!(chars_around(b"a\x80a", 2), None);
        assert_eq!(chars_around(b"\xC3a", 1), None);
    }

    #[test]
    fn ascii_masks_match_the_byte_predicates() {
        // Each byte value at each position of a word of `a`s.
        let check = |mask: fn(u64) -> u64, is: fn(&u8) -> bool| {
            for byte in 0..=255u8 {
                for pos in 0..8 {
                    let mut bytes = [b'a'; 8];
                    bytes[pos] = byte;
                    let m = mask(u64::from_le_bytes(bytes));
                    let bit = 0x80u64 << (8 * pos);
                    assert_eq!(m & bit != 0, is(&byte), "{byte:#04x} at {pos}");
                    assert_eq!(m.count_ones(), 7 + is(&byte) as u32, "{byte:#04x} at {pos}");
                }
            }
        };
        check(ascii_letter_mask, u8::is_ascii_alphabetic);
        check(ascii_lower_mask, u8::is_ascii_lowercase);
    }
}
