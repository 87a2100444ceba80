//! The CGI side of the tests of `examples/cgi_counter` (`tests/cgi.rs`, on the file, and
//! `tests/cgi_redis.rs`, on Redis): its responses, parsed, and simulated browsers that run it as
//! a web server runs a CGI program, keeping their cookies as real ones do.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The cookie the example's `SessionManager` sets (the default name).
pub const COOKIE: &str = "sessiondb";

/// The built example, built on first use.
/// `SESSIONDB_TEST_CGI_COUNTER` names another build to test instead (an older version, to
/// check that a test fails on it).
pub fn counter_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var_os("SESSIONDB_TEST_CGI_COUNTER")
            .map_or_else(|| crate::common::example("cgi_counter"), PathBuf::from)
    })
}

/// One CGI response, parsed.
#[derive(Debug)]
pub struct Response {
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn parse(output: &[u8]) -> Self {
        let text = std::str::from_utf8(output).expect("the response is UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("headers end with a blank line");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a header line");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        assert_eq!(headers[0].0, "Status", "the status comes first: {head}");
        let response = Self { status: headers[0].1.clone(), headers, body: body.to_owned() };
        assert_eq!(response.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(response.header("Cache-Control"), Some("no-store"));
        response
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "one {name} header at most");
        first
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.header("Set-Cookie")
    }

    /// The text of `<span id="{id}">`.
    pub fn marker(&self, id: &str) -> &str {
        let start = format!(r#"id="{id}">"#);
        let at = self.body.find(&start).unwrap_or_else(|| panic!("no {id} in {}", self.body));
        let rest = &self.body[at + start.len()..];
        &rest[..rest.find('<').expect("a closing tag")]
    }

    pub fn number(&self, id: &str) -> u64 {
        let text = self.marker(id);
        text.parse().unwrap_or_else(|_| panic!("{id} is {text:?}, not a number"))
    }

    pub fn counter(&self) -> u64 {
        self.number("counter")
    }

    pub fn state(&self) -> u64 {
        self.number("state")
    }

    pub fn total(&self) -> u64 {
        self.number("total")
    }

    pub fn outcome(&self) -> &str {
        self.marker("outcome")
    }

    pub fn session(&self) -> &str {
        self.marker("session")
    }

    pub fn user(&self) -> &str {
        self.marker("user")
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, "200 OK", "{}", self.body);
        self
    }
}

/// A browser: a cookie jar, an address and a user agent, making requests of one CGI program
/// on one session file.
#[derive(Debug, Clone)]
pub struct Browser {
    pub db: PathBuf,
    pub jar: BTreeMap<String, String>,
    pub agent: String,
    pub addr: String,
    /// More environment variables for the program (`SESSIONDB_URL`, `HTTP_ORIGIN`...).
    pub extra_env: Vec<(String, String)>,
    /// Another build of the program to run than [`counter_binary`].
    pub program: Option<PathBuf>,
}

impl Browser {
    pub fn new(db: &Path, n: usize) -> Self {
        Self {
            db: db.to_path_buf(),
            jar: BTreeMap::new(),
            agent: format!("TestBrowser/{n}.0"),
            addr: format!("127.0.0.{}", n % 250 + 1),
            extra_env: Vec::new(),
            program: None,
        }
    }

    pub fn cookie(&self) -> Option<&str> {
        self.jar.get(COOKIE).map(String::as_str)
    }

    /// The `Cookie` header this browser sends.
    pub fn cookie_header(&self) -> Option<String> {
        if self.jar.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
        Some(pairs.join("; "))
    }

    /// Runs the program once, as a CGI server would, without touching the jar.
    pub fn run(&self, method: &str, query: &str) -> (std::process::Output, Response) {
        self.run_with(method, query, None)
    }

    /// Runs the program once with a request body (a form), without touching the jar.
    pub fn run_with(
        &self,
        method: &str,
        query: &str,
        form: Option<&str>,
    ) -> (std::process::Output, Response) {
        let mut cmd = self.command(method, query, form);
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run cgi_counter");
        let mut stdin = child.stdin.take().unwrap();
        // The program may answer without reading the body (a refusal): ignore a broken pipe.
        let _ = stdin.write_all(form.unwrap_or("").as_bytes());
        drop(stdin);
        let output = child.wait_with_output().expect("run cgi_counter");
        assert!(
            output.status.success(),
            "a CGI program reports errors in its response, and exits 0: {:?}, stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let response = Response::parse(&output.stdout);
        (output, response)
    }

    /// The program, with the CGI environment of a request.
    pub fn command(&self, method: &str, query: &str, form: Option<&str>) -> Command {
        let mut cmd = Command::new(self.program.as_deref().unwrap_or(counter_binary()));
        cmd.env_clear()
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("SERVER_SOFTWARE", "sessiondb-tests")
            .env("SERVER_NAME", "127.0.0.1")
            .env("SERVER_PORT", "80")
            .env("REQUEST_METHOD", method)
            .env("SCRIPT_NAME", "/counter.cgi")
            .env("QUERY_STRING", query)
            .env("REMOTE_ADDR", &self.addr)
            .env("HTTP_USER_AGENT", &self.agent)
            .env("SESSIONDB_PATH", &self.db);
        if let Some(header) = self.cookie_header() {
            cmd.env("HTTP_COOKIE", header);
        }
        for (name, value) in &self.extra_env {
            cmd.env(name, value);
        }
        if let Some(form) = form {
            cmd.env("CONTENT_TYPE", "application/x-www-form-urlencoded")
                .env("CONTENT_LENGTH", form.len().to_string());
        }
        cmd
    }

    /// A GET request; the jar takes the response's cookie.
    pub fn get(&mut self, query: &str) -> Response {
        let (_, response) = self.run("GET", query);
        if let Some(set) = response.set_cookie() {
            self.store_cookie(set);
        }
        response
    }

    /// A form POST (`action=...`), as the page's buttons send; the jar takes the cookie.
    pub fn post(&mut self, form: &str) -> Response {
        let (_, response) = self.run_with("POST", "", Some(form));
        if let Some(set) = response.set_cookie() {
            self.store_cookie(set);
        }
        response
    }

    pub fn login(&mut self) -> Response {
        self.post("action=login")
    }

    pub fn logout(&mut self) -> Response {
        self.post("action=logout")
    }

    /// Keeps or removes a cookie as a browser does with a `Set-Cookie` value.
    pub fn store_cookie(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let (name, value) = parts.next().and_then(|p| p.split_once('=')).expect("name=value");
        let removed = parts.any(|attr| attr.eq_ignore_ascii_case("Max-Age=0"));
        if removed {
            self.jar.remove(name);
        } else {
            self.jar.insert(name.to_owned(), value.to_owned());
        }
    }
}

/// The session id in a cookie value `<id>.<token>`.
pub fn id_of(cookie: &str) -> &str {
    cookie.rsplit_once('.').expect("id.token").0
}

/// Whether lighttpd and curl are installed (`scripts/lighttpd-cgi.sh` runs under them). When
/// they are not, says on stderr that `test` is skipped, unless `SESSIONDB_REQUIRE_LIGHTTPD` is
/// set (by `.ci/run`), which fails the test instead.
pub fn lighttpd_available(test: &str) -> bool {
    let installed = |name: &str| {
        Path::new("/usr/sbin").join(name).exists()
            || Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["lighttpd", "curl"].into_iter().filter(|n| !installed(n)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("SESSIONDB_REQUIRE_LIGHTTPD").is_none(),
        "SESSIONDB_REQUIRE_LIGHTTPD is set, but {missing:?} is not installed"
    );
    // Straight to stderr, past the test harness's capture, so that the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {} not installed (bash scripts/lighttpd-cgi.sh installs them)",
        missing.join(" and ")
    );
    false
}

/// Runs `scripts/lighttpd-cgi.sh` on the built example with `env` added (`REDIS=1`,
/// `SESSIONDB_URL=...`); asserts that every check passed; returns its output.
pub fn run_lighttpd_script(env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lighttpd-cgi.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("CGI_COUNTER_BIN", counter_binary())
        .env("NO_INSTALL", "1")
        .env_remove("SESSIONDB_URL")
        .env_remove("REDIS")
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} {env:?} failed:\n{log}", script.display());
    assert!(log.contains("all checks passed"), "{log}");
    log
}
