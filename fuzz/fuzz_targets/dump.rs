//! Dump on arbitrary file bytes (issue 5, target 4): whatever the file holds, opening it and
//! reading everything the dump reads returns values or typed errors, never a panic.
//!
//! The bytes are written to a file under `/dev/shm` (fast) and opened read-only exactly as
//! `examples/dump.rs` opens it; then `info()`, every `sessions()` item and `inspect()` of each,
//! as the dump does. Then a copy is opened read-write (`SingleProcess`, no clean-up thread) and
//! every listed session is read (`exists`, `fetch_state` with a token that cannot match,
//! `session_info`), one is deleted, a clean-up runs and a session is created, which makes redb
//! write on the damaged file.
//!
//! Panics that sessiondb catches inside the public API (it turns some of redb's into
//! `Error::Panicked`) are not failures here: a panic hook records them (stderr lines starting
//! `caught internal panic`) instead of aborting. A panic that escapes the API still aborts.
//!
//! Seeds: `fuzz/seeds/dump/`, real sessiondb files (`examples/make_seeds.rs`).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessiondb::{SecureToken, Sharing, Store};

/// The working directory, made once per fuzzing process.
fn workdir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        dir.expect("a temporary directory")
    })
    .path()
}

/// The longest walk: a damaged B-tree must not make the fuzzer spin for ever.
const MAX_ITEMS: usize = 10_000;

fn read_only(path: &Path) {
    let Ok(store) = Store::builder(path).read_only(true).idle_timeout(None).open() else {
        return;
    };
    let _ = store.info();
    let _ = store.count();
    for item in store.sessions().take(MAX_ITEMS) {
        let Ok(info) = item else { continue };
        if let Ok(Some((again, states))) = store.inspect(&info.id) {
            assert_eq!(again.id, info.id);
            let _ = states.len();
        }
    }
    common::verify(&store);
}

fn read_write(path: &Path) {
    let Ok(store) =
        Store::builder(path).sharing(Sharing::SingleProcess).cleanup_interval(None).open()
    else {
        return;
    };
    let token = SecureToken::parse("not-the-token").unwrap();
    let mut ids = Vec::new();
    for item in store.sessions().take(MAX_ITEMS) {
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
}

fn fresh(name: &str) -> PathBuf {
    let path = workdir().join(name);
    let _ = std::fs::remove_file(&path);
    let mut locks = path.clone().into_os_string();
    locks.push(".locks");
    let _ = std::fs::remove_dir_all(locks);
    path
}

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    let ro = fresh("ro.redb");
    std::fs::write(&ro, data).expect("write the input file");
    read_only(&ro);
    let rw = fresh("rw.redb");
    std::fs::write(&rw, data).expect("write the copy");
    read_write(&rw);
});
