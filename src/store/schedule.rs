//! The clean-up schedule, shared through the file by every process that opens it.
//!
//! `meta` records when the last complete sweep ran (`swept`, written in the transaction of the
//! batch that finished it). A sweep is due once `cleanup_interval` has passed since then (or
//! since the file was created, before the first sweep), or when the clock reads earlier than
//! that record (it was stepped back). Looking costs one read transaction and writes nothing.
//!
//! A process that finds a sweep due takes the clean-up lock (or leaves it to whoever holds
//! it), looks again under the lock (a sweeper that just finished committed before releasing
//! it), and sweeps: the clean-up thread to the end, [`Store::cleanup_if_due`] one batch. A
//! batch that leaves a backlog does not record the sweep as done, so the next process to look
//! finds it still due and goes on where it stopped (the `expiry` index is ordered by removal
//! time, so "where it stopped" is simply its start). Once the backlog is gone, nobody sweeps
//! until the interval has passed again, whichever process did the last batch.

use std::time::Duration;

use super::expiry::{Extent, FIRST_SWEEP_BATCH};
use super::handle::Store;
use super::shared::Core;
use crate::engine::CleanupReport;
use crate::error::Result;
use crate::format::schema::{self, META_CREATED, META_SWEEP_BATCH, META_SWEPT};

/// How soon the clean-up thread looks again after finding the clean-up lock taken, or a sweep
/// left unfinished (at most its interval).
const RETRY: Duration = Duration::from_secs(1);

/// What `meta` says of the schedule.
struct Schedule {
    /// When the last complete sweep ran, or else when the file was created (0 if neither reads
    /// as a u64: a sweep is then due).
    last: u64,
    /// The size suggested for the next single batch, if a batch left one.
    batch: Option<usize>,
}

impl Schedule {
    /// How long until a sweep is due at `now` with `interval` ms between sweeps; `None` if it
    /// is due.
    fn wait(&self, now: u64, interval: u64) -> Option<Duration> {
        let due_at = self.last.saturating_add(interval);
        // A clock stepped back (now before the record) would otherwise wait the step out.
        (now < due_at && now >= self.last).then(|| Duration::from_millis(due_at - now))
    }
}

/// What one look at the schedule did.
pub(crate) struct Turn {
    /// The sweep run, or skipped because another held the lock; `None` if none was due.
    pub(crate) report: Option<CleanupReport>,
    /// How long the clean-up thread should wait before it looks again (before its clamping to
    /// its interval).
    pub(crate) next: Duration,
}

impl Core {
    /// Reads the schedule: one read transaction of `meta`.
    fn schedule(&self) -> Result<Schedule> {
        self.reading(|| {
            let txn = self.read()?;
            let meta = schema::read_meta(&txn)?;
            let get = |key: &str| -> Result<Option<u64>> {
                Ok(meta.get(key)?.and_then(|v| schema::u64_of(v.value())))
            };
            let last = match get(META_SWEPT)? {
                Some(swept) => swept,
                None => get(META_CREATED)?.unwrap_or(0),
            };
            let batch = get(META_SWEEP_BATCH)?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            Ok(Schedule { last, batch })
        })
    }

    /// Sweeps if the shared schedule says a sweep is due: to the end (`whole`, the clean-up
    /// thread, which asks `stop` between batches) or one batch. Nothing is written when none
    /// is due. Without a `cleanup_interval` no sweep is ever due.
    pub(crate) fn sweep_if_due(&self, whole: bool, stop: &dyn Fn() -> bool) -> Result<Turn> {
        let Some(every) = self.cfg.sweep.interval else {
            return Ok(Turn { report: None, next: Duration::MAX });
        };
        self.rw()?;
        let interval = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        if let Some(wait) = self.schedule()?.wait(self.now(), interval) {
            return Ok(Turn { report: None, next: wait });
        }
        let Some(_lock) = self.locks.try_cleanup()? else {
            let report = CleanupReport { skipped: true, ..CleanupReport::default() };
            return Ok(Turn { report: Some(report), next: RETRY });
        };
        // Again under the lock: a sweep that ended meanwhile committed before releasing it.
        let schedule = self.schedule()?;
        if let Some(wait) = schedule.wait(self.now(), interval) {
            return Ok(Turn { report: None, next: wait });
        }
        let extent = if whole {
            Extent::Whole
        } else {
            let first = match self.cfg.sweep.batch_time {
                Some(_) => FIRST_SWEEP_BATCH,
                None => self.cfg.sweep.batch,
            };
            Extent::OneBatch(schedule.batch.unwrap_or(first))
        };
        let report = self.sweep_locked(extent, stop)?;
        let next = if report.complete { every } else { RETRY };
        Ok(Turn { report: Some(report), next })
    }
}

impl Store {
    /// Does this process's share of the clean-up, if one is due: the call for short-lived
    /// processes (a CGI program, after its response is written and its output closed, so that
    /// nobody waits for it), which never live long enough for a clean-up thread.
    ///
    /// The file records when it was last swept, and every process sharing it follows that one
    /// schedule. If less than `cleanup_interval` has passed since, this returns `Ok(None)`
    /// after one read transaction, having written nothing. Otherwise it takes the clean-up
    /// lock (if another thread or process holds it, it returns at once with
    /// [`CleanupReport::skipped`] set) and removes **one batch** of expired sessions, sized so
    /// that it holds the file for about `cleanup_batch_time` (the size is learnt from the last
    /// batch of this kind and kept in the file). If that batch found everything due, the sweep
    /// is recorded as done ([`CleanupReport::complete`]) and nobody sweeps again for an
    /// interval; if not, the next process to call this (or a clean-up thread) goes on with
    /// the backlog.
    ///
    /// Without a `cleanup_interval` ([`Builder::cleanup_interval(None)`](crate::Builder::cleanup_interval))
    /// no sweep is ever due and this always returns `Ok(None)`; [`Store::cleanup`] still
    /// sweeps by hand. Open a short-lived process with
    /// [`Builder::cleanup_thread(false)`](crate::Builder::cleanup_thread) and call this.
    ///
    /// # Errors
    /// [`Error::Storage`](crate::error::Error::Storage) from redb,
    /// [`Error::InvalidInput`](crate::error::Error::InvalidInput) on a read-only store,
    /// [`Error::Io`](crate::error::Error::Io) if the clean-up lock file cannot be used.
    pub fn cleanup_if_due(&self) -> Result<Option<CleanupReport>> {
        let turn = self.core.sweep_if_due(false, &|| false)?;
        if let Some(report) = &turn.report {
            self.core.record_cleanup(report);
        }
        Ok(turn.report)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Schedule;

    #[test]
    fn a_sweep_is_due_after_the_interval_or_when_the_clock_went_back() {
        let s = Schedule { last: 1_000, batch: None };
        assert_eq!(s.wait(1_000, 500), Some(Duration::from_millis(500)));
        assert_eq!(s.wait(1_499, 500), Some(Duration::from_millis(1)));
        assert_eq!(s.wait(1_500, 500), None);
        assert_eq!(s.wait(999, 500), None, "the clock was stepped back");
        let never = Schedule { last: 0, batch: None };
        assert_eq!(never.wait(5, u64::MAX), Some(Duration::from_millis(u64::MAX - 5)));
    }
}
