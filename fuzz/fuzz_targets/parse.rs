//! Session id, token, id spec, cookie and query parsing (issue 5, target 2): everything a
//! client can send, parsed by the public functions, never panics, and what the library
//! formats parses back to what it was made from.
//!
//! The input is text (not necessarily UTF-8). The whole input is tried as a session id, a
//! token, a `Cookie` header and a query string; its first three lines (`\n`-separated) are
//! also used as name / value / extra for formatting round trips: a cookie name and value
//! (`set_cookie`, `revoke_cookie`, with attributes picked by the first byte), an id alphabet,
//! a URL and parameter name (`state_in_url`). Seeds: `fuzz/seeds/parse/`, real cookie headers,
//! ids and query strings.

#![no_main]

use std::ffi::OsString;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sessiondb::web::{
    ClientInfo, CookieAttrs, SameSite, get_cookie, parse_cookie_header, query_param, revoke_cookie,
    session_from_query, session_query, set_cookie, state_from_query, state_in_form, state_in_url,
};
use sessiondb::{Error, IdSpec, MAX_ID_LEN, SecureToken, SessionId};

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn invalid<T: std::fmt::Debug>(what: &str, r: &Result<T, Error>) {
    if let Err(e) = r {
        assert!(matches!(e, Error::InvalidInput(_)), "{what}: not InvalidInput: {e:?}");
        // Every error renders without panicking.
        let _ = e.to_string();
    }
}

/// Session ids and tokens: accepted exactly when `1..=MAX_ID_LEN` unreserved characters, and a
/// parsed value gives back its text, which parses to an equal value.
fn ids(text: &str) {
    let valid = !text.is_empty() && text.len() <= MAX_ID_LEN && text.bytes().all(is_id_char);
    let id = SessionId::parse(text);
    invalid("SessionId::parse", &id);
    assert_eq!(id.is_ok(), valid, "SessionId::parse({text:?})");
    if let Ok(id) = id {
        assert_eq!(id.as_str(), text);
        assert_eq!(id.to_string(), text);
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), id);
        let _ = format!("{id:?}");
    }
    let token = SecureToken::parse(text);
    invalid("SecureToken::parse", &token);
    assert_eq!(token.is_ok(), valid, "SecureToken::parse({text:?})");
    if let Ok(token) = token {
        assert_eq!(token.as_str(), text);
        assert!(SecureToken::parse(token.as_str()).unwrap() == token);
        // Never prints the secret.
        assert_eq!(format!("{token:?}"), "SecureToken(..)");
    }
}

/// A `Cookie` header: only well-formed pairs come out, within the limits, and `get_cookie`
/// agrees with the list.
fn cookie_header(bytes: &[u8]) {
    let pairs = parse_cookie_header(bytes);
    assert!(pairs.len() <= sessiondb::web::MAX_COOKIES);
    if bytes.len() > sessiondb::web::MAX_COOKIE_HEADER_LEN {
        assert!(pairs.is_empty());
    }
    for (i, &(name, value)) in pairs.iter().enumerate() {
        assert!(!name.is_empty() && name.bytes().all(is_token_char), "name {name:?}");
        assert!(value.bytes().all(is_cookie_octet), "value {value:?}");
        // The first pair of a name is the one get_cookie returns.
        let first = pairs.iter().position(|&(n, _)| n == name).unwrap();
        if first == i {
            assert_eq!(get_cookie(bytes, name), Some(value), "get_cookie({name:?})");
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        assert_eq!(parse_cookie_header(text), pairs);
    }
    // Re-serialised, the pairs parse back to themselves.
    let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let joined = joined.join("; ");
    if joined.len() <= sessiondb::web::MAX_COOKIE_HEADER_LEN {
        assert_eq!(parse_cookie_header(&joined), pairs, "re-joined {joined:?}");
    }
}

/// A query string: the helpers agree with each other.
fn query(text: &str, name: &str) {
    let value = query_param(text, name);
    match state_from_query(text, name) {
        Some(n) => assert_eq!(value.and_then(|v| v.parse::<u64>().ok()), Some(n)),
        None => {
            if let Some(v) = value {
                assert!(
                    v.is_empty()
                        || v.len() > 20
                        || !v.bytes().all(|b| b.is_ascii_digit())
                        || v.parse::<u64>().is_err(),
                    "state_from_query refused {v:?}"
                );
            }
        }
    }
    if let Some((id, token)) = session_from_query(text) {
        assert_eq!(Some(id.as_str()), query_param(text, "sid"));
        assert_eq!(Some(token.as_str()), query_param(text, "stok"));
        let again = session_query(&id, &token);
        let (id2, token2) = session_from_query(&again).expect("session_query parses back");
        assert!(id2 == id && token2 == token);
    }
}

/// Formatting round trips on the input's lines.
fn formatting(first: u8, name: &str, value: &str, extra: &str) {
    // Cookies: the attributes picked by the bits of the first byte, path/domain from `extra`.
    let attrs = CookieAttrs {
        path: match first & 3 {
            0 => None,
            1 => Some("/".to_owned()),
            _ => Some(extra.to_owned()),
        },
        domain: (first & 4 != 0).then(|| extra.to_owned()),
        secure: first & 8 != 0,
        http_only: first & 16 != 0,
        same_site: match (first >> 5) & 3 {
            0 => SameSite::Strict,
            1 => SameSite::Lax,
            _ => SameSite::None,
        },
        max_age: (first & 128 != 0).then(|| Duration::from_millis(u64::from(first) * 999_999)),
    };
    let set = set_cookie(name, value, &attrs);
    invalid("set_cookie", &set);
    if let Ok(header) = &set {
        // The browser sends back `name=value`: it parses to the same pair.
        let pair = header.split("; ").next().unwrap();
        assert_eq!(pair, format!("{name}={value}"));
        assert_eq!(parse_cookie_header(pair), [(name, value)]);
        assert_eq!(get_cookie(pair, name), Some(value));
        // And the whole Set-Cookie line, read as a Cookie header, starts with that pair.
        assert_eq!(parse_cookie_header(header.as_str()).first(), Some(&(name, value)));
        let revoke =
            revoke_cookie(name, &attrs).expect("set_cookie accepted the same name and attrs");
        assert_eq!(parse_cookie_header(revoke.as_str()).first(), Some(&(name, "")));
    } else {
        let _ = revoke_cookie(name, &attrs);
    }

    // Id specs: accepted only with at least the minimum entropy; length and alphabet as given.
    let length = usize::from(first) + value.len();
    if let Ok(spec) = IdSpec::new(length, name) {
        assert_eq!(spec.length(), length);
        assert!(spec.entropy_bits() >= f64::from(sessiondb::MIN_ENTROPY_BITS));
        assert!(length <= MAX_ID_LEN);
        assert!(name.bytes().all(is_id_char));
    } else {
        invalid("IdSpec::new", &IdSpec::new(length, name));
    }

    // States in URLs and forms.
    let n = extra.parse::<u64>().unwrap_or(u64::from(first) * 0x0101_0101_0101_0101);
    let url = state_in_url(name, value, n);
    let fresh = value.bytes().all(|b| !matches!(b, b'&' | b';' | b'=' | b'#'));
    if fresh {
        // A parameter name without separators, in a URL without a fragment and without that
        // name already: the state reads back.
        let before = name.split_once('?').map(|(_, q)| q);
        if !name.contains('#') && before.is_none_or(|q| query_param(q, value).is_none()) {
            let (_, q) = url.split_once('?').unwrap();
            assert_eq!(state_from_query(q, value), Some(n), "url {url:?}");
        }
    }
    let form = state_in_form(value, n);
    assert_eq!(form.matches('"').count(), 6, "{form:?}");
    assert_eq!(form.matches('<').count(), 1, "{form:?}");
    assert_eq!(form.matches('>').count(), 1, "{form:?}");

    // CGI variables: what is UTF-8 is kept as given.
    let client = ClientInfo::from_vars(|var| match var {
        "HTTP_COOKIE" => Some(OsString::from(name)),
        "QUERY_STRING" => Some(OsString::from(value)),
        "REMOTE_ADDR" => Some(OsString::from(extra)),
        _ => None,
    });
    assert_eq!(client.cookie_header.as_deref(), Some(name.as_bytes()));
    assert_eq!(client.query_string.as_deref(), Some(value));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    ids(&text);
    cookie_header(data);
    let mut lines = text.splitn(3, '\n');
    let name = lines.next().unwrap_or("");
    let value = lines.next().unwrap_or("");
    let extra = lines.next().unwrap_or("");
    ids(name);
    query(&text, name);
    query(value, name);
    formatting(data.first().copied().unwrap_or(0), name, value, extra);
});
