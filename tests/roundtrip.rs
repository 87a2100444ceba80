//! Sessions and states survive a round trip, typed values too, and a reopen keeps everything.

mod common;

use common::{store, temp_db};
use serde::{Deserialize, Serialize};
use sessiondb::{Error, Save, Store};

#[test]
fn create_load_store_round_trip() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"session-0", b"state-0")?;
    assert_eq!((c.state_id, c.version), (0, 1));

    let got = store.load(&c.id, &c.token)?;
    assert_eq!(got.session_data, b"session-0");
    assert_eq!(got.state_data, b"state-0");
    assert_eq!((got.state_id, got.latest_state_id, got.version), (0, 0, 1));

    let s = store.store_state(&c.id, &c.token, Save::new(got.version, b"session-1", b"state-1"))?;
    assert_eq!((s.state_id, s.version), (1, 2));
    let got = store.load(&c.id, &c.token)?;
    assert_eq!(got.session_data, b"session-1");
    assert_eq!(got.state_data, b"state-1");
    assert_eq!((got.state_id, got.latest_state_id, got.version), (1, 1, 2));

    // Back to state 0: its state data, the current session data.
    let back = store.fetch_state(&c.id, &c.token, Some(0))?;
    assert_eq!(back.state_data, b"state-0");
    assert_eq!(back.session_data, b"session-1");
    assert_eq!(back.latest_state_id, 1);

    // A new state after going back continues from the latest.
    let s =
        store.store_state(&c.id, &c.token, Save::new(back.version, b"session-2", b"state-2"))?;
    assert_eq!(s.state_id, 2);
    Ok(())
}

#[test]
fn same_state_overwrites_the_latest() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"", b"a")?;
    let s = store.store_state(&c.id, &c.token, Save::new(c.version, b"", b"b"))?;
    let s =
        store.store_state(&c.id, &c.token, Save::new(s.version, b"x", b"c").same_state(true))?;
    assert_eq!(s.state_id, 1);
    assert_eq!(store.fetch_state(&c.id, &c.token, Some(1))?.state_data, b"c");
    assert_eq!(store.fetch_state(&c.id, &c.token, Some(0))?.state_data, b"a");
    assert_eq!(store.inspect(&c.id)?.unwrap().1.len(), 2);
    Ok(())
}

#[test]
fn stale_version_is_a_conflict_and_writes_nothing() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"v1", b"")?;
    let read = store.load(&c.id, &c.token)?;
    store.store_state(&c.id, &c.token, Save::new(read.version, b"v2", b""))?;
    let res = store.store_state(&c.id, &c.token, Save::new(read.version, b"v3", b""));
    assert!(matches!(res, Err(Error::Conflict { expected: 1, found: 2 })), "{res:?}");
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"v2");
    Ok(())
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Cart {
    user: String,
    items: Vec<(String, u32)>,
}

#[test]
fn typed_values_round_trip_and_mismatch_is_typed() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let cart = Cart { user: "ann".into(), items: vec![("apple".into(), 3)] };
    let c = store.create(&sessiondb::encode(&cart)?, &sessiondb::encode(&7u32)?)?;
    let got = store.load(&c.id, &c.token)?;
    assert_eq!(got.session::<Cart>()?, cart);
    assert_eq!(got.state::<u32>()?, 7);
    let wrong = got.state::<String>();
    assert!(matches!(wrong, Err(Error::Serde { .. })), "{wrong:?}");
    Ok(())
}

#[test]
fn reopen_after_drop_keeps_everything() -> Result<(), Error> {
    let db = temp_db();
    let mut made = Vec::new();
    {
        let (store, _clock) = store(&db);
        for i in 0..50u32 {
            let c = store.create(&i.to_le_bytes(), b"s0")?;
            store.store_state(&c.id, &c.token, Save::new(c.version, &i.to_le_bytes(), b"s1"))?;
            made.push((i, c));
        }
    }
    let (store, _clock) = store(&db);
    assert_eq!(store.count()?, 50);
    for (i, c) in &made {
        let got = store.load(&c.id, &c.token)?;
        assert_eq!(got.session_data, i.to_le_bytes());
        assert_eq!((got.state_id, got.version), (1, 2));
        assert_eq!(store.fetch_state(&c.id, &c.token, Some(0))?.state_data, b"s0");
    }
    Ok(())
}

#[test]
fn delete_and_exists() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"x", b"y")?;
    store.store_state(&c.id, &c.token, Save::new(c.version, b"x", b"z"))?;
    assert!(store.exists(&c.id)?);
    assert!(store.delete(&c.id)?);
    assert!(!store.delete(&c.id)?);
    assert!(!store.exists(&c.id)?);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    assert_eq!(store.inspect(&c.id)?, None, "no record, so no states to list");
    let info = store.info()?;
    assert_eq!((info.sessions, info.states, info.expiry_entries), (0, 0, 0));
    Ok(())
}

#[test]
fn default_open_works_with_the_system_clock() -> Result<(), Error> {
    let db = temp_db();
    let store = Store::open(&db.path)?;
    assert!(store.is_multiprocess_safe());
    assert!(store.is_thread_safe());
    let c = store.create(b"a", b"b")?;
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"a");
    Ok(())
}

#[test]
fn store_is_send_and_sync_and_shared_by_threads() -> Result<(), Error> {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let db = temp_db();
    let (store, _clock) = store(&db);
    let made: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    (0..20)
                        .map(|i| store.create(format!("{t}/{i}").as_bytes(), b"").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(store.count()?, 80);
    for c in &made {
        store.load(&c.id, &c.token)?;
    }
    Ok(())
}

#[test]
fn single_process_mode_round_trips_and_excludes_other_handles() -> Result<(), Error> {
    let db = temp_db();
    let store = Store::builder(&db.path).sharing(sessiondb::Sharing::SingleProcess).open()?;
    assert!(!store.is_multiprocess_safe());
    let c = store.create(b"a", b"0")?;
    store.store_state(&c.id, &c.token, Save::new(c.version, b"b", b"1"))?;
    let got = store.load(&c.id, &c.token)?;
    assert_eq!((got.session_data.as_slice(), got.state_id), (b"b".as_slice(), 1));
    // The file is this handle's alone while it is open.
    assert!(matches!(Store::open(&db.path), Err(Error::Storage(_))));
    drop(store);
    let again = Store::open(&db.path)?;
    assert_eq!(again.fetch_state(&c.id, &c.token, Some(0))?.state_data, b"0");
    Ok(())
}

#[test]
fn values_over_the_hard_limit_do_not_encode() {
    let huge = "x".repeat((64 << 20) + 1);
    assert!(matches!(sessiondb::encode(&huge), Err(Error::Serde { .. })));
    assert!(sessiondb::encode(&"x".repeat(1 << 20)).is_ok());
}
