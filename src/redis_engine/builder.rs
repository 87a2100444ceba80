//! [`RedisBuilder`]: the Redis engine's settings, with the defaults and meanings of the redb
//! engine's [`Builder`](crate::Builder), and the server to speak to.

use std::sync::Arc;
use std::time::Duration;

use super::conn::{Pool, Target};
use super::engine::{Config, RedisEngine};
use super::keys::Keys;
use crate::engine::rules::Rules;
use crate::error::{Error, Result};
use crate::id::IdSpec;
use crate::store::CapPolicy;
use crate::time::{Clock, SystemClock};

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds a [`RedisEngine`]. Start from [`RedisEngine::builder`], [`RedisEngine::cluster_builder`]
/// or [`RedisEngine::from_url`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBuilder {
    nodes: Vec<String>,
    cluster: bool,
    prefix: String,
    cfg: Config,
}

impl RedisBuilder {
    pub(super) fn new(nodes: Vec<String>, cluster: bool) -> Self {
        let cfg = Config {
            rules: Rules {
                idle_timeout: Some(30 * 60 * 1000),
                absolute_lifetime: None,
                grace: 10 * 60 * 1000,
            },
            touch_resolution: None,
            max_states: 16,
            max_sessions: None,
            cap_policy: CapPolicy::Reject,
            max_data_size: 1 << 20,
            id_spec: IdSpec::default(),
            lock_ttl: 30_000,
            clock: Arc::new(SystemClock),
        };
        Self { nodes, cluster, prefix: "sessiondb".to_owned(), cfg }
    }

    /// The prefix of every key the engine writes (`<prefix>:{<id>}`, ...): engines with
    /// different prefixes share a server without seeing each other's sessions. Must not hold
    /// a brace. Default = `"sessiondb"`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The clock the engine judges expiry by. Default = the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.cfg.clock = clock;
        self
    }

    /// As [`Builder::idle_timeout`](crate::Builder::idle_timeout). Default = 30 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.cfg.rules.idle_timeout = timeout.map(millis);
        self
    }

    /// As [`Builder::absolute_lifetime`](crate::Builder::absolute_lifetime). Default = `None`.
    pub fn absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.cfg.rules.absolute_lifetime = lifetime.map(millis);
        self
    }

    /// As [`Builder::grace_period`](crate::Builder::grace_period). Default = 10 minutes.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.cfg.rules.grace = millis(grace);
        self
    }

    /// As [`Builder::touch_resolution`](crate::Builder::touch_resolution). Default = 1% of
    /// the idle timeout, or 1 minute without one.
    pub fn touch_resolution(mut self, resolution: Duration) -> Self {
        self.cfg.touch_resolution = Some(millis(resolution));
        self
    }

    /// As [`Builder::max_states`](crate::Builder::max_states). Default = 16.
    pub fn max_states(mut self, n: u64) -> Self {
        self.cfg.max_states = n.max(1);
        self
    }

    /// As [`Builder::max_sessions`](crate::Builder::max_sessions); every engine on one prefix
    /// must be given the same cap (docs/redis.md, "Caps"). Default = `None`.
    pub fn max_sessions(mut self, max: Option<u64>) -> Self {
        self.cfg.max_sessions = max;
        self
    }

    /// As [`Builder::cap_policy`](crate::Builder::cap_policy). Default = [`CapPolicy::Reject`].
    pub fn cap_policy(mut self, policy: CapPolicy) -> Self {
        self.cfg.cap_policy = policy;
        self
    }

    /// As [`Builder::max_data_size`](crate::Builder::max_data_size). Default = 1 MiB.
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.cfg.max_data_size = bytes.min(crate::format::codec::HARD_LIMIT - 4096);
        self
    }

    /// As [`Builder::id_spec`](crate::Builder::id_spec). Default = 32 base64url characters.
    pub fn id_spec(mut self, spec: IdSpec) -> Self {
        self.cfg.id_spec = spec;
        self
    }

    /// How long a session lock lives on the server if its holder never releases it (a killed
    /// process): a holder must finish within it. Default = 30 s.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.lock_ttl = millis(ttl).max(1);
        self
    }

    /// Connects, and checks that the server answers (`PING`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed address or prefix, [`Error::Server`] if the
    /// server does not answer.
    pub fn open(self) -> Result<RedisEngine> {
        let keys = Keys::new(&self.prefix)?;
        let bad = |e: redis::RedisError| {
            Error::InvalidInput(format!("Redis address {:?}: {e}", self.nodes))
        };
        let target = if self.cluster {
            let client = redis::cluster::ClusterClient::builder(self.nodes.iter().map(String::as_str))
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(Duration::from_secs(5))
                .build()
                .map_err(bad)?;
            Target::Cluster(client)
        } else {
            let [node] = self.nodes.as_slice() else {
                return Err(Error::InvalidInput("a standalone server has one address".into()));
            };
            Target::Single(redis::Client::open(node.as_str()).map_err(bad)?)
        };
        let pool = Pool::new(target);
        pool.run(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(RedisEngine::new(pool, keys, self.cfg))
    }
}
