//! An axum server whose tower-sessions sessions live in one sessiondb file shared by several
//! worker processes: a counter page, log-in with session id rotation, log-out.
//!
//! ```sh
//! cargo run --features tower-sessions --example axum_app -- --workers 4 --port 3000
//! curl -c jar -b jar 127.0.0.1:3000/             # count 1, count 2, ... from any worker
//! curl -c jar -b jar -X POST '127.0.0.1:3000/login?user=ann'   # a new session id
//! curl -c jar -b jar -X POST 127.0.0.1:3000/logout
//! ```
//!
//! Options: `--workers N` (default 2), `--port P` (default 3000; 0 picks a free port), `--db
//! PATH` (default `/tmp/sessiondb-axum.redb`).
//!
//! The first process binds 127.0.0.1:P with `SO_REUSEPORT`, then starts N-1 copies of itself
//! (`--worker`) that bind the same port the same way, so that the kernel spreads connections
//! over all N; each process opens the sessions file itself. When every worker has said it
//! listens, the first prints `listening on http://127.0.0.1:PORT with N workers` and serves too.
//! A worker's standard input is a pipe from the first process: when that closes (the first
//! process exited or was killed) the worker exits at once, which loses nothing (every session
//! write was committed before its response was sent). Ctrl-C stops them all.
//!
//! Routes: `GET /` counts the session's visits and shows the user and the worker's pid;
//! `POST /login?user=NAME` moves the session to a new id (`Session::cycle_id`, against session
//! fixation) and files the user in it; `POST /logout` deletes the session; `GET /health`.
//!
//! tower-sessions saves a session in its own middleware, after the handler, with a blind write:
//! `SessionManager::handle` (which runs a request again on a conflicting save) has no place
//! here, and parallel requests of one browser can lose a count, as with any tower-sessions
//! store. `docs/tower.md` says why, and how an axum program uses `handle` instead.

use std::error::Error;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use sessiondb::Store;
use sessiondb::tower::SessionDbStore;
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

struct Args {
    workers: usize,
    port: u16,
    db: PathBuf,
    /// Started by the first process: report readiness on stdout, exit when stdin closes.
    worker: bool,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut args = Args {
            workers: 2,
            port: 3000,
            db: PathBuf::from("/tmp/sessiondb-axum.redb"),
            worker: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--workers" => args.workers = value()?.parse()?,
                "--port" => args.port = value()?.parse()?,
                "--db" => args.db = PathBuf::from(value()?),
                "--worker" => args.worker = true,
                _ => return Err(format!("unknown argument {arg:?}").into()),
            }
        }
        if args.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        Ok(args)
    }
}

fn try_main() -> Result<()> {
    let args = Args::parse()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _entered = runtime.enter(); // binding a Tokio socket needs the runtime
    let listener = bind(args.port)?;
    let port = listener.local_addr()?.port();
    // Kept until this process exits: dropping a `Child` would close its stdin, stopping it.
    let mut workers = if args.worker { Vec::new() } else { start_workers(&args, port)? };
    let store = SessionDbStore::new(Store::open(&args.db)?);
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
    runtime.block_on(serve(listener, store))
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
        let mut child = Command::new(&exe)
            .args(["--worker", "--port", &port.to_string(), "--db"])
            .arg(&args.db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
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

async fn serve(listener: TcpListener, store: SessionDbStore) -> Result<()> {
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false) // plain HTTP on 127.0.0.1; behind HTTPS leave the default (true)
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
    let app = Router::new()
        .route("/", get(counter))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/health", get(|| async { "ok\n" }))
        .layer(sessions);
    axum::serve(listener, app).await?;
    Ok(())
}

fn internal(e: tower_sessions::session::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("session error: {e}\n"))
}

/// Counts this session's visits.
async fn counter(session: Session) -> Result<String, (StatusCode, String)> {
    let count = session.get::<u64>("count").await.map_err(internal)?.unwrap_or(0) + 1;
    session.insert("count", count).await.map_err(internal)?;
    let user = session.get::<String>("user").await.map_err(internal)?;
    let user = user.as_deref().unwrap_or("-");
    Ok(format!("count {count}\nuser {user}\nworker {}\n", std::process::id()))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// Logs in (no password: a demo): a new session id, then the user in the session.
async fn login(
    session: Session,
    Query(Login { user }): Query<Login>,
) -> Result<String, (StatusCode, String)> {
    if user.is_empty() || user.len() > MAX_USER {
        return Err((StatusCode::BAD_REQUEST, format!("user: 1 to {MAX_USER} bytes\n")));
    }
    session.cycle_id().await.map_err(internal)?;
    session.insert("user", &user).await.map_err(internal)?;
    Ok(format!("logged in as {user}\nworker {}\n", std::process::id()))
}

/// Logs out: the session is deleted and its cookie removed.
async fn logout(session: Session) -> Result<String, (StatusCode, String)> {
    session.flush().await.map_err(internal)?;
    Ok(format!("logged out\nworker {}\n", std::process::id()))
}
