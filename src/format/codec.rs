//! The record codec: the only module that knows bincode.
//!
//! Every stored record is `[format u8][crc32 u32 LE][bincode payload]`, where the crc covers the
//! format byte and the payload. Decoding checks the format byte and the crc, refuses payloads
//! larger than [`HARD_LIMIT`] before allocating, and rejects trailing bytes.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format byte of every record this build writes.
pub(crate) const RECORD_FORMAT: u8 = 1;

/// The largest payload any record may have, whatever the configuration: 64 MiB.
pub(crate) const HARD_LIMIT: usize = 64 << 20;

const HEADER_LEN: usize = 5;

/// Fixed-width little-endian integers keep the encoding obvious in a hex dump.
fn config() -> Configuration<LittleEndian, Fixint, Limit<HARD_LIMIT>> {
    base().with_limit::<HARD_LIMIT>()
}

fn base() -> Configuration<LittleEndian, Fixint> {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding()
}

/// Decodes `bytes` with bincode's limit set to the smallest of a few sizes (256 bytes, then
/// four times larger each, up to [`HARD_LIMIT`]) that is at least `bytes.len()`.
///
/// bincode counts against the limit every byte it decodes and, before allocating a string or
/// byte buffer, the length it claims: so a length prefix larger than what is left of the input
/// fails before the allocation, which therefore stays within four times the input (or 256
/// bytes). With the fixed 64 MiB limit a 20-byte input claiming 64 MiB got a 64 MiB buffer.
/// A valid encoding claims exactly its own length (fixed-width integers, length-prefixed
/// strings), so it always fits. The limit is a type parameter in bincode 2, hence the match.
fn decode_bounded<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! limited {
        ($($max:expr),*) => {
            match bytes.len() {
                $(n if n <= $max => bincode::serde::decode_from_slice(bytes, base().with_limit::<{ $max }>()),)*
                _ => bincode::serde::decode_from_slice(bytes, config()),
            }
        };
    }
    limited!(256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20)
}

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// Shorter than the header.
    Truncated,
    /// A format byte this build does not know.
    Format(u8),
    /// The crc does not match.
    Checksum,
    /// The payload is longer than the limit.
    TooLarge,
    /// The payload is not a valid encoding of the expected type.
    Payload(String),
    /// The payload decoded but bytes were left over.
    TrailingBytes,
}

/// Encodes `value` as a bare bincode payload (no header): for session data of a caller's type.
pub(crate) fn to_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let out = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Payload(e.to_string()))?;
    // bincode's limit applies to decoding only: refuse here what decoding would refuse.
    if out.len() > HARD_LIMIT {
        return Err(CodecError::TooLarge);
    }
    Ok(out)
}

/// Decodes a bare bincode payload, refusing trailing bytes.
pub(crate) fn from_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > HARD_LIMIT {
        return Err(CodecError::TooLarge);
    }
    let (value, used) = decode_bounded(bytes).map_err(|e| CodecError::Payload(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(value)
}

fn checksum(format: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[format]);
    h.update(payload);
    h.finalize()
}

/// Encodes `value` as a full record: header, crc and payload.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![RECORD_FORMAT, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Payload(e.to_string()))?;
    if out.len() - HEADER_LEN > HARD_LIMIT {
        return Err(CodecError::TooLarge);
    }
    let crc = checksum(RECORD_FORMAT, &out[HEADER_LEN..]);
    out[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a full record, verifying every part of it.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(CodecError::Truncated);
    };
    if header[0] != RECORD_FORMAT {
        return Err(CodecError::Format(header[0]));
    }
    if payload.len() > HARD_LIMIT {
        return Err(CodecError::TooLarge);
    }
    let stored = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    if stored != checksum(header[0], payload) {
        return Err(CodecError::Checksum);
    }
    from_payload(payload)
}

/// Serde helper: serialise a `Vec<u8>` as one byte string rather than a sequence of numbers.
pub(crate) mod bytes {
    use serde::{Deserializer, Serializer, de};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Rec {
        a: u64,
        #[serde(with = "bytes")]
        data: Vec<u8>,
        opt: Option<[u8; 4]>,
    }

    fn sample(n: usize) -> Rec {
        let data = (0..n).map(|i| u8::try_from(i % 251).unwrap()).collect();
        Rec { a: n as u64 * 7, data, opt: n.is_multiple_of(2).then_some([1, 2, 3, 4]) }
    }

    #[test]
    fn round_trips_many_sizes() {
        for n in [0, 1, 2, 63, 64, 255, 256, 4096, 100_000] {
            let rec = sample(n);
            let enc = encode(&rec).unwrap();
            assert_eq!(enc[0], RECORD_FORMAT);
            assert_eq!(decode::<Rec>(&enc).unwrap(), rec);
        }
    }

    #[test]
    fn bytes_are_stored_compactly() {
        let enc = encode(&sample(1000)).unwrap();
        // header + u64 + u64 length + 1000 bytes + option tag + 4 bytes
        assert_eq!(enc.len(), 5 + 8 + 8 + 1000 + 1 + 4);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let enc = encode(&sample(40)).unwrap();
        for i in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(decode::<Rec>(&bad).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let enc = encode(&sample(40)).unwrap();
        for len in 0..enc.len() {
            assert!(decode::<Rec>(&enc[..len]).is_err(), "truncation to {len} went unnoticed");
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let rec = sample(3);
        let mut payload = to_payload(&rec).unwrap();
        payload.push(0);
        let mut enc = vec![RECORD_FORMAT, 0, 0, 0, 0];
        enc.extend_from_slice(&payload);
        let crc = checksum(RECORD_FORMAT, &payload);
        enc[1..5].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode::<Rec>(&enc), Err(CodecError::TrailingBytes));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A valid header and crc around a payload that claims a 2^60-byte vector.
        let mut payload = 5u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut enc = vec![RECORD_FORMAT, 0, 0, 0, 0];
        enc.extend_from_slice(&payload);
        let crc = checksum(RECORD_FORMAT, &payload);
        enc[1..5].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode::<Rec>(&enc), Err(CodecError::Payload(_))));
    }

    #[test]
    fn unknown_format_byte_is_rejected() {
        let mut enc = encode(&sample(3)).unwrap();
        enc[0] = 9;
        assert_eq!(decode::<Rec>(&enc), Err(CodecError::Format(9)));
    }
}
