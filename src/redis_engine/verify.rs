//! `verify` and `repair` on Redis: every value decodes (the checksummed codec), each session's
//! counters agree with its record and its states, and the indexes in other slots (users'
//! indexes, the cap index) agree with the sessions. `repair` fixes those indexes, whose
//! failure modes docs/redis.md documents (a crash between a session's write and its index
//! step); it never touches a session, state or tombstone.
//!
//! The walk reads key by key, not one snapshot: with live writers, an index step that had not
//! yet run when it looked shows as a problem. Every index problem is checked again against a
//! fresh read before it is reported or fixed; run `verify` again to confirm what remains.

use std::collections::BTreeMap;

use super::admin::{Fields, Layout, record_of};
use super::engine::RedisEngine;
use super::record::{decode_state, decode_tombstone};
use crate::error::Result;
use crate::store::Verified;

/// What [`RedisEngine::repair`] found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repaired {
    /// What the walk found before fixing (as [`RedisEngine::verify`] reports it).
    pub found: Verified,
    /// Index entries written or removed.
    pub fixed: u64,
}

/// One walk, with or without fixing.
struct Walk<'e> {
    e: &'e RedisEngine,
    fix: bool,
    report: Verified,
    fixed: u64,
    /// The sessions read: id → the user it is filed under.
    users_of: BTreeMap<String, Option<Vec<u8>>>,
    /// Whether a cap index is in use: the engine has a cap, or `P:x` exists.
    cap: bool,
    now: u64,
}

impl RedisEngine {
    /// Checks everything the prefix holds: every record, state and tombstone decodes; each
    /// session's generation `g` is a number, its latest-state field `l` is its record's, and
    /// it holds exactly the states `oldest..=latest`; a live session and a tombstone do not
    /// share an id; every session with a user is in that user's index and every entry of a
    /// user's index is a session of that user; with a cap index (the engine has a cap, or
    /// `P:x` exists) every session has an entry, no later than its removal time, and every
    /// entry is a session. Each problem is reported with its table (`sessions`, `states`,
    /// `tombstones`, `users`, `cap`) and key. Keys under the prefix that the engine does not
    /// write (another prefix that starts with this one and `:`) are left alone. Writes nothing.
    ///
    /// # Errors
    /// [`Error::Server`](crate::Error::Server) from the server; what it finds is in the report.
    pub fn verify(&self) -> Result<Verified> {
        Ok(self.walk(false)?.found)
    }

    /// [`RedisEngine::verify`], fixing the indexes in other slots as it goes: a missing user
    /// entry is filed, a stale one removed; a missing cap entry is filed at the session's
    /// removal time, a late one lowered, a stale one removed. Each is checked against a fresh
    /// read of the session first. Damaged sessions, states and tombstones are reported, not
    /// touched (a revocation or their TTL removes them).
    ///
    /// # Errors
    /// [`Error::Server`](crate::Error::Server) from the server.
    pub fn repair(&self) -> Result<Repaired> {
        self.walk(true)
    }

    fn walk(&self, fix: bool) -> Result<Repaired> {
        let layout = self.layout()?;
        let mut w = Walk {
            e: self,
            fix,
            report: Verified::default(),
            fixed: 0,
            users_of: BTreeMap::new(),
            cap: self.cfg.max_sessions.is_some() || layout.cap,
            now: self.now(),
        };
        w.sessions(&layout)?;
        w.tombstones(&layout)?;
        w.user_indexes(&layout)?;
        if w.cap {
            w.cap_index()?;
        }
        Ok(Repaired { found: w.report, fixed: w.fixed })
    }
}

impl Walk<'_> {
    fn sessions(&mut self, layout: &Layout) -> Result<()> {
        for sid in &layout.sessions {
            if crate::id::SessionId::parse(sid).is_err() {
                self.report.problem("sessions", sid.clone(), "not a valid session id");
                continue;
            }
            let Some(f) = self.e.fields(sid)? else { continue }; // deleted meanwhile
            self.report.sessions += 1;
            if layout.tombstones.contains(sid) {
                self.report.problem("tombstones", sid.clone(), "a tombstone beside a live session");
            }
            self.session(sid, &f)?;
        }
        Ok(())
    }

    fn session(&mut self, sid: &str, f: &Fields) -> Result<()> {
        let r = &mut self.report;
        for name in &f.other {
            r.problem("sessions", sid.to_owned(), format!("unknown field {name:?}"));
        }
        let parse = |v: &Option<Vec<u8>>| {
            v.as_deref().and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok())
        };
        if parse(&f.g).is_none() {
            r.problem("sessions", sid.to_owned(), "generation `g` missing or not a number");
        }
        let mut states: Vec<(u64, &[u8])> = Vec::new();
        for (n, bytes) in &f.states {
            r.states += 1;
            match n.parse::<u64>() {
                Ok(id) => states.push((id, bytes)),
                Err(_) => r.problem("states", format!("{sid}/{n}"), "not a state id"),
            }
        }
        let Ok(rec) = record_of(sid, f.r.as_deref()) else {
            let what =
                if f.r.is_some() { "record does not decode (checksum)" } else { "no record" };
            r.problem("sessions", sid.to_owned(), what);
            self.users_of.insert(sid.to_owned(), None);
            return Ok(());
        };
        if parse(&f.l) != Some(rec.latest_state) {
            r.problem(
                "sessions",
                sid.to_owned(),
                format!("latest state field `l` is not the record's {}", rec.latest_state),
            );
        }
        for &(id, bytes) in &states {
            if decode_state(sid, id, bytes).is_err() {
                r.problem("states", format!("{sid}/{id}"), "state does not decode (checksum)");
            }
            if !(rec.oldest_state..=rec.latest_state).contains(&id) {
                r.problem(
                    "states",
                    format!("{sid}/{id}"),
                    format!("outside the kept states {}..={}", rec.oldest_state, rec.latest_state),
                );
            }
        }
        for id in rec.oldest_state..=rec.latest_state {
            if !states.iter().any(|(n, _)| *n == id) {
                r.problem("states", format!("{sid}/{id}"), "kept state missing");
            }
        }
        if let Some(user) = &rec.user {
            let key = self.e.keys.user(user);
            if self.zscore(&key, sid)?.is_none()
                && self.still(sid, |rec| rec.user.as_ref() == Some(user))?
            {
                self.report.problem(
                    "users",
                    sid.to_owned(),
                    "session missing from its user's index",
                );
                if self.fix {
                    self.e.file_user(user, sid, rec.remove_at, self.now)?;
                    self.fixed += 1;
                }
            }
        }
        if self.cap {
            let key = self.e.keys.cap();
            #[expect(clippy::cast_precision_loss, reason = "ms times are exact in an f64")]
            match self.zscore(&key, sid)? {
                None if self.still(sid, |_| true)? => {
                    self.report.problem(
                        "cap",
                        sid.to_owned(),
                        "session missing from the cap index",
                    );
                    if self.fix {
                        self.e.zadd(&self.e.keys.cap(), &[], rec.remove_at, sid)?; // cap or not: a repair
                        self.fixed += 1;
                    }
                }
                Some(s) if s > rec.remove_at as f64 => {
                    self.report.problem(
                        "cap",
                        sid.to_owned(),
                        "cap entry later than the removal time",
                    );
                    if self.fix {
                        self.e.zadd(&self.e.keys.cap(), &["XX", "LT"], rec.remove_at, sid)?;
                        self.fixed += 1;
                    }
                }
                _ => {}
            }
        }
        self.users_of.insert(sid.to_owned(), rec.user);
        Ok(())
    }

    fn tombstones(&mut self, layout: &Layout) -> Result<()> {
        for sid in &layout.tombstones {
            let key = self.e.keys.tombstone(sid);
            let bytes: Option<Vec<u8>> =
                self.e.pool.run(|c| redis::cmd("GET").arg(&key).query(c))?;
            let Some(bytes) = bytes else { continue };
            self.report.tombstones += 1;
            if decode_tombstone(sid, &bytes).is_err() {
                self.report.problem(
                    "tombstones",
                    sid.clone(),
                    "tombstone does not decode (checksum)",
                );
            }
        }
        Ok(())
    }

    fn user_indexes(&mut self, layout: &Layout) -> Result<()> {
        for (user, key) in &layout.users {
            let Some(user) = user else { continue }; // not an index of this prefix
            let sids: Vec<String> =
                self.e.pool.run(|c| redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).query(c))?;
            for sid in sids {
                self.report.user_entries += 1;
                let known = self.users_of.get(&sid).is_some_and(|u| u.as_ref() == Some(user));
                if !known && !self.still(&sid, |rec| rec.user.as_ref() == Some(user))? {
                    self.report.problem(
                        "users",
                        format!("{key} {sid}"),
                        "stale entry: no session of this user",
                    );
                    if self.fix {
                        self.e.unfile_user(user, &sid)?;
                        self.fixed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn cap_index(&mut self) -> Result<()> {
        let key = self.e.keys.cap();
        let sids: Vec<String> =
            self.e.pool.run(|c| redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        for sid in sids {
            self.report.expiry_entries += 1;
            if !self.users_of.contains_key(&sid) && !self.still(&sid, |_| true)? {
                self.report.problem("cap", sid.clone(), "stale entry: no such session");
                if self.fix {
                    self.e.pool.run(|c| redis::cmd("ZREM").arg(&key).arg(&sid).query::<i64>(c))?;
                    self.fixed += 1;
                }
            }
        }
        Ok(())
    }

    fn zscore(&self, key: &str, sid: &str) -> Result<Option<f64>> {
        self.e.pool.run(|c| redis::cmd("ZSCORE").arg(key).arg(sid).query(c))
    }

    /// Whether `sid` is (read afresh) a session whose record passes `test`.
    fn still(
        &self,
        sid: &str,
        test: impl FnOnce(&crate::engine::records::SessionRecord) -> bool,
    ) -> Result<bool> {
        let Some(f) = self.e.fields(sid)? else { return Ok(false) };
        Ok(record_of(sid, f.r.as_deref()).is_ok_and(|rec| test(&rec)))
    }
}
