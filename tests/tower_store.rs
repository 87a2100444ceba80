//! The tower-sessions store (`sessiondb::web::tower::SessionDbStore`): the `SessionStore` contract
//! against sessiondb, then `examples/axum_app` run as a server of several worker processes and
//! driven over HTTP by cookie-keeping clients.
#![cfg(feature = "tower-sessions")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{T0, builder, temp_db};
use serde_json::json;
use sessiondb::web::tower::SessionDbStore;
use sessiondb::{ManualClock, Store};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{ExpiredDeletion, SessionStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `f` on a Tokio runtime, as tower-sessions would.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// A tower-sessions store on a fresh file, with a manual clock at [`T0`] (idle timeout 10 s,
/// grace 5 s: see `tests/common`).
fn tower_store() -> (SessionDbStore, ManualClock, common::TempDb) {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).cleanup_interval(None).open().expect("open");
    (SessionDbStore::new(store), clock, db)
}

/// The date `ms` milliseconds after the epoch.
fn at(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("date")
}

fn record(id: i128, count: u64, expiry_ms: u64) -> Record {
    let data = HashMap::from([("count".to_owned(), json!(count))]);
    Record { id: Id(id), data, expiry_date: at(expiry_ms) }
}

#[test]
fn create_save_load_delete() -> TestResult {
    let (store, clock, _db) = tower_store();
    block_on(async {
        let mut rec = record(7, 1, T0 + 60_000);
        store.create(&mut rec).await?;
        assert_eq!(rec.id, Id(7), "a free id is kept");
        assert_eq!(store.load(&rec.id).await?, Some(rec.clone()));

        clock.advance(1_000);
        let saved = record(7, 2, T0 + 61_000);
        store.save(&saved).await?;
        assert_eq!(store.load(&rec.id).await?, Some(saved));
        assert_eq!(store.load(&Id(8)).await?, None, "an unknown id");

        store.delete(&rec.id).await?;
        assert_eq!(store.load(&rec.id).await?, None);
        store.delete(&rec.id).await?; // twice: still fine
        Ok(())
    })
}

#[test]
fn create_draws_a_new_id_while_the_id_is_taken_or_retired() -> TestResult {
    let (store, _clock, _db) = tower_store();
    block_on(async {
        let mut first = record(42, 1, T0 + 60_000);
        store.create(&mut first).await?;
        let mut second = record(42, 2, T0 + 60_000);
        store.create(&mut second).await?;
        assert_ne!(second.id, Id(42), "a taken id is replaced");
        assert_eq!(store.load(&Id(42)).await?, Some(first.clone()), "the first is untouched");
        assert_eq!(store.load(&second.id).await?, Some(second.clone()));

        // A deleted id is retired: not handed out again while its tombstone lasts.
        store.delete(&first.id).await?;
        let mut third = record(42, 3, T0 + 60_000);
        store.create(&mut third).await?;
        assert_ne!(third.id, Id(42));
        assert_eq!(store.load(&Id(42)).await?, None);
        Ok(())
    })
}

#[test]
fn save_creates_an_unknown_session_but_never_revives_a_deleted_one() -> TestResult {
    let (store, _clock, _db) = tower_store();
    block_on(async {
        let rec = record(5, 1, T0 + 60_000);
        store.save(&rec).await?;
        assert_eq!(store.load(&rec.id).await?, Some(rec.clone()));

        // A log-out in one request, a save of the same session in a concurrent one.
        store.delete(&rec.id).await?;
        store.save(&record(5, 2, T0 + 60_000)).await?;
        assert_eq!(store.load(&rec.id).await?, None);
        Ok(())
    })
}

#[test]
fn the_expiry_date_is_honoured_to_the_millisecond_whatever_the_idle_timeout() -> TestResult {
    let (store, clock, _db) = tower_store();
    block_on(async {
        // The store's idle timeout is 10 s: neither it nor loads move these deadlines.
        let mut short = record(1, 1, T0 + 1_000);
        let mut long = record(2, 1, T0 + 3_600_000);
        store.create(&mut short).await?;
        store.create(&mut long).await?;

        clock.set(T0 + 999);
        assert_eq!(store.load(&short.id).await?, Some(short.clone()));
        clock.set(T0 + 1_000);
        assert_eq!(store.load(&short.id).await?, None, "at the expiry date");

        clock.set(T0 + 1_800_000); // half an hour, far past the idle timeout
        assert_eq!(store.load(&long.id).await?, Some(long.clone()));
        clock.set(T0 + 3_600_000);
        assert_eq!(store.load(&long.id).await?, None);

        // A save moves the expiry date (tower-sessions' `Expiry::OnInactivity`), and a save
        // of an expired session starts it again.
        store.save(&record(2, 2, T0 + 3_700_000)).await?;
        clock.set(T0 + 3_699_999);
        assert_eq!(store.load(&long.id).await?, Some(record(2, 2, T0 + 3_700_000)));
        Ok(())
    })
}

#[test]
fn an_expiry_date_below_the_millisecond_is_rounded_down_never_late() -> TestResult {
    let (store, clock, _db) = tower_store();
    block_on(async {
        let mut rec = record(3, 1, T0 + 1_000);
        rec.expiry_date += time::Duration::microseconds(999);
        store.create(&mut rec).await?;
        clock.set(T0 + 999);
        let loaded = store.load(&rec.id).await?.ok_or("live")?;
        assert_eq!(loaded.expiry_date, at(T0 + 1_000));
        clock.set(T0 + 1_000);
        assert_eq!(store.load(&rec.id).await?, None);
        Ok(())
    })
}

#[test]
fn delete_expired_removes_what_is_past_its_expiry_date_and_the_grace_period() -> TestResult {
    let (store, clock, _db) = tower_store();
    block_on(async {
        let mut old = record(1, 1, T0 + 1_000);
        let mut live = record(2, 1, T0 + 3_600_000);
        store.create(&mut old).await?;
        store.create(&mut live).await?;

        clock.set(T0 + 2_000); // expired, inside the 5 s grace period: kept for now
        store.delete_expired().await?;
        assert_eq!(store.store().count()?, 2);
        clock.set(T0 + 6_000);
        store.delete_expired().await?;
        assert_eq!(store.store().count()?, 1);
        assert_eq!(store.store().stats().cleanup.removed.sessions, 1);
        assert_eq!(store.load(&live.id).await?, Some(live));
        Ok(())
    })
}

#[test]
fn the_file_holds_neither_the_cookie_value_nor_the_raw_id() -> TestResult {
    let (store, _clock, db) = tower_store();
    let id = Id(0x5e55_10bd_cafe_f00d_0123_4567_89ab_cdef);
    block_on(async {
        let mut rec = record(id.0, 1, T0 + 60_000);
        store.create(&mut rec).await
    })?;
    let key = SessionDbStore::storage_id(&id)?;
    assert!(store.store().exists(&key)?);
    drop(store);
    let bytes = std::fs::read(&db.path)?;
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(key.as_str().as_bytes()), "the storage id is there");
    assert!(!contains(id.to_string().as_bytes()), "the cookie value is not");
    assert!(!contains(&id.0.to_le_bytes()), "nor the id's bytes");
    Ok(())
}

#[test]
fn outside_a_tokio_runtime_calls_fail_instead_of_panicking() {
    let (store, _clock, _db) = tower_store();
    let mut fut = std::pin::pin!(store.load(&Id(1)));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(res) => assert!(res.is_err(), "{res:?}"),
        std::task::Poll::Pending => panic!("expected an immediate error"),
    }
}

#[test]
fn sessions_outlive_the_store_handle_and_are_shared_by_handles() -> TestResult {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let open = || -> Result<SessionDbStore, sessiondb::Error> {
        Ok(SessionDbStore::new(builder(&db.path, &clock).cleanup_interval(None).open()?))
    };
    let (a, b) = (open()?, open()?);
    block_on(async {
        let mut rec = record(9, 1, T0 + 60_000);
        a.create(&mut rec).await?;
        assert_eq!(b.load(&rec.id).await?, Some(rec.clone()));
        drop(a);
        let c = open()?;
        assert_eq!(c.load(&rec.id).await?, Some(rec));
        Ok(())
    })
}

// ---- examples/axum_app over HTTP ------------------------------------------------------------

/// The built example, built on first use.
fn app_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::example("axum_app"))
}

/// The example's first process; killed (which stops its workers) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(db: &Path, workers: usize) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(db, workers, &[])
    }

    fn start_with(
        db: &Path,
        workers: usize,
        options: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut command = Command::new(app_binary());
        command
            .args(["--workers", &workers.to_string(), "--port", "0", "--db"])
            .arg(db)
            .args(options)
            .env_remove("SESSIONDB_URL");
        Self::launch(command)
    }

    /// Starts the example as `command` says, and waits until it listens.
    fn launch(mut command: Command) -> Result<Self, Box<dyn std::error::Error>> {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut server = Server { child, port: 0 };
        // The first process prints its address once every worker listens.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60))?;
        let addr = line.strip_prefix("listening on http://127.0.0.1:").ok_or(line.clone())?;
        server.port = addr.split_whitespace().next().ok_or("no port")?.parse()?;
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    /// The value of a `name value` line of the body.
    fn field(&self, name: &str) -> &str {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.body))
    }

    fn count(&self) -> u64 {
        self.field("count").parse().expect("a count")
    }

    /// The cookie `name` this response sets: `Some("")` when it removes it.
    fn set_cookie_named(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        let header = self
            .headers
            .iter()
            .find(|(k, v)| k == "set-cookie" && v.starts_with(prefix.as_str()))?;
        let value = header.1.strip_prefix(prefix.as_str())?.split(';').next()?;
        let removed = header.1.contains("Max-Age=0");
        Some(if removed { String::new() } else { value.to_owned() })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A browser: two cookies (`id` of tower-sessions, `sessiondb` of the exact counter), a new
/// connection per request (so requests spread over the workers), HTTP/1.1 with
/// `Connection: close`.
#[derive(Clone)]
struct Browser {
    port: u16,
    cookie: Option<String>,
    exact: Option<String>,
}

impl Browser {
    fn new(port: u16) -> Self {
        Self { port, cookie: None, exact: None }
    }

    fn request(&mut self, method: &str, path: &str) -> Response {
        self.request_with(method, path, &[])
    }

    /// A request with extra header lines (`Origin`, `Sec-Fetch-Site`...).
    fn request_with(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let pairs: Vec<String> = [("id", &self.cookie), ("sessiondb", &self.exact)]
            .iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
            .collect();
        let cookie = if pairs.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", pairs.join("; "))
        };
        let extra = extra.iter().fold(String::new(), |mut s, (k, v)| {
            let _ = write!(s, "{k}: {v}\r\n");
            s
        });
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{cookie}{extra}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("receive");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        assert!(!headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")));
        let res =
            Response { status: status.parse().expect("status"), headers, body: body.to_owned() };
        for (name, jar) in [("id", &mut self.cookie), ("sessiondb", &mut self.exact)] {
            match res.set_cookie_named(name) {
                Some(c) if c.is_empty() => *jar = None,
                Some(c) => *jar = Some(c),
                None => {}
            }
        }
        res
    }
}

#[test]
fn the_axum_example_counts_across_workers_and_rotates_the_id_at_login() -> TestResult {
    let db = temp_db();
    let server = Server::start(&db.path, 3)?;
    let port = server.port;
    assert_eq!(Browser::new(port).request("GET", "/health").status, 200);

    // One browser's count goes on whichever worker serves each request.
    let mut ann = Browser::new(port);
    let mut workers = BTreeSet::new();
    let mut count = 0;
    while workers.len() < 3 && count < 200 {
        let res = ann.request("GET", "/");
        assert_eq!(res.status, 200, "{res:?}");
        count += 1;
        assert_eq!(res.count(), count, "{res:?}");
        workers.insert(res.field("worker").to_owned());
    }
    assert_eq!(workers.len(), 3, "requests reached only workers {workers:?}");
    let first_cookie = ann.cookie.clone().ok_or("a session cookie")?;

    // Another browser counts on its own.
    let mut bob = Browser::new(port);
    assert_eq!(bob.request("GET", "/").count(), 1);
    assert_eq!(bob.request("GET", "/").count(), 2);

    // Log-in moves the session to a new id and keeps its data.
    let res = ann.request("POST", "/login?user=ann");
    assert_eq!(res.status, 200, "{res:?}");
    let new_cookie = ann.cookie.clone().ok_or("a session cookie")?;
    assert_ne!(new_cookie, first_cookie, "log-in rotates the id");
    for _ in 0..5 {
        count += 1;
        let res = ann.request("GET", "/");
        assert_eq!((res.count(), res.field("user")), (count, "ann"), "{res:?}");
        assert_eq!(ann.cookie.as_deref(), Some(new_cookie.as_str()));
    }

    // The old cookie no longer works, on any worker: each request gets a new, empty session.
    for _ in 0..5 {
        let mut thief = Browser { cookie: Some(first_cookie.clone()), ..Browser::new(port) };
        let res = thief.request("GET", "/");
        assert_eq!((res.count(), res.field("user")), (1, "-"), "{res:?}");
        let fresh = thief.cookie.ok_or("a new cookie")?;
        assert!(fresh != first_cookie && fresh != new_cookie);
    }

    // Log-out deletes the session: its cookie is removed, and replaying it starts over.
    let res = ann.request("POST", "/logout");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(ann.cookie, None, "the cookie is removed");
    let mut replay = Browser { cookie: Some(new_cookie), ..Browser::new(port) };
    assert_eq!(replay.request("GET", "/").count(), 1);
    assert_eq!(bob.request("GET", "/").count(), 3, "other sessions are untouched");

    // Killing the first process stops every worker: the port stops answering.
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "workers still listen after the first process died");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Everything was in the file: another process sees bob's session.
    let store = Store::open(&db.path)?;
    assert!(store.count()? >= 2);
    Ok(())
}

#[test]
fn the_axum_example_has_no_shared_default_path_and_needs_db() -> TestResult {
    // Before: the file defaulted to /tmp/sessiondb-axum.redb, which another local user could
    // create first (the server then refused to start: a denial of service).
    let mut child = Command::new(app_binary())
        .args(["--workers", "1", "--port", "0"])
        .env_remove("SESSIONDB_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (mut stdout, mut stderr) =
        (child.stdout.take().ok_or("no stdout")?, child.stderr.take().ok_or("no stderr")?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let outcome = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let status = child.wait()?;
    let (out, err) = outcome.map_err(|_| "the example still runs without --db")?;
    assert!(!status.success(), "{status}: {out}{err}");
    assert!(!out.contains("listening"), "it served: {out}");
    assert!(err.contains("--db"), "the error names --db: {err:?}");

    // Missing directories of the path given are created private (0700), and it serves.
    let db = temp_db();
    let path = db.dir.path().join("state/axum-demo/sessions.redb");
    let server = Server::start(&path, 1)?;
    assert_eq!(Browser::new(server.port).request("GET", "/").count(), 1);
    for dir in ["state", "state/axum-demo"] {
        let mode = std::fs::metadata(db.dir.path().join(dir))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}: {mode:o}");
    }
    Ok(())
}

/// The example on Redis (`SESSIONDB_URL`, no `--db`), two workers: both counters count across
/// the workers, log-in moves the session to a new id and the old cookie starts over, log-out
/// ends it; the sessions are on the server (and no `--db` file exists to hold them).
#[cfg(feature = "redis")]
#[test]
fn the_axum_example_runs_on_redis() -> TestResult {
    if !common::redis::redis_available() {
        return Ok(());
    }
    let redis = common::redis::RedisServer::start(&[]);
    let mut command = Command::new(app_binary());
    command.args(["--workers", "2", "--port", "0"]).env("SESSIONDB_URL", redis.url());
    let server = Server::launch(command)?;
    let mut ann = Browser::new(server.port);
    let mut workers = BTreeSet::new();
    for n in 1..=20 {
        let res = ann.request("GET", "/");
        assert_eq!((res.status, res.count()), (200, n), "{res:?}");
        let exact = ann.request("GET", "/exact");
        assert_eq!((exact.status, exact.count()), (200, n), "{exact:?}");
        workers.insert(res.field("worker").to_owned());
        workers.insert(exact.field("worker").to_owned());
    }
    assert_eq!(workers.len(), 2, "requests reached only workers {workers:?}");
    let keys: u64 = redis.cli(&["DBSIZE"]).parse()?;
    assert!(keys >= 2, "the sessions are on the server: {keys} keys");

    let before = ann.cookie.clone().ok_or("a session cookie")?;
    let res = ann.request("POST", "/login?user=ann");
    assert_eq!(res.status, 200, "{res:?}");
    let after = ann.cookie.clone().ok_or("a session cookie")?;
    assert_ne!(after, before, "log-in rotates the id");
    let res = ann.request("GET", "/");
    assert_eq!((res.count(), res.field("user")), (21, "ann"), "the data moved with it");
    let mut thief = Browser { cookie: Some(before), ..Browser::new(server.port) };
    assert_eq!(thief.request("GET", "/").count(), 1, "the old cookie starts over");

    assert_eq!(ann.request("POST", "/logout").status, 200);
    assert_eq!(ann.cookie, None, "the cookie is removed");
    let mut replay = Browser { cookie: Some(after), ..Browser::new(server.port) };
    assert_eq!(replay.request("GET", "/").count(), 1, "the ended session starts over");
    Ok(())
}

/// The example on a Redis server with a password, given in `SESSIONDB_URL`: the password reaches
/// every worker (each serves), but no process's command line, which every local user can read
/// (`ps`, `/proc/PID/cmdline`); a forged `sessiondb` cookie naming a logged-in user's id writes
/// nothing into that session.
#[cfg(feature = "redis")]
#[test]
fn the_axum_example_keeps_the_redis_password_off_command_lines() -> TestResult {
    const SECRET: &str = "s3cret-of-the-workers";
    if !common::redis::redis_available() {
        return Ok(());
    }
    let redis = common::redis::RedisServer::start(&[]);
    assert_eq!(redis.cli(&["config", "set", "requirepass", SECRET]), "OK");
    let url = format!("redis://:{SECRET}@127.0.0.1:{}", redis.port());
    let mut command = Command::new(app_binary());
    command.args(["--workers", "3", "--port", "0"]).env("SESSIONDB_URL", &url);
    let server = Server::launch(command)?;
    let mut ann = Browser::new(server.port);
    let mut workers = BTreeSet::new();
    for n in 1..=30 {
        let res = ann.request("GET", "/exact");
        assert_eq!((res.status, res.count()), (200, n), "{res:?}");
        workers.insert(res.field("worker").to_owned());
    }
    assert_eq!(workers.len(), 3, "requests reached only workers {workers:?}");
    for entry in std::fs::read_dir("/proc")? {
        let Ok(cmdline) = std::fs::read(entry?.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(SECRET), "a command line shows the password: {cmdline}");
    }
    // A forged cookie on ann's id: a fresh count, and ann's session unchanged.
    let exact = ann.exact.clone().ok_or("ann's cookie")?;
    let id = exact.rsplit_once('.').ok_or("id.token")?.0.to_owned();
    let key = format!("sessiondb:{{{id}}}");
    let g = |redis: &common::redis::RedisServer| {
        common::redis::cli(redis.port(), &["-a", SECRET, "--no-auth-warning", "hget", &key, "g"])
    };
    let before = g(&redis);
    assert!(!before.is_empty(), "ann's session is on the server");
    let mut forger =
        Browser { exact: Some(format!("{id}.{}", "W".repeat(43))), ..Browser::new(server.port) };
    for _ in 0..3 {
        assert_eq!(forger.request("GET", "/exact").count(), 1, "the forged cookie starts over");
        forger.exact = Some(format!("{id}.{}", "W".repeat(43)));
    }
    assert_eq!(g(&redis), before, "a forged cookie wrote into ann's session");
    assert_eq!(ann.request("GET", "/exact").count(), 31);
    Ok(())
}

/// A Redis URL and `--db` at once is refused: the sessions are in one place.
#[cfg(feature = "redis")]
#[test]
fn the_axum_example_refuses_both_db_and_a_redis_url() -> TestResult {
    let db = temp_db();
    let out = Command::new(app_binary())
        .args(["--workers", "1", "--port", "0", "--db"])
        .arg(&db.path)
        .args(["--redis", "redis://127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both --db and a Redis URL"), "{err}");
    assert!(!db.path.exists(), "the file was not opened");
    Ok(())
}

/// `POST path` with extra headers: `(status, whether the tower-sessions cookie changed)`.
fn post(browser: &mut Browser, path: &str, headers: &[(&str, &str)]) -> (u16, bool) {
    let before = browser.cookie.clone();
    let res = browser.request_with("POST", path, headers);
    (res.status, browser.cookie != before)
}

#[test]
fn login_and_logout_refuse_cross_site_requests() -> TestResult {
    let db = temp_db();
    let server = Server::start(&db.path, 2)?;
    let port = server.port;
    let ours = format!("http://127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let https = format!("https://127.0.0.1:{port}");
    let mut ann = Browser::new(port);
    assert_eq!(ann.request("GET", "/").count(), 1);
    let cookie = ann.cookie.clone().ok_or("a session cookie")?;

    // What a page of another site makes a browser send. Each one is refused, changing nothing.
    let attacks: [&[(&str, &str)]; 7] = [
        &[("Origin", "http://evil.example")],
        &[("Origin", other_port.as_str())],
        &[("Origin", https.as_str())],
        &[("Origin", "null")],
        &[("Origin", "http://127.0.0.1.evil.example")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", ours.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ];
    for path in ["/login?user=mallory", "/logout"] {
        let got: Vec<(u16, bool)> = attacks.iter().map(|h| post(&mut ann, path, h)).collect();
        assert_eq!(got, vec![(403, false); attacks.len()], "POST {path} from another site");
    }
    let res = ann.request("GET", "/");
    assert_eq!((res.count(), res.field("user")), (2, "-"), "not logged in, not logged out");
    assert_eq!(ann.cookie.as_deref(), Some(cookie.as_str()));

    // This server's own pages (and clients that send no Origin, such as curl) are served.
    let (status, rotated) =
        post(&mut ann, "/login?user=ann", &[("Origin", &ours), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!((status, rotated), (200, true));
    let res = ann.request("GET", "/");
    assert_eq!((res.count(), res.field("user")), (3, "ann"));
    let localhost = format!("http://localhost:{port}");
    assert_eq!(post(&mut ann, "/logout", &[("Origin", &localhost)]).0, 200);
    assert_eq!(ann.cookie, None, "logged out");
    assert_eq!(post(&mut ann, "/login?user=bob", &[("Sec-Fetch-Site", "none")]).0, 200);
    assert_eq!(ann.request("GET", "/").field("user"), "bob");
    Ok(())
}

/// Sends `total` `GET path` requests of one browser, `parallel` at a time; the responses.
fn in_parallel(browser: &Browser, path: &str, total: usize, parallel: usize) -> Vec<Response> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let responses = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let res = browser.clone().request("GET", path);
                    responses.lock().expect("lock").push(res);
                }
            });
        }
    });
    responses.into_inner().expect("lock")
}

#[test]
fn the_exact_counter_keeps_every_count_of_parallel_requests_of_one_browser() -> TestResult {
    let db = temp_db();
    let server = Server::start(&db.path, 3)?;
    for parallel in [8, 16] {
        // `GET /exact`: `SessionManager::handle` in `spawn_blocking`. Every request is served
        // and stored exactly once, on whichever worker.
        let mut browser = Browser::new(server.port);
        assert_eq!(browser.request("GET", "/exact").count(), 1);
        let cookie = browser.exact.clone().ok_or("a sessiondb cookie")?;
        let responses = in_parallel(&browser, "/exact", 48, parallel);
        let failed: Vec<_> = responses.iter().filter(|r| r.status != 200).collect();
        assert!(failed.is_empty(), "{parallel} at a time: {failed:?}");
        let mut counts: Vec<u64> = responses.iter().map(Response::count).collect();
        counts.sort_unstable();
        assert_eq!(counts, (2..=49).collect::<Vec<_>>(), "{parallel} at a time");
        let workers: BTreeSet<&str> = responses.iter().map(|r| r.field("worker")).collect();
        assert!(workers.len() >= 2, "all on one worker: {workers:?}");
        let attempts: Vec<u32> =
            responses.iter().map(|r| r.field("attempts").parse().expect("attempts")).collect();
        let res = browser.request("GET", "/exact");
        assert_eq!(res.count(), 50);
        assert_eq!(browser.exact.as_deref(), Some(cookie.as_str()), "one cookie throughout");

        // `GET /`: the tower-sessions counter under the same load. Every request is answered
        // 200, but a blind save after the handler can overwrite another's: counts may be lost.
        let mut tower = Browser::new(server.port);
        assert_eq!(tower.request("GET", "/").count(), 1);
        let responses = in_parallel(&tower, "/", 48, parallel);
        assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
        let last = tower.request("GET", "/").count();
        assert!((2..=50).contains(&last), "{last}");
        println!(
            "{parallel} at a time, 48 requests: exact counter 50 of 50 (attempts: {} needed 2, \
             max {}); tower-sessions counter {last} of 50 ({} counts lost)",
            attempts.iter().filter(|&&a| a > 1).count(),
            attempts.iter().max().unwrap_or(&0),
            50 - last
        );
    }
    Ok(())
}

#[test]
fn the_exact_counter_answers_503_with_retry_after_when_the_session_stays_locked() -> TestResult {
    let db = temp_db();
    // Every request of `/exact` takes the session's lock first (PHP-style).
    let server = Server::start_with(&db.path, 2, &["--lockless-attempts", "0"])?;
    let mut browser = Browser::new(server.port);
    assert_eq!(browser.request("GET", "/exact").count(), 1);
    let cookie = browser.exact.clone().ok_or("a sessiondb cookie")?;
    let id = sessiondb::SessionId::parse(cookie.rsplit_once('.').ok_or("id.token")?.0)?;

    // Another process holds the session past the server's lock wait (2 s).
    let store = Store::open(&db.path)?;
    let lock = store.lock(&id, Duration::from_secs(10))?;
    let res = browser.request("GET", "/exact");
    assert_eq!(res.status, 503, "{res:?}");
    assert_eq!(res.header("retry-after"), Some("1"), "{res:?}");
    drop(lock);

    // Nothing of the refused request was stored.
    assert_eq!(browser.request("GET", "/exact").count(), 2);
    Ok(())
}
