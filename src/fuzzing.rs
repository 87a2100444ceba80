//! Entry points for the fuzz targets in `fuzz/`: the decoders the store runs on bytes read from
//! the file, exposed so that a fuzzer can call them directly. Not part of the supported API.

/// Runs every record decoder on `bytes`: the session, state and tombstone records, and the
/// serde payload decoder behind [`crate::decode`]. Each must return (a value or an error) and
/// never panic, whatever the bytes. Returns how many of the decoders accepted the bytes.
pub fn decode_records(bytes: &[u8]) -> usize {
    crate::store::decode_any_record(bytes)
}
