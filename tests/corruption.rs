//! Damaged records and foreign files give typed errors, never panics or wrong values.

mod common;

use common::{damage_value, raw, raw_write, store, temp_db};
use redb::ReadableDatabase;
use sessiondb::{Error, Store};

/// Creates one session in the file at `db`, closes the store, then applies `damage` to the
/// session's record through a raw redb handle. Returns the session, for the test to reopen.
fn create_then_damage(
    db: &common::TempDb,
    session_data: &[u8],
    state_data: &[u8],
    damage: impl FnOnce(&mut Vec<u8>),
) -> Result<sessiondb::Created, Error> {
    let (s, _clock) = store(db);
    let c = s.create(session_data, state_data)?;
    drop(s);
    damage_value(&db.path, raw::SESSIONS, raw::record(&c.id), damage);
    Ok(c)
}

#[test]
fn a_flipped_byte_in_a_session_record_is_corrupted() -> Result<(), Error> {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let victim = s.create(b"victim data", b"")?;
    let bystander = s.create(b"bystander", b"")?;
    drop(s);
    // Flip one byte in every position in turn: each must be caught.
    let len = {
        let rdb = redb::Database::open(&db.path).unwrap();
        let txn = rdb.begin_read().unwrap();
        let t = txn.open_table(raw::SESSIONS).unwrap();
        t.get(raw::record(&victim.id)).unwrap().unwrap().value().len()
    };
    for pos in 0..len {
        damage_value(&db.path, raw::SESSIONS, raw::record(&victim.id), |b| b[pos] ^= 0x40);
        let (s, _clock) = store(&db);
        let res = s.load(&victim.id, &victim.token);
        assert!(
            matches!(&res, Err(Error::Corrupted { table: "sessions", key }) if key == victim.id.as_str()),
            "flip at {pos}: {res:?}"
        );
        assert!(s.exists(&victim.id).is_err());
        assert_eq!(s.load(&bystander.id, &bystander.token)?.session_data, b"bystander");
        drop(s);
        damage_value(&db.path, raw::SESSIONS, raw::record(&victim.id), |b| b[pos] ^= 0x40);
    }
    let (s, _clock) = store(&db);
    assert_eq!(s.load(&victim.id, &victim.token)?.session_data, b"victim data");
    Ok(())
}

#[test]
fn truncated_and_extended_records_are_corrupted() -> Result<(), Error> {
    let db = temp_db();
    let c = create_then_damage(&db, b"data", b"", |b| b.truncate(b.len() / 2))?;
    let (s, _clock) = store(&db);
    assert!(matches!(s.load(&c.id, &c.token), Err(Error::Corrupted { .. })));
    // A damaged session can still be deleted, with its states and its index entry.
    assert!(s.delete(&c.id)?);
    let info = s.info()?;
    assert_eq!((info.sessions, info.states, info.expiry_entries), (0, 0, 0));
    Ok(())
}

#[test]
fn a_damaged_state_record_is_corrupted() -> Result<(), Error> {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let c = s.create(b"", b"state zero")?;
    drop(s);
    damage_value(&db.path, raw::SESSIONS, (c.id.as_str().as_bytes(), 0), |b| b.push(0));
    let (s, _clock) = store(&db);
    let res = s.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Corrupted { table: "states", .. })), "{res:?}");
    Ok(())
}

#[test]
fn a_session_listing_reports_damaged_records_and_goes_on() {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let made: Vec<_> = (0..5).map(|_| s.create(b"", b"").unwrap()).collect();
    drop(s);
    damage_value(&db.path, raw::SESSIONS, raw::record(&made[2].id), |b| b[0] = 99);
    let (s, _clock) = store(&db);
    let items: Vec<_> = s.sessions().collect();
    assert_eq!(items.len(), 5);
    assert_eq!(items.iter().filter(|i| matches!(i, Err(Error::Corrupted { .. }))).count(), 1);
}

#[test]
fn another_programs_redb_file_is_not_a_sessiondb_file() {
    let db = temp_db();
    raw_write(&db.path, |txn| {
        let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("orders");
        txn.open_table(def).unwrap().insert(1, 2).unwrap();
    });
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    let res = Store::builder(&db.path).read_only(true).open();
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    // The other program's data is untouched.
    let rdb = redb::Database::open(&db.path).unwrap();
    let txn = rdb.begin_read().unwrap();
    let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("orders");
    assert_eq!(txn.open_table(def).unwrap().get(1).unwrap().unwrap().value(), 2);
    assert_eq!(txn.list_tables().unwrap().count(), 1, "no sessiondb table was added");
}

#[test]
fn random_bytes_are_not_a_sessiondb_file() -> Result<(), Error> {
    let db = temp_db();
    let mut bytes = vec![0u8; 64 * 1024];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::try_from((i * 7919 + 13) % 251).unwrap();
    }
    std::fs::write(&db.path, &bytes)?;
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    assert_eq!(std::fs::read(&db.path)?, bytes, "the file is left as it was");
    std::fs::write(&db.path, b"x")?;
    assert!(matches!(Store::open(&db.path), Err(Error::NotSessionDb { .. })));
    Ok(())
}

#[test]
fn another_format_version_is_unsupported() {
    let db = temp_db();
    drop(store(&db));
    raw_write(&db.path, |txn| {
        txn.open_table(raw::META)
            .unwrap()
            .insert("format", 99u32.to_le_bytes().as_slice())
            .unwrap();
    });
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::UnsupportedFormat { found: 99, expected: 2 })), "{res:?}");
    let msg = res.unwrap_err().to_string();
    assert!(msg.contains("99") && msg.contains("newer sessiondb"), "{msg}");
}

/// A file of format 1 (sessiondb before format 2: records and states in separate tables, the
/// expiry index keyed by removal time and last access), written here with redb alone, is
/// refused with a typed error that says what to do, read-write and read-only, and left as it
/// was.
#[test]
fn a_format_1_file_is_refused_with_what_to_do() {
    let db = temp_db();
    common::write_format_1(&db.path);
    for read_only in [false, true] {
        let res = Store::builder(&db.path).read_only(read_only).open();
        assert!(matches!(res, Err(Error::UnsupportedFormat { found: 1, expected: 2 })), "{res:?}");
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains("earlier sessiondb") && msg.contains("delete the file"), "{msg}");
    }
    let rdb = redb::Database::open(&db.path).unwrap();
    let txn = rdb.begin_read().unwrap();
    let format =
        txn.open_table(raw::META).unwrap().get("format").unwrap().unwrap().value().to_vec();
    assert_eq!(format, 1u32.to_le_bytes(), "the file is left as it was");
}

#[test]
fn read_only_open_of_a_missing_file_is_an_io_error() {
    let db = temp_db();
    let res = Store::builder(&db.path).read_only(true).open();
    assert!(matches!(res, Err(Error::Io(_))), "{res:?}");
    assert!(!db.path.exists(), "a read-only open creates nothing");
}

#[test]
fn read_only_store_refuses_writes() -> Result<(), Error> {
    let db = temp_db();
    let (s, clock) = store(&db);
    let c = s.create(b"x", b"")?;
    drop(s);
    clock.advance(1_000); // past the touch resolution: a read-write load would persist it
    let ro = common::builder(&db.path, &clock).read_only(true).open()?;
    assert_eq!(ro.load(&c.id, &c.token)?.session_data, b"x");
    assert!(matches!(ro.create(b"", b""), Err(Error::InvalidInput(_))));
    assert!(matches!(ro.delete(&c.id), Err(Error::InvalidInput(_))));
    assert!(matches!(ro.cleanup(), Err(Error::InvalidInput(_))));
    assert_eq!(ro.inspect(&c.id)?.map(|(i, _)| i.last_access), Some(common::T0));
    Ok(())
}

#[test]
fn the_documented_layout_matches_the_file() -> Result<(), Error> {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let c = s.create(b"data", b"")?;
    s.store_state(&c.id, &c.token, sessiondb::Save::new(c.version, b"data", b""))?;
    drop(s);
    let rdb = redb::Database::open(&db.path).unwrap();
    let txn = rdb.begin_read().unwrap();
    let t = txn.open_table(raw::SESSIONS).unwrap();
    let bytes = t.get(raw::record(&c.id)).unwrap().unwrap().value().to_vec();
    let field = |i: usize| raw::get_field(&bytes, i);
    assert_eq!(bytes[0], 1, "record format byte");
    assert_eq!(field(0), common::T0, "created");
    assert_eq!(field(3), common::T0 + 15_000, "remove_at: idle 10 s + grace 5 s");
    assert_eq!(field(4), common::T0 + 15_000, "indexed: where the expiry entry is filed");
    assert_eq!((field(5), field(6), field(7)), (2, 1, 0), "version, latest, oldest");
    // token hash (32), two empty options, then the data with its u64 length
    assert_eq!(&bytes[5 + 64 + 32..], &[0, 0, 4, 0, 0, 0, 0, 0, 0, 0, b'd', b'a', b't', b'a']);
    // The states sort before the record, under the same id.
    let id = c.id.as_str().as_bytes();
    let keys: Vec<u64> =
        t.range((id, 0)..=(id, u64::MAX)).unwrap().map(|e| e.unwrap().0.value().1).collect();
    assert_eq!(keys, [0, 1, raw::RECORD]);
    Ok(())
}

#[test]
fn hostile_counters_with_a_valid_crc_are_corrupted_not_overflowed() -> Result<(), Error> {
    // latest_state and version (docs/format.md).
    for (field, value) in [(6, u64::MAX), (5, u64::MAX)] {
        let db = temp_db();
        let c = create_then_damage(&db, b"", b"", |b| raw::set_field(b, field, value))?;
        let (s, _clock) = store(&db);
        assert!(matches!(s.load(&c.id, &c.token), Err(Error::Corrupted { .. })));
        let save = sessiondb::Save::new(c.version, b"", b"");
        assert!(matches!(s.store_state(&c.id, &c.token, save), Err(Error::Corrupted { .. })));
        let save = sessiondb::Save::new(c.version, b"", b"").same_state(true);
        assert!(matches!(s.store_state(&c.id, &c.token, save), Err(Error::Corrupted { .. })));
    }
    Ok(())
}

#[test]
fn a_huge_gap_in_state_ids_is_evicted_by_range() -> Result<(), Error> {
    let db = temp_db();
    // The record claims states 0..=2^40 exist; only state 0 does. A one-by-one eviction would
    // spin for 2^40 iterations under the file's write lock. (max_states is 16.)
    let c = create_then_damage(&db, b"", b"zero", |b| raw::set_field(b, 6, 1 << 40))?;
    let (s, _clock) = store(&db);
    let stored = s.store_state(&c.id, &c.token, sessiondb::Save::new(c.version, b"", b"new"))?;
    assert_eq!(stored.state_id, (1 << 40) + 1);
    let kept: Vec<u64> = s.inspect(&c.id)?.unwrap().1.iter().map(|st| st.id).collect();
    assert_eq!(kept, vec![(1 << 40) + 1]);
    assert_eq!(s.load(&c.id, &c.token)?.state_data, b"new");
    Ok(())
}

#[test]
fn a_damaged_expired_session_is_swept_with_everything_it_owns() -> Result<(), Error> {
    let db = temp_db();
    let (s, clock) = store(&db);
    let c = s.create(b"", b"")?;
    s.store_state(&c.id, &c.token, sessiondb::Save::new(c.version, b"", b""))?;
    drop(s);
    damage_value(&db.path, raw::SESSIONS, raw::record(&c.id), |b| b[20] ^= 1);
    let (s, _) = common::store_with_clock(&db, &clock);
    clock.advance(16_000);
    let report = s.cleanup()?;
    assert_eq!((report.sessions, report.corrupted, report.states), (0, 1, 2));
    let info = s.info()?;
    assert_eq!((info.sessions, info.states, info.expiry_entries), (0, 0, 0));
    Ok(())
}

#[test]
fn a_redb_file_with_only_multimap_tables_is_not_ours() {
    let db = temp_db();
    raw_write(&db.path, |txn| {
        let def: redb::MultimapTableDefinition<&str, &str> =
            redb::MultimapTableDefinition::new("tags");
        txn.open_multimap_table(def).unwrap().insert("a", "b").unwrap();
    });
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    let rdb = redb::Database::open(&db.path).unwrap();
    let txn = rdb.begin_read().unwrap();
    assert_eq!(txn.list_tables().unwrap().count(), 0, "no sessiondb table was added");
}

#[test]
fn read_only_open_of_random_bytes_is_not_a_sessiondb_file() -> Result<(), Error> {
    let db = temp_db();
    std::fs::write(&db.path, vec![0xA5u8; 8192])?;
    let res = Store::builder(&db.path).read_only(true).open();
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    Ok(())
}
