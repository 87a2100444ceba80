//! An axum server whose sessions live in one sessiondb file shared by several worker
//! processes: two per-session counters side by side (one through tower-sessions, one through
//! `SessionManager::handle`), log-in with session id rotation, log-out.
//!
//! ```sh
//! mkdir -m 700 -p "$XDG_RUNTIME_DIR/axum-demo"        # or any directory only you can write
//! cargo run --features tower-sessions --example axum_app -- \
//!     --db "$XDG_RUNTIME_DIR/axum-demo/sessions.redb" --workers 4 --port 3000
//! # or, sessions on Redis:
//! # cargo run --features tower-sessions,redis --example axum_app -- --redis redis://127.0.0.1:6379
//! curl -c jar -b jar 127.0.0.1:3000/             # count 1, count 2, ... (tower-sessions)
//! curl -c jar -b jar 127.0.0.1:3000/exact        # count 1, count 2, ... (handle: exact)
//! curl -c jar -b jar -X POST '127.0.0.1:3000/login?user=ann'   # a new session id
//! curl -c jar -b jar -X POST 127.0.0.1:3000/logout
//! ```
//!
//! Options:
//! - `--db PATH` (required): the sessions file. There is no default: a shared name such as
//!   `/tmp/sessiondb-axum.redb` could be created first by another local user, and the store
//!   then refuses it (`Error::UnsafeFile`), so the server would not start. Put it in a directory
//!   of its own that no other user can write (`$XDG_RUNTIME_DIR/...`, `~/.local/state/...`, a
//!   service's state directory); missing directories of the path are created `0700`.
//! - `--redis URL` (or the environment variable `SESSIONDB_URL`), instead of `--db`: the
//!   sessions are on this Redis server (`redis://127.0.0.1:6379`) or Cluster
//!   (`redis+cluster://host1:port1,host2:port2`), so that servers on several machines share
//!   them (`docs/redis.md`). The serving code is the same, generic over [`Engine`]. Needs
//!   `--features tower-sessions,redis`; built without `redis`, the server refuses to start
//!   rather than use a file. Giving both `--db` and a Redis URL is an error. A URL with a
//!   password (`redis://:PASSWORD@host:port`, which a shared host needs: docs/redis.md,
//!   "Security") belongs in `SESSIONDB_URL`: `--redis` shows it to every local user (`ps`).
//!   The workers get it through their environment, never their command line.
//! - `--workers N` (default 2), `--port P` (default 3000; 0 picks a free port).
//! - `--origin URL` (repeatable): the origins (`scheme://host[:port]`) whose pages may post to
//!   `/login` and `/logout`. Default: `http://127.0.0.1:P` and `http://localhost:P`. Behind a
//!   reverse proxy give the public one, e.g. `--origin https://example.com`.
//! - `--lockless-attempts N`: `RunConfig::lockless_attempts` of `GET /exact` (default 1; 0 takes
//!   the session's lock for every request, PHP-style).
//!
//! The first process binds 127.0.0.1:P with `SO_REUSEPORT`, then starts N-1 copies of itself
//! (`--worker`) that bind the same port the same way, so that the kernel spreads connections
//! over all N; each process opens the sessions (the file, or Redis) itself. When every worker
//! has said it listens, the first prints `listening on http://127.0.0.1:PORT with N workers`
//! and serves too.
//! A worker's standard input is a pipe from the first process: when that closes (the first
//! process exited or was killed) the worker exits at once, which loses nothing (every session
//! write was committed before its response was sent). Ctrl-C stops them all.
//!
//! Routes:
//! - `GET /` counts the session's visits through tower-sessions (cookie `id`) and shows the
//!   user and the worker's pid.
//! - `GET /exact` counts through [`SessionManager::handle`] (cookie `sessiondb`), run in
//!   [`tokio::task::spawn_blocking`]: a request whose save meets another request's runs again,
//!   so no count is lost and no request fails on contention; when even the session's lock is
//!   not free in time, `503 Service Unavailable` with `Retry-After`.
//! - `POST /login?user=NAME` moves the tower-sessions session to a new id
//!   (`Session::cycle_id`, against session fixation) and files the user in it; `POST /logout`
//!   deletes it. Both refuse (`403`) a request from another site: an `Origin` header that is not
//!   one of this server's origins (scheme, host and port), or `Sec-Fetch-Site: cross-site`. A
//!   client that sends neither (curl, a script) is served: every current browser sends `Origin`
//!   with a cross-site `POST`, and the tower-sessions cookie is `SameSite=Strict` besides.
//! - `GET /health`.
//!
//! Which counter to copy: tower-sessions loads a session before the handler and saves it
//! blind after it, so of two overlapping requests of one browser (parallel XHRs, several tabs)
//! the later save wins and `GET /` can lose counts, as with any tower-sessions store; it never
//! fails a request for it. Use it for sessions that change rarely and whose last write may win
//! (a log-in, preferences, a flash message). Use `handle`, as `GET /exact` does, where every
//! update must be kept (counters, carts, multi-step forms): it costs a blocking-pool thread per
//! request and, under contention, a rerun of the request's code, which must therefore act only
//! through the `Request` it is given. `docs/tower.md` has the details.

use std::error::Error;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sessiondb::web::tower::SessionDbStore;
use sessiondb::web::{ClientInfo, ManagerConfig, SessionManager};
use sessiondb::{Engine, Store};
use tokio::net::{TcpListener, TcpSocket};
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The longest user name accepted at log-in.
const MAX_USER: usize = 64;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the sessions are.
#[derive(Clone)]
enum Sessions {
    /// `--db PATH`: a sessiondb file.
    File(PathBuf),
    /// `--redis URL` or `SESSIONDB_URL`: a Redis server or Cluster.
    Redis(String),
}

struct Args {
    workers: usize,
    port: u16,
    sessions: Sessions,
    /// `--origin` values, as given (passed on to the workers).
    origins: Vec<String>,
    /// `--lockless-attempts`: `RunConfig::lockless_attempts` of `GET /exact`.
    lockless: Option<u32>,
    /// Started by the first process: report readiness on stdout, exit when stdin closes.
    worker: bool,
}

impl Args {
    #[allow(
        clippy::unnecessary_debug_formatting,
        reason = "an argument that is not UTF-8 is shown quoted, its odd bytes escaped"
    )]
    fn parse() -> Result<Self> {
        let (mut workers, mut port, mut db, mut origins, mut lockless, mut worker) =
            (2, 3000, None, Vec::new(), None, false);
        let mut redis = None;
        let mut it = std::env::args_os().skip(1);
        while let Some(arg) = it.next() {
            let arg = arg.into_string().map_err(|a| format!("unknown argument {a:?}"))?;
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            let mut text = || value()?.into_string().map_err(|v| format!("{arg}: {v:?}"));
            match arg.as_str() {
                "--workers" => workers = text()?.parse()?,
                "--port" => port = text()?.parse()?,
                "--db" => db = Some(PathBuf::from(value()?)),
                "--redis" => redis = Some(text()?),
                "--origin" => origins.push(text()?),
                "--lockless-attempts" => lockless = Some(text()?.parse()?),
                "--worker" => worker = true,
                _ => return Err(format!("unknown argument {arg:?}").into()),
            }
        }
        if workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if redis.is_none() {
            redis = match std::env::var("SESSIONDB_URL") {
                Ok(url) => Some(url).filter(|url| !url.is_empty()),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err("SESSIONDB_URL is not UTF-8".into());
                }
            };
        }
        let sessions = match (db, redis) {
            (Some(db), None) => Sessions::File(db),
            (None, Some(url)) => Sessions::Redis(url),
            (Some(_), Some(_)) => {
                return Err("both --db and a Redis URL (--redis, or SESSIONDB_URL) are given: \
                            the sessions are in one place, give one of them"
                    .into());
            }
            (None, None) => {
                return Err("--db PATH or --redis URL is required: the sessions file, in a \
                            directory no other user can write (e.g. --db \
                            \"$XDG_RUNTIME_DIR/axum-demo/sessions.redb\"; there is no default, \
                            as another local user could create a shared name in /tmp first), \
                            or a Redis server (--redis redis://127.0.0.1:6379, or SESSIONDB_URL)"
                    .into());
            }
        };
        if matches!(sessions, Sessions::Redis(_)) && !cfg!(feature = "redis") {
            // Before any worker starts.
            return Err(NO_REDIS.into());
        }
        Ok(Args { workers, port, sessions, origins, lockless, worker })
    }
}

fn try_main() -> Result<()> {
    let args = Args::parse()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = {
        let _entered = runtime.enter(); // binding a Tokio socket needs the runtime
        bind(args.port)?
    };
    let port = listener.local_addr()?.port();
    let origins = if args.origins.is_empty() {
        vec![format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")]
    } else {
        args.origins.clone()
    };
    let origins = origins
        .iter()
        .map(|o| parse_origin(o).ok_or_else(|| format!("--origin {o:?}: not scheme://host[:port]")))
        .collect::<Result<Vec<_>, _>>()?;
    if let (false, Sessions::File(db)) = (args.worker, &args.sessions) {
        create_private_parent(db)?;
    }
    // Kept until this process exits: dropping a `Child` would close its stdin, stopping it.
    let workers = if args.worker { Vec::new() } else { start_workers(&args, port)? };
    let started = Started { runtime, listener, port, origins, workers };
    match &args.sessions {
        Sessions::File(db) => {
            let store = SessionDbStore::new(Store::open(db)?);
            // `SessionManager` owns its `Store`: a second handle on the same file, without a
            // second clean-up thread (the first one sweeps the whole file).
            let exact = Store::builder(db).cleanup_interval(None).open()?;
            run(&args, started, store, exact)
        }
        Sessions::Redis(url) => run_on_redis(&args, started, url),
    }
}

/// On Redis: one engine for tower-sessions and one for `GET /exact` (a `SessionManager` owns
/// its engine), each with its own few connections.
#[cfg(feature = "redis")]
fn run_on_redis(args: &Args, started: Started, url: &str) -> Result<()> {
    use sessiondb::RedisEngine;
    let store = SessionDbStore::new(RedisEngine::from_url(url)?);
    run(args, started, store, RedisEngine::from_url(url)?)
}

/// The error for a Redis URL in a build without the `redis` feature: never a fallback to a
/// file.
const NO_REDIS: &str = "a Redis URL is given (--redis or SESSIONDB_URL), but this program was \
                        built without Redis support: build it with --features \
                        tower-sessions,redis";

/// Without the `redis` feature a Redis URL is an error (`Args::parse` says so first).
#[cfg(not(feature = "redis"))]
fn run_on_redis(_args: &Args, _started: Started, _url: &str) -> Result<()> {
    Err(NO_REDIS.into())
}

/// What `try_main` set up before opening the sessions.
struct Started {
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    port: u16,
    origins: Vec<Origin>,
    /// The other workers (first process only).
    workers: Vec<(Child, ChildStdout)>,
}

/// Serves on any session engine: `store` for tower-sessions, `exact` for `GET /exact`.
fn run<E: Engine + 'static>(
    args: &Args,
    started: Started,
    store: SessionDbStore<E>,
    exact: E,
) -> Result<()> {
    let Started { runtime, listener, port, origins, mut workers } = started;
    let _entered = runtime.enter();
    let mut config = ManagerConfig::default();
    config.cookie.secure = false; // plain HTTP on 127.0.0.1; behind HTTPS leave it on
    if let Some(n) = args.lockless {
        config.run.lockless_attempts = n;
    }
    let exact = Arc::new(SessionManager::new(exact, config)?);
    if args.worker {
        println!("ready {}", std::process::id());
        std::thread::spawn(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            std::process::exit(0);
        });
    } else {
        for (child, stdout) in &mut workers {
            wait_ready(child, stdout)?;
        }
        println!("listening on http://127.0.0.1:{port} with {} workers", args.workers);
    }
    let app = App { exact, origins: Arc::new(origins) };
    runtime.block_on(serve(listener, store, app))
}

/// Creates the missing directories of `db`'s path, `0700` (only this user can enter them).
fn create_private_parent(db: &Path) -> Result<()> {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()).into()),
        _ => Ok(()),
    }
}

/// A listener on 127.0.0.1:`port` that other processes may bind too (`SO_REUSEPORT`).
fn bind(port: u16) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    Ok(socket.listen(1024)?)
}

/// Starts the other workers on `port`; their stdin is a pipe that closes when this process ends.
fn start_workers(args: &Args, port: u16) -> Result<Vec<(Child, ChildStdout)>> {
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for _ in 1..args.workers {
        let mut command = Command::new(&exe);
        command.args(["--worker", "--port", &port.to_string()]);
        match &args.sessions {
            Sessions::File(db) => command.arg("--db").arg(db),
            // Through the environment, never the command line: every local user can read a
            // process's arguments (`ps`), and the URL may hold the server's password.
            Sessions::Redis(url) => command.env("SESSIONDB_URL", url),
        };
        for origin in &args.origins {
            command.args(["--origin", origin]);
        }
        if let Some(n) = args.lockless {
            command.args(["--lockless-attempts", &n.to_string()]);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        workers.push((child, stdout));
    }
    Ok(workers)
}

/// Waits until a worker says it listens, or fails if it exits first.
fn wait_ready(child: &mut Child, stdout: &mut ChildStdout) -> Result<()> {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ready ") {
        let status = child.wait()?;
        return Err(format!("a worker exited before it listened ({status})").into());
    }
    Ok(())
}

/// What the handlers share.
struct App<E: Engine> {
    /// The web layer of `GET /exact`.
    exact: Arc<SessionManager<E>>,
    /// The origins whose pages may log in and out.
    origins: Arc<Vec<Origin>>,
}

// Not derived: a derive would ask for `E: Clone`, and engines are not.
impl<E: Engine> Clone for App<E> {
    fn clone(&self) -> Self {
        Self { exact: Arc::clone(&self.exact), origins: Arc::clone(&self.origins) }
    }
}

/// Serves the app on any session engine ([`Engine`]): `main` opens the embedded [`Store`], or
/// the Redis engine.
async fn serve<E: Engine + 'static>(
    listener: TcpListener,
    store: SessionDbStore<E>,
    app: App<E>,
) -> Result<()> {
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false) // plain HTTP on 127.0.0.1; behind HTTPS leave the default (true)
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
    let router = Router::new()
        .route("/", get(counter))
        .route("/exact", get(exact_counter::<E>))
        .route("/login", post(login::<E>))
        .route("/logout", post(logout::<E>))
        .route("/health", get(|| async { "ok\n" }))
        .layer(sessions)
        .with_state(app);
    axum::serve(listener, router).await?;
    Ok(())
}

/// An origin: scheme, host and port (the default port of the scheme when none is written),
/// lowercase.
type Origin = (String, String, u16);

/// Parses a serialized origin (`scheme://host[:port]`, as browsers send it in `Origin`); `None`
/// for anything else (`null`, a path, user info).
fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) {
        return None;
    }
    // The port follows the last `:`, unless that `:` is inside an IPv6 `[...]`.
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (rest, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// Whether a request that changes who is logged in comes from one of `origins`' pages, or
/// from a client that says nothing of where it comes from: refused when the browser marks it
/// `Sec-Fetch-Site: cross-site`, or sends an `Origin` (every one of them, if several) that is
/// not one of `origins`.
fn same_origin(headers: &HeaderMap, origins: &[Origin]) -> bool {
    let cross_site = headers
        .get_all("sec-fetch-site")
        .iter()
        .any(|v| v.to_str().map_or(true, |v| v.trim().eq_ignore_ascii_case("cross-site")));
    let foreign = headers.get_all(header::ORIGIN).iter().any(|v| {
        v.to_str().ok().and_then(parse_origin).is_none_or(|origin| !origins.contains(&origin))
    });
    !cross_site && !foreign
}

fn forbidden() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "cross-site requests may not log in or out\n".to_owned())
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(internal)`")]
fn internal(e: tower_sessions::session::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("session error: {e}\n"))
}

/// Counts this session's visits, through tower-sessions (a blind save after the handler:
/// overlapping requests of one session can lose counts).
async fn counter(session: Session) -> Result<String, (StatusCode, String)> {
    let count = session.get::<u64>("count").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("count", count).await.map_err(internal)?;
    let user = session.get::<String>("user").await.map_err(internal)?;
    let user = user.as_deref().unwrap_or("-");
    Ok(format!("count {count}\nuser {user}\nworker {}\n", std::process::id()))
}

/// Counts this session's visits through `SessionManager::handle`: exact under any overlap.
async fn exact_counter<E: Engine + 'static>(
    State(app): State<App<E>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut client = ClientInfo::default();
    // Cookie headers as bytes (a byte that is not UTF-8 spoils only its own pair), joined as
    // one (HTTP/2 may split them).
    let cookies: Vec<&[u8]> =
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    client.cookie_header = (!cookies.is_empty()).then(|| cookies.join(&b"; "[..]));
    client.user_agent =
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    client.query_string = uri.query().map(str::to_owned);
    let manager = Arc::clone(&app.exact);
    // `handle` blocks (durable commits, the session's lock, a pause between attempts): on the
    // blocking pool, never on an async worker. Its closure may run more than once, and acts
    // only through the `Request`.
    let handled = tokio::task::spawn_blocking(move || {
        manager.handle(&client, |req| {
            let count = std::str::from_utf8(req.data())
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .unwrap_or(0)
                .saturating_add(1);
            req.set_data(count.to_string().into_bytes());
            Ok::<_, sessiondb::Error>(count)
        })
    })
    .await;
    match handled {
        Ok(Ok(handled)) => {
            let body = format!(
                "count {}\nattempts {}\nworker {}\n",
                handled.value,
                handled.attempts,
                std::process::id()
            );
            let mut response = body.into_response();
            if let Some(cookie) = handled.set_cookie {
                match HeaderValue::from_str(&cookie) {
                    Ok(value) => response.headers_mut().insert(header::SET_COOKIE, value),
                    Err(e) => return fail(&e),
                };
            }
            response
        }
        Ok(Err(sessiondb::Error::Busy { retry_after })) => {
            // Nothing was stored: the client may simply send the request again.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let retry = [(header::RETRY_AFTER, seconds.max(1).to_string())];
            (StatusCode::SERVICE_UNAVAILABLE, retry, "busy: try again shortly\n").into_response()
        }
        Ok(Err(e)) => fail(&e),
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("session error: {e}\n")).into_response()
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// Logs in (no password: a demo): a new session id, then the user in the session.
async fn login<E: Engine>(
    State(app): State<App<E>>,
    headers: HeaderMap,
    session: Session,
    Query(Login { user }): Query<Login>,
) -> Result<String, (StatusCode, String)> {
    if !same_origin(&headers, &app.origins) {
        return Err(forbidden());
    }
    if user.is_empty() || user.len() > MAX_USER {
        return Err((StatusCode::BAD_REQUEST, format!("user: 1 to {MAX_USER} bytes\n")));
    }
    session.cycle_id().await.map_err(internal)?;
    session.insert("user", &user).await.map_err(internal)?;
    Ok(format!("logged in as {user}\nworker {}\n", std::process::id()))
}

/// Logs out: the session is deleted and its cookie removed.
async fn logout<E: Engine>(
    State(app): State<App<E>>,
    headers: HeaderMap,
    session: Session,
) -> Result<String, (StatusCode, String)> {
    if !same_origin(&headers, &app.origins) {
        return Err(forbidden());
    }
    session.flush().await.map_err(internal)?;
    Ok(format!("logged out\nworker {}\n", std::process::id()))
}
