//! Expiry: deadlines, the clean-up sweep, caps, idle deletion and clock adjustment.
//!
//! The `expiry` table is keyed by (remove at, last access, session id), so everything here
//! walks it from its start: a range scan that stops at the first entry not yet due.

use std::time::Duration;

use redb::{ReadableTable, ReadableTableMetadata};

use super::record::{SessionRecord, decode_session, get_session, put_session, remove_session};
use super::{SessionStatus, Store};
use crate::config::CapPolicy;
use crate::error::{Error, Result};
use crate::schema::{self, ExpiryKey, WriteTables};

/// What a clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Write transactions used.
    pub batches: u64,
}

impl CleanupReport {
    fn add(&mut self, other: CleanupReport) {
        self.sessions += other.sessions;
        self.states += other.states;
        self.corrupted += other.corrupted;
        self.stale_entries += other.stale_entries;
        self.batches += other.batches;
    }
}

/// What [`remove_indexed`] found behind an `expiry` entry.
enum Removed {
    /// The session it indexes, removed with its states.
    Session { states: u64 },
    /// A damaged record, removed with its states.
    Corrupted { states: u64 },
    /// No record, or a record indexed under another key: only the entry was removed.
    Stale,
}

/// Removes the session an `expiry` entry points at, or the entry alone if it is stale.
fn remove_indexed(t: &mut WriteTables<'_>, key: ExpiryKey<'_>) -> Result<Removed> {
    let sid = key.2;
    match get_session(&t.sessions, sid) {
        Ok(Some(rec)) if rec.expiry_key(sid) == key => {
            Ok(Removed::Session { states: remove_session(t, sid, Some(&rec))? })
        }
        Ok(_) => {
            t.expiry.remove(key)?;
            Ok(Removed::Stale)
        }
        Err(Error::Corrupted { .. }) => {
            Ok(Removed::Corrupted { states: remove_session(t, sid, None)? })
        }
        Err(e) => Err(e),
    }
}

/// Removes up to `limit` sessions whose stored `remove_at` has passed, in one transaction.
fn sweep_batch(t: &mut WriteTables<'_>, now: u64, limit: usize) -> Result<CleanupReport> {
    let mut due = Vec::new();
    for entry in t.expiry.iter()? {
        let (key, _) = entry?;
        let (remove_at, last_access, sid) = key.value();
        if remove_at > now || due.len() >= limit {
            break;
        }
        due.push((remove_at, last_access, sid.to_vec()));
    }
    let mut report = CleanupReport { batches: 1, ..CleanupReport::default() };
    for (remove_at, last_access, sid) in due {
        match remove_indexed(t, (remove_at, last_access, &sid))? {
            Removed::Session { states } => {
                report.sessions += 1;
                report.states += states;
            }
            Removed::Corrupted { states } => {
                report.corrupted += 1;
                report.states += states;
            }
            Removed::Stale => report.stale_entries += 1,
        }
    }
    Ok(report)
}

impl Store {
    /// When a session created at `created` and last used at `last_access` stops being live,
    /// and when it may be removed, by this process's settings.
    fn deadlines(&self, created: u64, last_access: u64) -> (u64, u64) {
        let idle = self.cfg.idle_timeout.map_or(u64::MAX, |i| last_access.saturating_add(i));
        let absolute = self.cfg.absolute_lifetime.map_or(u64::MAX, |a| created.saturating_add(a));
        let expires_at = idle.min(absolute);
        (expires_at, expires_at.saturating_add(self.cfg.grace))
    }

    /// When `rec` stops being live for this handle: the stricter of the stored deadline and
    /// this handle's settings.
    pub(crate) fn effective_expiry(&self, rec: &SessionRecord) -> u64 {
        rec.expires_at.min(self.deadlines(rec.created, rec.last_access).0)
    }

    /// `rec` with its deadlines computed from its times and this process's settings.
    pub(crate) fn with_deadlines(&self, mut rec: SessionRecord) -> SessionRecord {
        (rec.expires_at, rec.remove_at) = self.deadlines(rec.created, rec.last_access);
        rec
    }

    /// Where `rec` stands at `now`. The stored deadlines and this process's settings both
    /// apply, the stricter winning, so a process with shorter timeouts never returns a session
    /// it considers expired. Removal, by contrast, follows the stored `remove_at` alone, so
    /// what a process may destroy does not depend on its own settings.
    pub(crate) fn status(&self, rec: &SessionRecord, now: u64) -> SessionStatus {
        let (expires_at, remove_at) = self.deadlines(rec.created, rec.last_access);
        if now < expires_at.min(rec.expires_at) {
            SessionStatus::Live
        } else if now < remove_at.min(rec.remove_at) {
            SessionStatus::Expired
        } else {
            SessionStatus::Gone
        }
    }

    /// Removes every session past its grace window, in batches of `cleanup_batch` sessions,
    /// one write transaction each, so other writers wait at most one batch.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store. Batches
    /// committed before an error stay committed.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        let mut total = CleanupReport::default();
        loop {
            let batch = self.write(|t| sweep_batch(t, self.now(), self.cfg.cleanup_batch))?;
            total.add(batch);
            if batch.sessions + batch.corrupted + batch.stale_entries
                < self.cfg.cleanup_batch as u64
            {
                return Ok(total);
            }
        }
    }

    /// Makes room for one more session under `max_sessions`: sweeps some dead sessions, then
    /// applies the cap policy.
    pub(crate) fn make_room(&self, t: &mut WriteTables<'_>, now: u64) -> Result<()> {
        let Some(max) = self.cfg.max_sessions else {
            return Ok(());
        };
        if t.sessions.len()? < max {
            return Ok(());
        }
        sweep_batch(t, now, 64)?;
        while t.sessions.len()? >= max {
            if self.cfg.cap_policy == CapPolicy::Reject || max == 0 {
                return Err(Error::MaxSessionsExceeded { max });
            }
            let (remove_at, last_access, sid) = {
                let first = t.expiry.first()?.ok_or_else(|| Error::Corrupted {
                    table: "expiry",
                    key: "(first entry missing while sessions exist)".into(),
                })?;
                let (r, l, s) = first.0.value();
                (r, l, s.to_vec())
            };
            remove_indexed(t, (remove_at, last_access, &sid))?;
        }
        Ok(())
    }

    /// Deletes every session not used for more than `idle` (session2's `delete_old_sessions`),
    /// whatever the configured timeouts. Returns how many were deleted. "Used" is the persisted
    /// last access, which lags by up to the touch resolution: with `idle` shorter than that,
    /// a session loaded within the last `idle` may be deleted.
    ///
    /// Scans the whole `sessions` table once in a read transaction, then deletes in batches.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn delete_idle(&self, idle: Duration) -> Result<u64> {
        let cutoff = self.now().saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let mut candidates = Vec::new();
        {
            let txn = self.read()?;
            for entry in schema::read_sessions(&txn)?.iter()? {
                let (k, v) = entry?;
                if let Ok(rec) = decode_session(k.value(), v.value())
                    && rec.last_access < cutoff
                {
                    candidates.push(k.value().to_vec());
                }
            }
        }
        let mut deleted = 0;
        for chunk in candidates.chunks(self.cfg.cleanup_batch) {
            deleted += self.write(|t| {
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

    /// Shifts every stored time by `delta_ms` (Aquarium's `adjustTime`): call it after the
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
        self.write(|t| {
            let mut all = Vec::new();
            for entry in t.sessions.iter()? {
                let (k, v) = entry?;
                let sid = k.value().to_vec();
                let rec = decode_session(&sid, v.value())?;
                all.push((sid, rec));
            }
            let adjusted = all.len() as u64;
            for (sid, mut rec) in all {
                let old_key = rec.expiry_key(&sid);
                rec.created = shift(rec.created);
                rec.last_access = shift(rec.last_access);
                rec.expires_at = shift(rec.expires_at);
                rec.remove_at = shift(rec.remove_at);
                put_session(t, &sid, Some(old_key), &rec)?;
            }
            Ok(adjusted)
        })
    }
}
