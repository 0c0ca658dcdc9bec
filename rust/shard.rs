//! Byte-range shards of a file: which bytes a shard owns, so that counting or encoding the
//! shards one by one, anywhere, gives exactly what the whole file gives.
//!
//! A caller splits a file of `len` bytes at any boundaries `0 = b0 <= b1 <= ... <= bk = len`
//! and gives shard `i` the range `b_i..b_(i+1)`. The shard owns `cut(b_i)..cut(b_(i+1))`, where
//!
//! ```text
//! cut(b) = 0                                             if b = 0
//!        = len                                           if b >= len
//!        = the first p >= b that is a safe cut of the     otherwise (len if there is none)
//!          whole file (`Cuts::is_safe(file, p)`)
//! ```
//!
//! Why any partition gives exactly the whole file's pre-tokens (so its counts) and ids:
//! 1. `cut` depends on the file alone, so the two shards beside a boundary move it to the same
//!    place without talking to each other; and it is non-decreasing with `cut(0) = 0` and
//!    `cut(len) = len`, so the owned ranges tile `0..len` in order (some may be empty).
//! 2. Each `is_safe(file, p)` is computed from the bytes within `Cuts::margin` of `p` (read
//!    from the file, up to its edges): locality (`pretokenize::cuts`) makes that the whole
//!    file's answer. A shard reads only those windows around its two boundaries and the bytes
//!    it owns.
//! 3. The owned ranges meet at safe cuts of the whole file (or its ends), and cutting a text at
//!    any set of its safe cuts keeps its special tokens and pre-tokens (composition, in
//!    `pretokenize::cuts`); so the shards' pre-tokens, in order, are the file's, and summing
//!    their counts (or concatenating their ids) gives the whole file's.
//!
//! The safe cuts cover everything a stream needs: characters are never split (a rule needs
//! whole characters on both sides, a special token starts with a whole one), whitespace runs
//! such as CRLF stay whole where the pattern joins them (each rule's proof), and no special
//! token occurrence is split. A custom regex has no safe cut except where a special token
//! starts: without special tokens, the first shard owns the whole file and the others nothing.
//!
//! Work: a shard whose range holds no safe cut owns nothing and stops after scanning its range
//! (its start would be at or after its end); otherwise it scans from its end boundary to the
//! next safe cut, bytes it then owns. So all shards together read each byte about once, plus
//! the windows around the boundaries.
//!
//! ```ignore
//! let owned = shard::owned_range(path, 1 << 20, 2 << 20, &pattern.cuts(&specials), &cancel)?;
//! ```

use std::path::Path;

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};
use crate::input::Input;
use crate::pretokenize::Cuts;

/// A range of bytes of a file, `first..last`.
pub type ByteRange = (u64, u64);

/// Positions scanned per read while looking for a cut.
const SCAN_BLOCK: u64 = 1 << 16;

/// The first safe cut `p` of the whole file with `from <= p < limit`, reading windows of
/// `input` (a regular file of `len` bytes) around the positions scanned.
fn first_cut(
    input: &Input,
    len: u64,
    from: u64,
    limit: u64,
    cuts: &Cuts,
    cancel: &CancelFlag,
) -> Result<Option<u64>> {
    let margin = cuts.margin() as u64;
    let mut buf = Vec::new();
    let mut pos = from;
    while pos < limit {
        cancel.check()?;
        // The window lo..hi holds margin bytes on each side of every position in pos..end (or
        // reaches the file's edge), so `is_safe` on it answers as on the whole file.
        let end = limit.min(pos + SCAN_BLOCK);
        let lo = pos.saturating_sub(margin);
        let hi = len.min(end + margin);
        input.read_at(lo, (hi - lo) as usize, &mut buf)?;
        if let Some(p) = (pos..end).find(|&p| cuts.is_safe(&buf, (p - lo) as usize)) {
            return Ok(Some(p));
        }
        pos = end;
    }
    Ok(None)
}

/// `cut(b)` of the module docs.
fn cut(input: &Input, len: u64, b: u64, cuts: &Cuts, cancel: &CancelFlag) -> Result<u64> {
    if b == 0 || b >= len {
        return Ok(b.min(len));
    }
    Ok(first_cut(input, len, b, len, cuts, cancel)?.unwrap_or(len))
}

/// The bytes a shard given `start..end` of the regular file `path` owns, `cut(start)..cut(end)`
/// (see the module docs), or None when it owns none. `end` beyond the file counts as its end.
pub fn owned_range(
    path: &Path,
    start: u64,
    end: u64,
    cuts: &Cuts,
    cancel: &CancelFlag,
) -> Result<Option<ByteRange>> {
    if start > end {
        return Err(BpeError::InvalidArgument(format!(
            "byte range {start}..{end}: the start is after the end"
        )));
    }
    let input = Input::open(path, cancel)?;
    let len = input.size();
    if input.is_stream() {
        return Err(BpeError::InvalidArgument(format!(
            "{}: a byte range needs a regular file, not a FIFO, pipe or device",
            input.name()
        )));
    }
    let (start, end) = (start.min(len), end.min(len));
    let first = if start == 0 {
        0
    } else {
        // A start with no cut before `end` means cut(start) >= end, so cut(start) = cut(end):
        // nothing is owned, and the search for cut(end) is the next shard's.
        match first_cut(&input, len, start, end, cuts, cancel)? {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    let last = cut(&input, len, end, cuts, cancel)?;
    Ok((first < last).then_some((first, last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::testing::{pieces, Rng};
    use crate::pretokenize::{Pattern, SpecialTokens};

    /// The definition, on the whole text in memory.
    fn naive_cut(text: &[u8], b: usize, cuts: &Cuts) -> usize {
        if b == 0 || b >= text.len() {
            return b.min(text.len());
        }
        (b..text.len())
            .find(|&p| cuts.is_safe(text, p))
            .unwrap_or(text.len())
    }

    /// Random texts of pieces that stress cuts (multi-byte characters, CRLF and whitespace
    /// runs, contractions, digits, special tokens and their near misses), random partitions:
    /// the owned ranges are the definition's, tile the file, and their pre-tokens are the
    /// whole's, for every named pattern and custom regexes.
    #[test]
    fn any_partition_owns_the_whole_file() {
        const PARTS: &[&str] = &[
            "a",
            "b",
            "Ab",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\r\n\r\n",
            "\t",
            "'s",
            "'",
            "1",
            "123",
            "中",
            "。",
            "ж",
            "é",
            "\u{301}",
            "😀",
            "\u{3000}",
            "!",
            "<|",
            "|>",
            "<|e|>",
            "<|e|><|e|>",
            "x y",
            " \n ",
        ];
        let dir = std::env::temp_dir().join(format!("bpe336-shard-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("text.txt");
        let cancel = CancelFlag::default();
        let mut rng = Rng(0x5EED);
        for spec in ["gpt2", "cl100k", "o200k", r"\p{L}+|\p{N}|\s+|.", r"[a-z]+"] {
            let pattern = Pattern::new(spec).unwrap();
            for specials in [vec![], vec!["<|e|>".to_string(), "<|e|><|e|>".to_string()]] {
                let sp = SpecialTokens::new(&specials).unwrap();
                let cuts = pattern.cuts(&sp);
                for _ in 0..150 {
                    let text: String = (0..rng.below(60))
                        .map(|_| PARTS[rng.below(PARTS.len())])
                        .collect();
                    let b = text.as_bytes();
                    std::fs::write(&path, b).unwrap();
                    let whole = pieces(std::str::from_utf8(b).unwrap(), &sp, &pattern);
                    for _ in 0..4 {
                        // Boundaries anywhere, inside characters too, some repeated or past the end.
                        let mut bounds: Vec<u64> = (0..rng.below(6))
                            .map(|_| rng.below(b.len() + 3) as u64)
                            .collect();
                        bounds.extend([0, b.len() as u64]);
                        bounds.sort_unstable();
                        let mut split = Vec::new();
                        let mut next = 0u64;
                        for w in bounds.windows(2) {
                            let owned = owned_range(&path, w[0], w[1], &cuts, &cancel).unwrap();
                            let want = (
                                naive_cut(b, w[0] as usize, &cuts),
                                naive_cut(b, w[1] as usize, &cuts),
                            );
                            match owned {
                                Some((s, e)) => {
                                    assert_eq!((s as usize, e as usize), want, "{spec} {text:?}");
                                    assert_eq!(s, next, "{spec} {text:?} {bounds:?}");
                                    split.extend(pieces(
                                        std::str::from_utf8(&b[s as usize..e as usize]).unwrap(),
                                        &sp,
                                        &pattern,
                                    ));
                                    next = e;
                                }
                                None => assert!(want.0 >= want.1, "{spec} {text:?}"),
                            }
                        }
                        assert_eq!(next, b.len() as u64, "{spec} {text:?} {bounds:?}");
                        assert_eq!(split, whole, "{spec} {text:?} {bounds:?}");
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Long stretches without a cut are scanned across blocks; a custom regex without special
    /// tokens gives the whole file to the first shard.
    #[test]
    fn long_searches_and_no_cuts() {
        let dir = std::env::temp_dir().join(format!("bpe336-shard-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("text.txt");
        let cancel = CancelFlag::default();
        // 200 KB of one letter run, then a space: the only GPT-2 cut is before the space.
        let text = format!("{} tail", "a".repeat(200_000));
        std::fs::write(&path, &text).unwrap();
        let sp = SpecialTokens::new(&[]).unwrap();
        let gpt2 = Pattern::new("gpt2").unwrap();
        let cuts = gpt2.cuts(&sp);
        assert_eq!(
            owned_range(&path, 0, 1000, &cuts, &cancel).unwrap(),
            Some((0, 200_000))
        );
        assert_eq!(
            owned_range(&path, 1000, 150_000, &cuts, &cancel).unwrap(),
            None
        );
        assert_eq!(
            owned_range(&path, 150_000, 300_000, &cuts, &cancel).unwrap(),
            Some((200_000, text.len() as u64))
        );
        let custom = Pattern::new(r"\w+").unwrap();
        let cuts = custom.cuts(&sp);
        assert_eq!(
            owned_range(&path, 0, 10, &cuts, &cancel).unwrap(),
            Some((0, text.len() as u64))
        );
        assert_eq!(owned_range(&path, 10, 20, &cuts, &cancel).unwrap(), None);
        assert!(matches!(
            owned_range(&path, 20, 10, &cuts, &cancel),
            Err(BpeError::InvalidArgument(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
