//! Worker threads: the one home of every rayon pool the core runs on.
//!
//! - A thread count is checked against `max_threads()` (8 per core, at least 64, at most 1024),
//!   so `num_threads=10**6` is a clear error, not a million thread spawns.
//! - Pools of at most the default size (`RAYON_NUM_THREADS`, else the number of cores) are kept
//!   in a small cache (the `CACHED_POOLS` most recently used) and reused, so repeated calls
//!   neither respawn threads nor lose the workers' thread-local caches.
//! - A larger pool belongs to one call: its threads are joined when the call's `Workers` is
//!   dropped, so no sequence of calls can leave threads behind.
//!
//! ```ignore
//! let workers = Workers::new(Some(4))?;
//! let ids = workers.install(|| enc.encode_batch(&texts));
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rayon::ThreadPool;

use crate::error::{BpeError, Result};

/// How many pools the cache keeps (each at most `default_threads()` threads).
const CACHED_POOLS: usize = 4;

/// Threads per core allowed in one call, and the bounds of that limit on any machine.
const THREADS_PER_CORE: usize = 8;
const MIN_MAX_THREADS: usize = 64;
const MAX_MAX_THREADS: usize = 1024;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The largest thread count a call accepts: 8 per core, at least 64, at most 1024.
pub fn max_threads() -> usize {
    (THREADS_PER_CORE * cores()).clamp(MIN_MAX_THREADS, MAX_MAX_THREADS)
}

/// The thread count used when the caller gives none: `RAYON_NUM_THREADS` when set to a positive
/// number (as rayon itself reads it), else the number of cores; never above `max_threads()`.
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(cores)
        .min(max_threads())
}

/// The message for a thread count out of range (`got` as the caller wrote it).
pub fn range_message(got: &str) -> String {
    format!(
        "num_threads must be between 1 and {} ({THREADS_PER_CORE} per core on this {}-core \
         machine, at least {MIN_MAX_THREADS} and at most {MAX_MAX_THREADS}), got {got}",
        max_threads(),
        cores()
    )
}

/// Checks a caller's thread count.
pub fn check(n: usize) -> Result<()> {
    if n == 0 || n > max_threads() {
        return Err(BpeError::InvalidArgument(range_message(&n.to_string())));
    }
    Ok(())
}

/// The pools kept for reuse, most recently used last.
static CACHE: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());

/// A pool for one call: shared from the cache, or private (joined on drop).
pub struct Workers {
    pool: Option<Arc<ThreadPool>>,
    /// The private pool's threads, joined once the pool is dropped.
    joins: Vec<JoinHandle<()>>,
}

impl Workers {
    /// The workers for `n` threads (`None`: `default_threads()`).
    pub fn new(n: Option<usize>) -> Result<Workers> {
        let default = default_threads();
        let n = match n {
            None => default,
            Some(n) => {
                check(n)?;
                n
            }
        };
        if n > default {
            return Workers::private(n);
        }
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        let pool = match cache.iter().position(|(k, _)| *k == n) {
            Some(i) => cache.remove(i).1,
            None => Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("bpe336-{i}"))
                    .build()
                    .map_err(|e| pool_error(n, e))?,
            ),
        };
        cache.push((n, Arc::clone(&pool)));
        if cache.len() > CACHED_POOLS {
            // The least recently used pool goes; its threads exit once no call holds it.
            cache.remove(0);
        }
        Ok(Workers {
            pool: Some(pool),
            joins: Vec::new(),
        })
    }

    /// A pool of `n` threads for this call only, whose threads we spawn (and so can join).
    fn private(n: usize) -> Result<Workers> {
        let joins = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let sink = Arc::clone(&joins);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("bpe336-call-{i}"))
            .spawn_handler(move |thread| {
                let mut b = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    b = b.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    b = b.stack_size(size);
                }
                let handle = b.spawn(|| thread.run())?;
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle);
                Ok(())
            })
            .build()
            .map_err(|e| pool_error(n, e))?;
        let joins = std::mem::take(&mut *joins.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(Workers {
            pool: Some(Arc::new(pool)),
            joins,
        })
    }

    fn pool(&self) -> &ThreadPool {
        self.pool.as_deref().expect("the pool lives until drop")
    }

    /// Runs `f` inside the pool (rayon's parallel iterators in `f` use its threads).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool().install(f)
    }

    /// Runs `f` on a pool thread in the background.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        self.pool().spawn(f)
    }

    pub fn num_threads(&self) -> usize {
        self.pool().current_num_threads()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping the last handle of a private pool tells its threads to exit once their
        // queued work is done; joining them means the call leaves no thread behind.
        self.pool = None;
        for handle in self.joins.drain(..) {
            let _ = handle.join();
        }
    }
}

fn pool_error(n: usize, e: rayon::ThreadPoolBuildError) -> BpeError {
    BpeError::ThreadPool(format!("cannot start {n} worker threads: {e}"))
}

/// Runs `f` on `n` threads (`None`: `default_threads()`); see `Workers`.
pub fn with_threads<T: Send>(n: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(Workers::new(n)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of this process's threads (Linux: /proc/self/task/*/comm), or None elsewhere.
    fn thread_names() -> Option<Vec<String>> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect(),
        )
    }

    #[test]
    fn counts_are_bounded() {
        assert!(check(0).is_err());
        assert!(check(1).is_ok());
        assert!(check(max_threads()).is_ok());
        let msg = check(1_000_000).unwrap_err().to_string();
        assert!(
            msg.contains("between 1 and") && msg.contains("1000000"),
            "{msg}"
        );
        assert!((MIN_MAX_THREADS..=MAX_MAX_THREADS).contains(&max_threads()));
        assert!(Workers::new(Some(1_000_000)).is_err());
    }

    #[test]
    fn pools_are_reused_or_joined() {
        for round in 0..2 {
            for n in 1..=40 {
                let got = with_threads(Some(n), rayon::current_num_threads).unwrap();
                assert_eq!(got, n, "round {round}");
            }
        }
        let Some(names) = thread_names() else { return };
        // Private pools were joined; cached ones are at most CACHED_POOLS of the default size.
        let private = names
            .iter()
            .filter(|n| n.starts_with("bpe336-call"))
            .count();
        let cached = names.iter().filter(|n| n.starts_with("bpe336-")).count() - private;
        assert_eq!(private, 0, "{names:?}");
        assert!(cached <= CACHED_POOLS * default_threads(), "{names:?}");
    }
}
