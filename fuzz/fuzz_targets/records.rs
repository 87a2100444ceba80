//! Record decoding (issue 5, target 1): every decoder the store runs on bytes read from the
//! file — session, state and tombstone records, and the serde payload decoder behind
//! `sessiondb::decode` — must return a value or an error, never panic, whatever the bytes.
//!
//! Seeds: `fuzz/seeds/records/`, real records read out of a file written by the library
//! (`examples/make_seeds.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let accepted = sessiondb::fuzzing::decode_records(data);
    assert!(accepted <= 4, "{accepted} decoders of 4 accepted");
    // The public payload decoder, with a few shapes a caller might store.
    let _ = sessiondb::decode::<Vec<String>>(data);
    let _ = sessiondb::decode::<(u64, String, Option<Vec<u8>>, bool)>(data);
    if let Ok(v) = sessiondb::decode::<Vec<(String, u32)>>(data) {
        // What decodes re-encodes to the same bytes (fixed-width integers: one encoding).
        let again = sessiondb::encode(&v).expect("a decoded value encodes");
        assert_eq!(again, data, "decode then encode changed the bytes");
    }
});
