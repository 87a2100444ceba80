//! [`RedisEngine`]: its settings, its constructors, and the [`Engine`] trait on the operations
//! of the modules beside this one.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::builder::RedisBuilder;
use super::conn::Pool;
use super::keys::Keys;
use super::lock::RedisLock;
use crate::engine::rules::{Rules, touch_resolution};
use crate::engine::{CleanupReport, Created, Engine, Fetched, Named, NewSession, Save, Stored};
use crate::error::{Error, Result};
use crate::id::{IdSpec, SecureToken, SessionId};
use crate::store::CapPolicy;
use crate::time::Clock;

/// The settings a Redis engine runs with; durations in milliseconds.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) rules: Rules,
    pub(super) touch_resolution: Option<u64>,
    pub(super) max_states: u64,
    pub(super) max_sessions: Option<u64>,
    pub(super) cap_policy: CapPolicy,
    pub(super) max_data_size: usize,
    pub(super) id_spec: IdSpec,
    pub(super) lock_ttl: u64,
    pub(super) clock: Arc<dyn Clock>,
}

impl Config {
    /// The touch resolution, as the redb engine computes it.
    pub(super) fn touch_resolution(&self) -> u64 {
        touch_resolution(self.rules.idle_timeout, self.touch_resolution)
    }
}

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
        Self { pool, keys, cfg, last_cleanup: AtomicU64::new(0) }
    }

    /// A builder for an engine on the standalone server at `url` (`redis://host:port`, with
    /// `/db`, user and password as the redis crate takes them).
    pub fn builder(url: &str) -> RedisBuilder {
        RedisBuilder::new(vec![url.to_owned()], false)
    }

    /// A builder for an engine on the Cluster that `urls` (some of its nodes) belong to.
    pub fn cluster_builder(urls: &[&str]) -> RedisBuilder {
        RedisBuilder::new(urls.iter().map(|u| (*u).to_owned()).collect(), true)
    }

    /// An engine with the default settings on `url`: `redis://host:port` for a standalone
    /// server, `redis+cluster://host1:port1,host2:port2,...` for a Cluster.
    ///
    /// # Errors
    /// As [`RedisBuilder::open`]; [`Error::InvalidInput`] for another scheme.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::builder_from_url(url)?.open()
    }

    /// A builder for `url`, as [`RedisEngine::from_url`] reads it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a scheme other than `redis://` or `redis+cluster://`.
    pub fn builder_from_url(url: &str) -> Result<RedisBuilder> {
        if let Some(nodes) = url.strip_prefix("redis+cluster://") {
            let urls: Vec<String> = nodes
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if urls.is_empty() {
                return Err(Error::InvalidInput(format!("no Cluster node in {url:?}")));
            }
            Ok(RedisBuilder::new(urls, true))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Self::builder(url))
        } else {
            Err(Error::InvalidInput(format!(
                "{url:?} is not a Redis address: use redis://host:port or \
                 redis+cluster://host1:port1,host2:port2"
            )))
        }
    }

    /// The engine's time, ms since the epoch.
    pub(super) fn now(&self) -> u64 {
        self.cfg.clock.now_ms()
    }
}

impl Engine for RedisEngine {
    type Lock<'a> = RedisLock<'a>;

    fn create_with(&self, new: NewSession<'_>) -> Result<Created> {
        RedisEngine::create_with(self, new)
    }

    fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created> {
        RedisEngine::create_under(self, id, token, session_data, deadline)
    }

    fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state: Option<u64>,
    ) -> Result<Fetched> {
        RedisEngine::fetch_state(self, id, token, state)
    }

    fn store_state(&self, id: &SessionId, token: &SecureToken, save: Save<'_>) -> Result<Stored> {
        RedisEngine::store_state(self, id, token, save)
    }

    fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored> {
        RedisEngine::put(self, id, token, session_data, deadline)
    }

    fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()> {
        RedisEngine::touch(self, id, token)
    }

    fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created> {
        RedisEngine::regenerate(self, id, token, forward_for)
    }

    fn revoke(&self, id: &SessionId) -> Result<bool> {
        RedisEngine::revoke(self, id)
    }

    fn revoke_named(&self, named: Vec<Named>) -> Result<u64> {
        RedisEngine::revoke_named(self, named)
    }

    fn revoke_user(&self, user: &[u8]) -> Result<u64> {
        RedisEngine::revoke_user(self, user)
    }

    fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>> {
        RedisEngine::user_sessions(self, user)
    }

    fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        RedisEngine::moved_recently(self, id, token)
    }

    fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<RedisLock<'_>> {
        RedisEngine::lock(self, id, max_wait)
    }

    fn shares_lock(&self, a: &SessionId, b: &SessionId) -> bool {
        a == b
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        RedisEngine::cleanup(self)
    }

    fn cleanup_if_due(&self) -> Result<Option<CleanupReport>> {
        RedisEngine::cleanup_if_due(self)
    }
}
