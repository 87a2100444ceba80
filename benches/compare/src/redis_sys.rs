//! The Redis systems (REDIS.md), behind the same [`System`] interface as the others: a request
//! is a load, optionally followed by a save. Their `path` is the server's URL; the harness
//! starts the server itself (`redis_run.rs`) with the same settings for all three.
//!
//! - `sessiondb-redis`: sessiondb's Redis engine ([`sessiondb::RedisEngine`]), the same
//!   operations as `sessiondb-multi` (token check, version check, 16 states kept).
//! - `tower-redis`: tower-sessions' own Redis store (tower-sessions-redis-store 0.16, fred 10),
//!   driven as `tower-sqlite` is: load, then save the whole record (last writer wins).
//! - `redis-bare`: a `GET` of one key and, to save, a `SET` of it: the floor.

use std::cell::RefCell;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use tower_sessions_core::SessionStore;
use tower_sessions_core::session::Id;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

use crate::DATA;
use crate::systems::{Failure, Key, Kind, R, System, Tower, sql_new_key, tower_runtime};

/// Clients in tower-redis's fred pool (each multiplexes its commands on one connection).
pub const TOWER_POOL: usize = 4;
/// The prefix of every key sessiondb-redis and redis-bare write (tower-redis's store has none:
/// its keys are the session ids).
pub const PREFIX: &str = "cmp";

pub fn open(kind: Kind, url: &str) -> R<Box<dyn System>> {
    Ok(match kind {
        Kind::RedisBare => Box::new(Bare { client: redis::Client::open(url)? }),
        Kind::TowerRedis => Box::new(TowerRedis::open(url)?),
        Kind::SdbRedis => sdb_redis(url)?,
        other => return Err(format!("{} is not a Redis system", other.name()).into()),
    })
}

/// A connection to `url` with the `redis` crate (the harness's own: preload, counters).
pub fn connect(url: &str) -> R<redis::Connection> {
    let c = redis::Client::open(url)?.get_connection()?;
    c.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// redis-bare

/// One `redis` crate connection per thread, made on its first request (as `Sql` does).
pub struct Bare {
    client: redis::Client,
}

thread_local! {
    static BARE: RefCell<Option<redis::Connection>> = const { RefCell::new(None) };
}

fn bare_key(id: &str) -> String {
    format!("{PREFIX}:bare:{id}")
}

impl Bare {
    fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> R<T>) -> R<T> {
        BARE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(self.client.get_connection()?);
            }
            f(slot.as_mut().ok_or("no connection")?)
        })
    }
}

impl System for Bare {
    /// `GET`; with `save`, `SET` of the session data and the state together (what the other
    /// systems store: 2 × 512 bytes).
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
        self.with(|c| {
            let key = bare_key(&k.id);
            let got: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(c)?;
            let got = got.ok_or_else(|| format!("redis-bare: no key {key}"))?;
            black_box(&got);
            if let Some(data) = save {
                let value = [data, data].concat();
                let () = redis::cmd("SET").arg(&key).arg(value).query(c)?;
            }
            Ok(true)
        })
    }
    fn create(&self, data: &[u8]) -> R<Key> {
        let k = sql_new_key();
        let value = [data, data].concat();
        self.with(|c| Ok(redis::cmd("SET").arg(bare_key(&k.id)).arg(value).query::<()>(c)?))?;
        Ok(Key { id: k.id, token: String::new() })
    }
    fn delete(&self, k: &Key) -> R<()> {
        self.with(|c| Ok(redis::cmd("DEL").arg(bare_key(&k.id)).query::<()>(c)?))
    }
    fn sweep(&self) -> R<(u64, Duration)> {
        Err("redis-bare has no sweep (keys expire by themselves)".into())
    }
}

// ---------------------------------------------------------------------------------------------
// tower-redis

/// tower-sessions' Redis store on a fred pool, on the same 2-worker Tokio runtime as
/// `tower-sqlite`; the records are the same (`Tower::record`).
pub struct TowerRedis {
    rt: tokio::runtime::Runtime,
    store: RedisStore<Pool>,
}

impl TowerRedis {
    fn open(url: &str) -> R<Self> {
        let rt = tower_runtime(2)?;
        let pool = Pool::new(Config::from_url(url)?, None, None, None, TOWER_POOL)?;
        rt.block_on(async {
            pool.init().await?;
            Ok::<_, Failure>(())
        })?;
        Ok(Self { rt, store: RedisStore::new(pool) })
    }
}

impl System for TowerRedis {
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
        let id = Id::from_str(&k.id)?;
        self.rt.block_on(async {
            let rec = self.store.load(&id).await?.ok_or("tower-redis: session not found")?;
            black_box(&rec);
            if let Some(new) = save {
                let rec = Tower::record(rec.id, new, rec.expiry_date);
                self.store.save(&rec).await?;
            }
            Ok(true)
        })
    }
    fn create(&self, data: &[u8]) -> R<Key> {
        let mut rec = Tower::record(Id::default(), data, Tower::expiry());
        self.rt.block_on(self.store.create(&mut rec))?;
        Ok(Key { id: rec.id.to_string(), token: String::new() })
    }
    fn delete(&self, k: &Key) -> R<()> {
        let id = Id::from_str(&k.id)?;
        self.rt.block_on(self.store.delete(&id))?;
        Ok(())
    }
    fn sweep(&self) -> R<(u64, Duration)> {
        Err("tower-redis has no sweep (keys expire by themselves)".into())
    }
}

// ---------------------------------------------------------------------------------------------
// sessiondb-redis

fn sdb_redis(url: &str) -> R<Box<dyn System>> {
    Ok(Box::new(sdb::SdbRedis::open(url)?))
}

mod sdb {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use sessiondb::{
        Engine, Error as SdbError, NewSession, RedisEngine, Save, SecureToken, SessionId,
    };

    use crate::systems::{GRACE_MS, IDLE_MS, Key, MAX_STATES, R, System, TOUCH_RES_MS};

    /// The engine with the settings of `sessiondb-multi` (`systems::Sdb`).
    pub struct SdbRedis {
        engine: RedisEngine,
    }

    impl SdbRedis {
        pub fn open(url: &str) -> R<Self> {
            let engine = RedisEngine::builder(url)
                .prefix(super::PREFIX)
                .idle_timeout(Some(Duration::from_millis(IDLE_MS)))
                .grace_period(Duration::from_millis(GRACE_MS))
                .touch_resolution(Duration::from_millis(TOUCH_RES_MS))
                .max_states(MAX_STATES as u64)
                .open()?;
            Ok(Self { engine })
        }
    }

    impl System for SdbRedis {
        fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
            let id = SessionId::parse(&k.id)?;
            let token = SecureToken::parse(&k.token)?;
            let got = self.engine.load(&id, &token)?;
            black_box((&got.session_data, &got.state_data));
            let Some(data) = save else { return Ok(true) };
            match self.engine.store_state(&id, &token, Save::new(got.version, data, data)) {
                Ok(_) => Ok(true),
                Err(SdbError::Conflict { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        fn create(&self, data: &[u8]) -> R<Key> {
            let c = self.engine.create_with(NewSession::new(data, data))?;
            Ok(Key { id: c.id.to_string(), token: c.token.as_str().to_string() })
        }
        fn delete(&self, k: &Key) -> R<()> {
            self.engine.revoke(&SessionId::parse(&k.id)?)?;
            Ok(())
        }
        fn sweep(&self) -> R<(u64, Duration)> {
            let t = Instant::now();
            let removed = self.engine.cleanup()?.sessions;
            Ok((removed, t.elapsed()))
        }
    }
}

/// The session data every Redis system is preloaded with.
pub fn preload_data() -> Vec<u8> {
    vec![b'p'; DATA]
}
