//! Session ids and state ids in URLs and forms (Nagare's `sessionid_in_url` /
//! `sessionid_in_form`): so that every link and form names the state it was rendered from, and
//! the back button leads to the right one.
//!
//! The values written here are decimal numbers and base64url text, which need no escaping in a
//! query string or an HTML attribute; reading them back accepts nothing else.

use crate::id::{SecureToken, SessionId};

/// The first value of `name` in a query string (`a=1&b=2`, without the `?`), undecoded.
#[must_use]
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split(['&', ';']).find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The state id named by `name` in a query string, if it is a decimal number.
#[must_use]
pub fn state_from_query(query: &str, name: &str) -> Option<u64> {
    let value = query_param(query, name)?;
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `url` with `name=state_id` appended to its query string.
#[must_use]
pub fn state_in_url(url: &str, name: &str, state_id: u64) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{name}={state_id}")
}

/// A hidden form field carrying the state id: `<input type="hidden" name=".." value="..">`.
/// `name` is written as given: use a plain name such as `state`.
#[must_use]
pub fn state_in_form(name: &str, state_id: u64) -> String {
    format!(r#"<input type="hidden" name="{}" value="{state_id}">"#, attribute_safe(name))
}

/// The query parameters that carry a whole session for a client without cookies:
/// `sid=<id>&stok=<token>`. The token in a URL leaks through logs, `Referer` headers and
/// shared links: prefer cookies, and use this only where they are impossible.
#[must_use]
pub fn session_query(id: &SessionId, token: &SecureToken) -> String {
    format!("sid={}&stok={}", id.as_str(), token.as_str())
}

/// The session named by [`session_query`]'s parameters in a query string, if both parse.
#[must_use]
pub fn session_from_query(query: &str) -> Option<(SessionId, SecureToken)> {
    let id = SessionId::parse(query_param(query, "sid")?).ok()?;
    let token = SecureToken::parse(query_param(query, "stok")?).ok()?;
    Some((id, token))
}

/// `text` with every character that could end an HTML attribute or tag dropped.
fn attribute_safe(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '"' | '\'' | '<' | '>' | '&')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_urls_and_forms() {
        let url = state_in_url("/counter", "state", 7);
        assert_eq!(url, "/counter?state=7");
        assert_eq!(state_in_url("/c?x=1", "state", 8), "/c?x=1&state=8");
        let query = url.split_once('?').unwrap().1;
        assert_eq!(state_from_query(query, "state"), Some(7));
        assert_eq!(state_in_form("state", 3), r#"<input type="hidden" name="state" value="3">"#);
        assert_eq!(state_in_form("st\"><script>", 3).matches('"').count(), 6);
    }

    #[test]
    fn hostile_queries_read_as_nothing() {
        for q in [
            "",
            "state",
            "state=",
            "state=-1",
            "state=1e3",
            "state=99999999999999999999999",
            "state=%31",
            "&&&",
            "=3",
            "state=3x",
            "state= 3",
        ] {
            assert_eq!(state_from_query(q, "state"), None, "{q:?}");
        }
        assert_eq!(state_from_query("a=1&state=42&state=9", "state"), Some(42), "the first wins");
        assert_eq!(query_param("a;b=2", "b"), Some("2"));
    }

    #[test]
    fn sessions_round_trip_through_queries() {
        let id = SessionId::parse("abcdefghijklmnopqrstuvwxyz012345").unwrap();
        let token = SecureToken::parse(&"t".repeat(43)).unwrap();
        let q = session_query(&id, &token);
        assert_eq!(session_from_query(&q), Some((id, token)));
        assert_eq!(session_from_query("sid=ok-id&stok=bad%token"), None);
        assert_eq!(session_from_query("sid=only"), None);
    }
}
