//! The session cap and clean-up on Redis. With `max_sessions`, the cap index `P:x` (a sorted
//! set: session id → removal time when indexed, early and never late) counts the sessions and
//! orders eviction, as the redb engine's `expiry` table does; clean-up settles its due
//! entries. Everything else (sessions without a cap, tombstones, users' indexes) is removed by
//! the keys' TTLs (docs/redis.md, "Expiry and clean-up").

use std::sync::atomic::Ordering;

use super::engine::RedisEngine;
use super::record::{MAX_RETRIES, Raw, Want, contended, decode_record};
use crate::engine::CleanupReport;
use crate::engine::records::SessionRecord;
use crate::engine::rules::CapPolicy;
use crate::error::{Error, Result};

/// The most early cap entries one eviction re-indexes before it evicts by indexed time.
const MAX_EVICTION_REINDEX: usize = 64;

/// The most cap entries one clean-up step settles.
const STEP: usize = 64;

/// How often [`RedisEngine::cleanup_if_due`] finds a step due, ms by the engine's clock.
const CLEANUP_INTERVAL: u64 = 60_000;

/// What settling one cap entry did.
enum Settled {
    /// Removed its session, which held this many states.
    Session(u64),
    /// Removed a damaged session.
    Corrupted(u64),
    /// No session there: removed the entry alone.
    Stale,
    /// Moved the entry to its session's removal time.
    Reindexed,
    /// The session was written meanwhile: read again.
    Raced,
}

impl RedisEngine {
    fn cap_count(&self) -> Result<u64> {
        let key = self.keys.cap();
        self.pool.run(|c| redis::cmd("ZCARD").arg(&key).query(c))
    }

    /// Cap entries filed at or before `upto`, the first `limit`, with their scores.
    fn cap_due(&self, upto: &str, limit: usize) -> Result<Vec<(String, f64)>> {
        let key = self.keys.cap();
        self.pool.run(|c| {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg("-inf")
                .arg(upto)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .arg("WITHSCORES")
                .query(c)
        })
    }

    /// Settles the cap entry of `sid` filed at `filed`: removes its session if `remove` says
    /// so, else moves the entry to the session's removal time.
    fn settle(
        &self,
        sid: &str,
        filed: f64,
        remove: impl FnOnce(&SessionRecord) -> bool,
    ) -> Result<Settled> {
        let (r, g) = match self.read_raw(sid, Want::Nothing)? {
            Raw::Live { r, g, .. } => (r, g),
            Raw::Retired(_) | Raw::Missing => {
                self.unfile_cap(sid)?;
                return Ok(Settled::Stale);
            }
        };
        let Some(rec) = decode_record(sid, &r).ok().filter(|_| !g.is_empty()) else {
            let states = self.delete_session(sid, None)?.unwrap_or(0);
            self.unfile_cap(sid)?;
            return Ok(Settled::Corrupted(states));
        };
        if remove(&rec) {
            let Some(states) = self.delete_session(sid, Some(&g))? else {
                return Ok(Settled::Raced);
            };
            self.unfile(sid, rec.user.as_deref())?;
            return Ok(Settled::Session(states));
        }
        #[expect(clippy::cast_precision_loss, reason = "ms times are exact in an f64")]
        let early = rec.remove_at as f64 > filed; // the session was used since it was filed
        if early || rec.remove_at == u64::MAX {
            self.zadd(&self.keys.cap(), &["XX"], rec.remove_at, sid)?;
        }
        Ok(Settled::Reindexed)
    }

    /// Settles up to `limit` cap entries due at `now`.
    fn sweep_step(&self, now: u64, limit: usize) -> Result<CleanupReport> {
        let mut report = CleanupReport { batches: 1, ..CleanupReport::default() };
        let due = self.cap_due(&now.to_string(), limit)?;
        let more = due.len() >= limit;
        for (sid, filed) in due {
            match self.settle(&sid, filed, |rec| rec.remove_at <= now)? {
                Settled::Session(states) => {
                    report.sessions += 1;
                    report.states += states;
                }
                Settled::Corrupted(states) => {
                    report.corrupted += 1;
                    report.states += states;
                }
                Settled::Stale => report.stale_entries += 1,
                Settled::Reindexed => report.reindexed += 1,
                Settled::Raced => {}
            }
        }
        report.complete = !more;
        Ok(report)
    }

    /// Makes room for one more session under `max_sessions`: settles some due entries, then
    /// applies the cap policy. The count is the cap index's, so concurrent creates of several
    /// processes may pass the cap by as many as they are (docs/redis.md, "Caps").
    pub(super) fn make_room(&self, now: u64) -> Result<()> {
        let Some(max) = self.cfg.max_sessions else { return Ok(()) };
        if self.cap_count()? < max {
            return Ok(());
        }
        self.sweep_step(now, STEP)?;
        let mut reindexed = 0;
        let mut raced = 0;
        while self.cap_count()? >= max {
            if self.cfg.cap_policy == CapPolicy::Reject || max == 0 {
                return Err(Error::MaxSessionsExceeded { max });
            }
            let Some((sid, filed)) = self.cap_due("+inf", 1)?.into_iter().next() else {
                return Ok(());
            };
            let exhausted = reindexed >= MAX_EVICTION_REINDEX;
            #[expect(clippy::cast_precision_loss, reason = "ms times are exact in an f64")]
            let evict = |rec: &SessionRecord| {
                exhausted || rec.remove_at as f64 <= filed || rec.remove_at <= now
            };
            match self.settle(&sid, filed, evict)? {
                Settled::Reindexed => reindexed += 1,
                Settled::Raced => {
                    raced += 1;
                    if raced >= MAX_RETRIES {
                        return Err(contended());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// As [`Store::cleanup`](crate::Store::cleanup): settles every due cap entry (with a cap);
    /// the rest is removed by the keys' TTLs.
    pub(super) fn cleanup(&self) -> Result<CleanupReport> {
        let now = self.now();
        self.last_cleanup.store(now, Ordering::Relaxed);
        let mut total = CleanupReport::default();
        if self.cfg.max_sessions.is_none() {
            total.complete = true;
            return Ok(total);
        }
        loop {
            let step = self.sweep_step(now, STEP)?;
            total.add(step);
            if step.complete {
                return Ok(total);
            }
        }
    }

    /// As [`Store::cleanup_if_due`](crate::Store::cleanup_if_due): one step, once a minute of
    /// the engine's clock per engine.
    pub(super) fn cleanup_if_due(&self) -> Result<Option<CleanupReport>> {
        let now = self.now();
        let last = self.last_cleanup.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < CLEANUP_INTERVAL {
            return Ok(None);
        }
        self.last_cleanup.store(now, Ordering::Relaxed);
        if self.cfg.max_sessions.is_none() {
            return Ok(Some(CleanupReport { complete: true, ..CleanupReport::default() }));
        }
        self.sweep_step(now, STEP).map(Some)
    }
}
