//! Single-thread throughput of the hand-written cl100k and o200k pre-tokenizers (and GPT-2's)
//! against fancy-regex running the same pattern string, on the same text in the same run:
//! passes interleaved (ours, fancy-regex, ours, ...), median of 5 each. First checks that both
//! give the same pre-tokens on the whole text.
//!
//! Texts: the file given (English web text), and a multilingual sample: the file given second
//! (German) plus generated Russian, Chinese, Japanese, Hindi, Greek and Arabic text with digits
//! and emoji, about 4 MB.
//!
//!     cargo run --release --example pattern_speed -- ../shared/data/webtext.txt ../shared/fixtures/german.txt

use std::time::Instant;

use _core::pretokenize::{cl100k, o200k, CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

/// Sentences in several scripts; the sample draws from them at random (xorshift, fixed seed).
const SENTENCES: &[&str] = &[
    "Москва — столица России, крупнейший по численности населения город страны. ",
    "В 2021 году население составило 12 655 050 человек; площадь — 2561,5 км². ",
    "Он сказал: «Это невозможно!» — и ушёл домой.\n",
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。",
    "截至2020年，北京市常住人口为2189.3万人。\n",
    "東京は日本の首都であり、人口は約1400万人です。カタカナとひらがなも使います。",
    "नई दिल्ली भारत की राजधानी है। यहाँ की जनसंख्या लगभग 2 करोड़ है।\n",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας, με πληθυσμό 3.153.355 κατοίκους. ",
    "القاهرة هي عاصمة مصر وأكبر مدنها، ويبلغ عدد سكانها نحو 10 ملايين نسمة.\n",
    "Emoji 😀👍🏽 and mixed-Case camelCaseWords, HTTPServer's 'quoted' IDs: A1B2C3.\n",
    "   indented line\twith\ttabs\r\n",
];

fn multilingual_sample(german: &str, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 1024);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    while out.len() < bytes {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        match r % 13 {
            0 => out.push_str(german),
            k => out.push_str(SENTENCES[(k as usize - 1) % SENTENCES.len()]),
        }
    }
    out
}

type Matcher = fn(&str, &mut dyn FnMut(&str));

fn bench(
    name: &str,
    text: &str,
    pattern: &str,
    ours: Matcher,
) -> Result<(), Box<dyn std::error::Error>> {
    let mb = text.len() as f64 / 1e6;
    let re = fancy_regex::Regex::new(pattern)?;
    let mut a = Vec::new();
    ours(text, &mut |p| {
        a.push(p.as_ptr() as usize - text.as_ptr() as usize)
    });
    let mut b = Vec::new();
    for m in re.find_iter(text) {
        b.push(m?.start());
    }
    assert!(a == b, "{name}: pre-tokens differ from fancy-regex");

    let (mut t_ours, mut t_theirs) = (Vec::new(), Vec::new());
    let mut checksum = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        ours(text, &mut |p| checksum = checksum.wrapping_add(p.len()));
        t_ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for m in re.find_iter(text) {
            checksum = checksum.wrapping_add(m?.as_str().len());
        }
        t_theirs.push(t.elapsed().as_secs_f64());
    }
    assert_eq!(checksum, 10 * text.len());
    let (o, t) = (median(t_ours), median(t_theirs));
    println!(
        "{name:<8} {:>9} pre-tokens  hand-written {:>6.0} MB/s  fancy-regex {:>5.1} MB/s  x{:.1}",
        a.len(),
        mb / o,
        mb / t,
        t / o
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pattern_speed ENGLISH.txt GERMAN.txt";
    let english_path = args.next().ok_or(usage)?;
    let german_path = args.next().ok_or(usage)?;
    let english = std::fs::read_to_string(&english_path)?;
    let multilingual = multilingual_sample(&std::fs::read_to_string(&german_path)?, 4_000_000);
    let matchers: [(&str, &str, Matcher); 3] = [
        ("cl100k", CL100K_PATTERN, |t, f| {
            cl100k::for_each_pretoken(t, f)
        }),
        ("o200k", O200K_PATTERN, |t, f| {
            o200k::for_each_pretoken(t, f)
        }),
        ("gpt2", GPT2_PATTERN, |t, f| {
            _core::pretokenize::for_each_pretoken(t, f)
        }),
    ];
    for (label, text) in [
        (english_path.as_str(), &english),
        ("multilingual sample", &multilingual),
    ] {
        println!(
            "{label}: {:.1} MB, 1 thread, median of 5 interleaved passes",
            text.len() as f64 / 1e6
        );
        for (name, pattern, ours) in matchers {
            bench(name, text, pattern, ours)?;
        }
    }
    Ok(())
}
