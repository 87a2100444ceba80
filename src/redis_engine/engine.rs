//! [`RedisEngine`]: the engine's state (its connections, key names and settings); its
//! operations are in the modules beside this one, its constructors in `builder.rs`, the
//! [`Engine`](crate::Engine) trait on them in `seam.rs`.

use std::sync::atomic::AtomicU64;

use super::config::Config;
use super::conn::Pool;
use super::keys::Keys;
use super::recent::Recent;

/// A session engine on a Redis server or Cluster (feature `redis`): every process (and every
/// machine) that opens one on the same server and prefix shares the sessions, with the redb
/// engine's guarantees (versions, rotation, revocation chains, expiry judged by the engine's
/// clock). `Send + Sync`: one per process, shared by its threads, which share a small pool of
/// connections. See docs/redis.md.
pub struct RedisEngine {
    pub(super) pool: Pool,
    pub(super) keys: Keys,
    pub(super) cfg: Config,
    /// When this engine last ran a clean-up step, by its clock (`cleanup_if_due`).
    pub(super) last_cleanup: AtomicU64,
    /// Sessions read or written a moment ago: a save after a load skips its read.
    pub(super) recent: Recent,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("pool", &self.pool)
            .field("keys", &self.keys)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    pub(super) fn new(pool: Pool, keys: Keys, cfg: Config) -> Self {
        Self { pool, keys, cfg, last_cleanup: AtomicU64::new(0), recent: Recent::default() }
    }

    /// How many round trips to the server this engine has made (one per command or script
    /// call; a script loaded again after a server restart, or a Cluster redirection, adds
    /// some the count does not see). For benchmarks and `docs/redis.md`'s table.
    pub fn round_trips(&self) -> u64 {
        self.pool.calls()
    }

    /// The engine's time, ms since the epoch.
    pub(super) fn now(&self) -> u64 {
        self.cfg.clock.now_ms()
    }
}
