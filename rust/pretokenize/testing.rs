//! Test support shared by the pre-tokenizer tests: a small deterministic generator, the
//! alphabets and random texts that reach every branch of the patterns.

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
