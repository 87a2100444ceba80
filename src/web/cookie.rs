//! Cookies (RFC 6265): parsing the `Cookie` request header and formatting `Set-Cookie` values.
//!
//! Parsing never panics and never fails: whatever a client sends, the result is a list, perhaps
//! empty, of well-formed `name=value` pairs. Formatting validates everything it is given and
//! returns [`Error::InvalidInput`] rather than a header that a browser would silently ignore.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest `Cookie` header [`parse_cookie_header`] reads, in bytes: 8 KiB, the usual limit
/// of a request header line in web servers (Apache's `LimitRequestFieldSize` is 8190).
///
/// A longer header is refused as a whole: it yields no pairs. The header is not truncated,
/// because a cut could fall inside a value and yield a shortened, wrong value. Looking up one
/// name ([`get_cookie`], the session manager) reads up to [`MAX_COOKIE_SCAN_LEN`] instead.
pub const MAX_COOKIE_HEADER_LEN: usize = 8192;

/// The longest `Cookie` header in which [`get_cookie`] and the session manager look for a
/// name, in bytes: 64 KiB. Servers that accept big headers (hyper's default is far above
/// 8 KiB) pass them on, and a sibling subdomain can set enough cookies to pass 8 KiB: a lookup
/// bounded by [`MAX_COOKIE_HEADER_LEN`] would then find no session and log the user out. The
/// lookup is one linear pass over the bytes, collecting nothing but the name's values. A
/// longer header yields no value (never a cut one).
pub const MAX_COOKIE_SCAN_LEN: usize = 64 * 1024;

/// The most cookies [`parse_cookie_header`] returns. Further well-formed pairs are ignored;
/// malformed pairs, which are skipped, do not count.
///
/// Unlike the length limit this one keeps what came before it: pairs are cut only at pair
/// boundaries, so every pair returned is whole and correct. [`get_cookie`] and the session
/// manager look for their name among all the pairs of the header (bounded by
/// [`MAX_COOKIE_HEADER_LEN`]), so other sites' cookies cannot push theirs out of this limit;
/// the manager tries at most this many session cookies of its own name.
pub const MAX_COOKIES: usize = 64;

/// The longest `name=value` text a browser stores (RFC 6265bis §5.7: name and value together).
const MAX_NAME_VALUE_LEN: usize = 4096;

/// The longest attribute value a browser accepts (RFC 6265bis §5.7); longer ones are ignored.
const MAX_ATTR_VALUE_LEN: usize = 1024;

/// The fixed `Expires` date of a revoked cookie: the Unix epoch, in the IMF-fixdate format.
const EPOCH_HTTP_DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

/// The characters of an HTTP token (RFC 7230 `tchar`), which RFC 6265 requires of cookie names:
/// visible ASCII except separators `()<>@,;:\"/[]?={}`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 §4.1.1 `cookie-octet`: visible ASCII except `"`, `,`, `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Strips RFC 7230 optional whitespace (spaces and tabs) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One `name=value` segment of a `Cookie` header, or `None` if it is malformed.
fn parse_pair(segment: &[u8]) -> Option<(&str, &str)> {
    let eq = segment.iter().position(|&b| b == b'=')?;
    let (name, rest) = segment.split_at(eq);
    let name = trim_ows(name);
    let mut value = trim_ows(rest.get(1..)?);
    if let [b'"', inner @ .., b'"'] = value {
        value = inner;
    }
    if name.is_empty()
        || !name.iter().all(|&b| is_token_char(b))
        || !value.iter().all(|&b| is_cookie_octet(b))
    {
        return None;
    }
    // Both are ASCII by now, so these never fail.
    Some((std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?))
}

/// Every well-formed pair of a `Cookie` header, in order, if the header is within `max_len`
/// bytes (which bounds the work: one linear pass); not capped in count.
fn all_pairs(header: &[u8], max_len: usize) -> impl Iterator<Item = (&str, &str)> {
    let header = if header.len() > max_len { &[][..] } else { header };
    header.split(|&b| b == b';').filter_map(parse_pair)
}

/// The well-formed pairs of a `Cookie` header, in order, within the limits.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    all_pairs(header, MAX_COOKIE_HEADER_LEN).take(MAX_COOKIES)
}

/// The values of every well-formed cookie called `name`, in order: picked by name among all
/// the header's pairs, so no count of other cookies can hide them. Bounded by the header's
/// size, [`MAX_COOKIE_SCAN_LEN`], so that cookies of other sites past 8 KiB cannot either.
pub(crate) fn cookie_values<'a>(header: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a str> {
    all_pairs(header, MAX_COOKIE_SCAN_LEN).filter(move |&(n, _)| n == name).map(|(_, v)| v)
}

/// Parses a `Cookie` request header (RFC 6265 §4.2.1, `name=value; name2=value2`) into its
/// `(name, value)` pairs, in the order sent. Never panics and never fails.
///
/// The header may be given as `&str`, `String`, or as bytes (`&[u8]`, `Vec<u8>`): a CGI
/// program's `HTTP_COOKIE` may not be UTF-8, so read it with [`std::env::var_os`] and pass
/// [`OsStr::as_encoded_bytes`](std::ffi::OsStr::as_encoded_bytes).
///
/// Tolerant like browsers and servers are:
/// - spaces and tabs around `;` and `=` are ignored;
/// - a value in double quotes is returned without them (`a="b"` gives `b`);
/// - empty values are kept (`a=` gives `("a", "")`);
/// - a duplicated name gives one pair per occurrence, in order. Browsers send the cookie with
///   the longest matching `Path` first (RFC 6265 §5.4), so the first is usually the one meant;
///   [`get_cookie`] returns it.
///
/// Strict about what it returns: a segment is skipped, silently, if it has no `=`, if its name
/// is empty or not an RFC 7230 token (letters, digits and ``!#$%&'*+-.^_`|~``), or if its value
/// holds anything but RFC 6265 `cookie-octet`s (visible ASCII except `"`, `,`, `;` and `\`; so
/// no spaces, control characters or non-ASCII bytes). Every pair returned is therefore ASCII.
/// Names are case-sensitive and values are returned as sent, without percent-decoding.
///
/// Limits: a header longer than [`MAX_COOKIE_HEADER_LEN`] bytes yields no pairs at all, and
/// at most [`MAX_COOKIES`] pairs are returned (the first ones).
///
/// ```
/// use sessiondb::web::parse_cookie_header;
///
/// let cookies = parse_cookie_header("sid=abc; theme = \"dark\" ; junk; empty=");
/// assert_eq!(cookies, [("sid", "abc"), ("theme", "dark"), ("empty", "")]);
///
/// // Bytes that are not UTF-8 only spoil their own pair.
/// assert_eq!(parse_cookie_header(b"a=\xff; sid=abc".as_slice()), [("sid", "abc")]);
/// ```
pub fn parse_cookie_header<H: AsRef<[u8]> + ?Sized>(header: &H) -> Vec<(&str, &str)> {
    pairs(header.as_ref()).collect()
}

/// The value of the first cookie called `name` in a `Cookie` request header, if any, under the
/// rules of [`parse_cookie_header`]. It is looked for among all the header's pairs, not only the
/// first [`MAX_COOKIES`], and in a header of up to [`MAX_COOKIE_SCAN_LEN`] bytes, not only
/// [`MAX_COOKIE_HEADER_LEN`]: other cookies cannot push it out.
///
/// A malformed occurrence of the name is skipped, so a later well-formed one is returned. An
/// attacker controlling a sibling subdomain can plant a cookie that comes first ("cookie
/// tossing"); a name with the `__Host-` prefix, which [`CookieAttrs::default`] satisfies, makes
/// browsers refuse such cookies.
///
/// ```
/// use sessiondb::web::get_cookie;
///
/// let header = "theme=dark; __Host-sid=abc; __Host-sid=old";
/// assert_eq!(get_cookie(header, "__Host-sid"), Some("abc"));
/// assert_eq!(get_cookie(header, "sid"), None);
/// ```
pub fn get_cookie<'a, H: AsRef<[u8]> + ?Sized>(header: &'a H, name: &str) -> Option<&'a str> {
    all_pairs(header.as_ref(), MAX_COOKIE_SCAN_LEN).find(|&(n, _)| n == name).map(|(_, v)| v)
}

/// The `SameSite` attribute of a cookie: in which cross-site requests the browser sends it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// Sent only with requests from the cookie's own site: following a link from another site
    /// arrives without the session.
    Strict,
    /// Also sent when the user navigates to the site from another one (a top-level `GET`), but
    /// not with cross-site subrequests or form `POST`s. The default, and the browsers' own
    /// default.
    #[default]
    Lax,
    /// Sent with every request, cross-site ones included. Browsers refuse it without `Secure`,
    /// so [`set_cookie`] does too.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The attributes of a `Set-Cookie` header: everything but the name and value.
///
/// Start from the default and change what differs:
///
/// ```
/// use std::time::Duration;
/// use sessiondb::web::{CookieAttrs, set_cookie};
///
/// let attrs = CookieAttrs { max_age: Some(Duration::from_secs(3600)), ..CookieAttrs::default() };
/// assert_eq!(
///     set_cookie("__Host-sid", "abc", &attrs)?,
///     "__Host-sid=abc; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"
/// );
/// # Ok::<_, sessiondb::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    /// `Path`: the URL path prefix the cookie is sent for. `None` omits the attribute, and the
    /// browser then uses the directory of the request's path. Must start with `/` and hold only
    /// visible ASCII other than `;` (percent-encode the rest), at most 1024 bytes.
    pub path: Option<String>,
    /// `Domain`: sends the cookie to this host and all its subdomains. `None` omits the
    /// attribute, so only the host that set the cookie gets it back, which is the safer choice.
    /// Must be non-empty and hold only visible ASCII other than `;` (use the punycode form of an
    /// international name), at most 1024 bytes.
    pub domain: Option<String>,
    /// `Secure`: the browser sends the cookie only over HTTPS. Turn off only for plain-HTTP
    /// development (browsers treat `http://localhost` as secure, so it rarely needs to be).
    pub secure: bool,
    /// `HttpOnly`: page scripts cannot read the cookie, so a cross-site-scripting hole cannot
    /// steal the session.
    pub http_only: bool,
    /// `SameSite`: see [`SameSite`]. Always written.
    pub same_site: SameSite,
    /// `Max-Age`: how long the browser keeps the cookie. `None` omits it, making a session
    /// cookie, deleted when the browser closes (though browsers that restore sessions keep
    /// them). Written in whole seconds, rounded down; browsers cap it at 400 days.
    pub max_age: Option<Duration>,
}

impl Default for CookieAttrs {
    /// The safe choice for a session cookie: `Path=/`, no `Domain`, `Secure`, `HttpOnly`,
    /// `SameSite=Lax`, no `Max-Age` (a browser-session cookie).
    ///
    /// These satisfy the rules of the `__Host-` name prefix, which stops subdomains from
    /// planting or overwriting the cookie; `__Host-sid` is a good name for a session cookie.
    fn default() -> Self {
        Self {
            path: Some("/".to_owned()),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: None,
        }
    }
}

/// Checks that `name` is a non-empty RFC 7230 token.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidInput("cookie name is empty: give the cookie a name".into()));
    }
    if let Some((i, c)) =
        name.char_indices().find(|&(_, c)| !u8::try_from(c).is_ok_and(is_token_char))
    {
        return Err(Error::InvalidInput(format!(
            "cookie name holds {c:?} at byte {i}: use only letters, digits and !#$%&'*+-.^_`|~"
        )));
    }
    Ok(())
}

/// Checks that `value` holds only cookie-octets and fits with `name` in a browser's limit.
/// The value is not echoed in messages: it is often a secret.
fn check_value(name: &str, value: &str) -> Result<()> {
    if let Some((i, c)) =
        value.char_indices().find(|&(_, c)| !u8::try_from(c).is_ok_and(is_cookie_octet))
    {
        return Err(Error::InvalidInput(format!(
            "value of cookie {name:?} holds {c:?} at byte {i}, which a cookie value cannot \
             (spaces, quotes, commas, semicolons, backslashes, control characters and non-ASCII \
             are out): encode the value, e.g. as base64url"
        )));
    }
    if name.len() + value.len() > MAX_NAME_VALUE_LEN {
        return Err(Error::InvalidInput(format!(
            "cookie {name:?} has {} bytes of name and value, over the {MAX_NAME_VALUE_LEN} \
             browsers store: keep the data server-side and send only an id",
            name.len() + value.len()
        )));
    }
    Ok(())
}

/// Checks a `Path` or `Domain` value: visible ASCII except `;`, non-empty, not over-long.
fn check_attr_value(attr: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!(
            "cookie {attr} is empty: give one or use None to omit the attribute"
        )));
    }
    if let Some((i, c)) = value.char_indices().find(|&(_, c)| !c.is_ascii_graphic() || c == ';') {
        return Err(Error::InvalidInput(format!(
            "cookie {attr} holds {c:?} at byte {i}: only visible ASCII other than ';' is allowed \
             (percent-encode a path, use the punycode form of a domain)"
        )));
    }
    if value.len() > MAX_ATTR_VALUE_LEN {
        return Err(Error::InvalidInput(format!(
            "cookie {attr} has {} bytes, over the {MAX_ATTR_VALUE_LEN} browsers accept",
            value.len()
        )));
    }
    Ok(())
}

/// Whether `name` starts with `prefix`, ignoring ASCII case as browsers do.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.as_bytes().get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Checks the attributes, and the rules of the `__Secure-` and `__Host-` name prefixes, all of
/// which browsers enforce by silently dropping the cookie.
fn check_attrs(name: &str, attrs: &CookieAttrs) -> Result<()> {
    if let Some(path) = &attrs.path {
        check_attr_value("Path", path)?;
        if !path.starts_with('/') {
            return Err(Error::InvalidInput(format!(
                "cookie Path {path:?} does not start with '/', so browsers would ignore it: \
                 give an absolute path such as \"/\""
            )));
        }
    }
    if let Some(domain) = &attrs.domain {
        check_attr_value("Domain", domain)?;
    }
    if attrs.same_site == SameSite::None && !attrs.secure {
        return Err(Error::InvalidInput(
            "SameSite=None without Secure is refused by browsers: set secure, or use \
             SameSite::Lax"
                .into(),
        ));
    }
    if (has_prefix(name, "__Secure-") || has_prefix(name, "__Host-")) && !attrs.secure {
        return Err(Error::InvalidInput(format!(
            "cookie {name:?} has a __Secure- or __Host- prefix, which requires Secure: set \
             secure, or rename the cookie"
        )));
    }
    if has_prefix(name, "__Host-") && (attrs.path.as_deref() != Some("/") || attrs.domain.is_some())
    {
        return Err(Error::InvalidInput(format!(
            "cookie {name:?} has the __Host- prefix, which requires Path=/ and no Domain: use \
             those, or rename the cookie"
        )));
    }
    Ok(())
}

/// Appends `; Path=...; Domain=...`.
fn push_scope(out: &mut String, attrs: &CookieAttrs) {
    if let Some(path) = &attrs.path {
        out.push_str("; Path=");
        out.push_str(path);
    }
    if let Some(domain) = &attrs.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
}

/// Appends `; Secure; HttpOnly; SameSite=...`.
fn push_flags(out: &mut String, attrs: &CookieAttrs) {
    if attrs.secure {
        out.push_str("; Secure");
    }
    if attrs.http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str("; SameSite=");
    out.push_str(attrs.same_site.as_str());
}

/// Formats the value of a `Set-Cookie` response header that sets cookie `name` to `value`.
///
/// Attributes come in the order `Path`, `Domain`, `Max-Age`, `Secure`, `HttpOnly`, `SameSite`,
/// and only `Max-Age` carries the lifetime: every browser in use reads it, so no `Expires` date
/// is written.
///
/// ```
/// use sessiondb::web::{CookieAttrs, SameSite, set_cookie};
///
/// let attrs = CookieAttrs { same_site: SameSite::Strict, ..CookieAttrs::default() };
/// assert_eq!(
///     set_cookie("sid", "abc", &attrs)?,
///     "sid=abc; Path=/; Secure; HttpOnly; SameSite=Strict"
/// );
/// # Ok::<_, sessiondb::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`], saying what to fix, where a browser would reject or ignore the
/// cookie or the header would be malformed:
/// - `name` is empty or not an RFC 7230 token (letters, digits and ``!#$%&'*+-.^_`|~``);
/// - `value` holds anything but RFC 6265 `cookie-octet`s (visible ASCII except `"`, `,`, `;`
///   and `\`), so it must be encoded first; session ids and tokens (base64url) need nothing;
/// - `name` and `value` together exceed 4096 bytes;
/// - a [`CookieAttrs::path`] or [`CookieAttrs::domain`] is empty, over 1024 bytes, or holds
///   anything but visible ASCII other than `;`, or the path does not start with `/`;
/// - `SameSite=None` without `Secure` (refused rather than silently adding `Secure`);
/// - the name has the `__Secure-` prefix without `Secure`, or the `__Host-` prefix without
///   `Secure`, `Path=/` and no `Domain` (prefixes match in any case).
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs) -> Result<String> {
    check_name(name)?;
    check_value(name, value)?;
    check_attrs(name, attrs)?;
    let mut out = format!("{name}={value}");
    push_scope(&mut out, attrs);
    if let Some(max_age) = attrs.max_age {
        out.push_str("; Max-Age=");
        out.push_str(&max_age.as_secs().to_string());
    }
    push_flags(&mut out, attrs);
    Ok(out)
}

/// Formats the value of a `Set-Cookie` response header that deletes cookie `name`: an empty
/// value with `Max-Age=0` and an `Expires` date in the past (the Unix epoch) for clients that
/// read only `Expires`.
///
/// A browser deletes a cookie only if name, `Path` and `Domain` all match the ones it was set
/// with, so pass the same `attrs` as to [`set_cookie`]; their `max_age` is ignored. `Secure`,
/// `HttpOnly` and `SameSite` are written as well, because browsers refuse a `Set-Cookie` that
/// breaks the prefix or `SameSite=None` rules, or that would overwrite a `Secure` cookie
/// without being `Secure` itself.
///
/// ```
/// use sessiondb::web::{CookieAttrs, revoke_cookie};
///
/// assert_eq!(
///     revoke_cookie("__Host-sid", &CookieAttrs::default())?,
///     "__Host-sid=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; \
///      HttpOnly; SameSite=Lax"
/// );
/// # Ok::<_, sessiondb::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] for the same name and attribute faults as [`set_cookie`].
pub fn revoke_cookie(name: &str, attrs: &CookieAttrs) -> Result<String> {
    check_name(name)?;
    check_attrs(name, attrs)?;
    let mut out = format!("{name}=");
    push_scope(&mut out, attrs);
    out.push_str("; Max-Age=0; Expires=");
    out.push_str(EPOCH_HTTP_DATE);
    push_flags(&mut out, attrs);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn parse(header: &str) -> Vec<(&str, &str)> {
        parse_cookie_header(header)
    }

    fn invalid_message(r: Result<String>) -> String {
        match r {
            Err(Error::InvalidInput(msg)) => msg,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn assert_well_formed(pairs: &[(&str, &str)]) {
        assert!(pairs.len() <= MAX_COOKIES);
        for &(name, value) in pairs {
            assert!(!name.is_empty(), "empty name in {pairs:?}");
            assert!(name.bytes().all(is_token_char), "bad name {name:?}");
            assert!(value.bytes().all(is_cookie_octet), "bad value {value:?}");
        }
    }

    // ---- parsing ----

    #[test]
    fn parses_a_single_cookie() {
        assert_eq!(parse("sid=abc"), [("sid", "abc")]);
        assert_eq!(get_cookie("sid=abc", "sid"), Some("abc"));
    }

    #[test]
    fn parses_several_cookies() {
        let h = "a=1; b=2; c=3";
        assert_eq!(parse(h), [("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(get_cookie(h, "b"), Some("2"));
        assert_eq!(get_cookie(h, "d"), None);
    }

    #[test]
    fn ignores_whitespace_around_separators() {
        let expected = [("a", "1"), ("b", "2")];
        for h in [
            "a=1;b=2",
            "a=1; b=2",
            "a=1 ;b=2",
            "  a = 1  ;  b = 2  ",
            "\ta\t=\t1\t;\tb\t=\t2\t",
            "; a=1;; ;b=2;",
        ] {
            assert_eq!(parse(h), expected, "header {h:?}");
        }
    }

    #[test]
    fn unquotes_quoted_values() {
        assert_eq!(parse("a=\"b\""), [("a", "b")]);
        assert_eq!(parse("a = \"b\" ; c=\"\""), [("a", "b"), ("c", "")]);
        // Only one pair of quotes is removed; what is inside must still be cookie-octets.
        assert_eq!(parse("a=\"\"b\"\""), []);
        assert_eq!(parse("a=\" b \""), []);
    }

    #[test]
    fn keeps_empty_values() {
        assert_eq!(parse("a=; b=2; c= "), [("a", ""), ("b", "2"), ("c", "")]);
        assert_eq!(get_cookie("a=", "a"), Some(""));
    }

    #[test]
    fn keeps_equals_signs_inside_values() {
        // base64 padding, and `a==b`: the name ends at the first `=`.
        assert_eq!(parse("t=YWI=; u==b"), [("t", "YWI="), ("u", "=b")]);
    }

    #[test]
    fn skips_pairs_without_equals_or_with_bad_names_or_values() {
        let h = "flag; a b=1; =2; ok=3; v=a b; w=a,b; x=a\\b; [y]=4; z=\u{e9}; last=5";
        assert_eq!(parse(h), [("ok", "3"), ("last", "5")]);
    }

    #[test]
    fn returns_duplicates_in_order_and_get_returns_the_first() {
        let h = "sid=new; other=x; sid=old; sid=older";
        assert_eq!(parse(h), [("sid", "new"), ("other", "x"), ("sid", "old"), ("sid", "older")]);
        assert_eq!(get_cookie(h, "sid"), Some("new"));
        // A malformed first occurrence is skipped.
        assert_eq!(get_cookie("sid=a b; sid=good", "sid"), Some("good"));
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_eq!(get_cookie("SID=a; sid=b", "sid"), Some("b"));
        assert_eq!(get_cookie("SID=a", "sid"), None);
    }

    #[test]
    fn get_cookie_with_an_invalid_name_finds_nothing() {
        assert_eq!(get_cookie("a=1", ""), None);
        assert_eq!(get_cookie("a=1; =2", ""), None);
    }

    #[test]
    fn survives_hostile_input() {
        let long_value = format!("a={}", "x".repeat(100 * 1024));
        let many_pairs = "a=b;".repeat(20_000);
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            ("", vec![]),
            (";", vec![]),
            (";;;;", vec![]),
            ("=", vec![]),
            ("==", vec![]),
            ("a", vec![]),
            ("a=", vec![("a", "")]),
            ("=b", vec![]),
            ("\"", vec![]),
            ("\"\"", vec![]),
            ("a=\"", vec![]),
            ("a=\"b", vec![]),
            ("a=b\"", vec![]),
            ("\"a\"=b", vec![]),
            ("a=\"\"", vec![("a", "")]),
            ("a=\0", vec![]),
            ("\0=b", vec![]),
            ("a\0=b", vec![]),
            ("a=b\0; c=d", vec![("c", "d")]),
            ("a=\x01\x02\x1f\x7f", vec![]),
            ("a=b\r\n; c=d", vec![("c", "d")]),
            ("a=b\r\nSet-Cookie: x=y", vec![]),
            ("\u{fffd}=\u{fffd}", vec![]),
            ("caf\u{e9}=1; ok=2", vec![("ok", "2")]),
            ("a=\u{1f36a}", vec![]),
            ("\u{202e}a=b", vec![]),
            (" ", vec![]),
            ("\t;\t", vec![]),
            (&long_value, vec![]),
            (&many_pairs, vec![]),
        ];
        for (header, expected) in cases {
            let got = parse(header);
            assert_eq!(got, expected, "header {:?}", header.get(..40).unwrap_or(header));
            assert_well_formed(&got);
            assert_eq!(get_cookie(header, "a"), got.iter().find(|p| p.0 == "a").map(|p| p.1));
        }
    }

    #[test]
    fn refuses_headers_over_the_length_limit() {
        // Exactly at the limit: read.
        let filler = format!("f={}", "x".repeat(MAX_COOKIE_HEADER_LEN - "sid=abc; f=".len()));
        let at_limit = format!("sid=abc; {filler}");
        assert_eq!(at_limit.len(), MAX_COOKIE_HEADER_LEN);
        assert_eq!(get_cookie(&at_limit, "sid"), Some("abc"));
        assert_eq!(parse(&at_limit).len(), 2);
        // One byte over: no pairs, not even the cookie at the front; a lookup by name reads on.
        let over = format!("{at_limit}x");
        assert_eq!(parse(&over), []);
        assert_eq!(get_cookie(&over, "sid"), Some("abc"));
        assert_eq!(parse_cookie_header(over.as_bytes()), []);
        // A lookup by name has its own, larger limit.
        let filler = format!("f={}", "x".repeat(MAX_COOKIE_SCAN_LEN - "sid=abc; f=".len()));
        let at_scan_limit = format!("sid=abc; {filler}");
        assert_eq!(at_scan_limit.len(), MAX_COOKIE_SCAN_LEN);
        assert_eq!(get_cookie(&at_scan_limit, "sid"), Some("abc"));
        assert_eq!(get_cookie(&format!("{at_scan_limit}x"), "sid"), None);
    }

    #[test]
    fn returns_at_most_max_cookies_pairs() {
        let mut header = String::new();
        for i in 0..2000 {
            write!(header, "c{i}=v;").unwrap();
        }
        let header = &header[..header.len().min(MAX_COOKIE_HEADER_LEN)];
        let got = parse(header);
        assert_eq!(got.len(), MAX_COOKIES);
        assert_eq!(got[0], ("c0", "v"));
        assert_eq!(got[MAX_COOKIES - 1].0, format!("c{}", MAX_COOKIES - 1));
        assert_eq!(get_cookie(header, "c63"), Some("v"));
        // get_cookie looks past the pair limit: other cookies cannot hide the one asked for.
        assert_eq!(get_cookie(header, "c64"), Some("v"));
        assert_eq!(get_cookie(header, "c700"), Some("v"));
    }

    #[test]
    fn malformed_pairs_do_not_count_towards_the_pair_limit() {
        let mut header = "junk; a b=c; ;".repeat(100);
        for i in 0..MAX_COOKIES {
            write!(header, "c{i}=v;").unwrap();
        }
        assert!(header.len() <= MAX_COOKIE_HEADER_LEN);
        assert_eq!(parse(&header).len(), MAX_COOKIES);
        assert_eq!(get_cookie(&header, &format!("c{}", MAX_COOKIES - 1)), Some("v"));
    }

    #[test]
    fn parses_bytes_and_skips_pairs_that_are_not_utf8_or_ascii() {
        let header: &[u8] = b"a=b; \xff=c; d=\xfe\xfd; e=\"\xc3\xa9\"; f=g";
        assert_eq!(parse_cookie_header(header), [("a", "b"), ("f", "g")]);
        assert_eq!(get_cookie(header, "f"), Some("g"));
        assert_eq!(get_cookie(header, "d"), None);
        // A lone `;` byte inside a broken multi-byte sequence still separates pairs.
        assert_eq!(parse_cookie_header(b"x=\xe2;y=1".as_slice()), [("y", "1")]);
        let owned: Vec<u8> = b"sid=abc".to_vec();
        assert_eq!(parse_cookie_header(&owned), [("sid", "abc")]);
        let string = String::from("sid=abc");
        assert_eq!(get_cookie(&string, "sid"), Some("abc"));
    }

    #[test]
    fn parses_an_os_string_from_the_environment() {
        let os = std::ffi::OsString::from("sid=abc; x=1");
        assert_eq!(get_cookie(os.as_encoded_bytes(), "sid"), Some("abc"));
    }

    #[cfg(unix)]
    #[test]
    fn parses_a_non_utf8_os_string() {
        use std::os::unix::ffi::OsStrExt;
        let os = std::ffi::OsStr::from_bytes(b"n=\x80\x81; sid=abc");
        assert_eq!(parse_cookie_header(os.as_encoded_bytes()), [("sid", "abc")]);
    }

    #[test]
    fn random_bytes_never_panic_and_yield_only_well_formed_pairs() {
        // Half the bytes come from characters that matter to the parser, so that many inputs
        // hold pairs; the other half are arbitrary.
        const INTERESTING: &[u8] = b";;;===  \t\"\"\\,abcAB09-_$!~\0\r\n\x7f\x80\xc3\xa9\xff";
        let mut total_pairs = 0;
        for _ in 0..10_000 {
            let len = rand::random_range(0..300);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rand::random::<bool>() {
                        INTERESTING[rand::random_range(0..INTERESTING.len())]
                    } else {
                        rand::random::<u8>()
                    }
                })
                .collect();
            let got = parse_cookie_header(&bytes);
            assert_well_formed(&got);
            total_pairs += got.len();
            if let Some(&(name, value)) = got.first() {
                assert_eq!(get_cookie(&bytes, name), Some(value));
            }
            if let Ok(s) = std::str::from_utf8(&bytes) {
                assert_eq!(parse(s), got);
            }
        }
        assert!(total_pairs > 100, "the generator should produce pairs, got {total_pairs}");
    }

    #[test]
    fn formatted_cookies_parse_back() {
        let value = "Zm9vYmFy-_AZaz09";
        let header = set_cookie("__Host-sid", value, &CookieAttrs::default()).unwrap();
        let (pair, _) = header.split_once(';').unwrap();
        assert_eq!(get_cookie(pair, "__Host-sid"), Some(value));
    }

    // ---- formatting ----

    #[test]
    fn default_attrs_are_the_documented_ones() {
        let d = CookieAttrs::default();
        assert_eq!(d.path.as_deref(), Some("/"));
        assert_eq!(d.domain, None);
        assert!(d.secure);
        assert!(d.http_only);
        assert_eq!(d.same_site, SameSite::Lax);
        assert_eq!(d.max_age, None);
        assert_eq!(SameSite::default(), SameSite::Lax);
    }

    #[test]
    fn formats_with_default_attrs() {
        assert_eq!(
            set_cookie("sid", "abc", &CookieAttrs::default()).unwrap(),
            "sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn formats_with_no_optional_attrs() {
        let attrs =
            CookieAttrs { path: None, secure: false, http_only: false, ..CookieAttrs::default() };
        assert_eq!(set_cookie("a", "", &attrs).unwrap(), "a=; SameSite=Lax");
    }

    #[test]
    fn formats_each_attribute() {
        let base =
            CookieAttrs { path: None, secure: false, http_only: false, ..Default::default() };
        let cases = [
            (
                CookieAttrs { path: Some("/app".into()), ..base.clone() },
                "a=b; Path=/app; SameSite=Lax",
            ),
            (
                CookieAttrs { domain: Some("example.com".into()), ..base.clone() },
                "a=b; Domain=example.com; SameSite=Lax",
            ),
            (CookieAttrs { secure: true, ..base.clone() }, "a=b; Secure; SameSite=Lax"),
            (CookieAttrs { http_only: true, ..base.clone() }, "a=b; HttpOnly; SameSite=Lax"),
            (CookieAttrs { same_site: SameSite::Strict, ..base.clone() }, "a=b; SameSite=Strict"),
            (
                CookieAttrs { same_site: SameSite::None, secure: true, ..base.clone() },
                "a=b; Secure; SameSite=None",
            ),
            (
                CookieAttrs { max_age: Some(Duration::from_secs(3600)), ..base.clone() },
                "a=b; Max-Age=3600; SameSite=Lax",
            ),
            (
                CookieAttrs { max_age: Some(Duration::from_millis(1999)), ..base.clone() },
                "a=b; Max-Age=1; SameSite=Lax",
            ),
            (
                CookieAttrs { max_age: Some(Duration::ZERO), ..base.clone() },
                "a=b; Max-Age=0; SameSite=Lax",
            ),
        ];
        for (attrs, expected) in cases {
            assert_eq!(set_cookie("a", "b", &attrs).unwrap(), expected, "{attrs:?}");
        }
    }

    #[test]
    fn formats_every_attribute_together() {
        let attrs = CookieAttrs {
            path: Some("/app".into()),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            max_age: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(
            set_cookie("sid", "abc", &attrs).unwrap(),
            "sid=abc; Path=/app; Domain=example.com; Max-Age=86400; Secure; HttpOnly; \
             SameSite=Strict"
        );
    }

    #[test]
    fn accepts_every_token_char_in_names_and_every_cookie_octet_in_values() {
        let name = "!#$%&'*+-.^_`|~azAZ09";
        let value: String =
            (0x21u8..=0x7e).filter(|&b| is_cookie_octet(b)).map(char::from).collect();
        assert_eq!(value.len(), 90);
        let header = set_cookie(name, &value, &CookieAttrs::default()).unwrap();
        let (pair, _) = header.split_once("; Path").unwrap();
        assert_eq!(parse(pair), [(name, value.as_str())]);
    }

    #[test]
    fn revokes_with_the_same_scope() {
        assert_eq!(
            revoke_cookie("sid", &CookieAttrs::default()).unwrap(),
            "sid=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; \
             SameSite=Lax"
        );
        let attrs = CookieAttrs {
            path: Some("/app".into()),
            domain: Some("example.com".into()),
            secure: false,
            http_only: false,
            same_site: SameSite::Strict,
            // Ignored by revoke_cookie.
            max_age: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            revoke_cookie("sid", &attrs).unwrap(),
            "sid=; Path=/app; Domain=example.com; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT; SameSite=Strict"
        );
    }

    #[test]
    fn revoke_validates_like_set_cookie() {
        assert!(invalid_message(revoke_cookie("a b", &CookieAttrs::default())).contains("name"));
        let bad_path = CookieAttrs { path: Some("/a;b".into()), ..Default::default() };
        assert!(invalid_message(revoke_cookie("sid", &bad_path)).contains("Path"));
        let none_insecure =
            CookieAttrs { same_site: SameSite::None, secure: false, ..Default::default() };
        assert!(invalid_message(revoke_cookie("sid", &none_insecure)).contains("SameSite=None"));
    }

    // ---- validation ----

    #[test]
    fn rejects_bad_names() {
        let attrs = CookieAttrs::default();
        for name in [
            "",
            "a b",
            "a=b",
            "a;b",
            "a,b",
            "a\"b",
            "(a)",
            "a/b",
            "a:b",
            "a\tb",
            "a\0",
            "caf\u{e9}",
        ] {
            let msg = invalid_message(set_cookie(name, "v", &attrs));
            assert!(msg.contains("cookie name"), "{name:?}: {msg}");
        }
        let msg = invalid_message(set_cookie("a b", "v", &attrs));
        assert!(msg.contains("' ' at byte 1"), "{msg}");
    }

    #[test]
    fn rejects_bad_values_without_echoing_them() {
        let attrs = CookieAttrs::default();
        for value in
            ["secret value", "a;b", "a,b", "\"quoted\"", "a\\b", "a\0b", "a\r\nb", "\u{e9}", "\x7f"]
        {
            let msg = invalid_message(set_cookie("sid", value, &attrs));
            assert!(msg.contains("value of cookie \"sid\""), "{value:?}: {msg}");
        }
        let msg = invalid_message(set_cookie("sid", "secret value", &attrs));
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.contains("' ' at byte 6"), "{msg}");
    }

    #[test]
    fn rejects_oversize_name_and_value() {
        let attrs = CookieAttrs::default();
        assert!(set_cookie("a", &"v".repeat(MAX_NAME_VALUE_LEN - 1), &attrs).is_ok());
        let msg = invalid_message(set_cookie("a", &"v".repeat(MAX_NAME_VALUE_LEN), &attrs));
        assert!(msg.contains("4096"), "{msg}");
    }

    #[test]
    fn rejects_bad_paths() {
        for path in ["", "app", "/a;b", "/a b", "/a\nb", "/a\0", "/caf\u{e9}", "/a\x7f"] {
            let attrs = CookieAttrs { path: Some(path.into()), ..Default::default() };
            let msg = invalid_message(set_cookie("sid", "v", &attrs));
            assert!(msg.contains("Path"), "{path:?}: {msg}");
        }
        let long =
            CookieAttrs { path: Some(format!("/{}", "a".repeat(1024))), ..Default::default() };
        assert!(invalid_message(set_cookie("sid", "v", &long)).contains("1024"));
        let ok = CookieAttrs { path: Some("/a%20b/c-d_e.f~g".into()), ..Default::default() };
        assert!(set_cookie("sid", "v", &ok).is_ok());
    }

    #[test]
    fn rejects_bad_domains() {
        for domain in ["", "a;b.com", "a b.com", "a.com\r\n", "\0", "b\u{fc}cher.de"] {
            let attrs = CookieAttrs { domain: Some(domain.into()), ..Default::default() };
            let msg = invalid_message(set_cookie("sid", "v", &attrs));
            assert!(msg.contains("Domain"), "{domain:?}: {msg}");
        }
        let ok = CookieAttrs { domain: Some("xn--bcher-kva.de".into()), ..Default::default() };
        assert!(set_cookie("sid", "v", &ok).is_ok());
    }

    #[test]
    fn rejects_same_site_none_without_secure() {
        let attrs = CookieAttrs { same_site: SameSite::None, secure: false, ..Default::default() };
        let msg = invalid_message(set_cookie("sid", "v", &attrs));
        assert!(msg.contains("SameSite=None without Secure"), "{msg}");
        for same_site in [SameSite::Strict, SameSite::Lax] {
            let attrs = CookieAttrs { same_site, secure: false, ..Default::default() };
            assert!(set_cookie("sid", "v", &attrs).is_ok());
        }
    }

    #[test]
    fn enforces_name_prefix_rules() {
        let insecure = CookieAttrs { secure: false, ..Default::default() };
        for name in ["__Secure-sid", "__Host-sid", "__secure-sid", "__HOST-sid"] {
            let msg = invalid_message(set_cookie(name, "v", &insecure));
            assert!(msg.contains("requires Secure"), "{name}: {msg}");
        }
        let sub_path = CookieAttrs { path: Some("/app".into()), ..Default::default() };
        let no_path = CookieAttrs { path: None, ..Default::default() };
        let domain = CookieAttrs { domain: Some("example.com".into()), ..Default::default() };
        for attrs in [&sub_path, &no_path, &domain] {
            let msg = invalid_message(set_cookie("__Host-sid", "v", attrs));
            assert!(msg.contains("Path=/ and no Domain"), "{msg}");
            // __Secure- only needs Secure.
            assert!(set_cookie("__Secure-sid", "v", attrs).is_ok());
        }
        assert!(set_cookie("__Host-sid", "v", &CookieAttrs::default()).is_ok());
        // Not a prefix: too short, or elsewhere in the name.
        assert!(set_cookie("__Host", "v", &insecure).is_ok());
        assert!(set_cookie("x__Host-sid", "v", &insecure).is_ok());
    }
}
