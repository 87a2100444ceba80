//! The systems compared, behind one synchronous interface: a request is a load, optionally
//! followed by a save of new session data and a new state.

use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sessiondb::{Error as SdbError, ManualClock, Save, SecureToken, SessionId, Sharing, Store};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tower_sessions_core::SessionStore;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::ExpiredDeletion;
use tower_sessions_sqlx_store::SqliteStore;

pub type Failure = Box<dyn std::error::Error + Send + Sync>;
pub type R<T> = Result<T, Failure>;

/// Idle timeout of every system: 7 days. sessiondb's touch resolution is 1% of it (100 min),
/// and plain SQLite applies the same rule, so a load of a preloaded session records no access
/// during a run; saves do.
pub const IDLE_MS: u64 = 7 * 24 * 3600 * 1000;
pub const GRACE_MS: u64 = 10 * 60 * 1000;
pub const TOUCH_RES_MS: u64 = IDLE_MS / 100;
/// States kept per session (sessiondb's default `max_states`), also in plain SQLite.
pub const MAX_STATES: i64 = 16;
pub const SWEEP_BATCH: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Multi,
    Single,
    SqlFull,
    SqlNormal,
    Tower,
    /// redb alone, for the floor cells (`floor.rs`); not a session store, not in [`ALL`].
    Floor,
    /// The Redis systems (`redis_sys.rs`, REDIS.md): not in [`ALL`], run by the `redis-*`
    /// workloads only. sessiondb's Redis engine.
    SdbRedis,
    /// tower-sessions' own Redis store (tower-sessions-redis-store, fred).
    TowerRedis,
    /// A bare `GET` of one key, and a `SET` of it to save: the floor of any Redis store.
    RedisBare,
}

pub const ALL: [Kind; 5] = [Kind::Multi, Kind::Single, Kind::SqlFull, Kind::SqlNormal, Kind::Tower];
/// The systems of the `redis-*` workloads, in table order.
pub const REDIS: [Kind; 3] = [Kind::SdbRedis, Kind::TowerRedis, Kind::RedisBare];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Multi => "sessiondb-multi",
            Kind::Single => "sessiondb-single",
            Kind::SqlFull => "sqlite-full",
            Kind::SqlNormal => "sqlite-normal",
            Kind::Tower => "tower-sqlite",
            Kind::Floor => "redb-floor",
            Kind::SdbRedis => "sessiondb-redis",
            Kind::TowerRedis => "tower-redis",
            Kind::RedisBare => "redis-bare",
        }
    }
    pub fn parse(s: &str) -> R<Kind> {
        ALL.into_iter()
            .chain(REDIS)
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown system {s}").into())
    }
    /// A Redis system: its `path` is the server's URL.
    pub fn is_redis(self) -> bool {
        REDIS.contains(&self)
    }
    /// Which template file the system reads (sessiondb modes share one file format, both
    /// plain-SQLite modes one schema).
    pub fn family(self) -> &'static str {
        match self {
            Kind::Multi | Kind::Single => "sdb",
            Kind::SqlFull | Kind::SqlNormal => "sql",
            Kind::Tower => "tower",
            Kind::Floor => "floor",
            Kind::SdbRedis | Kind::TowerRedis | Kind::RedisBare => "redis",
        }
    }
    pub fn ext(self) -> &'static str {
        match self {
            Kind::Multi | Kind::Single | Kind::Floor => "redb",
            _ => "db",
        }
    }
}

/// A session as a client holds it: the cookie values.
#[derive(Clone, Debug)]
pub struct Key {
    pub id: String,
    pub token: String,
}

pub trait System: Sync {
    /// Loads the session (data and latest state); then, with `save`, stores `save` as new
    /// session data and a new state, stating the version read. `Ok(false)`: a conflict.
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool>;
    fn create(&self, data: &[u8]) -> R<Key>;
    fn delete(&self, k: &Key) -> R<()>;
    /// Removes every expired session; returns how many, and how long the removal took.
    fn sweep(&self) -> R<(u64, Duration)>;
    /// Ends a process's use of the system just before it exits (a CGI request's end).
    fn exit(self: Box<Self>) {}
    /// Diagnostics printed by a worker at its end (sessiondb: how group commit batched).
    fn diagnostics(&self) -> String {
        String::new()
    }
    /// sessiondb: its group commit's `commits` and `operations` since it was opened.
    fn batches(&self) -> Option<(u64, u64)> {
        None
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub fn open(kind: Kind, path: &Path) -> R<Box<dyn System>> {
    Ok(match kind {
        Kind::Multi => Box::new(Sdb::open(path, Sharing::MultiProcess, None)?),
        Kind::Single => Box::new(Sdb::open(path, Sharing::SingleProcess, None)?),
        Kind::SqlFull => Box::new(Sql::new(path, "FULL")),
        Kind::SqlNormal => Box::new(Sql::new(path, "NORMAL")),
        Kind::Tower => Box::new(Tower::open(path)?),
        Kind::Floor => return Err("redb-floor is not a session store: see floor.rs".into()),
        Kind::SdbRedis | Kind::TowerRedis | Kind::RedisBare => {
            crate::redis_sys::open(kind, &path.to_string_lossy())?
        }
    })
}

// ---------------------------------------------------------------------------------------------
// sessiondb

pub struct Sdb {
    pub store: Store,
}

impl Sdb {
    pub fn open(path: &Path, sharing: Sharing, clock: Option<ManualClock>) -> R<Self> {
        let mut b = Store::builder(path)
            .sharing(sharing)
            .idle_timeout(Some(Duration::from_millis(IDLE_MS)))
            .grace_period(Duration::from_millis(GRACE_MS))
            .cleanup_batch(SWEEP_BATCH)
            .cleanup_interval(None);
        if let Some(c) = clock {
            b = b.clock(Arc::new(c));
        }
        Ok(Self { store: b.open()? })
    }
}

impl System for Sdb {
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
        let id = SessionId::parse(&k.id)?;
        let token = SecureToken::parse(&k.token)?;
        let got = self.store.load(&id, &token)?;
        black_box((&got.session_data, &got.state_data));
        let Some(data) = save else { return Ok(true) };
        match self.store.store_state(&id, &token, Save::new(got.version, data, data)) {
            Ok(_) => Ok(true),
            Err(SdbError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    fn create(&self, data: &[u8]) -> R<Key> {
        let c = self.store.create(data, data)?;
        Ok(Key { id: c.id.to_string(), token: c.token.as_str().to_string() })
    }
    fn delete(&self, k: &Key) -> R<()> {
        self.store.delete(&SessionId::parse(&k.id)?)?;
        Ok(())
    }
    fn sweep(&self) -> R<(u64, Duration)> {
        let t = Instant::now();
        let removed = self.store.cleanup()?.sessions;
        Ok((removed, t.elapsed()))
    }
    fn exit(self: Box<Self>) {
        self.store.close_for_exit();
    }
    fn diagnostics(&self) -> String {
        let b = self.store.stats().batches;
        format!("commits={} mean_batch={:.2} largest={}", b.commits, b.mean(), b.largest)
    }
    fn batches(&self) -> Option<(u64, u64)> {
        let b = self.store.stats().batches;
        Some((b.commits, b.operations))
    }
}

// ---------------------------------------------------------------------------------------------
// Plain SQLite: a hand-rolled store with the same operations as sessiondb (token hash, version
// check, states history of 16, touch coalescing, an index on the removal time), one connection
// per thread, WAL.

pub struct Sql {
    path: PathBuf,
    sync: &'static str,
}

thread_local! {
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

pub const SQL_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY NOT NULL,
        token_hash BLOB NOT NULL,
        data BLOB NOT NULL,
        version INTEGER NOT NULL,
        created INTEGER NOT NULL,
        last_access INTEGER NOT NULL,
        remove_at INTEGER NOT NULL,
        latest_state INTEGER NOT NULL,
        oldest_state INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sessions_remove_at ON sessions(remove_at);
    CREATE TABLE IF NOT EXISTS states (
        sid TEXT NOT NULL,
        state_id INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (sid, state_id)
    ) WITHOUT ROWID;";

pub fn sql_connect(path: &Path, sync: &str) -> R<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(60))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", sync)?;
    Ok(c)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_text(len: usize) -> String {
    const A: &[u8] = sessiondb::BASE64URL.as_bytes();
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(A[rng.random_range(0..A.len())])).collect()
}

/// A new plain-SQLite session row and its state 0, inside the caller's transaction.
pub fn sql_insert(t: &Connection, key: &Key, data: &[u8], now: u64) -> R<()> {
    let remove_at = now + IDLE_MS + GRACE_MS;
    t.prepare_cached(
        "INSERT INTO sessions (id, token_hash, data, version, created, last_access, remove_at, \
         latest_state, oldest_state) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5, 0, 0)",
    )?
    .execute(params![
        key.id,
        &token_hash(&key.token)[..],
        data,
        now as i64,
        remove_at as i64
    ])?;
    t.prepare_cached("INSERT INTO states (sid, state_id, data) VALUES (?1, 0, ?2)")?
        .execute(params![key.id, data])?;
    Ok(())
}

pub fn sql_new_key() -> Key {
    Key { id: random_text(32), token: random_text(43) }
}

impl Sql {
    pub fn new(path: &Path, sync: &'static str) -> Self {
        Self { path: path.to_path_buf(), sync }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> R<T>) -> R<T> {
        CONN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(sql_connect(&self.path, self.sync)?);
            }
            f(slot.as_mut().expect("connection"))
        })
    }
}

impl System for Sql {
    /// With `CMP_SQLITE_NO_CLOSE` set, the connection is left to the OS like sessiondb's
    /// `close_for_exit` (no checkpoint of the WAL at close); by default it is closed.
    fn exit(self: Box<Self>) {
        if std::env::var_os("CMP_SQLITE_NO_CLOSE").is_some() {
            CONN.with(|cell| std::mem::forget(cell.borrow_mut().take()));
        }
    }
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
        self.with(|c| {
            let now = now_ms();
            let row = c
                .prepare_cached(
                    "SELECT s.token_hash, s.data, s.version, s.last_access, s.remove_at, st.data \
                     FROM sessions s JOIN states st ON st.sid = s.id AND st.state_id = s.latest_state \
                     WHERE s.id = ?1",
                )?
                .query_row(params![k.id], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                    ))
                })
                .optional()?;
            let Some((hash, data, version, last_access, _remove_at, state)) = row else {
                return Err(format!("session {} not found", k.id).into());
            };
            if hash != token_hash(&k.token) {
                return Err("wrong token".into());
            }
            if now >= last_access as u64 + IDLE_MS {
                return Err("expired".into());
            }
            black_box((&data, &state));
            let Some(new) = save else {
                if now.saturating_sub(last_access as u64) >= TOUCH_RES_MS {
                    // The same touch coalescing as sessiondb's.
                    let t = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    t.prepare_cached(
                        "UPDATE sessions SET last_access = ?2, remove_at = ?3 \
                         WHERE id = ?1 AND last_access < ?2",
                    )?
                    .execute(params![k.id, now as i64, (now + IDLE_MS + GRACE_MS) as i64])?;
                    t.commit()?;
                }
                return Ok(true);
            };
            let t = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let (hash, cur, last_access, latest, mut oldest) = t
                .prepare_cached(
                    "SELECT token_hash, version, last_access, latest_state, oldest_state \
                     FROM sessions WHERE id = ?1",
                )?
                .query_row(params![k.id], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?;
            if hash != token_hash(&k.token) || now >= last_access as u64 + IDLE_MS {
                return Err("refused".into());
            }
            if cur != version {
                return Ok(false); // rolled back on drop
            }
            let state_id = latest + 1;
            t.prepare_cached("INSERT INTO states (sid, state_id, data) VALUES (?1, ?2, ?3)")?
                .execute(params![k.id, state_id, new])?;
            if state_id - oldest + 1 > MAX_STATES {
                let keep_from = state_id + 1 - MAX_STATES;
                t.prepare_cached("DELETE FROM states WHERE sid = ?1 AND state_id < ?2")?
                    .execute(params![k.id, keep_from])?;
                oldest = keep_from;
            }
            // The same rule as sessiondb's save: the access time (and with it the indexed
            // `remove_at`) moves only by at least the touch resolution, so most saves leave
            // the index alone.
            if now.saturating_sub(last_access as u64) >= TOUCH_RES_MS {
                t.prepare_cached(
                    "UPDATE sessions SET data = ?2, version = version + 1, last_access = ?3, \
                     remove_at = ?4, latest_state = ?5, oldest_state = ?6 WHERE id = ?1",
                )?
                .execute(params![
                    k.id,
                    new,
                    now as i64,
                    (now + IDLE_MS + GRACE_MS) as i64,
                    state_id,
                    oldest
                ])?;
            } else {
                t.prepare_cached(
                    "UPDATE sessions SET data = ?2, version = version + 1, latest_state = ?3, \
                     oldest_state = ?4 WHERE id = ?1",
                )?
                .execute(params![k.id, new, state_id, oldest])?;
            }
            t.commit()?;
            Ok(true)
        })
    }

    fn create(&self, data: &[u8]) -> R<Key> {
        self.with(|c| {
            let key = sql_new_key();
            let t = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            sql_insert(&t, &key, data, now_ms())?;
            t.commit()?;
            Ok(key)
        })
    }

    fn delete(&self, k: &Key) -> R<()> {
        self.with(|c| {
            let t = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            t.prepare_cached("DELETE FROM states WHERE sid = ?1")?.execute(params![k.id])?;
            t.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute(params![k.id])?;
            t.commit()?;
            Ok(())
        })
    }

    /// In batches of `SWEEP_BATCH`, one transaction each, pausing 1 ms between batches: what
    /// sessiondb's sweep does.
    fn sweep(&self) -> R<(u64, Duration)> {
        let start = Instant::now();
        self.with(|c| {
            let mut removed = 0;
            loop {
                let t = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let ids: Vec<String> = t
                    .prepare_cached(
                        "SELECT id FROM sessions WHERE remove_at <= ?1 ORDER BY remove_at LIMIT ?2",
                    )?
                    .query_map(params![now_ms() as i64, SWEEP_BATCH as i64], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for id in &ids {
                    t.prepare_cached("DELETE FROM states WHERE sid = ?1")?.execute(params![id])?;
                    t.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute(params![id])?;
                }
                t.commit()?;
                removed += ids.len() as u64;
                if ids.len() < SWEEP_BATCH {
                    return Ok((removed, start.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// tower-sessions' SQLite store (tower-sessions-sqlx-store 0.15, sqlx 0.8), WAL and
// synchronous=FULL set explicitly (sqlx leaves SQLite's defaults: a rollback journal).

pub struct Tower {
    pub rt: tokio::runtime::Runtime,
    pub store: SqliteStore,
    pub opts: SqliteConnectOptions,
}

pub fn tower_runtime(workers: usize) -> R<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?)
}

impl Tower {
    pub fn open(path: &Path) -> R<Self> {
        Self::open_with(path, tower_runtime(2)?)
    }

    pub fn open_with(path: &Path, rt: tokio::runtime::Runtime) -> R<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60));
        let store = rt.block_on(async {
            let pool =
                SqlitePoolOptions::new().max_connections(8).connect_with(opts.clone()).await?;
            let store = SqliteStore::new(pool);
            store.migrate().await?;
            Ok::<_, Failure>(store)
        })?;
        Ok(Self { rt, store, opts })
    }

    pub fn record(id: Id, data: &[u8], expiry: time::OffsetDateTime) -> Record {
        let text = serde_json::Value::String(String::from_utf8_lossy(data).into_owned());
        let map = [("data".to_string(), text.clone()), ("state".to_string(), text)].into();
        Record { id, data: map, expiry_date: expiry }
    }

    pub fn expiry() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(IDLE_MS as i64)
    }
}

impl System for Tower {
    fn request(&self, k: &Key, save: Option<&[u8]>) -> R<bool> {
        let id = Id::from_str(&k.id)?;
        self.rt.block_on(async {
            let rec = self.store.load(&id).await?.ok_or("tower session not found")?;
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
    /// Its own API: one `delete_expired` statement (no index on `expiry_date`).
    fn sweep(&self) -> R<(u64, Duration)> {
        self.rt.block_on(async {
            let count = "select count(*) from tower_sessions";
            // The store keeps its pool private: the counts (not timed) use one more connection.
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(self.opts.clone());
            let pool = pool.await?;
            let (before,): (i64,) = sqlx::query_as(count).fetch_one(&pool).await?;
            let start = Instant::now();
            self.store.delete_expired().await?;
            let took = start.elapsed();
            let (after,): (i64,) = sqlx::query_as(count).fetch_one(&pool).await?;
            Ok(((before - after) as u64, took))
        })
    }
}
