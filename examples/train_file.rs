//! Trains on files from the command line and prints the time of each phase; for profiling
//! the core without Python:
//!
//!     cargo run --profile profiling --example train_file -- FILE VOCAB_SIZE THREADS [SPECIAL]
//!     perf record -g target/profiling/examples/train_file FILE 10000 1 '<|endoftext|>'

use std::time::Instant;

use _core::cancel::CancelFlag;
use _core::train::{count_files, train_from_counts, TrainOptions, DEFAULT_CHUNK_SIZE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: train_file FILE VOCAB_SIZE THREADS [SPECIAL]".into());
    }
    let specials: Vec<String> = args.get(4).cloned().into_iter().collect();
    let mut opts = TrainOptions::new(args[2].parse()?, specials);
    opts.num_threads = Some(args[3].parse()?);
    let t0 = Instant::now();
    let (counts, bytes) = count_files(
        &[&args[1]],
        &opts.special_tokens,
        DEFAULT_CHUNK_SIZE,
        opts.workers()?,
        &mut |_| true,
        &CancelFlag::default(),
    )?;
    let t1 = Instant::now();
    let distinct = counts.len();
    let r = train_from_counts(counts, bytes, &opts, &mut |_| true, &CancelFlag::default())?;
    let t2 = Instant::now();
    println!(
        "bytes {bytes} distinct {distinct} merges {} count {:.3}s ({:.1} MB/s) merge {:.3}s",
        r.merges.len(),
        (t1 - t0).as_secs_f64(),
        bytes as f64 / 1e6 / (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    Ok(())
}
