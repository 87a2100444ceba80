//! Dump on arbitrary file bytes (issue 5, target 4): whatever the file holds, opening it and
//! reading everything `examples/dump/main.rs` reads returns values or typed errors, never a panic.
//!
//! The bytes are written to a file under `/dev/shm` (fast) and opened read-only exactly as
//! the dump opens it; then `info()`, `count()`, every `sessions()` item and `inspect()` of each,
//! and `verify()` (`dump --verify`).
//!
//! Panics that sessiondb catches inside the public API (it turns redb's into `Error::Panicked`)
//! are not failures here: a panic hook records them (stderr lines starting `sessiondb-fuzz
//! panic at`) instead of aborting. A panic that escapes the API still aborts.
//!
//! Writes on damaged files are the `damaged_writes` target.
//!
//! Seeds: `fuzz/seeds/dump/`, real sessiondb files (`examples/make_seeds.rs`).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sessiondb::Store;

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    let path = common::file_with("ro.redb", data);
    let Ok(store) = Store::builder(&path).read_only(true).idle_timeout(None).open() else {
        return;
    };
    let _ = store.info();
    let _ = store.count();
    for item in store.sessions().take(common::MAX_ITEMS) {
        let Ok(info) = item else { continue };
        if let Ok(Some((again, states))) = store.inspect(&info.id) {
            assert_eq!(again.id, info.id);
            let _ = states.len();
        }
    }
    common::verify(&store);
});
