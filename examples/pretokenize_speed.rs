//! Single-thread throughput of the hand-written GPT-2 pre-tokenizer against fancy-regex running
//! `GPT2_PATTERN`, on the same text in the same run (median of 5 passes each); also checks
//! that both produce the same pre-tokens.
//!
//!     cargo run --release --example pretokenize_speed -- ../shared/data/webtext.txt

use std::time::Instant;

use _core::pretokenize::{for_each_pretoken, GPT2_PATTERN};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: pretokenize_speed FILE")?;
    let text = std::fs::read_to_string(&path)?;
    let mb = text.len() as f64 / 1e6;
    let re = fancy_regex::Regex::new(GPT2_PATTERN)?;

    let mut ours = Vec::new();
    let mut n_ours = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        n_ours = 0;
        for_each_pretoken(&text, |p| n_ours += p.len() & 1 | 1);
        ours.push(t.elapsed().as_secs_f64());
    }
    let mut theirs = Vec::new();
    let mut n_theirs = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        n_theirs = 0;
        for m in re.find_iter(&text) {
            n_theirs += m?.as_str().len() & 1 | 1;
        }
        theirs.push(t.elapsed().as_secs_f64());
    }
    // Identity on this text, pre-token by pre-token.
    let mut a = Vec::new();
    for_each_pretoken(&text, |p| a.push(p));
    let b: Vec<&str> = re
        .find_iter(&text)
        .map(|m| m.map(|m| m.as_str()))
        .collect::<Result<_, _>>()?;
    assert!(a == b && n_ours == n_theirs, "pre-tokens differ");

    let (o, t) = (median(ours), median(theirs));
    println!("{path}: {mb:.1} MB, {} pre-tokens, 1 thread", a.len());
    println!("hand-written  {o:.3} s  {:.0} MB/s", mb / o);
    println!("fancy-regex   {t:.3} s  {:.0} MB/s", mb / t);
    println!("speed-up x{:.1}", t / o);
    Ok(())
}
