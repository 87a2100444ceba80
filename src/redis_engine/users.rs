//! Sessions by user on Redis: each user's index is a sorted set of its own (its own slot),
//! written as a step after the session's own write; its entries are scored by the session's
//! removal time when filed (early, never late), and checked against the session once that
//! time has passed (docs/redis.md, "The users index").

use super::engine::RedisEngine;
use super::record::{Raw, Want, decode_record};
use crate::error::{Error, Result};
use crate::id::SessionId;

impl RedisEngine {
    /// As [`Store::user_sessions`](crate::Store::user_sessions): the sessions filed under
    /// `user`, in id order. An entry whose score has passed is checked against its session:
    /// removed if the session is gone or no longer the user's, moved to its removal time if
    /// it was used since.
    pub(super) fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>> {
        let now = self.now();
        let key = self.keys.user(user);
        let entries: Vec<(String, f64)> = self
            .pool
            .run(|c| redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").query(c))?;
        let mut out = Vec::new();
        for (sid, filed) in entries {
            #[expect(clippy::cast_precision_loss, reason = "ms times are exact in an f64")]
            let due = filed <= now as f64;
            if due && !self.refile_user(user, &sid, now)? {
                continue;
            }
            out.push(
                SessionId::parse(&sid)
                    .map_err(|_| Error::Corrupted { table: "users", key: sid.clone() })?,
            );
        }
        out.sort();
        Ok(out)
    }

    /// Checks a due entry of `user`'s index: whether its session is still there and the
    /// user's (then re-filed at its removal time), else removes it.
    fn refile_user(&self, user: &[u8], sid: &str, now: u64) -> Result<bool> {
        let key = self.keys.user(user);
        if let Raw::Live { r, .. } = self.read_raw(sid, Want::Nothing)?
            && let Ok(rec) = decode_record(sid, &r)
            && rec.remove_at > now
            && rec.user.as_deref() == Some(user)
        {
            self.zadd(&key, &["XX"], rec.remove_at, sid)?;
            return Ok(true);
        }
        self.unfile_user(user, sid)?;
        Ok(false)
    }

    /// As [`Store::revoke_user`](crate::Store::revoke_user): revokes the chain of every
    /// session filed under `user`, one session at a time (each in its own slot).
    pub(super) fn revoke_user(&self, user: &[u8]) -> Result<u64> {
        let now = self.now();
        let key = self.keys.user(user);
        let sids: Vec<String> =
            self.pool.run(|c| redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        let mut revoked = 0;
        for sid in sids {
            if self.revoke_chain(&sid, now)? {
                revoked += 1;
            }
            self.unfile_user(user, &sid)?; // a stale entry, or one the revocation left
        }
        Ok(revoked)
    }
}
