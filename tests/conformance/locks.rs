//! The session lock: held against every other holder for a bounded wait, advisory (loads and
//! saves go on), free again once dropped.

use std::thread;
use std::time::{Duration, Instant};

use sessiondb::{Engine, Error, NewSession, Save};

use crate::{Settings, Subject, open};

pub fn the_session_lock_excludes_other_holders_for_a_bounded_wait<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"", b""))?;
    assert!(e.shares_lock(&c.id, &c.id), "an id shares its own lock");
    let lock = e.lock(&c.id, Duration::from_secs(5))?;
    let wait = Duration::from_millis(200);
    let (res, waited) = thread::scope(|s| {
        let other = s.spawn(|| {
            let start = Instant::now();
            (e.lock(&c.id, wait).map(drop), start.elapsed())
        });
        other.join().expect("the other thread")
    });
    refused!(res, Error::LockTimeout { .. }, false);
    assert!(waited >= wait, "gave up after {waited:?}");
    // Advisory: the holder's and others' loads and saves need no lock.
    let s = e.store_state(&c.id, &c.token, Save::new(c.version, b"saved", b""))?;
    assert_eq!(e.load(&c.id, &c.token)?.version, s.version);
    drop(lock);
    thread::scope(|s| s.spawn(|| e.lock(&c.id, Duration::from_secs(5)).map(drop)).join())
        .expect("the other thread")?;
    Ok(())
}
