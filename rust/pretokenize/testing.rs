//! Test support shared by the pre-tokenizer tests: a small deterministic generator, the
//! alphabets and random texts that reach every branch of the patterns, the named matchers, and
//! the checks every hand-written matcher gets: against fancy-regex running its pattern, and of
//! its safe-cut rule.

use std::ops::RangeInclusive;

use fancy_regex::Regex;

use super::unicode::chars_around;
use super::{
    cl100k, gpt2, o200k, Pattern, SafeCutRule, Segment, SpecialTokens, CL100K_PATTERN,
    GPT2_PATTERN, O200K_PATTERN,
};

/// xorshift64*, so failures reproduce from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// ASCII of each class and the contraction letters in both cases (and LONG S), `/`, every
/// Unicode whitespace and near-whitespace, letters of each case class (Lu, Ll, Lt, Lm, Lo),
/// combining marks (Mn, Mc, Me), numbers of several scripts and kinds, CJK, emoji.
pub const ALPHABET: &[char] = &[
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
    'D',
    'M',
    'T',
    'L',
    'V',
    'R',
    'E',
    'Z',
    'ſ',
    'K',
    '0',
    '7',
    '9',
    '\'',
    '\'',
    '\'',
    '"',
    '.',
    ',',
    '!',
    '-',
    '_',
    '$',
    '/',
    '/',
    ' ',
    ' ',
    ' ',
    ' ',
    '\n',
    '\n',
    '\r',
    '\t',
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
    'É',
    'ß',
    'Ω',
    'ω',
    'Ж',
    'ж',
    'ǅ',
    'ᾈ',
    'ʰ',
    'ª',
    'µ',
    'ƻ',
    '\u{301}',
    '\u{94D}',
    '\u{903}',
    '\u{20DD}',
    'क',
    'ก',
    '\u{E31}',
    '²',
    '½',
    '٣',
    '३',
    'Ⅻ',
    '〇',
    '𝟘',
    '中',
    '文',
    '。',
    '、',
    'の',
    'カ',
    '한',
    '😀',
    '👍',
    '\u{1F3FD}',
    '\u{10FFFF}',
    '€',
];

/// One character or so of each class the patterns tell apart, for dense random text in
/// which every pair of classes (and the contraction letters in both cases) meets often.
pub const DENSE: &[char] = &[
    'a', 'r', 'l', 'v', 's', 'e', 'E', 'L', 'S', 'A', 'ſ', '\'', '\'', '1', '٣', '!', '/', ' ',
    ' ', '\n', '\r', '\t', '\u{3000}', '\u{85}', '中', 'ʰ', 'ǅ', '\u{301}',
];

/// Random text over `DENSE`.
pub fn dense_text(rng: &mut Rng, max_len: usize) -> String {
    (0..rng.below(max_len + 1))
        .map(|_| DENSE[rng.below(DENSE.len())])
        .collect()
}

/// Random text: mostly the alphabet, sometimes any code point (many scripts and classes),
/// sometimes a digit or letter run long enough to cross the 3-digit groups and SWAR blocks.
pub fn random_text(rng: &mut Rng, max_len: usize) -> String {
    let len = rng.below(max_len + 1);
    let mut s = String::new();
    while s.chars().count() < len {
        match rng.below(10) {
            0 => s.push(char::from_u32(rng.below(0x3100) as u32).unwrap_or(' ')),
            1 => s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x')),
            2 if rng.below(4) == 0 => {
                let digits = ['1', '2', '٣', '³', '½'];
                for _ in 0..rng.below(9) {
                    s.push(digits[rng.below(digits.len())]);
                }
            }
            3 if rng.below(4) == 0 => {
                let letters = ['a', 'B', 'é', 'Ж', '中', '\u{301}', 'ǅ'];
                for _ in 0..rng.below(20) {
                    s.push(letters[rng.below(letters.len())]);
                }
            }
            _ => s.push(ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    s
}

/// Random text of `lens` (a range of counts) pieces drawn from `parts`.
pub fn word_salad(rng: &mut Rng, parts: &[&str], lens: RangeInclusive<usize>) -> String {
    let n = lens.start() + rng.below(lens.end() - lens.start() + 1);
    (0..n).map(|_| parts[rng.below(parts.len())]).collect()
}

/// All code points below U+3100 (ASCII, Latin, the combining marks and most scripts) and
/// every 11th above, for tests that put each one in context.
pub fn sampled_chars() -> impl Iterator<Item = char> {
    (0..0x11_0000u32)
        .filter(|cp| *cp < 0x3100 || cp % 11 == 0)
        .filter_map(char::from_u32)
}

/// A hand-written matcher under test: calls the callback on each pre-token of the text, in order
/// (a pattern file's `for_each_pretoken`).
pub type Matcher = for<'a> fn(&'a str, &mut dyn FnMut(&'a str));

pub const GPT2: Matcher = |text, f| gpt2::for_each_pretoken(text, f);
pub const CL100K: Matcher = |text, f| cl100k::for_each_pretoken(text, f);
pub const O200K: Matcher = |text, f| o200k::for_each_pretoken(text, f);

/// The named patterns: name, regex and matcher.
pub const NAMED: [(&str, &str, Matcher); 3] = [
    ("gpt2", GPT2_PATTERN, GPT2),
    ("cl100k", CL100K_PATTERN, CL100K),
    ("o200k", O200K_PATTERN, O200K),
];

/// The pre-tokens of `text` by `matcher`.
pub fn pretokens(matcher: Matcher, text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    matcher(text, &mut |p| out.push(p));
    out
}

/// The pre-tokens of `text[..p]` followed by those of `text[p..]`: the whole's, if `p` is a
/// safe cut.
pub fn split_pretokens(matcher: Matcher, text: &str, p: usize) -> Vec<&str> {
    let mut out = pretokens(matcher, &text[..p]);
    out.extend(pretokens(matcher, &text[p..]));
    out
}

/// The matches of `re` in `text`: the pre-tokens by the regex itself.
pub fn regex_pretokens<'a>(re: &Regex, text: &'a str) -> Vec<&'a str> {
    re.find_iter(text)
        .map(|m| m.expect("no backtrack limit").as_str())
        .collect()
}

/// `matcher` splits each of `texts` as fancy-regex running `pattern` does.
pub fn assert_matches_regex_on(
    pattern: &str,
    matcher: Matcher,
    texts: impl Iterator<Item = String>,
) {
    let re = Regex::new(pattern).unwrap();
    for text in texts {
        assert_eq!(
            pretokens(matcher, &text),
            regex_pretokens(&re, &text),
            "{text:?}"
        );
    }
}

/// `matcher` splits `rounds` texts drawn by `generator` from `Rng(seed)` as fancy-regex running
/// `pattern` does.
pub fn assert_matches_regex(
    pattern: &str,
    matcher: Matcher,
    mut generator: impl FnMut(&mut Rng) -> String,
    seed: u64,
    rounds: usize,
) {
    let mut rng = Rng(seed);
    assert_matches_regex_on(pattern, matcher, (0..rounds).map(|_| generator(&mut rng)));
}

/// A safe-cut rule built from a table over classes of characters (cl100k's, o200k's).
pub struct CutTable<const N: usize> {
    pub matcher: Matcher,
    pub is_safe_cut: SafeCutRule,
    /// The class of a character, an index into `safe`.
    pub cut_class: fn(char) -> usize,
    /// `safe[x][y]`: the rule may cut between a character of class `x` and one of class `y`.
    pub safe: &'static [[bool; N]; N],
    /// Pairs of classes the table calls safe whose cut the rule still refuses for some characters
    /// (so a counterexample for them is expected).
    pub exceptions: &'static [(usize, usize)],
}

/// A cut the rule calls safe never changes the pre-tokens, whatever follows the bytes it saw;
/// the rule finds cuts often (more than one a text); and each pair of classes it calls unsafe
/// has a counterexample (so the table is as permissive as pairs of classes allow, and this test
/// can tell). Texts alternate between `random_text` and `dense_text`, each followed by three
/// random continuations.
pub fn assert_safe_cuts_keep_pretokens<const N: usize>(
    rule: &CutTable<N>,
    seed: u64,
    rounds: usize,
) {
    let mut rng = Rng(seed);
    let mut cuts = 0;
    let mut broken = [[false; N]; N];
    for round in 0..rounds {
        let seen = if round % 2 == 0 {
            random_text(&mut rng, 16)
        } else {
            dense_text(&mut rng, 10)
        };
        let seen = seen.as_bytes();
        for p in 0..=seen.len() {
            let Some((x, y)) = chars_around(seen, p) else {
                assert!(!(rule.is_safe_cut)(seen, p));
                continue;
            };
            let safe = (rule.is_safe_cut)(seen, p);
            cuts += safe as usize;
            for _ in 0..3 {
                let text = format!(
                    "{}{}",
                    std::str::from_utf8(seen).unwrap(),
                    dense_text(&mut rng, 4) + &random_text(&mut rng, 4)
                );
                let whole = pretokens(rule.matcher, &text);
                let halves = split_pretokens(rule.matcher, &text, p);
                if safe {
                    assert_eq!(halves, whole, "cut at {p} of {text:?}");
                } else if halves != whole {
                    broken[(rule.cut_class)(x)][(rule.cut_class)(y)] = true;
                }
            }
        }
    }
    assert!(cuts > rounds, "only {cuts} safe cuts found");
    for (x, row) in broken.iter().enumerate() {
        for (y, &found) in row.iter().enumerate() {
            let unsafe_pair = !rule.safe[x][y] || rule.exceptions.contains(&(x, y));
            assert_eq!(found, unsafe_pair, "classes {x}, {y}");
        }
    }
}

/// On the whole alphabet, `cut_class` agrees with the regex classes a pattern uses: for each
/// `(regex, classes)`, a character matches the regex (a character class) iff its cut class is
/// one of `classes`.
pub fn assert_cut_classes(cut_class: fn(char) -> usize, regex_classes: &[(&str, &[usize])]) {
    let regexes: Vec<(Regex, &[usize])> = regex_classes
        .iter()
        .map(|&(re, classes)| (Regex::new(&format!("^{re}$")).unwrap(), classes))
        .collect();
    for &c in ALPHABET {
        let s = c.to_string();
        let k = cut_class(c);
        for (re, classes) in &regexes {
            assert_eq!(
                classes.contains(&k),
                re.is_match(&s).unwrap(),
                "{c:?} in {re}"
            );
        }
    }
}

/// Special tokens split out, ordinary text pre-tokenized: what counting and encoding see.
pub fn pieces(text: &str, sp: &SpecialTokens, pattern: &Pattern) -> Vec<String> {
    let mut out = Vec::new();
    sp.for_each_segment(text, |seg| match seg {
        Segment::Text(t) => pattern
            .for_each_pretoken(t, |p| out.push(p.to_string()))
            .unwrap(),
        Segment::Special(i) => out.push(format!("<special {i}>")),
    });
    out
}
