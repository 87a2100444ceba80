//! Expiry: deadlines, the clean-up sweep, caps, idle deletion and clock adjustment.
//!
//! The `expiry` table is keyed by (indexed removal time, session id), so everything here walks
//! it from its start: a range scan that stops at the first entry not yet due. The index is
//! lazy: an entry may be early (the session was used since it was filed) but never late, so a
//! sweep or an eviction that meets an early entry moves it to the session's real removal time
//! (re-indexing) and goes on.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::admin::SessionStatus;
use super::handle::Store;
use super::op::WriteOp;
use super::record::{
    Filing, SessionRecord, decode_session, get_session, put_session, remove_session,
    shifted_tombstone, tombstone_due,
};
use super::shared::Core;
use crate::engine::CleanupReport;
use crate::error::{Error, Result};
use crate::format::schema::{self, ExpiryKey, META_SWEEP_BATCH, META_SWEPT, RECORD, WriteTables};
use crate::store::config::CapPolicy;

/// What [`settle`] did with an `expiry` entry.
enum Settled {
    /// Removed the session it indexes, with its states.
    Session { states: u64 },
    /// Removed a damaged record, with its states.
    Corrupted { states: u64 },
    /// No record, or a record filed under another key: removed the entry alone.
    Stale,
    /// Moved the entry to its session's real removal time: the session was kept.
    Reindexed,
}

/// Settles the `expiry` entry `key`: removes its session if `remove(record)` says so, else
/// moves the entry to the record's real `remove_at` (re-indexing, which rewrites the record's
/// `indexed`); a stale entry is removed alone, a damaged record with its states.
fn settle(
    t: &mut WriteTables<'_>,
    key: ExpiryKey<'_>,
    remove: impl FnOnce(&SessionRecord) -> bool,
) -> Result<Settled> {
    let sid = key.1;
    match get_session(&t.sessions, sid) {
        Ok(Some(rec)) if rec.expiry_key(sid) == key && remove(&rec) => {
            Ok(Settled::Session { states: remove_session(t, sid, Some(&rec))? })
        }
        Ok(Some(mut rec)) if rec.expiry_key(sid) == key => {
            put_session(t, sid, Filing::Exact, &mut rec)?;
            Ok(Settled::Reindexed)
        }
        Ok(_) => {
            t.expiry.remove(key)?;
            Ok(Settled::Stale)
        }
        Err(Error::Corrupted { .. }) => {
            Ok(Settled::Corrupted { states: remove_session(t, sid, None)? })
        }
        Err(e) => Err(e),
    }
}

/// Settles up to `limit` `expiry` entries filed at or before `now`, in one transaction: removes
/// the sessions whose stored `remove_at` has passed, re-indexes the others (used since they
/// were filed). A re-indexed entry moves past `now`, so a sweep ends.
fn sweep_batch(t: &mut WriteTables<'_>, now: u64, limit: usize) -> Result<CleanupReport> {
    let mut due = Vec::new();
    for entry in t.expiry.iter()? {
        let (key, _) = entry?;
        let (indexed, sid) = key.value();
        if indexed > now || due.len() >= limit {
            break;
        }
        due.push((indexed, sid.to_vec()));
    }
    let mut report = CleanupReport { batches: 1, ..CleanupReport::default() };
    for (indexed, sid) in due {
        match settle(t, (indexed, &sid), |rec| rec.remove_at <= now)? {
            Settled::Session { states } => {
                report.sessions += 1;
                report.states += states;
            }
            Settled::Corrupted { states } => {
                report.corrupted += 1;
                report.states += states;
            }
            Settled::Stale => report.stale_entries += 1,
            Settled::Reindexed => report.reindexed += 1,
        }
    }
    Ok(report)
}

/// The most early `expiry` entries one eviction under the cap re-indexes before it evicts by
/// indexed time (see [`Core::make_room`]).
const MAX_EVICTION_REINDEX: usize = 64;

/// The first batch of a sweep sized by time (`Builder::cleanup_batch_time`); later batches
/// grow from it as the budget allows.
pub(crate) const FIRST_SWEEP_BATCH: usize = 64;
/// The smallest batch a sweep sized by time shrinks to.
const MIN_SWEEP_BATCH: usize = 16;

/// The size of a sweep's next batch: the last one, `last` sessions, held the file for `held`;
/// scaled towards a target time, by at most a factor of two either way (so one slow commit does
/// not collapse the sweep), within `MIN_SWEEP_BATCH..=max`.
///
/// The target is `budget`, unless even the shortest hold of this sweep so far (`quickest`)
/// exceeds it: a commit has a fixed cost (its syncs) that no smaller batch avoids, and where
/// that cost alone exceeds the budget, shrinking would only make the sweep slower. The target
/// is then four times `quickest`, so that the fixed cost is about a quarter of each batch's
/// time.
fn next_sweep_batch(
    last: usize,
    held: Duration,
    quickest: Duration,
    budget: Duration,
    max: usize,
) -> usize {
    let target = if quickest > budget { quickest.saturating_mul(4) } else { budget };
    let held = held.as_secs_f64().max(1e-9);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a batch size: the float is clamped to a small positive range first"
    )]
    let scaled = (last as f64 * target.as_secs_f64() / held)
        .clamp(last as f64 / 2.0, last as f64 * 2.0) as usize;
    scaled.clamp(MIN_SWEEP_BATCH.min(max), max)
}

/// Removes up to `limit` tombstones that are due. Tombstones have no index, so this scans the
/// table; it holds one entry per rotation or log-out whose session would still be alive.
fn sweep_tombstones(t: &mut WriteTables<'_>, now: u64, limit: usize) -> Result<u64> {
    let mut due = Vec::new();
    for entry in t.tombstones.iter()? {
        let (key, value) = entry?;
        if tombstone_due(value.value(), now) {
            due.push(key.value().to_vec());
            if due.len() >= limit {
                break;
            }
        }
    }
    for key in &due {
        t.tombstones.remove(key.as_slice())?;
    }
    Ok(due.len() as u64)
}

impl Core {
    /// When `rec` stops being live for this handle: the stricter of the stored deadline and
    /// this handle's settings.
    pub(crate) fn effective_expiry(&self, rec: &SessionRecord) -> u64 {
        self.cfg.rules().effective_expiry(rec)
    }

    /// `rec` with its deadlines computed from its times and this process's settings.
    pub(crate) fn with_deadlines(&self, rec: SessionRecord) -> SessionRecord {
        self.cfg.rules().with_deadlines(rec)
    }

    /// Where `rec` stands at `now` by the stored deadlines and this process's settings
    /// ([`Rules::status`](crate::engine::rules::Rules::status)).
    pub(crate) fn status(&self, rec: &SessionRecord, now: u64) -> SessionStatus {
        self.cfg.rules().status(rec, now)
    }

    /// Makes room for one more session under `max_sessions`: sweeps some dead sessions, then
    /// applies the cap policy. Returns the cap if the policy refuses the new session; the sweep
    /// is committed either way.
    ///
    /// Sessions are counted by their `expiry` entries (exactly one per session): constant
    /// time. `EvictOldest` evicts the session of the first `expiry` entry; an early entry
    /// there (its session was used since it was filed) is first moved to the session's real
    /// removal time, up to [`MAX_EVICTION_REINDEX`] times per call, so the session evicted is
    /// the one that would be removed first, unless more early entries than that precede it:
    /// then it is the first by indexed time (`docs/format.md`).
    pub(crate) fn make_room(&self, t: &mut WriteTables<'_>, now: u64) -> Result<Option<u64>> {
        let Some(max) = self.cfg.max_sessions else {
            return Ok(None);
        };
        if t.expiry.len()? < max {
            return Ok(None);
        }
        sweep_batch(t, now, 64)?;
        let mut reindexed = 0;
        while t.expiry.len()? >= max {
            if self.cfg.cap_policy == CapPolicy::Reject || max == 0 {
                return Ok(Some(max));
            }
            let (indexed, sid) = {
                let first = t.expiry.first()?.ok_or_else(|| Error::Corrupted {
                    table: "expiry",
                    key: "(first entry missing while sessions exist)".into(),
                })?;
                let (i, s) = first.0.value();
                (i, s.to_vec())
            };
            // Evicted if filed exactly (or late), already due, or the re-index budget is spent.
            let exhausted = reindexed >= MAX_EVICTION_REINDEX;
            let evict =
                |rec: &SessionRecord| exhausted || rec.remove_at <= indexed || rec.remove_at <= now;
            let settled = settle(t, (indexed, &sid), evict)?;
            reindexed += usize::from(matches!(settled, Settled::Reindexed));
        }
        Ok(None)
    }

    /// Sweeps in batches until nothing is due, unless another thread or process holds the
    /// clean-up lock; `stop` is asked between batches.
    pub(crate) fn sweep(&self, stop: &dyn Fn() -> bool) -> Result<CleanupReport> {
        self.rw()?;
        let Some(_lock) = self.locks.try_cleanup()? else {
            return Ok(CleanupReport { skipped: true, ..CleanupReport::default() });
        };
        self.sweep_locked(Extent::Whole, stop)
    }

    /// Sweeps as far as `extent` says; the caller holds the clean-up lock. The batch that
    /// finds nothing more due records the sweep as done (`meta`'s `swept`, the shared
    /// schedule) in its own transaction; a single batch that leaves a backlog records the size
    /// its time suggests for the next one (`sweep_batch`).
    pub(crate) fn sweep_locked(
        &self,
        extent: Extent,
        stop: &dyn Fn() -> bool,
    ) -> Result<CleanupReport> {
        let mut total = CleanupReport::default();
        let max = self.cfg.sweep.batch;
        let budget = self.cfg.sweep.batch_time;
        let (mut limit, single) = match extent {
            Extent::Whole if budget.is_some() => (max.min(FIRST_SWEEP_BATCH), false),
            Extent::Whole => (max, false),
            Extent::OneBatch(n) => (n.clamp(1, max), true),
        };
        let mut quickest = Duration::MAX;
        loop {
            // Through the group committer: request writes queued meanwhile go first (FIFO), so
            // a writer of this process waits for at most one batch.
            let swept = self.submit(SweepBatch { limit, single, budget, max })?;
            let batch = swept.report;
            total.add(batch);
            if batch.complete || single || stop() {
                return Ok(total);
            }
            if let Some(budget) = budget {
                let held = swept.began.map_or(Duration::ZERO, |b| b.elapsed());
                quickest = quickest.min(held);
                limit = next_sweep_batch(limit, held, quickest, budget, max);
            }
            // Writers of other processes wait on redb's file lock: let them in between batches.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One batch of a sweep: up to `limit` sessions and as many tombstones removed. The batch that
/// finds nothing more due records the sweep as done; a `single` batch that leaves a backlog
/// records the size its time suggests for the next one, from `budget` and `max`.
#[derive(Debug, Serialize, Deserialize)]
struct SweepBatch {
    limit: usize,
    single: bool,
    budget: Option<Duration>,
    max: usize,
}

/// What a [`SweepBatch`] removed, and when it began inside the write transaction.
#[derive(Debug, Serialize, Deserialize)]
struct Swept {
    report: CleanupReport,
    /// From then until the commit the batch held the file, and every other writer waited. Not
    /// sent along: an instant means nothing to another process (a batch committed elsewhere
    /// reads as held for no time).
    #[serde(skip)]
    began: Option<Instant>,
}

impl WriteOp for SweepBatch {
    type Output = Swept;

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Swept>> {
        let Self { limit, single, budget, max } = *self;
        let start = Instant::now();
        let now = c.now();
        let mut batch = sweep_batch(t, now, limit)?;
        batch.tombstones = sweep_tombstones(t, now, limit)?;
        let removed = batch.sessions + batch.corrupted + batch.stale_entries + batch.reindexed;
        let more = removed >= limit as u64 || batch.tombstones >= limit as u64;
        if !more {
            t.meta.insert(META_SWEPT, now.to_le_bytes().as_slice())?;
            batch.complete = true;
        } else if single && let Some(budget) = budget {
            // The work's time, without the commit's (not known yet): the part a smaller batch
            // shortens.
            let next = next_sweep_batch(limit, start.elapsed(), Duration::ZERO, budget, max);
            t.meta.insert(META_SWEEP_BATCH, (next as u64).to_le_bytes().as_slice())?;
        }
        Ok(Ok(Swept { report: batch, began: Some(start) }))
    }
}

/// How far a sweep goes once it holds the clean-up lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extent {
    /// Batches until nothing is due (or until asked to stop).
    Whole,
    /// One batch of at most this many sessions (and as many tombstones).
    OneBatch(usize),
}

impl Core {
    /// Adds a finished sweep to the statistics.
    pub(crate) fn record_cleanup(&self, report: &CleanupReport) {
        let mut stats = self.cleanup_stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.runs += 1;
        stats.skipped += u64::from(report.skipped);
        stats.removed.add(*report);
    }

    /// Records a failed sweep of the clean-up thread.
    pub(crate) fn record_cleanup_error(&self, e: &Error) {
        let mut stats = self.cleanup_stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.errors += 1;
        stats.last_error = Some(e.to_string());
    }
}

impl Store {
    /// Removes every session past its grace window, in batches of at most `cleanup_batch`
    /// sessions, one write transaction each, so other writers wait at most one batch (pyweblib's
    /// `cleanUp`, Aquarium's `cleanup`). Batches are sized so that each holds the file for about
    /// `cleanup_batch_time`. The clean-up thread runs the same sweep.
    ///
    /// Only one thread or process sweeps at a time: if another holds the clean-up lock, this
    /// returns at once with [`CleanupReport::skipped`] set. A sweep that reaches the end records
    /// it in the file ([`CleanupReport::complete`]): the processes following the shared schedule
    /// ([`Store::cleanup_if_due`], the clean-up threads) then wait an interval from it.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store. Batches
    /// committed before an error stay committed.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        let report = self.core.sweep(&|| false)?;
        self.core.record_cleanup(&report);
        Ok(report)
    }

    /// Deletes every session not used for more than `idle` (session2's `delete_old_sessions`),
    /// whatever the configured timeouts. Returns how many were deleted. "Used" is the persisted
    /// last access, which lags by up to the touch resolution: with `idle` shorter than that,
    /// a session loaded within the last `idle` may be deleted.
    ///
    /// Scans the whole `sessions` table (records and states) once in a read transaction, then
    /// deletes in batches.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn delete_idle(&self, idle: Duration) -> Result<u64> {
        let cutoff =
            self.core.now().saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let candidates = self.core.reading(|| {
            let mut candidates = Vec::new();
            let txn = self.core.read()?;
            for entry in schema::read_sessions(&txn)?.iter()? {
                let (k, v) = entry?;
                let (sid, n) = k.value();
                if n == RECORD
                    && let Ok(rec) = decode_session(sid, v.value())
                    && rec.last_access < cutoff
                {
                    candidates.push(sid.to_vec());
                }
            }
            Ok(candidates)
        })?;
        let mut deleted = 0;
        for chunk in candidates.chunks(self.core.cfg.sweep.batch) {
            deleted += self.core.write(|t| {
                let mut n = 0;
                for sid in chunk {
                    // Re-checked: the session may have been used since the scan.
                    if let Some(rec) = get_session(&t.sessions, sid)?
                        && rec.last_access < cutoff
                    {
                        remove_session(t, sid, Some(&rec))?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
        Ok(deleted)
    }

    /// Shifts every stored time (of sessions and tombstones) by `delta_ms` (Aquarium's
    /// `adjustTime`): call it after the
    /// system clock was stepped, so that sessions neither expire early nor live too long.
    /// Returns how many sessions were adjusted. One write transaction; holds every record in
    /// memory while it runs.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a record cannot be read (nothing is changed),
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn adjust_time(&self, delta_ms: i64) -> Result<u64> {
        let shift = |t: u64| match t {
            u64::MAX => u64::MAX,
            t => t.saturating_add_signed(delta_ms),
        };
        self.core.write(|t| {
            let mut all = Vec::new();
            for entry in t.sessions.iter()? {
                let (k, v) = entry?;
                let (sid, n) = k.value();
                if n == RECORD {
                    all.push((sid.to_vec(), decode_session(sid, v.value())?));
                }
            }
            let adjusted = all.len() as u64;
            for (sid, mut rec) in all {
                rec.created = shift(rec.created);
                rec.last_access = shift(rec.last_access);
                rec.expires_at = shift(rec.expires_at);
                rec.remove_at = shift(rec.remove_at);
                rec.deadline = rec.deadline.map(shift);
                // Filed at the shifted `remove_at` exactly: never late after a step back.
                put_session(t, &sid, Filing::Exact, &mut rec)?;
            }
            // Tombstones too: a forwarding window must not grow or shrink with the step.
            let mut stones = Vec::new();
            for entry in t.tombstones.iter()? {
                let (k, v) = entry?;
                if let Some(bytes) = shifted_tombstone(v.value(), shift) {
                    stones.push((k.value().to_vec(), bytes));
                }
            }
            for (sid, bytes) in stones {
                t.tombstones.insert(sid.as_slice(), bytes.as_slice())?;
            }
            Ok(adjusted)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MIN_SWEEP_BATCH, next_sweep_batch};

    const MS: Duration = Duration::from_millis(1);

    /// `next_sweep_batch` when the sweep's quickest hold so far was short (1 ms).
    fn next(last: usize, held: Duration, budget: Duration, max: usize) -> usize {
        next_sweep_batch(last, held, MS, budget, max)
    }

    #[test]
    fn a_batch_grows_when_fast_and_shrinks_when_slow_by_at_most_two() {
        assert_eq!(next(100, 10 * MS, 15 * MS, 1000), 150);
        assert_eq!(next(100, MS, 15 * MS, 1000), 200, "at most doubled");
        assert_eq!(next(100, 30 * MS, 15 * MS, 1000), 50);
        assert_eq!(next(100, 300 * MS, 15 * MS, 1000), 50, "at most halved");
    }

    #[test]
    fn a_batch_stays_within_the_minimum_and_cleanup_batch() {
        assert_eq!(next(800, Duration::ZERO, 15 * MS, 1000), 1000);
        assert_eq!(next(MIN_SWEEP_BATCH, 300 * MS, 15 * MS, 1000), MIN_SWEEP_BATCH);
        assert_eq!(next(5, 300 * MS, 15 * MS, 5), 5, "cleanup_batch below the minimum");
    }

    #[test]
    fn a_fixed_cost_above_the_budget_makes_batches_grow_not_shrink() {
        // Every commit takes at least 20 ms (a slow disk's syncs), more than the 15 ms budget:
        // the target becomes 80 ms, and a 64-session batch that held 25 ms grows.
        assert_eq!(next_sweep_batch(64, 25 * MS, 20 * MS, 15 * MS, 1000), 128);
        assert_eq!(next_sweep_batch(400, 100 * MS, 20 * MS, 15 * MS, 1000), 320);
        // Commits that fit the budget (quickest hold 2 ms, or 10 ms): the budget rules.
        assert_eq!(next_sweep_batch(64, 25 * MS, 2 * MS, 15 * MS, 1000), 38);
        assert_eq!(next_sweep_batch(64, 25 * MS, 10 * MS, 15 * MS, 1000), 38);
    }
}
