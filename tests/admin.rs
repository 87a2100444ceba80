//! Admin inspection: the paginated session walk, `inspect`, `info` and statuses.

mod common;

use std::collections::BTreeSet;

use common::{T0, store, temp_db};
use sessiondb::{Error, Save, SessionStatus};

#[test]
fn the_session_walk_sees_every_session_once_across_pages() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    // More than two pages of 256.
    let made: BTreeSet<String> =
        (0..600).map(|_| store.create(b"", b"").unwrap().id.to_string()).collect();
    let walked: Vec<String> =
        store.sessions().map(|s| s.map(|s| s.id.to_string())).collect::<Result<_, _>>()?;
    assert_eq!(walked.len(), 600);
    assert!(walked.windows(2).all(|w| w[0] < w[1]), "in id order, no repeats");
    assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), made);
    Ok(())
}

#[test]
fn inspect_and_info_describe_the_file() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let c = store.create(b"12345", b"s0")?;
    store.store_state(&c.id, &c.token, Save::new(c.version, b"1234567", b"state one"))?;
    let (info, states) = store.inspect(&c.id)?.expect("present");
    assert_eq!(info.id, c.id);
    assert_eq!((info.version, info.oldest_state, info.latest_state), (2, 0, 1));
    assert_eq!(info.data_len, 7);
    assert_eq!((info.created, info.last_access), (T0, T0));
    assert_eq!(info.expires_at, T0 + 10_000);
    assert_eq!(info.remove_at, T0 + 15_000);
    assert_eq!(states.iter().map(|s| s.id).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(states[1].size, 13 + 9, "record header and length, then the data");
    assert_eq!(info.status, SessionStatus::Live);
    assert_eq!(info.status.to_string(), "live");

    clock.advance(12_000);
    assert_eq!(store.inspect(&c.id)?.unwrap().0.status, SessionStatus::Expired);
    clock.advance(3_000);
    assert_eq!(store.inspect(&c.id)?.unwrap().0.status.as_str(), "gone");

    let file = store.info()?;
    assert_eq!(file.format_version, 2);
    assert_eq!(file.created, T0);
    assert_eq!((file.sessions, file.states, file.expiry_entries), (1, 2, 1));
    assert!(file.file_size > 0);
    assert_eq!(store.inspect(&sessiondb::SessionId::parse("nope")?)?, None);
    Ok(())
}
