//! `Store::verify` and `dump --verify`: a consistent file is clean, even while other processes
//! write to it; each kind of damage is reported with its table and key; the exit status says
//! clean (0), problems (1) or unusable (2).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable};
use sessiondb::{Error, NewSession, Save, SessionId, Store, Verified};

mod common;
use common::{TempDb, damage_value, raw, raw_write};

/// Ids of the fixture's sessions.
struct Fixture {
    db: TempDb,
    /// Three states, filed under user "ann".
    ann: SessionId,
    /// Filed under user "bob".
    bob: SessionId,
    /// The id "cat" had before a regeneration: a tombstone.
    rotated: SessionId,
}

fn fixture() -> Result<Fixture, Error> {
    let db = common::temp_db();
    let (store, _clock) = common::store(&db);
    let ann = store.create_with(NewSession::new(b"ann", b"s0").user(b"ann"))?;
    let v = store.store_state(&ann.id, &ann.token, Save::new(1, b"ann", b"s1"))?.version;
    store.store_state(&ann.id, &ann.token, Save::new(v, b"ann", b"s2"))?;
    let bob = store.create_with(NewSession::new(b"bob", b"s0").user(b"bob"))?;
    let cat = store.create(b"cat", b"s0")?;
    store.regenerate(&cat.id, &cat.token, Duration::from_secs(30))?;
    let dan = store.create(b"dan", b"s0")?;
    store.revoke(&dan.id)?;
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    Ok(Fixture { db, ann: ann.id, bob: bob.id, rotated: cat.id })
}

/// Verifies the fixture's file read-only, as the dump does.
fn verify(f: &Fixture) -> Verified {
    let store = Store::builder(&f.db.path).read_only(true).open().unwrap();
    store.verify().unwrap()
}

/// Asserts that `report` has a problem in `table` whose key contains `key` and whose text
/// contains `what`.
fn has(report: &Verified, table: &str, key: &str, what: &str) {
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.table == table && p.key.contains(key) && p.what.contains(what)),
        "no {table} problem at {key} saying {what:?} in {:#?}",
        report.problems
    );
    assert_eq!(report.problem_count, report.problems.len() as u64);
}

/// Where the `expiry` index has session `id` filed.
fn expiry_key_of(f: &Fixture, id: &SessionId) -> u64 {
    let db = redb::Database::create(&f.db.path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(raw::EXPIRY).unwrap();
    let found = t.iter().unwrap().find_map(|e| {
        let (key, _) = e.unwrap();
        let (indexed, sid) = key.value();
        (sid == id.as_str().as_bytes()).then_some(indexed)
    });
    found.expect("the session's expiry entry")
}

#[test]
fn a_consistent_file_is_clean_with_every_table_counted() -> Result<(), Error> {
    let f = fixture()?;
    let report = verify(&f);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.sessions, report.expiry_entries), (3, 3));
    assert_eq!(report.states, 3 + 1 + 1);
    assert_eq!((report.tombstones, report.user_entries), (2, 2));
    Ok(())
}

#[test]
fn damaged_records_are_reported_with_table_and_key() -> Result<(), Error> {
    let f = fixture()?;
    damage_value(&f.db.path, raw::SESSIONS, raw::record(&f.ann), |b| b[8] ^= 0x40);
    damage_value(&f.db.path, raw::SESSIONS, (f.bob.as_str().as_bytes(), 0), |b| b.truncate(3));
    damage_value(&f.db.path, raw::TOMBSTONES, f.rotated.as_str().as_bytes(), |b| b[0] = 9);
    let report = verify(&f);
    has(&report, "sessions", f.ann.as_str(), "checksum mismatch");
    has(&report, "states", &format!("{}/0", f.bob), "shorter than its header");
    has(&report, "tombstones", f.rotated.as_str(), "format byte 9");
    assert_eq!(report.problem_count, 3, "{:#?}", report.problems);
    Ok(())
}

#[test]
fn index_entries_without_their_session_are_reported() -> Result<(), Error> {
    let f = fixture()?;
    raw_write(&f.db.path, |txn| {
        let ghost: &[u8] = b"GhostGhostGhostGhostGhostGhost00";
        txn.open_table(raw::EXPIRY).unwrap().insert((7, ghost), ()).unwrap();
        txn.open_table(raw::SESSIONS).unwrap().insert((ghost, 0), b"x".as_slice()).unwrap();
        txn.open_table(raw::USERS).unwrap().insert((b"eve".as_slice(), ghost), ()).unwrap();
    });
    let report = verify(&f);
    has(&report, "expiry", "7/GhostGhost", "points at no session");
    has(&report, "states", "GhostGhost", "no session owns it");
    has(&report, "users", "eve/GhostGhost", "points at no session");
    Ok(())
}

#[test]
fn sessions_missing_their_index_entries_and_states_are_reported() -> Result<(), Error> {
    let f = fixture()?;
    let indexed = expiry_key_of(&f, &f.ann);
    raw_write(&f.db.path, |txn| {
        let ann = f.ann.as_str().as_bytes();
        txn.open_table(raw::EXPIRY).unwrap().remove((indexed, ann)).unwrap();
        txn.open_table(raw::SESSIONS).unwrap().remove((ann, 1)).unwrap();
        txn.open_table(raw::USERS)
            .unwrap()
            .remove((b"bob".as_slice(), f.bob.as_str().as_bytes()))
            .unwrap();
    });
    let report = verify(&f);
    has(&report, "expiry", f.ann.as_str(), "no entry");
    has(&report, "states", &format!("{}/1", f.ann), "missing");
    has(&report, "users", f.bob.as_str(), "no entry for this session's user bob");
    Ok(())
}

#[test]
fn entries_that_disagree_with_their_session_are_reported() -> Result<(), Error> {
    let f = fixture()?;
    let indexed = expiry_key_of(&f, &f.bob);
    raw_write(&f.db.path, |txn| {
        let bob = f.bob.as_str().as_bytes();
        let mut expiry = txn.open_table(raw::EXPIRY).unwrap();
        expiry.remove((indexed, bob)).unwrap();
        expiry.insert((indexed - 1, bob), ()).unwrap();
        // A state past the session's latest, a user entry under the wrong user, and a
        // tombstone for an id that is live.
        txn.open_table(raw::SESSIONS).unwrap().insert((bob, 5), b"x".as_slice()).unwrap();
        txn.open_table(raw::USERS).unwrap().insert((b"ann".as_slice(), bob), ()).unwrap();
        let stone = txn
            .open_table(raw::TOMBSTONES)
            .unwrap()
            .get(f.rotated.as_str().as_bytes())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        txn.open_table(raw::TOMBSTONES).unwrap().insert(bob, stone.as_slice()).unwrap();
    });
    let report = verify(&f);
    has(&report, "expiry", &format!("{}/{}", indexed - 1, f.bob), "record is filed at");
    has(&report, "expiry", f.bob.as_str(), &format!("no entry at {indexed}"));
    has(&report, "states", &format!("{}/5", f.bob), "outside its session's range 0..=0");
    has(&report, "users", &format!("ann/{}", f.bob), "not filed under this user");
    has(&report, "tombstones", f.bob.as_str(), "also has a live session");
    Ok(())
}

/// The lazy expiry index may file a session early, never late: a record (and its entry) filed
/// after the session's removal time is reported, as is a state no session keeps. Without the
/// late filing, the same file is clean.
#[test]
fn a_late_index_entry_and_an_orphan_state_are_reported() -> Result<(), Error> {
    let f = fixture()?;
    let indexed = expiry_key_of(&f, &f.bob);
    let bob = f.bob.as_str().as_bytes();
    // Filed early (as after a save that extended the session): clean.
    raw_write(&f.db.path, |txn| {
        let mut sessions = txn.open_table(raw::SESSIONS).unwrap();
        let mut bytes = sessions.get(raw::record(&f.bob)).unwrap().unwrap().value().to_vec();
        assert_eq!(raw::get_field(&bytes, 4), indexed, "the record says where it is filed");
        raw::set_field(&mut bytes, 4, indexed - 1000);
        sessions.insert(raw::record(&f.bob), bytes.as_slice()).unwrap();
        let mut expiry = txn.open_table(raw::EXPIRY).unwrap();
        expiry.remove((indexed, bob)).unwrap();
        expiry.insert((indexed - 1000, bob), ()).unwrap();
    });
    let report = verify(&f);
    assert!(report.is_clean(), "an early entry is allowed: {:#?}", report.problems);
    // Filed late: the record and its entry agree, but after the removal time.
    raw_write(&f.db.path, |txn| {
        let mut sessions = txn.open_table(raw::SESSIONS).unwrap();
        let mut bytes = sessions.get(raw::record(&f.bob)).unwrap().unwrap().value().to_vec();
        let remove_at = raw::get_field(&bytes, 3);
        raw::set_field(&mut bytes, 4, remove_at + 1);
        sessions.insert(raw::record(&f.bob), bytes.as_slice()).unwrap();
        // An orphan: a (well-formed) state of a session that has no record.
        let state = sessions.get((bob, 0)).unwrap().unwrap().value().to_vec();
        let orphan: &[u8] = b"OrphanOrphanOrphanOrphanOrphan00";
        sessions.insert((orphan, 3), state.as_slice()).unwrap();
        let mut expiry = txn.open_table(raw::EXPIRY).unwrap();
        expiry.remove((indexed - 1000, bob)).unwrap();
        expiry.insert((remove_at + 1, bob), ()).unwrap();
    });
    let report = verify(&f);
    has(&report, "expiry", f.bob.as_str(), "filed late");
    has(&report, "states", "OrphanOrphan", "no session owns it");
    assert_eq!(report.problem_count, 2, "{:#?}", report.problems);
    Ok(())
}

/// The clean-up schedule's optional `meta` keys (`swept`, `sweep_batch`, docs/format.md): a
/// value of 8 bytes is clean, one of another length is reported (the store reads it as absent).
#[test]
fn malformed_sweep_schedule_values_are_reported() -> Result<(), Error> {
    let f = fixture()?;
    raw_write(&f.db.path, |txn| {
        let mut meta = txn.open_table(raw::META).unwrap();
        meta.insert("swept", 1_700_000_000_000u64.to_le_bytes().as_slice()).unwrap();
        meta.insert("sweep_batch", 64u64.to_le_bytes().as_slice()).unwrap();
    });
    let report = verify(&f);
    assert!(report.is_clean(), "8-byte values are well-formed: {:?}", report.problems);

    raw_write(&f.db.path, |txn| {
        let mut meta = txn.open_table(raw::META).unwrap();
        meta.insert("swept", [1u8, 2, 3].as_slice()).unwrap();
        meta.insert("sweep_batch", [0u8; 9].as_slice()).unwrap();
    });
    let report = verify(&f);
    assert_eq!(report.problem_count, 2, "{:#?}", report.problems);
    has(&report, "meta", "swept", "not 8 bytes (3 bytes)");
    has(&report, "meta", "sweep_batch", "not 8 bytes (9 bytes)");
    let (code, out, _) = dump(&["--verify"], &f.db.path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("problem: meta [swept]: not 8 bytes"), "{out}");
    Ok(())
}

/// `dump --summary` says when the file was last swept: never, then the recorded time.
#[test]
fn dump_summary_shows_when_the_file_was_last_swept() -> Result<(), Error> {
    let f = fixture()?;
    let summary = |path: &std::path::Path| {
        let (code, out, err) = dump(&["--json", "--summary"], path);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert_eq!(summary(&f.db.path)["store"]["last_swept"], serde_json::Value::Null);
    let (code, out, _) = dump(&["--summary"], &f.db.path);
    assert_eq!(code, 0);
    assert!(out.contains("last swept      never"), "{out}");

    let (store, _clock) = common::store(&f.db);
    store.cleanup()?;
    let recorded = store.info()?.last_swept.expect("a complete sweep is recorded");
    drop(store);
    assert_eq!(summary(&f.db.path)["store"]["last_swept"], recorded);
    let (_, out, _) = dump(&["--summary"], &f.db.path);
    assert!(out.contains(&format!("last swept      {recorded}  (")), "{out}");
    Ok(())
}

/// Runs `dump` with `args` on `path`; its exit code, stdout and stderr.
fn dump(args: &[&str], path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(common::example("dump")).args(args).arg(path).output().unwrap();
    let code = out.status.code().expect("dump was killed by a signal");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "dump panicked: {stderr}");
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn dump_verify_exit_status_is_clean_problems_or_unusable() -> Result<(), Error> {
    let f = fixture()?;
    let (code, out, _) = dump(&["--verify"], &f.db.path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified: clean"), "{out}");

    damage_value(&f.db.path, raw::SESSIONS, raw::record(&f.ann), |b| b[8] ^= 1);
    let (code, out, _) = dump(&["--verify"], &f.db.path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("problem: sessions [{}]: checksum mismatch", f.ann)), "{out}");
    let (code, out, _) = dump(&["--json", "--verify"], &f.db.path);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["clean"], false);
    assert_eq!(doc["problems"][0]["table"], "sessions");
    assert_eq!(doc["problems"][0]["key"], f.ann.as_str());

    std::fs::write(&f.db.path, b"not a database at all").unwrap();
    let (code, _, err) = dump(&["--verify"], &f.db.path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a sessiondb file"), "{err}");
    let (code, _, _) = dump(&["--verify"], &f.db.dir.path().join("missing.redb"));
    assert_eq!(code, 2);
    Ok(())
}

/// One writer process: creates, saves, regenerates, revokes and deletes sessions until killed.
#[test]
#[ignore = "child process of verify_is_clean_while_processes_write; run by it"]
fn child_busy_writer() -> Result<(), Error> {
    let path = std::env::var("SESSIONDB_VERIFY_PATH").expect("run by the parent test");
    let store = Store::builder(&path).cleanup_interval(None).open()?;
    println!("ready");
    for i in 0u64.. {
        let c = store.create_with(NewSession::new(b"data", b"s0").user(b"someone"))?;
        let v = store.store_state(&c.id, &c.token, Save::new(1, b"more", b"s1"))?.version;
        store.store_state(&c.id, &c.token, Save::new(v, b"more", b"s2"))?;
        let new = store.regenerate(&c.id, &c.token, Duration::from_secs(30))?;
        match i % 3 {
            0 => drop(store.revoke(&new.id)?),
            1 => drop(store.delete(&new.id)?),
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn verify_is_clean_while_processes_write() {
    let db = common::temp_db();
    drop(Store::open(&db.path).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "child_busy_writer", "--nocapture"])
                .env("SESSIONDB_VERIFY_PATH", &db.path)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let dump_exe = common::example("dump");
    let store = Store::builder(&db.path).read_only(true).open().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut runs, mut max_sessions) = (0, 0);
    while Instant::now() < deadline {
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "verify beside writers: {:#?}", report.problems);
        max_sessions = max_sessions.max(report.sessions);
        let out = Command::new(&dump_exe).arg("--verify").arg(&db.path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
        runs += 1;
    }
    for child in &mut children {
        assert!(child.try_wait().unwrap().is_none(), "a writer died: {:?}", child.try_wait());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(max_sessions > 0, "the writers wrote nothing in {runs} runs");
    eprintln!("{runs} verifications beside 2 writers, up to {max_sessions} sessions");
}

/// `dump` on a file of format 1 says what it is, and exits 2 (unusable), for every mode.
#[test]
fn dump_names_a_format_1_file_and_fails() {
    let db = common::temp_db();
    common::write_format_1(&db.path);
    for args in [&[][..], &["--verify"], &["--json", "--summary"]] {
        let (code, out, err) = dump(args, &db.path);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("format 1 (sessiondb before format 2)"), "{err}");
        assert!(err.contains("this build reads format 2 only"), "{err}");
        assert!(err.contains("delete the file"), "{err}");
    }
}
