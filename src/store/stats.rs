//! What the clean-up sweeps report: [`CleanupReport`] for one sweep (or batch), and
//! [`CleanupStats`] summed since the store was opened. Below the sweep's code (`expiry.rs`) and
//! the core that keeps the statistics (`shared.rs`), so that neither imports the other.

use serde::{Deserialize, Serialize};

/// What a clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Sessions removed.
    pub sessions: u64,
    /// States removed with them.
    pub states: u64,
    /// Damaged session records removed (their deadline had passed).
    pub corrupted: u64,
    /// Index entries removed that pointed at no session.
    pub stale_entries: u64,
    /// Tombstones of rotated or revoked ids removed (their session would have been removed by
    /// now), including undecodable ones.
    pub tombstones: u64,
    /// Write transactions used.
    pub batches: u64,
    /// Whether the sweep was skipped because another thread or process held the clean-up lock
    /// (it is sweeping, so there is nothing to add).
    pub skipped: bool,
    /// Whether the sweep reached the end: its last batch found nothing more due, and recorded
    /// the sweep as done in the file (the shared schedule, see [`Store::cleanup_if_due`](crate::Store::cleanup_if_due)).
    /// False for a skipped sweep, for a batch of [`Store::cleanup_if_due`](crate::Store::cleanup_if_due) that left a backlog
    /// to the next process, and for a sweep of the clean-up thread stopped by a drop.
    pub complete: bool,
}

impl CleanupReport {
    /// Adds `other`, a later batch or sweep, to this report.
    pub(crate) fn add(&mut self, other: CleanupReport) {
        self.sessions += other.sessions;
        self.states += other.states;
        self.corrupted += other.corrupted;
        self.stale_entries += other.stale_entries;
        self.tombstones += other.tombstones;
        self.batches += other.batches;
        self.skipped |= other.skipped;
        self.complete = other.complete;
    }
}

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
