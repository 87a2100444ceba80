//! The sessions this engine read or wrote a moment ago, with the generation it saw: a save that
//! follows a load in the same process (a web request) tries its compare-and-set on what the
//! load read, without reading again, so that it is one round trip instead of two. Only a hint:
//! the script still compares the generation, and when another write came between (or the entry
//! is gone) the save reads and computes again as before. Nothing is refused on its word.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::engine::records::SessionRecord;

/// How many sessions are remembered; when full, the map starts again (a request's load and
/// save are moments apart, so only the newest entries are worth keeping).
const CAPACITY: usize = 128;

/// Records and generations of recently read or written sessions, by id.
#[derive(Debug, Default)]
pub(super) struct Recent(Mutex<HashMap<String, (Vec<u8>, SessionRecord)>>);

impl Recent {
    /// Remembers `rec` as stored under `sid` at generation `g`.
    pub(super) fn remember(&self, sid: &str, g: Vec<u8>, rec: SessionRecord) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CAPACITY && !map.contains_key(sid) {
            map.clear();
        }
        map.insert(sid.to_owned(), (g, rec));
    }

    /// Remembers `rec` as written by a compare-and-set on generation `g` (the script bumped it
    /// by one).
    pub(super) fn written(&self, sid: &str, g: &[u8], rec: SessionRecord) {
        if let Some(next) = next_generation(g) {
            self.remember(sid, next, rec);
        }
    }

    /// Takes what is remembered of `sid`, if anything: used once.
    pub(super) fn take(&self, sid: &str) -> Option<(Vec<u8>, SessionRecord)> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(sid)
    }

    /// Forgets `sid` (it was retired or deleted).
    pub(super) fn forget(&self, sid: &str) {
        self.take(sid);
    }
}

/// The generation after `g` (a decimal counter), as the commit script writes it.
fn next_generation(g: &[u8]) -> Option<Vec<u8>> {
    let n: u64 = std::str::from_utf8(g).ok()?.parse().ok()?;
    Some(n.checked_add(1)?.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::next_generation;

    #[test]
    fn the_next_generation_is_the_decimal_successor() {
        assert_eq!(next_generation(b"41").as_deref(), Some(&b"42"[..]));
        assert_eq!(next_generation(b"x"), None);
        assert_eq!(next_generation(u64::MAX.to_string().as_bytes()), None);
    }
}
