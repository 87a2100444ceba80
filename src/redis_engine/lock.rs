//! The session lock on Redis: a key `P:{sid}:lock` set with `NX PX lock_ttl` to a random owner
//! value, polled with a growing pause up to the caller's wait, released by a compare-and-delete
//! script when the guard drops. A holder killed mid-request leaves the lock to its TTL.

use std::time::{Duration, Instant};

use super::engine::RedisEngine;
use super::scripts;
use crate::error::{Error, Result};
use crate::id::{SecureToken, SessionId};

/// A held session lock ([`Engine::lock`](crate::Engine::lock) of a [`RedisEngine`]), released
/// when dropped.
#[derive(Debug)]
#[must_use = "the lock is released when dropped"]
pub struct RedisLock<'a> {
    engine: &'a RedisEngine,
    key: String,
    owner: String,
}

impl Drop for RedisLock<'_> {
    fn drop(&mut self) {
        // A failure leaves the lock to its TTL: nothing else to do in a destructor.
        let (key, owner) = (&self.key, &self.owner);
        let _ = self.engine.pool.run(|c| scripts::UNLOCK.key(key).arg(owner).invoke::<i64>(c));
    }
}

impl RedisEngine {
    /// As [`Store::lock`](crate::Store::lock).
    pub(super) fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<RedisLock<'_>> {
        let key = self.keys.lock(id.as_str());
        let owner = SecureToken::generate()?.as_str().to_owned();
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let set: Option<String> = self.pool.run(|c| {
                redis::cmd("SET").arg(&key).arg(&owner).arg("NX").arg("PX").arg(self.cfg.lock_ttl).query(c)
            })?;
            if set.is_some() {
                return Ok(RedisLock { engine: self, key, owner });
            }
            let waited = start.elapsed();
            if waited >= max_wait {
                return Err(Error::LockTimeout { waited });
            }
            std::thread::sleep(pause.min(max_wait - waited));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
