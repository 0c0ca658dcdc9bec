//! Kept pre-token counts: what counting a corpus gives (`train::PretokenCounts`), with the
//! pattern and special tokens it was counted with, in a canonical form that is saved, loaded,
//! merged and trained from without the corpus.
//!
//! `Counts` keeps the distinct pre-tokens as sorted entries (strictly increasing bytes, each
//! count at least 1), encoded exactly as in the file. So every operation is one linear pass:
//! merging is a merge-join of sorted lists (no hashing), writing is a copy, reading checks the
//! order as it goes; and equal counts always have equal bytes, so the shards of a corpus,
//! merged in any order and grouping, save the same file as the whole corpus.
//!
//! File format, version 1 (integers little-endian):
//!
//! ```text
//! magic            8 bytes   b"BPE336PC"
//! version          u32       1
//! pattern          u32 length, then UTF-8: the regex (a named pattern's own constant)
//! special tokens   u32 number, then each: u32 length, then UTF-8; in id order
//! input bytes      u64       bytes of text counted
//! distinct         u64       number of entries
//! total            u64       sum of the counts
//! entries length   u64       bytes of the entries
//! entries          each: LEB128 length (>= 1), the pre-token's bytes, LEB128 count (>= 1);
//!                  sorted by bytes, each pre-token once
//! checksum         u32       CRC-32 (zlib's) of every byte before it
//! ```
//!
//! A reader checks the magic, then the version (a later version may lay out the rest
//! differently), then the checksum, then every field; any failure is `MalformedCounts`.

use std::io::Write;
use std::path::Path;

use rayon::slice::ParallelSliceMut;

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};
use crate::pretokenize::Pattern;
use crate::train::{self, PretokenCounts, ProgressFn, TrainOptions, TrainResult};

/// The first bytes of every counts file.
pub const MAGIC: &[u8; 8] = b"BPE336PC";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// Pre-token counts with their pattern and special tokens (see the module docs).
#[derive(Debug, Clone)]
pub struct Counts {
    pattern: Pattern,
    special_tokens: Vec<String>,
    input_bytes: u64,
    distinct: u64,
    total: u64,
    /// The encoded entries, sorted (the file's entries section).
    entries: Vec<u8>,
}

impl PartialEq for Counts {
    fn eq(&self, other: &Counts) -> bool {
        self.pattern.regex() == other.pattern.regex()
            && self.special_tokens == other.special_tokens
            && self.input_bytes == other.input_bytes
            && self.entries == other.entries
    }
}

impl Counts {
    /// Keeps the counts of `counts` (made with `pattern` and `special_tokens` from
    /// `input_bytes` bytes of text), sorting its entries in parallel on the current rayon pool.
    pub fn new(
        counts: PretokenCounts,
        input_bytes: u64,
        pattern: Pattern,
        special_tokens: Vec<String>,
    ) -> Result<Counts> {
        let mut items: Vec<(train::KeyBytes<'_>, u64)> = counts.iter().collect();
        items.par_sort_unstable_by(|x, y| x.0.as_ref().cmp(y.0.as_ref()));
        let mut entries = Vec::with_capacity(items.len() * 10);
        let mut total = 0u64;
        for (k, c) in &items {
            total = add_counts(total, *c)?;
            push_entry(&mut entries, k.as_ref(), *c);
        }
        Ok(Counts {
            pattern,
            special_tokens,
            input_bytes,
            distinct: items.len() as u64,
            total,
            entries,
        })
    }

    /// The pattern the text was pre-tokenized with.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The special tokens that split the text, in id order.
    pub fn special_tokens(&self) -> &[String] {
        &self.special_tokens
    }

    /// Bytes of text counted.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// Number of distinct pre-tokens.
    pub fn len(&self) -> u64 {
        self.distinct
    }

    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Number of pre-tokens counted, with multiplicity.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Each distinct pre-token's bytes and count, in increasing order of bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        Entries {
            rest: &self.entries,
        }
    }

    // -- merging ----------------------------------------------------------------------------

    /// The sum of `parts` (at least one), which must share a pattern and special tokens.
    /// Merged as a balanced tree of pairwise merge-joins: linear in the entries per level.
    pub fn merge(parts: &[&Counts]) -> Result<Counts> {
        let Some(first) = parts.first() else {
            return Err(BpeError::InvalidArgument("no counts to merge".into()));
        };
        for (i, other) in parts.iter().enumerate().skip(1) {
            first.check_compatible(other, i)?;
        }
        let input_bytes = parts
            .iter()
            .try_fold(0u64, |acc, c| add_counts(acc, c.input_bytes))?;
        let (entries, distinct, total) = merge_tree(parts)?;
        Ok(Counts {
            pattern: first.pattern.clone(),
            special_tokens: first.special_tokens.clone(),
            input_bytes,
            distinct,
            total,
            entries,
        })
    }

    /// Counts can be added only when made alike: the same pattern and the same special tokens
    /// (in the same order, which gives their ids).
    fn check_compatible(&self, other: &Counts, index: usize) -> Result<()> {
        if self.pattern.regex() != other.pattern.regex() {
            return Err(BpeError::InvalidArgument(format!(
                "cannot merge counts made with different pre-tokenization patterns: {:?} and {:?} (counts {index})",
                self.pattern.regex(),
                other.pattern.regex()
            )));
        }
        if self.special_tokens != other.special_tokens {
            return Err(BpeError::InvalidArgument(format!(
                "cannot merge counts made with different special tokens: {:?} and {:?} (counts {index})",
                self.special_tokens, other.special_tokens
            )));
        }
        Ok(())
    }

    // -- training ---------------------------------------------------------------------------

    /// Trains on these counts. `opts` must name the counts' special tokens (in their order)
    /// and pattern: the counts hold nothing else, and ids follow the special tokens' order.
    pub fn train(
        &self,
        opts: &TrainOptions,
        progress: &mut ProgressFn,
        cancel: &CancelFlag,
    ) -> Result<TrainResult> {
        if opts.special_tokens() != self.special_tokens.as_slice() {
            return Err(BpeError::InvalidArgument(format!(
                "the counts were made with the special tokens {:?}, not {:?}: pass theirs (or none) when training from counts",
                self.special_tokens,
                opts.special_tokens()
            )));
        }
        if opts.count.pattern.regex() != self.pattern.regex() {
            return Err(BpeError::InvalidArgument(format!(
                "the counts were made with the pattern {:?}, not {:?}",
                self.pattern.regex(),
                opts.count.pattern.regex()
            )));
        }
        opts.validate()?;
        train::check_distinct_not_zero(self.distinct as usize, "the counts")?;
        train::train_from_entries(
            self.iter(),
            self.distinct as usize,
            self.total,
            self.input_bytes,
            opts,
            progress,
            cancel,
        )
    }

    // -- the file format --------------------------------------------------------------------

    /// Everything before the entries.
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        push_str(&mut h, self.pattern.regex());
        h.extend_from_slice(&(self.special_tokens.len() as u32).to_le_bytes());
        for t in &self.special_tokens {
            push_str(&mut h, t);
        }
        for v in [
            self.input_bytes,
            self.distinct,
            self.total,
            self.entries.len() as u64,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        out.reserve(self.entries.len() + 4);
        out.extend_from_slice(&self.entries);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Writes the file to `path` (created or truncated) and syncs it. The caller makes the
    /// write atomic (Python's `atomic_output` hands a temporary path).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| BpeError::Io {
            path: path.display().to_string(),
            source,
        };
        let header = self.header();
        let mut crc = Crc32::new();
        crc.update(&header);
        crc.update(&self.entries);
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&header).map_err(io)?;
        w.write_all(&self.entries).map_err(io)?;
        w.write_all(&crc.finish().to_le_bytes()).map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    /// Reads a counts file.
    pub fn read(path: &Path) -> Result<Counts> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| BpeError::Io {
            path: name.clone(),
            source,
        })?;
        if meta.is_dir() {
            return Err(BpeError::IsADirectory { path: name });
        }
        let data = std::fs::read(path).map_err(|source| BpeError::Io {
            path: name.clone(),
            source,
        })?;
        Counts::from_bytes(&data, &name)
    }

    /// Parses and checks a counts file's bytes; `name` (a path, or "<bytes>") appears in
    /// errors.
    pub fn from_bytes(data: &[u8], name: &str) -> Result<Counts> {
        let bad = |reason: String| BpeError::MalformedCounts {
            path: name.to_string(),
            reason,
        };
        // 1. Magic and version, before anything whose layout a version could change.
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(bad(if MAGIC.starts_with(data) {
                "truncated: the file ends inside its header".into()
            } else {
                "not a bpe336 counts file (no BPE336PC magic at its start)".into()
            }));
        }
        let mut r = Reader {
            data,
            pos: MAGIC.len(),
        };
        let version = r.u32().map_err(&bad)?;
        if version != VERSION {
            return Err(bad(format!(
                "counts format version {version}; this bpe336 reads version {VERSION} (count the corpus again with this version)"
            )));
        }
        // 2. The checksum covers everything else.
        if data.len() < r.pos + 4 {
            return Err(bad("truncated: the file ends inside its header".into()));
        }
        let (body, tail) = data.split_at(data.len() - 4);
        let stored = u32::from_le_bytes(tail.try_into().expect("4 bytes"));
        if crc32(body) != stored {
            return Err(bad(
                "checksum mismatch: the file is corrupt or truncated".into()
            ));
        }
        // 3. The header's fields.
        let mut r = Reader {
            data: body,
            pos: r.pos,
        };
        let regex = r.string("the pattern").map_err(&bad)?;
        let pattern = Pattern::new(&regex).map_err(|e| bad(format!("its pattern: {e}")))?;
        let n_specials = r.u32().map_err(&bad)?;
        let mut special_tokens = Vec::new();
        for i in 0..n_specials {
            let t = r.string(&format!("special token {i}")).map_err(&bad)?;
            if t.is_empty() || special_tokens.contains(&t) {
                return Err(bad(format!("special token {i} is empty or repeated")));
            }
            special_tokens.push(t);
        }
        let input_bytes = r.u64().map_err(&bad)?;
        let distinct = r.u64().map_err(&bad)?;
        let total = r.u64().map_err(&bad)?;
        let entries_len = r.u64().map_err(&bad)?;
        if entries_len != (body.len() - r.pos) as u64 {
            return Err(bad(format!(
                "the entries should take {entries_len} bytes, the file holds {}",
                body.len() - r.pos
            )));
        }
        // 4. The entries: well formed, sorted, and as many and as large as the header says.
        let entries = &body[r.pos..];
        let (n, sum) = check_entries(entries).map_err(&bad)?;
        if (n, sum) != (distinct, total) {
            return Err(bad(format!(
                "the header says {distinct} pre-tokens counted {total} times, the entries hold {n} counted {sum} times"
            )));
        }
        Ok(Counts {
            pattern,
            special_tokens,
            input_bytes,
            distinct,
            total,
            entries: entries.to_vec(),
        })
    }
}

/// `a + b` for counts, or an error naming the overflow.
fn add_counts(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| BpeError::InvalidArgument("counts overflow 64 bits when added".into()))
}

// -- entries -----------------------------------------------------------------------------------

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn push_entry(out: &mut Vec<u8>, bytes: &[u8], count: u64) {
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    push_varint(out, count);
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A LEB128 number at the start of `data`: (value, bytes read), or None when it is cut off,
/// longer than 10 bytes, or beyond 64 bits.
#[inline]
fn read_varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        let part = (b & 0x7F) as u64;
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One entry at the start of `data`: (bytes, count, entry length), or None when malformed.
#[inline]
fn read_entry(data: &[u8]) -> Option<(&[u8], u64, usize)> {
    let (len, a) = read_varint(data)?;
    let end = a.checked_add(usize::try_from(len).ok()?)?;
    let bytes = data.get(a..end)?;
    let (count, b) = read_varint(&data[end..])?;
    Some((bytes, count, end + b))
}

/// Checks encoded entries (well formed, lengths and counts at least 1, strictly increasing
/// bytes) and returns their number and the sum of their counts.
fn check_entries(mut data: &[u8]) -> std::result::Result<(u64, u64), String> {
    let (mut n, mut sum) = (0u64, 0u64);
    let mut prev: Option<&[u8]> = None;
    while !data.is_empty() {
        let (bytes, count, used) =
            read_entry(data).ok_or_else(|| format!("entry {n} is cut off or malformed"))?;
        if bytes.is_empty() || count == 0 {
            return Err(format!("entry {n} has an empty pre-token or a zero count"));
        }
        if prev.is_some_and(|p| p >= bytes) {
            return Err(format!(
                "entry {n} is out of order (entries are sorted, each once)"
            ));
        }
        sum = sum
            .checked_add(count)
            .ok_or_else(|| "the counts overflow 64 bits".to_string())?;
        n += 1;
        prev = Some(bytes);
        data = &data[used..];
    }
    Ok((n, sum))
}

/// Iterates over entries already checked (by `check_entries`, or made by this module).
struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a [u8], u64);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (bytes, count, used) = read_entry(self.rest).expect("entries are checked");
        self.rest = &self.rest[used..];
        Some((bytes, count))
    }
}

/// Merge-join of two sorted entry lists: (entries, distinct, total).
fn merge_two(a: &[u8], b: &[u8]) -> Result<(Vec<u8>, u64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut n, mut total) = (0u64, 0u64);
    let mut xs = Entries { rest: a }.peekable();
    let mut ys = Entries { rest: b }.peekable();
    loop {
        let (bytes, count) = match (xs.peek(), ys.peek()) {
            (None, None) => break,
            (Some(_), None) => xs.next().expect("peeked"),
            (None, Some(_)) => ys.next().expect("peeked"),
            (Some(x), Some(y)) => match x.0.cmp(y.0) {
                std::cmp::Ordering::Less => xs.next().expect("peeked"),
                std::cmp::Ordering::Greater => ys.next().expect("peeked"),
                std::cmp::Ordering::Equal => {
                    let (bytes, cx) = xs.next().expect("peeked");
                    let (_, cy) = ys.next().expect("peeked");
                    (bytes, add_counts(cx, cy)?)
                }
            },
        };
        push_entry(&mut out, bytes, count);
        n += 1;
        total = add_counts(total, count)?;
    }
    Ok((out, n, total))
}

/// The merged entries of `parts` (at least one), as a balanced tree of `merge_two`.
fn merge_tree(parts: &[&Counts]) -> Result<(Vec<u8>, u64, u64)> {
    match parts {
        [] => Ok((Vec::new(), 0, 0)),
        [one] => Ok((one.entries.clone(), one.distinct, one.total)),
        [a, b] => merge_two(&a.entries, &b.entries),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            let (l, _, _) = merge_tree(left)?;
            let (r, _, _) = merge_tree(right)?;
            merge_two(&l, &r)
        }
    }
}

/// Bounds-checked reads of the header's fields.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err("truncated: the file ends inside its header".into());
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

// -- CRC-32 ------------------------------------------------------------------------------------

/// CRC-32 as zlib computes it (polynomial 0xEDB88320, reflected), eight bytes per step
/// ("slicing-by-8"): several GB/s, so checking a file costs little next to reading it.
struct Crc32(u32);

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xFF) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

impl Crc32 {
    fn new() -> Crc32 {
        Crc32(!0)
    }

    fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for ch in &mut chunks {
            let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
            let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
            c = t[7][(lo & 0xFF) as usize]
                ^ t[6][((lo >> 8) & 0xFF) as usize]
                ^ t[5][((lo >> 16) & 0xFF) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xFF) as usize]
                ^ t[2][((hi >> 8) & 0xFF) as usize]
                ^ t[1][((hi >> 16) & 0xFF) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

/// `crc32(b"123456789") == 0xCBF43926`, as `zlib.crc32`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::SpecialTokens;
    use crate::train::{CountMap, TrainOptions};

    fn counts_of(text: &str, pattern: &str, specials: &[&str]) -> Counts {
        let specials: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
        let pattern = Pattern::new(pattern).unwrap();
        let mut c = PretokenCounts::default();
        c.count_text(
            text,
            &SpecialTokens::new(&specials).unwrap(),
            &pattern,
            &CancelFlag::default(),
        )
        .unwrap();
        Counts::new(c, text.len() as u64, pattern, specials).unwrap()
    }

    fn as_map(c: &Counts) -> CountMap {
        c.iter().map(|(k, v)| (k.into(), v)).collect()
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        // Any split gives the same checksum (the 8-byte steps and the tail agree).
        for split in [0, 1, 7, 8, 9, 500, 999] {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), crc32(&data));
        }
        // A bit-by-bit reference.
        let mut r = !0u32;
        for &b in &data {
            r ^= b as u32;
            for _ in 0..8 {
                r = if r & 1 != 0 {
                    0xEDB8_8320 ^ (r >> 1)
                } else {
                    r >> 1
                };
            }
        }
        assert_eq!(crc32(&data), !r);
    }

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            push_varint(&mut out, v);
            assert_eq!(read_varint(&out), Some((v, out.len())));
            assert_eq!(read_varint(&out[..out.len() - 1]), None);
        }
        assert_eq!(read_varint(&[0xFF; 11]), None);
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            None
        );
    }

    #[test]
    fn entries_are_sorted_and_exact() {
        let c = counts_of("the cat<|e|> the cat's hat 123 the", "gpt2", &["<|e|>"]);
        let keys: Vec<&[u8]> = c.iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let map = as_map(&c);
        assert_eq!(map[&b" the"[..]], 2);
        assert_eq!(map[&b"the"[..]], 1);
        assert_eq!(c.len(), map.len() as u64);
        assert_eq!(c.total(), map.values().sum::<u64>());
    }

    #[test]
    fn bytes_round_trip_and_write() {
        for (pattern, specials) in [
            ("gpt2", vec![]),
            ("cl100k", vec!["<|e|>", "<|x|>"]),
            (r"\p{L}+|\s+|.", vec!["é"]),
        ] {
            let c = counts_of(
                "Hello  wörld<|e|> it's 12345 中文 é\r\n\n",
                pattern,
                &specials,
            );
            let bytes = c.to_bytes();
            let back = Counts::from_bytes(&bytes, "x").unwrap();
            assert_eq!(back, c);
            assert_eq!(back.pattern().regex(), c.pattern().regex());
            assert_eq!((back.len(), back.total()), (c.len(), c.total()));
            let path =
                std::env::temp_dir().join(format!("bpe336-counts-{}.bpc", std::process::id()));
            c.write(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
            assert_eq!(Counts::read(&path).unwrap(), c);
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// Every damage is an error with a reason, never a panic or a wrong result.
    #[test]
    fn damaged_files_are_errors() {
        let c = counts_of("a bb ccc dddd a bb", "gpt2", &["<|e|>"]);
        let good = c.to_bytes();
        let reason = |data: &[u8]| match Counts::from_bytes(data, "f") {
            Err(BpeError::MalformedCounts { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(b"").contains("truncated"));
        assert!(reason(b"BPE3").contains("truncated"));
        assert!(reason(b"PK\x03\x04 a zip file").contains("not a bpe336 counts file"));
        let mut v2 = good.clone();
        v2[8] = 2;
        assert!(reason(&v2).contains("version 2"));
        for cut in [12, 20, good.len() / 2, good.len() - 1] {
            assert!(
                reason(&good[..cut]).contains("truncated")
                    || reason(&good[..cut]).contains("checksum")
            );
        }
        // Every flipped byte past the magic and version is caught.
        for i in 12..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(Counts::from_bytes(&bad, "f").is_err(), "byte {i}");
        }
        // Well-formed checksums over bad contents: out of order, a header that lies.
        let mut swapped = c.clone();
        let mut e = Vec::new();
        push_entry(&mut e, b"b", 1);
        push_entry(&mut e, b"a", 1);
        swapped.entries = e;
        swapped.distinct = 2;
        swapped.total = 2;
        assert!(reason(&swapped.to_bytes()).contains("out of order"));
        let mut lying = c.clone();
        lying.total += 1;
        assert!(reason(&lying.to_bytes()).contains("the header says"));
    }

    #[test]
    fn merging_adds_counts_and_checks_kinds() {
        let text = "the cat<|e|> the cat's hat 123 the<|e|>\n\nend  ";
        let whole = counts_of(text, "gpt2", &["<|e|>"]);
        for p in [0, 5, 7, 12, text.len()] {
            if !text.is_char_boundary(p) {
                continue;
            }
            // Cut at a special token or where the rule allows: the counts of the halves add up.
            let (a, b) = (&text[..p], &text[p..]);
            let sp = SpecialTokens::new(&["<|e|>".to_string()]).unwrap();
            if p > 0 && p < text.len() && !Pattern::Gpt2.cuts(&sp).is_safe(text.as_bytes(), p) {
                continue;
            }
            let a = counts_of(a, "gpt2", &["<|e|>"]);
            let b = counts_of(b, "gpt2", &["<|e|>"]);
            let sum = Counts::merge(&[&a, &b]).unwrap();
            assert_eq!(sum, whole, "cut at {p}");
            assert_eq!(Counts::merge(&[&b, &a]).unwrap(), whole);
            assert_eq!(
                Counts::merge(&[&a, &b, &counts_of("", "gpt2", &["<|e|>"])]).unwrap(),
                whole
            );
        }
        let other = counts_of(text, "cl100k", &["<|e|>"]);
        assert!(
            matches!(Counts::merge(&[&whole, &other]), Err(BpeError::InvalidArgument(m)) if m.contains("patterns"))
        );
        let other = counts_of(text, "gpt2", &[]);
        assert!(
            matches!(Counts::merge(&[&whole, &other]), Err(BpeError::InvalidArgument(m)) if m.contains("special tokens"))
        );
        assert!(Counts::merge(&[]).is_err());
    }

    #[test]
    fn training_from_counts_equals_training_from_text() {
        let text = "the cat sat on the mat; the cat's hat.<|e|> dogs and cats 123 ".repeat(20);
        let c = counts_of(&text, "gpt2", &["<|e|>"]);
        let opts = TrainOptions::new(256 + 1 + 40, vec!["<|e|>".into()]);
        let direct = train::train_texts(&[&text], &opts, &mut |_| true).unwrap();
        let kept = c
            .train(&opts, &mut |_| true, &CancelFlag::default())
            .unwrap();
        assert_eq!((kept.vocab, kept.merges), (direct.vocab, direct.merges));
        let wrong = TrainOptions::new(300, vec![]);
        assert!(c
            .train(&wrong, &mut |_| true, &CancelFlag::default())
            .is_err());
        let empty = counts_of("", "gpt2", &["<|e|>"]);
        assert!(empty
            .train(&opts, &mut |_| true, &CancelFlag::default())
            .is_err());
    }
}
