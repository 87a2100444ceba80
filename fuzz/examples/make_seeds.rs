//! Writes the checked-in seed corpora under `fuzz/seeds/<target>/`:
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! - `dump/`: small real sessiondb files (an empty store; three sessions; rotated, revoked
//!   and evicted states; a file with a foreign table), written by the library.
//! - `records/`: the raw values of the `sessions`, `states` and `tombstones` tables of such a
//!   file, read through redb directly, and a few `sessiondb::encode` payloads.
//! - `parse/`: cookie headers, `Set-Cookie` values, ids, tokens and query strings, real ones
//!   from the library and hand-written hostile ones.
//! - `model/`: byte strings for the operation sequences of the `model` target (its input is
//!   read with `arbitrary`, so any bytes are a sequence; these are of varied lengths).
//!
//! The output is deterministic except for ids, tokens and times; rerunning it replaces the
//! files it wrote.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use sessiondb::web::{CookieAttrs, SameSite, session_query, set_cookie, state_in_url};
use sessiondb::{ManualClock, NewSession, Save, Sharing, Store};

/// (id, `u64::MAX`) → session record; (id, n) → state n (format 2, docs/format.md).
const SESSIONS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("sessiondb.sessions");
const TOMBSTONES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessiondb.tombstones");

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn seeds_dir(target: &str) -> Res<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn builder(path: &Path, clock: &ManualClock) -> sessiondb::Builder {
    Store::builder(path)
        .sharing(Sharing::SingleProcess)
        .cleanup_interval(None)
        .clock(Arc::new(clock.clone()))
        .max_states(3)
}

/// Small stores, each a different shape. Returns their paths (in `tmp`).
fn make_stores(tmp: &Path) -> Res<Vec<(String, PathBuf)>> {
    let clock = ManualClock::new(1_750_000_000_000);
    let mut out = Vec::new();

    // An initialised store with nothing in it.
    let path = tmp.join("empty.redb");
    drop(builder(&path, &clock).open()?);
    out.push(("empty".to_owned(), path));

    // Three sessions, one with a user and a fingerprint, one with three states.
    let path = tmp.join("three.redb");
    {
        let store = builder(&path, &clock).open()?;
        let a = store.create(b"user=ann", b"page 1")?;
        let b = store.create_with(
            NewSession::new(b"user=bob", b"home").user(b"bob").fingerprint(b"Mozilla/5.0"),
        )?;
        clock.advance(60_000);
        let c = store.create(&sessiondb::encode(&("carol", 3u32))?, b"")?;
        let s = store.store_state(&a.id, &a.token, Save::new(a.version, b"user=ann", b"page 2"))?;
        store.store_state(&a.id, &a.token, Save::new(s.version, b"user=ann;n=3", b"page 3"))?;
        store.store_state(&b.id, &b.token, Save::session_only(b.version, b"user=bob;x"))?;
        let _ = c;
    }
    out.push(("three_sessions".to_owned(), path));

    // Rotation, revocation, eviction, an expired session in its grace window.
    let path = tmp.join("retired.redb");
    {
        let store = builder(&path, &clock).idle_timeout(Some(Duration::from_mins(10))).open()?;
        let a = store.create_with(NewSession::new(b"a", b"0").user(b"ann"))?;
        let mut v = a.version;
        for i in 1..6u8 {
            v = store.store_state(&a.id, &a.token, Save::new(v, b"a", &[i; 40]))?.version;
        }
        store.regenerate(&a.id, &a.token, Duration::from_secs(30))?;
        let b = store.create(b"b", b"state of b")?;
        store.revoke(&b.id)?;
        store.create(b"old", b"")?;
        clock.advance(700_000); // past the idle timeout: expired, in its grace window
        store.create(b"fresh", b"")?;
    }
    out.push(("retired".to_owned(), path));

    // A redb file of another program: NotSessionDb.
    let path = tmp.join("foreign.redb");
    {
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(TableDefinition::<&str, u64>::new("other.table"))?;
            t.insert("x", 1)?;
        }
        txn.commit()?;
    }
    out.push(("foreign".to_owned(), path));
    Ok(out)
}

/// Compacts a file with redb, so that the seeds stay small.
fn compact(path: &Path) -> Res {
    let mut db = redb::Database::open(path)?;
    while db.compact()? {}
    Ok(())
}

fn dump_seeds(stores: &[(String, PathBuf)]) -> Res {
    let dir = seeds_dir("dump")?;
    for (name, path) in stores {
        compact(path)?;
        let bytes = fs::read(path)?;
        println!("dump/{name}: {} bytes", bytes.len());
        fs::write(dir.join(name), bytes)?;
    }
    // Not redb at all, and empty.
    fs::write(dir.join("not_redb"), b"SQLite format 3\0")?;
    fs::write(dir.join("empty_file"), b"")?;
    Ok(())
}

fn records_seeds(stores: &[(String, PathBuf)]) -> Res {
    let dir = seeds_dir("records")?;
    let mut n = 0;
    let mut put = |kind: &str, bytes: &[u8]| -> Res {
        n += 1;
        fs::write(dir.join(format!("{kind}-{n:02}")), bytes)?;
        Ok(())
    };
    for (name, path) in stores {
        if name == "foreign" {
            continue;
        }
        let db = redb::ReadOnlyDatabase::open(path)?;
        let txn = db.begin_read()?;
        for entry in txn.open_table(SESSIONS)?.iter()? {
            let (key, value) = entry?;
            let kind = if key.value().1 == u64::MAX { "session" } else { "state" };
            put(kind, value.value())?;
        }
        for entry in txn.open_table(TOMBSTONES)?.iter()? {
            put("tombstone", entry?.1.value())?;
        }
    }
    put("payload", &sessiondb::encode(&vec!["a".to_owned(), "bc".to_owned()])?)?;
    put("payload", &sessiondb::encode(&(7u64, "x".to_owned(), Some(vec![1u8, 2]), true))?)?;
    put("payload", &sessiondb::encode(&vec![("k".to_owned(), 1u32), ("l".to_owned(), 2)])?)?;
    put("empty", b"")?;
    Ok(())
}

fn parse_seeds(tmp: &Path) -> Res {
    let dir = seeds_dir("parse")?;
    let store = Store::builder(tmp.join("ids.redb")).cleanup_interval(None).open()?;
    let c = store.create(b"", b"")?;
    let (id, token) = (c.id.as_str().to_owned(), c.token.as_str().to_owned());
    let attrs = CookieAttrs { max_age: Some(Duration::from_hours(1)), ..Default::default() };
    let lax = CookieAttrs {
        path: Some("/app".into()),
        domain: Some("example.com".into()),
        secure: false,
        http_only: false,
        same_site: SameSite::Strict,
        max_age: None,
    };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("id", id.clone().into_bytes()),
        ("token", token.clone().into_bytes()),
        ("cookie_header", format!("__Host-sid={id}; theme=dark; lang=en-GB").into_bytes()),
        ("cookie_quoted", format!("a=\"b\"; __Host-sid=\"{id}\" ; junk; empty=").into_bytes()),
        ("cookie_dup", format!("__Host-sid=old; __Host-sid={id}; x=\u{e9}").into_bytes()),
        ("cookie_bytes", b"a=\xff; sid=abc;;; =v; n=v v; t\t=\tx".to_vec()),
        ("set_cookie", set_cookie("__Host-sid", &id, &attrs)?.into_bytes()),
        ("set_cookie_lax", set_cookie("sid", &id, &lax)?.into_bytes()),
        // name \n value \n extra: the formatting round trips.
        ("lines_cookie", format!("__Host-sid\n{id}\n/").into_bytes()),
        ("lines_secure", format!("__Secure-tok\n{token}\nexample.com").into_bytes()),
        ("lines_spec", b"0123456789abcdef\nstate\n42".to_vec()),
        ("lines_url", b"/counter?x=1\nstate\n18446744073709551615".to_vec()),
        ("lines_bad", b"a b\n\"quoted\"\n/a;b".to_vec()),
        ("query_session", session_query(&c.id, &c.token).into_bytes()),
        ("query_state", state_in_url("/c?x=1", "state", 7).into_bytes()),
        ("query_hostile", b"state=99999999999999999999999&state=%31&=3;sid=a%20b&stok=".to_vec()),
        ("id_max", "x".repeat(sessiondb::MAX_ID_LEN).into_bytes()),
        ("id_over", "x".repeat(sessiondb::MAX_ID_LEN + 1).into_bytes()),
        ("id_unicode", "\u{202e}abc\u{0}".as_bytes().to_vec()),
        ("alphabet", sessiondb::BASE64URL.as_bytes().to_vec()),
    ];
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn model_seeds() -> Res {
    let dir = seeds_dir("model")?;
    // xorshift: deterministic bytes of varied lengths.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, len) in [16usize, 40, 64, 100, 160, 256, 400, 700, 1000, 2000].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[3]
            })
            .collect();
        fs::write(dir.join(format!("random-{i:02}")), bytes)?;
    }
    Ok(())
}

fn main() -> Res {
    let tmp = tempfile::tempdir()?;
    let stores = make_stores(tmp.path())?;
    dump_seeds(&stores)?;
    records_seeds(&stores)?;
    parse_seeds(tmp.path())?;
    model_seeds()?;
    Ok(())
}
