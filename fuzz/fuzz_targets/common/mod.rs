//! Shared by the `model`, `dump` and `damaged_writes` targets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock, PoisonError};

/// Replaces libfuzzer-sys's panic hook (which aborts on any panic, even a caught one) with one
/// that records the panic and lets it unwind: sessiondb catches some panics inside its API
/// (from redb, on damaged pages) and returns `Error::Panicked`, which is not a bug of the
/// API. A panic that escapes the fuzz target still aborts: libfuzzer-sys catches it there.
///
/// Each panic is reported on stderr as `sessiondb-fuzz panic at <location>: <message>`, with a
/// backtrace the first time a location is seen and then at counts that are powers of two; if
/// the fuzzer aborts right after one, that one escaped.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    static SEEN: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map_or_else(|| "?".to_owned(), ToString::to_string);
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
            let count = seen.get_or_insert_with(HashMap::new).entry(location.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                let trace = std::backtrace::Backtrace::force_capture();
                eprintln!(
                    "sessiondb-fuzz panic at {location} (first time): {message}\n{trace}\n\
                     sessiondb-fuzz end of panic"
                );
            } else if count.is_power_of_two() {
                eprintln!("sessiondb-fuzz panic at {location} (x{count}): {message}");
            }
        }));
    });
}

/// `Store::verify` (what `dump --verify` runs): a report or a typed error, never a panic.
pub fn verify(store: &sessiondb::Store) {
    if let Ok(report) = store.verify() {
        assert!(report.problems.len() as u64 <= report.problem_count, "{report:?}");
        assert_eq!(report.is_clean(), report.problem_count == 0);
    }
}

/// The longest walk: a damaged B-tree must not make the fuzzer spin for ever.
pub const MAX_ITEMS: usize = 10_000;

/// The working directory, made once per fuzzing process (under `/dev/shm` when there is one).
pub fn workdir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        dir.expect("a temporary directory")
    })
    .path()
}

/// A file in [`workdir`] holding `data`, with no lock directory left from the last input.
pub fn file_with(name: &str, data: &[u8]) -> PathBuf {
    let path = workdir().join(name);
    let _ = std::fs::remove_file(&path);
    let mut locks = path.clone().into_os_string();
    locks.push(".locks");
    let _ = std::fs::remove_dir_all(locks);
    std::fs::write(&path, data).expect("write the input file");
    path
}
