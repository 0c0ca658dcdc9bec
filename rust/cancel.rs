//! Cancellation: a flag that asks a long call to stop.
//!
//! Any thread may set it (the Python layer does when Ctrl-C arrives); the core checks it
//! between units of work (each read or wait for input, each chunk, each merge) and returns
//! `BpeError::Cancelled`, so a cancelled call stops within one unit and cleans up as on any
//! error.
//!
//! ```ignore
//! let cancel = CancelFlag::default();
//! // elsewhere: cancel.cancel();
//! cancel.check()?; // between units of work
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{BpeError, Result};

/// A shared stop request; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Asks every call that checks this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(BpeError::Cancelled)` once the flag is set.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(BpeError::Cancelled)
        } else {
            Ok(())
        }
    }
}
