//! Input files: opening and reading that never block beyond a cancellation check, and UTF-8
//! validation whose errors give the absolute byte offset.
//!
//! A FIFO blocks `open()` until a writer appears and `read()` while the writer is silent, and a
//! blocked system call never returns to check for Ctrl-C. So files are opened non-blocking, and
//! anything that is not a regular file (FIFOs, pipes such as `/dev/stdin` or a shell's
//! `<(...)`, sockets, terminals) is polled with a timeout before each read, checking the
//! `CancelFlag` between polls. On Linux a FIFO polled before any writer has connected reports
//! neither data nor hang-up, so waiting for a late writer works and is still cancellable.
//!
//! ```ignore
//! let mut input = Input::open(path, &cancel)?;
//! while let n @ 1.. = input.read(&mut block, &cancel)? { let text = utf8(input.name(), offset, &block[..n])?; }
//! ```

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use crate::cancel::CancelFlag;
use crate::error::{BpeError, Result};

/// How long one wait for input lasts before the cancellation flag is checked again.
#[cfg(unix)]
const POLL_INTERVAL_MS: i64 = 100;

/// An input file opened for reading in blocks.
pub struct Input {
    file: File,
    name: String,
    /// Not a regular file: wait for data with `poll` before each read.
    pollable: bool,
    /// Size of a regular file (0 for streams, whose size is unknown); of the range when one
    /// was given.
    size: u64,
    /// Absolute offset of the first byte read (0 unless opened on a range).
    start: u64,
    /// Bytes left to read in a range (None: to the end of the input).
    remaining: Option<u64>,
}

impl Input {
    /// Opens `path` for reading without blocking (see the module docs).
    pub fn open(path: &Path, cancel: &CancelFlag) -> Result<Input> {
        cancel.check()?;
        let name = path.display().to_string();
        let io = |source| BpeError::Io {
            path: name.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(BpeError::IsADirectory { path: name });
        }
        let file = open_nonblocking(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let pollable = !meta.is_file();
        Ok(Input {
            file,
            pollable,
            size: if pollable { 0 } else { meta.len() },
            name,
            start: 0,
            remaining: None,
        })
    }

    /// Opens the bytes `start..end` of the regular file `path` (a range needs a file that can
    /// seek: a FIFO or a pipe is an error). `start` must not exceed `end` or the file's size.
    pub fn open_range(path: &Path, start: u64, end: u64, cancel: &CancelFlag) -> Result<Input> {
        let mut input = Input::open(path, cancel)?;
        if input.pollable {
            return Err(BpeError::InvalidArgument(format!(
                "{}: a byte range needs a regular file, not a FIFO, pipe or device",
                input.name
            )));
        }
        if start > end || end > input.size {
            return Err(BpeError::InvalidArgument(format!(
                "{}: byte range {start}..{end} is not within the file's {} bytes",
                input.name, input.size
            )));
        }
        input
            .file
            .seek(SeekFrom::Start(start))
            .map_err(|source| BpeError::Io {
                path: input.name.clone(),
                source,
            })?;
        input.start = start;
        input.size = end - start;
        input.remaining = Some(end - start);
        Ok(input)
    }

    /// Reads exactly `len` bytes from the absolute `offset` into `buf` (its contents are
    /// replaced), for looking around a position of a regular file (a stream fails). NOTE: on
    /// systems other than Unix this moves the position that `read` continues from.
    pub fn read_at(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let io = |source| BpeError::Io {
            path: self.name.clone(),
            source,
        };
        buf.resize(len, 0);
        read_exact_at(&self.file, offset, buf).map_err(io)
    }

    /// Not a regular file (a FIFO, a pipe, a device): read as a stream, of unknown size.
    pub fn is_stream(&self) -> bool {
        self.pollable
    }

    /// The absolute offset of the first byte this input reads (for error messages).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The path, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of a regular file; 0 for a stream.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads up to `buf.len()` bytes; 0 means the end of the input. Waits for a stream's data
    /// in steps of `POLL_INTERVAL_MS`, returning `Cancelled` as soon as `cancel` is set.
    pub fn read(&mut self, buf: &mut [u8], cancel: &CancelFlag) -> Result<usize> {
        let want = match self.remaining {
            Some(left) => left.min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        let buf = &mut buf[..want];
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            cancel.check()?;
            if self.pollable && !self.wait_readable()? {
                continue;
            }
            match self.file.read(buf) {
                Ok(n) => {
                    if let Some(left) = &mut self.remaining {
                        // A file that shrank under us ends early, as any file read to its end.
                        *left = if n == 0 { 0 } else { *left - n as u64 };
                    }
                    return Ok(n);
                }
                // A stream with nothing to read after all, or a signal: check and wait again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(source) => {
                    return Err(BpeError::Io {
                        path: self.name.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits up to one poll interval; true when a read will not block (data, or the writer
    /// has gone so the read returns the end).
    #[cfg(unix)]
    fn wait_readable(&self) -> Result<bool> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: POLL_INTERVAL_MS * 1_000_000,
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(BpeError::Io {
                path: self.name.clone(),
                source: e.into(),
            }),
        }
    }

    /// Elsewhere reads block; a signal still interrupts them (`Interrupted`).
    #[cfg(not(unix))]
    fn wait_readable(&self) -> Result<bool> {
        Ok(true)
    }
}

/// Fills `buf` from `offset` of `file` without moving its cursor.
#[cfg(unix)]
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// `bytes` as UTF-8 text, or `InvalidUtf8` naming `name`, the absolute offset of the first bad
/// byte (`offset` is that of `bytes[0]`) and the bad sequence (cut short at the end of `bytes`).
///
/// `utf8("f", 100, b"ab\xffc")` -> `InvalidUtf8 { offset: 102, bad: [0xff], .. }`.
pub fn utf8<'a>(name: &str, offset: u64, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| utf8_error(name, offset, bytes, e))
}

/// `utf8` for an owned buffer, without validating twice.
pub fn utf8_string(name: &str, offset: u64, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| utf8_error(name, offset, e.as_bytes(), e.utf8_error()))
}

fn utf8_error(name: &str, offset: u64, bytes: &[u8], e: std::str::Utf8Error) -> BpeError {
    let at = e.valid_up_to();
    let len = e.error_len().unwrap_or(bytes.len() - at);
    BpeError::InvalidUtf8 {
        path: name.to_string(),
        offset: offset + at as u64,
        bad: bytes[at..at + len].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_errors_are_absolute() {
        assert_eq!(utf8("f", 7, b"abc").unwrap(), "abc");
        for (bytes, at, bad) in [
            (&b"ab\xffc"[..], 2, &b"\xff"[..]),
            (b"\xe2\x82", 0, b"\xe2\x82"),
            (b"a\xe2\x82z", 1, b"\xe2\x82"),
            (b"ok\xed\xa0\x80", 2, b"\xed"),
        ] {
            match utf8("f", 1000, bytes) {
                Err(BpeError::InvalidUtf8 { offset, bad: b, .. }) => {
                    assert_eq!((offset, &b[..]), (1000 + at, bad), "{bytes:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn regular_files_and_errors() {
        let dir = std::env::temp_dir().join(format!("bpe336-input-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        std::fs::write(&path, b"hello").unwrap();
        let cancel = CancelFlag::default();
        let mut input = Input::open(&path, &cancel).unwrap();
        assert_eq!(input.size(), 5);
        let mut buf = [0u8; 3];
        assert_eq!(input.read(&mut buf, &cancel).unwrap(), 3);
        assert_eq!(input.read(&mut buf, &cancel).unwrap(), 2);
        assert_eq!(input.read(&mut buf, &cancel).unwrap(), 0);
        cancel.cancel();
        assert!(matches!(
            input.read(&mut buf, &cancel),
            Err(BpeError::Cancelled)
        ));
        let fresh = CancelFlag::default();
        assert!(matches!(
            Input::open(&dir, &fresh),
            Err(BpeError::IsADirectory { .. })
        ));
        assert!(matches!(
            Input::open(&dir.join("missing"), &fresh),
            Err(BpeError::Io { .. })
        ));
    }

    /// A FIFO with no writer: opening returns at once, reading waits and is cancellable, and a
    /// writer that comes later is read to the end.
    #[cfg(target_os = "linux")]
    #[test]
    fn fifo_without_writer_is_cancellable() {
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("bpe336-fifo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fifo");
        let _ = std::fs::remove_file(&path);
        rustix::fs::mkfifoat(rustix::fs::CWD, &path, rustix::fs::Mode::from(0o600)).unwrap();
        let cancel = CancelFlag::default();
        let mut input = Input::open(&path, &cancel).unwrap();
        let stopper = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stopper.cancel();
        });
        let start = Instant::now();
        let mut buf = [0u8; 16];
        assert!(matches!(
            input.read(&mut buf, &cancel),
            Err(BpeError::Cancelled)
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();

        // A late writer.
        let cancel = CancelFlag::default();
        let mut input = Input::open(&path, &cancel).unwrap();
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(p, b"late text").unwrap();
        });
        let mut got = Vec::new();
        loop {
            let n = input.read(&mut buf, &cancel).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert_eq!(got, b"late text");
        std::fs::remove_file(&path).unwrap();
    }
}
