//! The Redis engine (feature `redis`): sessions on a Redis (or Valkey) server, standalone or
//! Cluster, behind the same [`Engine`](crate::Engine) trait and conformance suite as the redb
//! engine. `docs/redis.md` describes the keys, the scripts and what each failure leaves.
//!
//! ```no_run
//! use sessiondb::{Engine, NewSession, RedisEngine};
//! let engine = RedisEngine::builder("redis://127.0.0.1:6379").prefix("myapp").open()?;
//! let created = engine.create_with(NewSession::new(b"user=ann", b"page 1"))?;
//! assert_eq!(engine.load(&created.id, &created.token)?.state_data, b"page 1");
//! # Ok::<_, sessiondb::Error>(())
//! ```

mod builder;
mod cap;
mod conn;
mod engine;
mod keys;
mod lock;
mod record;
mod rotate;
mod scripts;
mod session;
mod users;

pub use builder::RedisBuilder;
pub use engine::RedisEngine;
pub use lock::RedisLock;
