//! Trains on files from the command line and prints the time of each phase; for profiling
//! the core without Python:
//!
//!     cargo run --profile profiling --example train_file -- FILE VOCAB_SIZE THREADS [SPECIAL [PATTERN]]
//!     perf record -g target/profiling/examples/train_file FILE 10000 1 '<|endoftext|>' cl100k

use std::time::Instant;

use _core::cancel::CancelFlag;
use _core::pretokenize::Pattern;
use _core::train::{count_files, train_from_counts, TrainOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: train_file FILE VOCAB_SIZE THREADS [SPECIAL [PATTERN]]".into());
    }
    let specials: Vec<String> = args.get(4).cloned().into_iter().collect();
    let mut opts = TrainOptions::new(args[2].parse()?, specials);
    opts.count.num_threads = Some(args[3].parse()?);
    opts.count.pattern = Pattern::new(args.get(5).map_or("gpt2", String::as_str))?;
    let t0 = Instant::now();
    let (counts, bytes) = count_files(
        &[&args[1]],
        &opts.count,
        &mut |_| true,
        &CancelFlag::default(),
    )?;
    let t1 = Instant::now();
    let distinct = counts.len();
    let r = train_from_counts(counts, bytes, &opts, &mut |_| true, &CancelFlag::default())?;
    let t2 = Instant::now();
    println!(
        "pattern {} bytes {bytes} distinct {distinct} merges {} count {:.3}s ({:.1} MB/s) merge {:.3}s",
        opts.count.pattern.name(),
        r.merges.len(),
        (t1 - t0).as_secs_f64(),
        bytes as f64 / 1e6 / (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    Ok(())
}
