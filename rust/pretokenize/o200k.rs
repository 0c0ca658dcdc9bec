//! The o200k pre-tokenizer (GPT-4o's `o200k_base`): a hand-written matcher for
//! `O200K_PATTERN`, tiktoken's pattern string for that encoding, character for character.
//!
//! The pattern splits words by case: a word is an optional leading character, upper-case
//! letters, then lower-case ones (`HTMLParser`, ` Hello`, `don't` are each one pre-token), where
//! `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` is "upper" and `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` is "lower", so
//! caseless letters (CJK, Thai, modifiers) and combining marks are both. Contractions are
//! suffixes of the word; digits group by three; punctuation runs take trailing `\r`, `\n` and `/`.
//!
//! Why by hand: with a class per code point (`unicode.rs`, built from the tables fancy-regex
//! compiles these classes from) the backtracking of the first alternative reduces to one
//! forward scan (see `upper_then_lower`), so the whole pattern runs as a small state machine with
//! ASCII fast paths, several times faster than fancy-regex (`examples/pattern_speed.rs`).
//!
//! How it is proven: the tests compare every code point's class with fancy-regex and the matcher
//! with fancy-regex running `O200K_PATTERN` on many thousands of random texts drawn to reach every
//! branch (and random code points); `is_safe_cut` is tested by cutting random texts followed by
//! random continuations.
//!
//! ```
//! # use _core::pretokenize::o200k;
//! let mut pieces = Vec::new();
//! o200k::for_each_pretoken("HTMLParser's 1234", |p| pieces.push(p));
//! assert_eq!(pieces, ["HTMLParser's", " ", "123", "4"]);
//! ```

use super::unicode::{
    ascii_lower_mask, char_start_before, chars_around, class_at, class_of, contraction_end,
    digits_end, last_line_break, table, ClassTable, CASELESS, COARSE, HIGH_BITS, LETTER, LOWER,
    MARK, NUMBER, OTHER, SPACE, UPPER,
};

/// tiktoken's `o200k_base` pattern (`tiktoken_ext/openai_public.py`, its alternatives joined
/// with `|`), exactly.
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+",
);

/// End of the run of "lower" characters, `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`, starting at `i`.
#[inline(always)]
fn lower_run_end(t: &ClassTable, b: &[u8], mut i: usize) -> usize {
    let n = b.len();
    loop {
        while i + 8 <= n {
            let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
            let other = !ascii_lower_mask(w) & HIGH_BITS;
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
            if !c.is_ascii_lowercase() {
                return i;
            }
            i += 1;
        } else {
            let (cls, len) = class_at(t, b, i);
            if !matches!(cls, LOWER | CASELESS | MARK) {
                return i;
            }
            i += len;
        }
    }
}

/// Alternative 1 after its optional first character, `U*W+C?` from `s`, where U is "upper",
/// W "lower" and C the contraction: `Ok(end)` of the match, or `Err(j)` when it fails, `j`
/// being the end of the run of U from `s` (what alternative 2 needs).
///
/// Backtracking, step by step: `U*` first takes the whole run `s..j`. If the character at `j`
/// is in W (then it is Ll, as it is not in U), `W+` takes the W run from there and `C?` cannot
/// fail: done. Otherwise `U*` gives back one character at a time and `W+` is tried at each: it
/// first succeeds at the last character of the run that is also in W (Lm, Lo or M), and takes
/// just that one (what follows it in the run is only in U, or is `j`, not in W). So the match
/// ends after the last such character (plus a contraction), leaving the upper-case letters after
/// it to the next pre-token (`中A` is `中`, `A`); with no such character it fails.
#[inline(always)]
fn upper_then_lower(t: &ClassTable, b: &[u8], s: usize) -> Result<usize, usize> {
    let n = b.len();
    let mut j = s;
    // End of the last character in both U and W (0: none; any such end is > s >= 0).
    let mut both_end = 0;
    while j < n {
        let c = b[j];
        if c < 0x80 {
            if !c.is_ascii_uppercase() {
                break;
            }
            j += 1;
            continue;
        }
        let (cls, len) = class_at(t, b, j);
        match cls {
            UPPER => j += len,
            CASELESS | MARK => {
                j += len;
                both_end = j;
            }
            _ => break,
        }
    }
    let e = lower_run_end(t, b, j);
    if e > j {
        return Ok(contraction_end(b, e));
    }
    if both_end > 0 {
        Ok(contraction_end(b, both_end))
    } else {
        Err(j)
    }
}

/// End of the run of `[^\s\p{L}\p{N}]` (marks included) starting at `i`.
#[inline(always)]
fn other_run_end(t: &ClassTable, b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        let (cls, len) = class_at(t, b, i);
        if cls & COARSE != OTHER {
            return i;
        }
        i += len;
    }
    i
}

/// End of the `[\r\n/]*` run starting at `i`.
#[inline(always)]
fn tail_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b'\r' | b'\n' | b'/') {
        i += 1;
    }
    i
}

/// End of the whitespace run starting at `i`.
#[inline(always)]
fn space_run_end(t: &ClassTable, b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        let (cls, len) = class_at(t, b, i);
        if cls != SPACE {
            return i;
        }
        i += len;
    }
    i
}

/// The end (exclusive byte offset) of the o200k pre-token that starts at byte `i` of `b`.
///
/// `b` must be valid UTF-8 and `i < b.len()` a char boundary. The branches follow the
/// alternatives of the pattern in order, as leftmost-first matching tries them (the optional
/// first character of 1 and 2 is tried present, then absent).
#[inline]
pub fn pretoken_end(b: &[u8], i: usize) -> usize {
    pretoken_end_with(table(), b, i)
}

#[inline(always)]
fn pretoken_end_with(t: &ClassTable, b: &[u8], i: usize) -> usize {
    let n = b.len();
    let c0 = b[i];
    let (cls, len) = class_at(t, b, i);
    let s = i + len;
    match cls & COARSE {
        // 1. or 2., without the optional first character (a letter is not in
        // `[^\r\n\p{L}\p{N}]`). 1 fails only when the U run from `i` holds upper-case letters
        // alone and no Ll follows; then 2 matches that run (`W*` matches nothing: no Ll).
        LETTER => {
            return match upper_then_lower(t, b, i) {
                Ok(e) => e,
                Err(j) => contraction_end(b, j),
            }
        }
        // 3. \p{N}{1,3}
        NUMBER => return digits_end(t, b, s),
        _ => {}
    }
    if c0 != b'\r' && c0 != b'\n' {
        // `c0` is in `[^\r\n\p{L}\p{N}]`: 1. with it as the first character.
        match upper_then_lower(t, b, s) {
            Ok(e) => return e,
            Err(j) => {
                // 1. without it: only a mark is in U or W. `U*` then gives back everything
                // after the mark (none of it is in W), and `W+` takes the mark alone.
                if cls == MARK {
                    return contraction_end(b, s);
                }
                // 2. with it: `U+` the run from `s`, `W*` nothing (no Ll at `j`), `C?`.
                if j > s {
                    return contraction_end(b, j);
                }
            }
        }
    }
    // 4. ` ?[^\s\p{L}\p{N}]+[\r\n/]*` (greedy, and nothing follows it to make it give back).
    if cls & COARSE == OTHER {
        return tail_end(b, other_run_end(t, b, s));
    }
    if c0 == b' ' && s < n {
        let (next, next_len) = class_at(t, b, s);
        if next & COARSE == OTHER {
            return tail_end(b, other_run_end(t, b, s + next_len));
        }
    }
    // `c0` is whitespace; `k` ends its run.
    let k = space_run_end(t, b, s);
    // 5. \s*[\r\n]+: the greedy `\s*` backs off to the last line break of the run, and `[\r\n]+`
    // takes it (the character after it is no line break).
    if let Some(q) = last_line_break(b, i, k) {
        return q + 1;
    }
    // 6. \s+(?!\S): the whole run when it ends the text, else all but its last character (which
    // leads the next pre-token); 7. \s+ when the run is one character followed by non-space.
    if k == n {
        return n;
    }
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

// Classes for the safe-cut rule.
const CUT_UP: usize = 0; // Lu, Lt: in U only
const CUT_LO: usize = 1; // Ll: in W only
const CUT_CL: usize = 2; // Lm, Lo: letters in U and W
const CUT_MK: usize = 3; // M: in U and W, and in `[^\s\p{L}\p{N}]`
const CUT_NU: usize = 4; // \p{N}
const CUT_OT: usize = 5; // other, but `'` and `/`
const CUT_AP: usize = 6; // `'`
const CUT_SL: usize = 7; // `/`
const CUT_SP: usize = 8; // whitespace, but `\r` and `\n`
const CUT_NL: usize = 9; // `\r`, `\n`

fn cut_class(c: char) -> usize {
    match c {
        '\'' => return CUT_AP,
        '/' => return CUT_SL,
        '\r' | '\n' => return CUT_NL,
        _ => {}
    }
    match class_of(c) {
        UPPER => CUT_UP,
        LOWER => CUT_LO,
        CASELESS => CUT_CL,
        MARK => CUT_MK,
        NUMBER => CUT_NU,
        SPACE => CUT_SP,
        _ => CUT_OT,
    }
}

/// `SAFE[x][y]`: a cut between a character of cut class `x` and one of class `y` is safe (one
/// exception for (Ll, Lu) in `is_safe_cut`).
const SAFE: [[bool; 10]; 10] = {
    const F: bool = false;
    const T: bool = true;
    [
        // y: UP LO CL MK NU OT AP SL SP NL
        [F, F, F, F, T, T, F, T, T, T], // x = Lu, Lt
        [T, F, F, F, T, T, F, T, T, T], // x = Ll
        [F, F, F, F, T, T, F, T, T, T], // x = Lm, Lo
        [F, F, F, F, T, F, F, F, T, F], // x = mark
        [T, T, T, T, F, T, T, T, T, T], // x = number
        [F, F, F, F, T, F, F, F, T, F], // x = other
        [F, F, F, F, T, F, F, F, T, F], // x = '
        [F, F, F, F, T, F, F, F, T, F], // x = /
        [F, F, F, F, F, F, F, F, F, F], // x = whitespace
        [T, T, T, T, T, T, T, F, F, F], // x = \r \n
    ]
};

/// Whether `p` is a safe cut for the o200k pattern: for every text that starts with `bytes`
/// (whatever follows), the pre-tokens of `text[..p]` followed by those of `text[p..]` are exactly
/// the pre-tokens of the text. Special tokens are not considered. `false` when `p` is 0, not
/// inside `bytes`, or not between two complete UTF-8 characters of `bytes`.
///
/// With X the character before `p` and Y the one at `p`, and U = `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`,
/// W = `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`, the cut is safe when (see `SAFE`):
/// - X is a letter and Y is a number, whitespace, or another character that is neither `'` nor
///   a mark; or X is Ll and Y is Lu/Lt (a camel-case boundary), except `l`, `r`, `v` before `L`,
///   `E` (`'rE`, `'lL`);
/// - X is a mark, other, `'` or `/` and Y is a number or whitespace;
/// - X is a number and Y is not;
/// - X is `\r` or `\n` and Y is neither whitespace nor `/`.
///
/// That leaves a cut at almost every word end of text with spaces; in text without them (CJK),
/// after every letter or digit run that punctuation or a digit/letter follows, before every
/// digit that follows punctuation, and after every line break. There is none inside a run of
/// one class (for digits, which group by three, a cut there would move the groups), so memory
/// held for a cut grows with the longest such run.
///
/// Proof. As for cl100k: matching reads forward only (no lookbehind), the pattern matches at
/// every position (letter: 1 or 2, digit 3, mark 1, other 4, whitespace 7), so pre-tokens tile
/// the text and what happens from `p` on depends on `text[p..]` alone. It remains to show (a)
/// every attempt at `s < p` turns out the same in `text` and in `text[..p]`, and (b) no
/// pre-token of `text` holds both X and Y. An attempt at `s` reads `p` only after consuming
/// `s..p`, X included; its next step tests Y against an item that may follow X, or, in the
/// whitespace alternatives only, `(?!\S)`. The pairs (X, Y) in which some alternative
/// consumes Y right after X (whatever path backtracking takes) are:
/// - 1, 2 (`P? U* W+ C?`, `P? U+ W* C?`, P = `[^\r\n\p{L}\p{N}]`, C the contractions):
///   (P, U or W), (U, U or W), (W, W), (U or W, `'`), and inside C (`'`, s t r v m l d and
///   their cases and LONG S), (r or v, e), (l, l) in any case;
/// - 3: (number, number);
/// - 4 (` ?[^\s\p{L}\p{N}]+[\r\n/]*`): (space, other or mark), (other or mark, other or mark),
///   (other or mark, `\r` `\n` `/`), (`\r` `\n` `/`, `\r` `\n` `/`);
/// - 5-7: (whitespace, whitespace).
///
/// Case X not whitespace: no lookahead is reached at `p`, and for the safe pairs above no
/// alternative consumes Y after X (Ll is in W only, and after W come only W and C; the
/// exception excludes the C pairs), so every test at `p` fails as at the end of `text[..p]`:
/// the same paths in both texts (a), and no match through X into Y (b).
///
/// Case X a line break, Y neither whitespace nor `/`. After a line break only alternative 4
/// (its `[\r\n/]*` tail) and 5-7 continue, and Y fits neither, so (b) holds. For (a): a tail of
/// 4 stops at Y as at the end. A whitespace attempt at `s` has consumed `s..p`, whitespace
/// ending in a line break: in both texts 5 (`\s*[\r\n]+`) matches up to the last line break,
/// X, so `s..p`, before 6 and its lookahead are tried. The attempts of 1, 2 and 4 at `s`
/// consume at most one whitespace character before needing a non-space, and reach `p` only if
/// X were that character, which `[^\r\n...]` and ` ` exclude.
///
/// Unsafe pairs, each with a counterexample: X whitespace (`"a  "|"b"`); (other, letter)
/// (`"!"|"a"` is `!a`); (letter, `'`) (`"it"|"'s"` is `it's`); (upper, lower) (`"H"|"ello"`);
/// (Lo, Lu) (`"中"|"Ab"` is `中Ab`); (mark, other) (`"!!\u{301}"|"!"` is one run of 4);
/// (number, number) (`1234`); (`\n`, `/`) (`"!\n"|"/"` is `!\n/`).
pub fn is_safe_cut(bytes: &[u8], p: usize) -> bool {
    let Some((x, y)) = chars_around(bytes, p) else {
        return false;
    };
    SAFE[cut_class(x)][cut_class(y)] && !(matches!(x, 'l' | 'r' | 'v') && matches!(y, 'L' | 'E'))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        self, assert_cut_classes, assert_matches_regex, assert_matches_regex_on,
        assert_safe_cuts_keep_pretokens, dense_text, random_text, sampled_chars, word_salad,
        CutTable, O200K,
    };
    use super::*;

    fn pretokens(text: &str) -> Vec<&str> {
        testing::pretokens(O200K, text)
    }

    #[test]
    fn examples() {
        assert_eq!(
            pretokens("Hello, world! It's 2024."),
            vec!["Hello", ",", " world", "!", " It's", " ", "202", "4", "."]
        );
        assert_eq!(
            pretokens("HTMLParser's 1234"),
            vec!["HTMLParser's", " ", "123", "4"]
        );
        assert_eq!(pretokens(""), Vec::<&str>::new());
        assert_eq!(
            pretokens("HTMLParser helloWorld DON'T"),
            vec!["HTMLParser", " hello", "World", " DON'T"]
        );
        assert_eq!(pretokens("中A"), vec!["中", "A"]);
        assert_eq!(pretokens("中Ab"), vec!["中Ab"]);
        assert_eq!(pretokens("A中"), vec!["A中"]);
        assert_eq!(pretokens("\u{301}'s!"), vec!["\u{301}'s", "!"]);
        assert_eq!(pretokens("a/b\n/"), vec!["a", "/b", "\n", "/"]);
        assert_eq!(pretokens("x!\n/\n  y"), vec!["x", "!\n/\n", " ", " y"]);
        assert_eq!(pretokens("x\n  "), vec!["x", "\n", "  "]);
        assert_eq!(pretokens("1234567"), vec!["123", "456", "7"]);
        assert_eq!(pretokens("中文，中文。\n"), vec!["中文", "，中文", "。\n"]);
    }

    #[test]
    fn pattern_is_tiktokens() {
        assert_eq!(O200K_PATTERN.len(), 274);
        assert_eq!(O200K_PATTERN.matches('|').count(), 6 + 2 * 6);
    }

    #[test]
    fn identical_to_fancy_regex_on_random_text() {
        let text = |rng: &mut _| random_text(rng, 24);
        assert_matches_regex(O200K_PATTERN, O200K, text, 0x5151_7A7A_0101_2323, 30_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_dense_text() {
        let text = |rng: &mut _| dense_text(rng, 12);
        assert_matches_regex(O200K_PATTERN, O200K, text, 0xD15E_A5E5, 30_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_word_salad() {
        const PARTS: &[&str] = &[
            "the", " Cat", "HTML", "Parser", "'s", "'RE", "'", " ", "  ", "\n", " \n", "\r\n",
            "12", "12345", " 3.5", "?!", "/", "\u{3000}", "é", "É", "中文", "ǅ", "\u{301}", "。",
            "\t", "x", "  \n  ", "😀", "ʰ",
        ];
        let text = |rng: &mut _| word_salad(rng, PARTS, 0..=11);
        assert_matches_regex(O200K_PATTERN, O200K, text, 77, 10_000);
    }

    #[test]
    fn identical_to_fancy_regex_on_every_character_in_context() {
        let texts = sampled_chars().map(|c| format!("a{c}b A{c}B {c}{c}1\n{c}'s {c}"));
        assert_matches_regex_on(O200K_PATTERN, O200K, texts);
    }

    #[test]
    fn safe_cuts_never_change_the_pretokens() {
        let rule = CutTable {
            matcher: O200K,
            is_safe_cut,
            cut_class,
            safe: &SAFE,
            // (Ll, Lu) is safe but for the contraction letters `is_safe_cut` excludes.
            exceptions: &[(CUT_LO, CUT_UP)],
        };
        assert_safe_cuts_keep_pretokens(&rule, 0xC0FF_EE00_1234_5678, 40_000);
    }

    #[test]
    fn safe_cut_examples() {
        let cut = |s: &str, p: usize| is_safe_cut(s.as_bytes(), p);
        assert!(cut("ab cd", 2) && cut("ab\ncd", 2) && cut("ab\ncd", 3));
        assert!(cut("ab12", 2) && cut("12ab", 2) && cut("中文，", 6));
        assert!(cut("helloWorld", 5) && cut("weRE", 2));
        assert!(!cut("we'rE", 4) && !cut("we'lL", 4) && !cut("it's", 2));
        assert!(!cut("Hello", 1) && !cut("中A", 3) && !cut("1234", 2) && !cut("!a", 1));
        assert!(!cut("\n/", 1) && !cut("!\n", 1) && !cut("a  b", 2) && !cut("a\u{301}", 1));
        assert!(!cut("\u{301}!", 2) && cut("\u{301} ", 2));
    }

    /// The cut classes agree with the regex classes the pattern uses, on the whole alphabet.
    #[test]
    fn cut_classes_follow_the_regex_classes() {
        assert_cut_classes(
            cut_class,
            &[
                (
                    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]",
                    &[CUT_UP, CUT_CL, CUT_MK],
                ),
                (r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", &[CUT_LO, CUT_CL, CUT_MK]),
                (
                    r"[^\r\n\p{L}\p{N}]",
                    &[CUT_MK, CUT_OT, CUT_AP, CUT_SL, CUT_SP],
                ),
                (r"[^\s\p{L}\p{N}]", &[CUT_MK, CUT_OT, CUT_AP, CUT_SL]),
                (r"\p{N}", &[CUT_NU]),
            ],
        );
    }
}
