//! Writes on arbitrary file bytes: a copy of the input opened read-write (`SingleProcess`, no
//! clean-up thread); every listed session is read (`exists`, `session_info`, `states`,
//! `fetch_state` with a token that cannot match), one is deleted, one revoked, a clean-up runs
//! and a session is created, which makes redb write on the damaged file.
//!
//! Not in the CI smoke (`fuzz/run.sh` runs it only when named): redb 4.5 aborts the process on
//! some damaged pages, panicking in a destructor while it unwinds from a first panic
//! (`fuzz/regressions/README.md` lists the known inputs). sessiondb catches every panic that
//! reaches its API, but no `catch_unwind` can stop an abort inside redb's own frames.
//!
//! Seeds: `fuzz/seeds/dump/`.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sessiondb::{SecureToken, Sharing, Store};

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    let path = common::file_with("rw.redb", data);
    let Ok(store) =
        Store::builder(&path).sharing(Sharing::SingleProcess).cleanup_interval(None).open()
    else {
        return;
    };
    let token = SecureToken::parse("not-the-token").unwrap();
    let mut ids = Vec::new();
    for item in store.sessions().take(common::MAX_ITEMS) {
        let Ok(info) = item else { continue };
        let _ = store.exists(&info.id);
        let _ = store.session_info(&info.id);
        let _ = store.states(&info.id);
        // A wrong token still reads and checks the record.
        let _ = store.load(&info.id, &token);
        let _ = store.fetch_state(&info.id, &token, Some(info.oldest_state));
        ids.push(info.id);
    }
    if let Some(id) = ids.first() {
        let _ = store.delete(id);
    }
    if let Some(id) = ids.last() {
        let _ = store.revoke(id);
    }
    let _ = store.cleanup();
    if let Ok(c) = store.create(b"fuzz", b"state") {
        let _ = store.load(&c.id, &c.token);
    }
    let _ = store.info();
    common::verify(&store);
});
