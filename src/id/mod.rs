//! Session ids and secure tokens: generated from the OS CSPRNG, parsed without panics.

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub(crate) mod types;

pub use types::{SecureToken, SessionId};

/// The URL- and cookie-safe base64 alphabet: 64 symbols, 6 bits each.
pub const BASE64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The least entropy an id may carry, in bits.
pub const MIN_ENTROPY_BITS: u32 = 128;

/// The longest id or token text accepted anywhere.
pub const MAX_ID_LEN: usize = 256;

/// Characters allowed in ids and tokens: RFC 3986 "unreserved", all of them cookie-safe.
fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// How session ids are generated: length and alphabet.
#[derive(Clone, PartialEq, Eq)]
pub struct IdSpec {
    length: usize,
    alphabet: Vec<u8>,
}

impl fmt::Debug for IdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdSpec")
            .field("length", &self.length)
            .field("alphabet", &String::from_utf8_lossy(&self.alphabet))
            .finish()
    }
}

impl Default for IdSpec {
    /// 32 characters of [`BASE64URL`]: 192 bits.
    fn default() -> Self {
        Self { length: 32, alphabet: BASE64URL.as_bytes().to_vec() }
    }
}

impl IdSpec {
    /// An id spec of `length` characters drawn uniformly from `alphabet`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the alphabet has fewer than 2 distinct characters, repeats one,
    /// holds a character outside `A-Z a-z 0-9 - _ . ~`, if the length exceeds
    /// [`MAX_ID_LEN`], or if the ids would carry fewer than [`MIN_ENTROPY_BITS`] bits.
    pub fn new(length: usize, alphabet: &str) -> Result<Self> {
        let bytes = alphabet.as_bytes();
        if bytes.len() < 2 || bytes.len() > 256 {
            return Err(Error::InvalidInput("id alphabet needs 2 to 256 characters".into()));
        }
        if let Some(&b) = bytes.iter().find(|&&b| !is_id_char(b)) {
            return Err(Error::InvalidInput(format!(
                "id alphabet character {:?} is not cookie-safe (use A-Z a-z 0-9 - _ . ~)",
                char::from(b)
            )));
        }
        let mut seen = [false; 256];
        for &b in bytes {
            if std::mem::replace(&mut seen[usize::from(b)], true) {
                return Err(Error::InvalidInput(format!(
                    "id alphabet repeats {:?}",
                    char::from(b)
                )));
            }
        }
        if length > MAX_ID_LEN {
            return Err(Error::InvalidInput(format!("id length {length} exceeds {MAX_ID_LEN}")));
        }
        let spec = Self { length, alphabet: bytes.to_vec() };
        if spec.entropy_bits() < f64::from(MIN_ENTROPY_BITS) {
            return Err(Error::InvalidInput(format!(
                "ids of {length} characters from {} symbols carry {:.1} bits; at least {MIN_ENTROPY_BITS} are required",
                bytes.len(),
                spec.entropy_bits()
            )));
        }
        Ok(spec)
    }

    /// Bits of entropy in one id.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "both numbers are at most 256")]
    pub fn entropy_bits(&self) -> f64 {
        (self.alphabet.len() as f64).log2() * self.length as f64
    }

    /// The id length in characters.
    #[must_use]
    pub fn length(&self) -> usize {
        self.length
    }

    /// Draws one id from the OS random source, uniformly over the alphabet (rejection sampling).
    pub(crate) fn generate(&self) -> Result<SessionId> {
        Ok(SessionId(random_text(self.length, &self.alphabet)?))
    }
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols) with the OS CSPRNG.
///
/// The OS source is read every time, so a forked child never repeats its parent's ids.
fn random_text(len: usize, alphabet: &[u8]) -> Result<String> {
    let n = alphabet.len();
    // Largest multiple of n that fits in a byte: bytes at or above it are rejected.
    let zone = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng
            .try_fill_bytes(&mut buf)
            .map_err(|e| Error::GenerateId { reason: format!("OS random source failed: {e}") })?;
        for &b in &buf {
            if usize::from(b) < zone && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

fn check_text(kind: &str, text: &str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_ID_LEN {
        return Err(Error::InvalidInput(format!(
            "{kind} must be 1 to {MAX_ID_LEN} characters, got {}",
            text.len()
        )));
    }
    if !text.bytes().all(is_id_char) {
        return Err(Error::InvalidInput(format!(
            "{kind} holds a character outside A-Z a-z 0-9 - _ . ~"
        )));
    }
    Ok(())
}

impl SessionId {
    /// Checks untrusted text (from a cookie or URL) and wraps it. Never panics.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the text is empty, too long or holds other characters.
    pub fn parse(text: &str) -> Result<Self> {
        check_text("session id", text)?;
        Ok(Self(text.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Length of generated tokens: 43 base64url characters, 258 bits.
const TOKEN_LEN: usize = 43;

impl SecureToken {
    /// Checks untrusted text and wraps it. Never panics.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the text is empty, too long or holds other characters.
    pub fn parse(text: &str) -> Result<Self> {
        check_text("secure token", text)?;
        Ok(Self(text.to_owned()))
    }

    /// The token as text, for a cookie or a hidden field.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn generate() -> Result<Self> {
        Ok(Self(random_text(TOKEN_LEN, BASE64URL.as_bytes())?))
    }

    /// The hash kept in the file.
    pub(crate) fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// Whether this token hashes to `stored`, compared in constant time.
    pub(crate) fn matches(&self, stored: &[u8; 32]) -> bool {
        constant_time_eq(&self.hash(), stored)
    }

    /// A keystream only the holder of this token can compute: two SHA-256 blocks of the token
    /// under a label, so it is unrelated to the stored hash.
    fn keystream(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, half) in out.chunks_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(b"sessiondb forward ");
            h.update([u8::try_from(i).unwrap_or(0)]);
            h.update(self.0.as_bytes());
            half.copy_from_slice(&h.finalize());
        }
        out
    }

    /// `other` encrypted so that only the holder of `self` can read it: XOR with this token's
    /// keystream. Each token seals at most one successor (a rotated id is retired for good), so
    /// a keystream is never reused.
    pub(crate) fn seal(&self, other: &SecureToken) -> Vec<u8> {
        other.0.bytes().zip(self.keystream()).map(|(b, k)| b ^ k).collect()
    }

    /// Opens what [`SecureToken::seal`] sealed with this token.
    pub(crate) fn unseal(&self, sealed: &[u8]) -> Result<SecureToken> {
        let plain: Vec<u8> = sealed.iter().zip(self.keystream()).map(|(b, k)| b ^ k).collect();
        let text = String::from_utf8(plain).map_err(|_| {
            Error::InvalidInput("sealed token does not open with this token".into())
        })?;
        SecureToken::parse(&text)
    }
}

/// The SHA-256 of a client fingerprint, as stored.
pub(crate) fn fingerprint_hash(fingerprint: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiondb fingerprint ");
    h.update(fingerprint);
    h.finalize().into()
}

/// Compares two equal-length byte arrays without an early exit.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_sealed_token_opens_only_with_the_sealing_token() {
        let old = SecureToken::generate().unwrap();
        let new = SecureToken::generate().unwrap();
        let sealed = old.seal(&new);
        assert_eq!(sealed.len(), 43);
        assert_ne!(sealed, new.as_str().as_bytes());
        assert_eq!(old.unseal(&sealed).unwrap(), new);
        let other = SecureToken::generate().unwrap();
        assert_ne!(other.unseal(&sealed).ok(), Some(new));
    }

    #[test]
    fn default_spec_has_192_bits() {
        let spec = IdSpec::default();
        assert!((spec.entropy_bits() - 192.0).abs() < 1e-9);
        let id = spec.generate().unwrap();
        assert_eq!(id.as_str().len(), 32);
        assert!(SessionId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn weak_specs_are_refused() {
        assert!(matches!(IdSpec::new(21, BASE64URL), Err(Error::InvalidInput(_))));
        assert!(IdSpec::new(22, BASE64URL).is_ok()); // 132 bits
        assert!(matches!(IdSpec::new(127, "01"), Err(Error::InvalidInput(_))));
        assert!(IdSpec::new(128, "01").is_ok());
        assert!(matches!(IdSpec::new(40, "ab;cd"), Err(Error::InvalidInput(_))));
        assert!(matches!(IdSpec::new(40, "aab"), Err(Error::InvalidInput(_))));
        assert!(matches!(IdSpec::new(40, "a"), Err(Error::InvalidInput(_))));
        assert!(matches!(IdSpec::new(1000, BASE64URL), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn small_alphabets_are_uniform_enough() {
        // 10 symbols: 256 % 10 = 6 bytes are rejected; every digit must appear with similar frequency.
        let spec = IdSpec::new(40, "0123456789").unwrap();
        let mut counts = [0u32; 10];
        for _ in 0..500 {
            for b in spec.generate().unwrap().as_str().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        // 20,000 draws, 2,000 expected each; 5 sigma is about 212.
        for c in counts {
            assert!((1_780..=2_220).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn ids_do_not_repeat() {
        let spec = IdSpec::default();
        let ids: HashSet<_> = (0..10_000).map(|_| spec.generate().unwrap()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn parse_refuses_hostile_text() {
        for bad in ["", "a b", "a;b", "é", "abc\0", "\u{202e}x", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(matches!(SessionId::parse(bad), Err(Error::InvalidInput(_))), "{bad:?}");
            assert!(matches!(SecureToken::parse(bad), Err(Error::InvalidInput(_))), "{bad:?}");
        }
        assert!(SessionId::parse(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn token_matches_only_itself() {
        let t = SecureToken::generate().unwrap();
        assert_eq!(t.as_str().len(), TOKEN_LEN);
        let stored = t.hash();
        assert!(t.matches(&stored));
        let other = SecureToken::generate().unwrap();
        assert!(!other.matches(&stored));
        assert_eq!(format!("{t:?}"), "SecureToken(..)");
    }
}
