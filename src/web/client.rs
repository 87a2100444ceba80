//! What a request says about its client, and the cross-checks (pyweblib's `crossCheckVars`)
//! that bind a session to it.

use std::ffi::OsString;
use std::net::IpAddr;

/// The parts of a request the session layer reads. Build it by hand from a framework's request,
/// or with [`ClientInfo::from_cgi_env`] in a CGI program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The `Cookie` request header, if any, as bytes: a header with a byte that is not UTF-8
    /// in another site's cookie still yields ours (a bad pair spoils only itself).
    pub cookie_header: Option<Vec<u8>>,
    /// The client's address (`REMOTE_ADDR`).
    pub remote_addr: Option<String>,
    /// The `User-Agent` request header.
    pub user_agent: Option<String>,
    /// The TLS session id (`SSL_SESSION_ID`), when the server exports it.
    pub tls_session_id: Option<String>,
    /// The query string of the URL, without the `?`.
    pub query_string: Option<String>,
}

impl ClientInfo {
    /// A client with only a `Cookie` header (text or bytes).
    #[must_use]
    pub fn with_cookie(cookie_header: impl AsRef<[u8]>) -> Self {
        Self { cookie_header: Some(cookie_header.as_ref().to_vec()), ..Self::default() }
    }

    /// Sets the client address.
    #[must_use]
    pub fn remote_addr(mut self, addr: impl Into<String>) -> Self {
        self.remote_addr = Some(addr.into());
        self
    }

    /// Sets the user agent.
    #[must_use]
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Sets the TLS session id.
    #[must_use]
    pub fn tls_session_id(mut self, id: impl Into<String>) -> Self {
        self.tls_session_id = Some(id.into());
        self
    }

    /// Sets the query string.
    #[must_use]
    pub fn query_string(mut self, query: impl Into<String>) -> Self {
        self.query_string = Some(query.into());
        self
    }

    /// Reads a CGI/1.1 request's environment: `HTTP_COOKIE`, `REMOTE_ADDR`, `HTTP_USER_AGENT`,
    /// `SSL_SESSION_ID` and `QUERY_STRING`. A variable that is unset is `None`; so is one that
    /// is not valid UTF-8, except `HTTP_COOKIE`, kept as bytes: a byte that is not UTF-8 in one
    /// cookie spoils only that cookie.
    #[must_use]
    pub fn from_cgi_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// As [`ClientInfo::from_cgi_env`], from any source of variables (a test, a `FastCGI`
    /// parameter list...).
    #[must_use]
    pub fn from_vars(mut var: impl FnMut(&str) -> Option<OsString>) -> Self {
        let cookie_header = var("HTTP_COOKIE").map(std::ffi::OsString::into_encoded_bytes);
        let mut get = |name: &str| var(name).and_then(|v| v.into_string().ok());
        Self {
            cookie_header,
            remote_addr: get("REMOTE_ADDR"),
            user_agent: get("HTTP_USER_AGENT"),
            tls_session_id: get("SSL_SESSION_ID"),
            query_string: get("QUERY_STRING"),
        }
    }
}

/// One property of the client a session is bound to. A session created with some checks
/// records a hash of these values; a later request whose values differ is a suspected hijack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrossCheck {
    /// The `User-Agent` header. Changes when the browser updates.
    UserAgent,
    /// The whole client address. Changes for mobile clients and behind rotating NATs.
    Address,
    /// The client's network: the /24 of an IPv4 address, the /64 of an IPv6 address.
    AddressPrefix,
    /// The TLS session id. Changes whenever TLS sessions are renegotiated.
    TlsSession,
}

/// The bytes the checks in `checks` read from `client`, to be hashed by the store; `None` when
/// there are no checks.
pub(crate) fn fingerprint(checks: &[CrossCheck], client: &ClientInfo) -> Option<Vec<u8>> {
    if checks.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for check in checks {
        let value = match check {
            CrossCheck::UserAgent => client.user_agent.clone().unwrap_or_default(),
            CrossCheck::Address => client.remote_addr.clone().unwrap_or_default(),
            CrossCheck::AddressPrefix => {
                client.remote_addr.as_deref().map(address_prefix).unwrap_or_default()
            }
            CrossCheck::TlsSession => client.tls_session_id.clone().unwrap_or_default(),
        };
        // Length-prefixed, so that no two different value lists give the same bytes.
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    Some(out)
}

/// The /24 (IPv4) or /64 (IPv6) network of an address; the text itself if it is no address.
fn address_prefix(addr: &str) -> String {
    // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is an IPv4 client.
    let parsed = addr.trim().parse::<IpAddr>().map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    });
    match parsed {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_group_networks() {
        assert_eq!(address_prefix("192.0.2.17"), "192.0.2.0/24");
        assert_eq!(address_prefix("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(address_prefix("not an address"), "not an address");
        assert_eq!(address_prefix("::ffff:192.0.2.10"), "192.0.2.0/24");
        assert_ne!(address_prefix("::ffff:192.0.2.10"), address_prefix("::ffff:203.0.113.9"));
        let a = ClientInfo::default().remote_addr("192.0.2.17");
        let b = ClientInfo::default().remote_addr("192.0.2.200");
        let c = ClientInfo::default().remote_addr("192.0.3.17");
        let checks = [CrossCheck::AddressPrefix];
        assert_eq!(fingerprint(&checks, &a), fingerprint(&checks, &b));
        assert_ne!(fingerprint(&checks, &a), fingerprint(&checks, &c));
        assert_ne!(
            fingerprint(&[CrossCheck::Address], &a),
            fingerprint(&[CrossCheck::Address], &b)
        );
    }

    #[test]
    fn no_checks_no_fingerprint_and_values_cannot_run_together() {
        let client = ClientInfo::default().user_agent("x");
        assert_eq!(fingerprint(&[], &client), None);
        let both = [CrossCheck::UserAgent, CrossCheck::TlsSession];
        let one = ClientInfo::default().user_agent("ab").tls_session_id("c");
        let two = ClientInfo::default().user_agent("a").tls_session_id("bc");
        assert_ne!(fingerprint(&both, &one), fingerprint(&both, &two));
    }

    #[test]
    fn cgi_variables_are_read_and_a_non_utf8_cookie_header_is_kept_as_bytes() {
        use std::os::unix::ffi::OsStringExt;
        let client = ClientInfo::from_vars(|name| match name {
            "HTTP_COOKIE" => Some(OsString::from_vec(vec![b's', b'=', 0xff])),
            "REMOTE_ADDR" => Some("203.0.113.9".into()),
            "HTTP_USER_AGENT" => Some("curl/8".into()),
            "QUERY_STRING" => Some("state=3".into()),
            _ => None,
        });
        assert_eq!(client.cookie_header.as_deref(), Some(&b"s=\xff"[..]));
        assert_eq!(client.remote_addr.as_deref(), Some("203.0.113.9"));
        assert_eq!(client.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(client.tls_session_id, None);
        assert_eq!(client.query_string.as_deref(), Some("state=3"));
    }
}
