//! Damaged records and foreign files give typed errors, never panics or wrong values.

mod common;

use common::{raw, store, temp_db};
use redb::{ReadableDatabase, ReadableTable};
use sessiondb::{Error, Store};

/// Applies `damage` to the stored bytes of `table[key]` through a raw redb handle.
fn damage_value<K: redb::Key + 'static>(
    path: &std::path::Path,
    table: redb::TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
    damage: impl FnOnce(&mut Vec<u8>),
) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(table).unwrap();
        let mut bytes = t.get(&key).unwrap().expect("record present").value().to_vec();
        damage(&mut bytes);
        t.insert(&key, bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
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
        t.get(victim.id.as_str().as_bytes()).unwrap().unwrap().value().len()
    };
    for pos in 0..len {
        damage_value(&db.path, raw::SESSIONS, victim.id.as_str().as_bytes(), |b| b[pos] ^= 0x40);
        let (s, _clock) = store(&db);
        let res = s.load(&victim.id, &victim.token);
        assert!(
            matches!(&res, Err(Error::Corrupted { table: "sessions", key }) if key == victim.id.as_str()),
            "flip at {pos}: {res:?}"
        );
        assert!(s.exists(&victim.id).is_err());
        assert_eq!(s.load(&bystander.id, &bystander.token)?.session_data, b"bystander");
        drop(s);
        damage_value(&db.path, raw::SESSIONS, victim.id.as_str().as_bytes(), |b| b[pos] ^= 0x40);
    }
    let (s, _clock) = store(&db);
    assert_eq!(s.load(&victim.id, &victim.token)?.session_data, b"victim data");
    Ok(())
}

#[test]
fn truncated_and_extended_records_are_corrupted() -> Result<(), Error> {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let c = s.create(b"data", b"")?;
    drop(s);
    damage_value(&db.path, raw::SESSIONS, c.id.as_str().as_bytes(), |b| b.truncate(b.len() / 2));
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
    damage_value(&db.path, raw::STATES, (c.id.as_str().as_bytes(), 0), |b| b.push(0));
    let (s, _clock) = store(&db);
    let res = s.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Corrupted { table: "states", .. })), "{res:?}");
    Ok(())
}

#[test]
fn a_session_listing_reports_damaged_records_and_goes_on() -> Result<(), Error> {
    let db = temp_db();
    let (s, _clock) = store(&db);
    let made: Vec<_> = (0..5).map(|_| s.create(b"", b"").unwrap()).collect();
    drop(s);
    damage_value(&db.path, raw::SESSIONS, made[2].id.as_str().as_bytes(), |b| b[0] = 99);
    let (s, _clock) = store(&db);
    let items: Vec<_> = s.sessions().collect();
    assert_eq!(items.len(), 5);
    assert_eq!(items.iter().filter(|i| matches!(i, Err(Error::Corrupted { .. }))).count(), 1);
    Ok(())
}

#[test]
fn another_programs_redb_file_is_not_a_sessiondb_file() -> Result<(), Error> {
    let db = temp_db();
    {
        let rdb = redb::Database::create(&db.path).unwrap();
        let txn = rdb.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("orders");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = std::fs::read(&db.path)?;
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    let res = Store::builder(&db.path).read_only(true).open();
    assert!(matches!(res, Err(Error::NotSessionDb { .. })), "{res:?}");
    // The other program's data is untouched.
    let rdb = redb::Database::open(&db.path).unwrap();
    let txn = rdb.begin_read().unwrap();
    let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("orders");
    assert_eq!(txn.open_table(def).unwrap().get(1).unwrap().unwrap().value(), 2);
    assert_eq!(std::fs::read(&db.path)?.len(), before.len());
    Ok(())
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
fn another_format_version_is_unsupported() -> Result<(), Error> {
    let db = temp_db();
    drop(store(&db));
    {
        let rdb = redb::Database::open(&db.path).unwrap();
        let txn = rdb.begin_write().unwrap();
        txn.open_table(raw::META)
            .unwrap()
            .insert("format", 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let res = Store::open(&db.path);
    assert!(matches!(res, Err(Error::UnsupportedFormat { found: 99, expected: 1 })), "{res:?}");
    let msg = res.unwrap_err().to_string();
    assert!(msg.contains("99") && msg.contains("sessiondb version"), "{msg}");
    Ok(())
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
    assert_eq!(ro.session_info(&c.id)?.map(|i| i.last_access), Some(common::T0));
    Ok(())
}
