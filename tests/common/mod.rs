//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cgi;
pub mod redis;
pub mod spool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use sessiondb::{Builder, ManualClock, Store};

/// Milliseconds since the epoch at which test clocks start: 2026-01-01.
pub const T0: u64 = 1_767_225_600_000;

/// A temporary directory and a database path inside it.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sessions.redb");
    TempDb { dir, path }
}

/// A builder on `path` with a manual clock at [`T0`] and short, round timeouts:
/// idle 10 s, grace 5 s.
pub fn builder(path: &std::path::Path, clock: &ManualClock) -> Builder {
    Store::builder(path)
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Some(Duration::from_secs(10)))
        .grace_period(Duration::from_secs(5))
}

/// A store with the settings of [`builder`].
pub fn store(db: &TempDb) -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).open().expect("open");
    (store, clock)
}

/// A store with the settings of [`builder`] on an existing clock.
pub fn store_with_clock(db: &TempDb, clock: &ManualClock) -> (Store, ManualClock) {
    (builder(&db.path, clock).open().expect("open"), clock.clone())
}

/// Runs `f` in one committed write transaction of a raw redb handle on `path` (created if
/// missing): how these tests write what sessiondb never would.
pub fn raw_write(path: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

/// Writes, with redb alone, a sessiondb file of format 1 (before format 2): its `meta` and its
/// tables as that format defined them (`sessions` keyed by id, a `states` table, `expiry`
/// keyed by removal time, last access and id), holding nothing else.
pub fn write_format_1(path: &std::path::Path) {
    use redb::TableDefinition;
    let meta: TableDefinition<&str, &[u8]> = TableDefinition::new("sessiondb.meta");
    let sessions: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessiondb.sessions");
    let states: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("sessiondb.states");
    let expiry: TableDefinition<(u64, u64, &[u8]), ()> = TableDefinition::new("sessiondb.expiry");
    raw_write(path, |txn| {
        let mut m = txn.open_table(meta).unwrap();
        m.insert("magic", b"sessiondb".as_slice()).unwrap();
        m.insert("format", 1u32.to_le_bytes().as_slice()).unwrap();
        m.insert("created", T0.to_le_bytes().as_slice()).unwrap();
        txn.open_table(sessions).unwrap();
        txn.open_table(states).unwrap();
        txn.open_table(expiry).unwrap();
    });
}

/// Applies `damage` to the stored bytes of `table[key]` through a raw redb handle.
#[allow(
    clippy::needless_pass_by_value,
    reason = "`damage` is consumed inside the `raw_write` closure, which clippy does not see"
)]
pub fn damage_value<K: redb::Key + 'static>(
    path: &std::path::Path,
    table: redb::TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
    damage: impl FnOnce(&mut Vec<u8>),
) {
    raw_write(path, |txn| {
        let mut t = txn.open_table(table).unwrap();
        let mut bytes =
            redb::ReadableTable::get(&t, &key).unwrap().expect("record present").value().to_vec();
        damage(&mut bytes);
        t.insert(&key, bytes.as_slice()).unwrap();
    });
}

/// A little-endian `u64` counter stored as session data.
pub fn counter_of(data: &[u8]) -> u64 {
    u64::from_le_bytes(data.try_into().expect("8-byte counter"))
}

/// Table definitions for tests that damage a file through a raw redb handle. They mirror
/// `src/format/schema.rs` on purpose: a test that corrupts the file must name what it corrupts.
pub mod raw {
    use redb::TableDefinition;
    pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sessiondb.meta");
    /// (id, [`RECORD`]) → session record; (id, n) → state n.
    pub const SESSIONS: TableDefinition<(&[u8], u64), &[u8]> =
        TableDefinition::new("sessiondb.sessions");
    /// (indexed removal time, id) → ().
    pub const EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("sessiondb.expiry");
    pub const TOMBSTONES: TableDefinition<&[u8], &[u8]> =
        TableDefinition::new("sessiondb.tombstones");
    pub const USERS: TableDefinition<(&[u8], &[u8]), ()> = TableDefinition::new("sessiondb.users");

    /// The second half of a session record's key in [`SESSIONS`].
    pub const RECORD: u64 = u64::MAX;

    /// The key of session `id`'s record in [`SESSIONS`].
    pub fn record(id: &sessiondb::SessionId) -> (&[u8], u64) {
        (id.as_str().as_bytes(), RECORD)
    }

    /// Byte offset, in a stored session record, of the u64 field `n` (0 = created, 1 = last
    /// access, 2 = expires at, 3 = remove at, 4 = indexed, 5 = version, 6 = latest state,
    /// 7 = oldest state): after the 5-byte header, the fixed-width fields come first, in the
    /// order of docs/format.md.
    pub fn field(n: usize) -> std::ops::Range<usize> {
        5 + 8 * n..5 + 8 * (n + 1)
    }

    /// Reads the u64 field `n` of a stored session record (see [`field`]).
    pub fn get_field(bytes: &[u8], n: usize) -> u64 {
        u64::from_le_bytes(bytes[field(n)].try_into().unwrap())
    }

    /// Sets the u64 field `n` of a stored session record and recomputes its crc, as a writer
    /// that knows the format would: the record stays well-formed, only its values are wrong.
    pub fn set_field(bytes: &mut [u8], n: usize, value: u64) {
        bytes[field(n)].copy_from_slice(&value.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[..1]);
        h.update(&bytes[5..]);
        bytes[1..5].copy_from_slice(&h.finalize().to_le_bytes());
    }
}

/// The executable of example `name`, built on first use with `cargo build --example` (the same
/// cargo, target directory and features as the tests, so that nothing is built twice) and found
/// through cargo's JSON messages.
pub fn example(name: &str) -> PathBuf {
    // The features of this test build that change the examples: `redis` lets them run on the
    // Redis engine (`SESSIONDB_URL`, `--redis`).
    let features: Vec<&str> =
        [("tower-sessions", cfg!(feature = "tower-sessions")), ("redis", cfg!(feature = "redis"))]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
    example_with(name, &features)
}

/// The executable of example `name` built with `features` (and no others), built on first use.
/// Each build is copied to a name of its own beside cargo's (`cgi_counter.features-redis`),
/// since cargo puts every build of one example at the same path.
pub fn example_with(name: &str, features: &[&str]) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let key = format!("{name}.features-{}", features.join("-"));
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(&key) {
        return path.clone();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--example", name, "--message-format=json-render-diagnostics"]);
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    let out = cargo.arg("--manifest-path").arg(&manifest).output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build --example {name} --features {features:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo named no {name} executable"));
    assert!(executable.is_file(), "{} is not a file", executable.display());
    let copy = executable.with_file_name(&key);
    // Through a temporary name, so that a process running an older copy is not disturbed.
    let partial = executable.with_file_name(format!("{key}.{}", std::process::id()));
    std::fs::copy(&executable, &partial).expect("copy the example");
    std::fs::rename(&partial, &copy).expect("rename the copy");
    built.get_or_insert_with(HashMap::new).insert(key, copy.clone());
    copy
}
