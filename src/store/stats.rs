//! What the clean-up sweeps report: [`CleanupReport`] for one sweep (or batch), and
//! [`CleanupStats`] summed since the store was opened. Below the sweep's code (`expiry.rs`) and
//! the core that keeps the statistics (`shared.rs`), so that neither imports the other.

use crate::engine::CleanupReport;

/// What the clean-up sweeps (the thread's and [`Store::cleanup`](crate::Store::cleanup)'s) did since the store was
/// opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupStats {
    /// Sweeps run to the end (skipped ones included), and batches of
    /// [`Store::cleanup_if_due`](crate::Store::cleanup_if_due) run (those that found no sweep due are not counted).
    pub runs: u64,
    /// Sweeps skipped because another thread or process was sweeping.
    pub skipped: u64,
    /// Sweeps that failed; the last message is in `last_error`.
    pub errors: u64,
    /// The message of the last failed sweep of the clean-up thread.
    pub last_error: Option<String>,
    /// Everything removed, summed over the sweeps.
    pub removed: CleanupReport,
}
