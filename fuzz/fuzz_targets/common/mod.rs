//! Shared by the `model` and `dump` targets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Mutex, Once, PoisonError};

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
