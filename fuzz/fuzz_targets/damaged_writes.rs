//! Writes on arbitrary file bytes: a copy of the input opened read-write (`SingleProcess`, no
//! clean-up thread); every listed session is read (`exists`, `inspect`, `load`,
//! `fetch_state` with a token that cannot match), one is deleted, one revoked, a clean-up runs
//! and a session is created, which makes redb write on the damaged file.
//!
//! redb 4.5 and 4.6 abort the process on some damaged pages, panicking in a destructor while it
//! unwinds from a first panic (`fuzz/regressions/README.md` lists the known inputs and what
//! became of each; one is fixed in the patched redb under `vendor/redb/`). sessiondb catches
//! every panic that reaches its API, but no `catch_unwind` can stop an abort inside redb's own
//! frames.
//!
//! The file is a `FaultyDisk` holding the input (no faults injected), discarded after each
//! input: a store that met a damaged file leaks its redb handle on drop rather than risk
//! closing it, and with a real file each input would keep a descriptor and redb's cache of it
//! for the rest of the process (1.2 GB of RSS after 68,000 inputs). The page cache is small for
//! the same reason, and so that more reads reach the damaged bytes.
//!
//! Seeds: `fuzz/seeds/dump/`.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sessiondb::faults::FaultyDisk;
use sessiondb::{SecureToken, Sharing, Store};

/// Discards the disk when dropped, after the store (declared before it).
struct Discard(FaultyDisk);

impl Drop for Discard {
    fn drop(&mut self) {
        self.0.discard();
    }
}

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    let disk = FaultyDisk::with_image(data.to_vec());
    let _discard = Discard(disk.clone());
    let Ok(store) = Store::builder(common::workdir().join("rw.redb"))
        .sharing(Sharing::SingleProcess)
        .backend(disk.backend())
        .cache_size(64 << 10)
        .cleanup_interval(None)
        .open()
    else {
        return;
    };
    let token = SecureToken::parse("not-the-token").unwrap();
    let mut ids = Vec::new();
    for item in store.sessions().take(common::MAX_ITEMS) {
        let Ok(info) = item else { continue };
        let _ = store.exists(&info.id);
        let _ = store.inspect(&info.id);
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
