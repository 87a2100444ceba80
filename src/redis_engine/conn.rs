//! Connections to the server: a small pool of the redis crate's sync connections (standalone
//! or Cluster), dropped when they fail or when the process forked, and the one place where the
//! crate's errors become [`Error::Server`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionLike, ErrorKind, RedisError, ServerErrorKind as Kind, Value};

use crate::error::{Error, Result, ServerErrorKind};

/// How long connecting, and waiting for an answer, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The most idle connections kept.
const MAX_IDLE: usize = 16;

/// Where the connections go.
pub(super) enum Target {
    /// One server.
    Single(redis::Client),
    /// A Cluster.
    Cluster(redis::cluster::ClusterClient),
}

/// One connection of either kind.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }
}

/// The pool: idle connections, and the process they were opened in.
pub(super) struct Pool {
    target: Target,
    idle: Mutex<(u32, Vec<Conn>)>,
    /// Calls made through [`Pool::run`]: one round trip each (two more when a script had to
    /// be loaded, more when a Cluster redirected).
    calls: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Single(_) => "standalone",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("Pool").field("target", &kind).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `target`; connects nothing yet.
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            idle: Mutex::new((std::process::id(), Vec::new())),
            calls: AtomicU64::new(0),
        }
    }

    /// How many calls were made through [`Pool::run`].
    pub(super) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<Conn> {
        match &self.target {
            Target::Single(client) => {
                let conn =
                    client.get_connection_with_timeout(TIMEOUT).map_err(|e| server_error(&e))?;
                conn.set_read_timeout(Some(TIMEOUT)).map_err(|e| server_error(&e))?;
                conn.set_write_timeout(Some(TIMEOUT)).map_err(|e| server_error(&e))?;
                Ok(Conn::Single(conn))
            }
            Target::Cluster(client) => {
                Ok(Conn::Cluster(Box::new(client.get_connection().map_err(|e| server_error(&e))?)))
            }
        }
    }

    /// An idle connection of this process, or a new one. A forked child drops (without using)
    /// what its parent left in the pool: their sockets are the parent's.
    fn take(&self) -> Result<Conn> {
        let pid = std::process::id();
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.0 != pid {
                // Forgotten, not dropped: whatever a connection's drop may do to its socket
                // (a shutdown would end the parent's too) is not the child's to do.
                for conn in std::mem::take(&mut idle.1) {
                    std::mem::forget(conn);
                }
                idle.0 = pid;
            }
            idle.1.pop()
        };
        match reused {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.0 == std::process::id() && idle.1.len() < MAX_IDLE {
            idle.1.push(conn);
        }
    }

    /// Runs `f` on a connection; a connection that failed is dropped, not returned.
    pub(super) fn run<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut conn = self.take()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        match f(conn.like()) {
            Ok(out) => {
                self.give_back(conn);
                Ok(out)
            }
            Err(e) => {
                // A server's answer leaves the connection usable; anything else may not.
                if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                    self.give_back(conn);
                }
                Err(server_error(&e))
            }
        }
    }
}

impl Pool {
    /// Every key matching the glob `pattern`: `SCAN` on the server, or on every master of a
    /// Cluster (their addresses from `CLUSTER SLOTS`). Keys written during the walk may or may
    /// not be listed; a key may be listed twice (`SCAN`'s guarantee), so callers dedupe.
    pub(super) fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut conn = self.take()?;
        let out = match &mut conn {
            Conn::Single(c) => scan_node(c, pattern, |c, cmd| cmd.query(c)),
            Conn::Cluster(c) => masters(c).and_then(|nodes| {
                let mut keys = Vec::new();
                for (host, port) in nodes {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    });
                    keys.extend(scan_node(c, pattern, |c, cmd| {
                        redis::from_redis_value(c.route_command(cmd, route.clone())?)
                            .map_err(RedisError::from)
                    })?);
                }
                Ok(keys)
            }),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        match out {
            Ok(keys) => {
                self.give_back(conn);
                Ok(keys)
            }
            Err(e) => Err(server_error(&e)),
        }
    }
}

/// One node's keys matching `pattern`, by `SCAN` cursor; `query` sends one `SCAN` to it.
fn scan_node<C>(
    c: &mut C,
    pattern: &str,
    query: impl Fn(&mut C, &redis::Cmd) -> redis::RedisResult<(u64, Vec<Vec<u8>>)>,
) -> redis::RedisResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
        let (next, batch) = query(c, &cmd)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// The (host, port) of every master of a Cluster, from `CLUSTER SLOTS`.
fn masters(c: &mut redis::cluster::ClusterConnection) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(c)?;
    let mut out: Vec<(String, u16)> = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(master)) = parts.get(2) else { continue };
        let host: Option<String> = master.first().and_then(|v| redis::from_redis_value_ref(v).ok());
        let port: Option<u16> = master.get(1).and_then(|v| redis::from_redis_value_ref(v).ok());
        if let (Some(host), Some(port)) = (host, port)
            && !out.iter().any(|(h, p)| *h == host && *p == port)
        {
            out.push((host, port));
        }
    }
    Ok(out)
}

/// The one mapping of the redis crate's errors to [`Error::Server`], by what to do about them.
pub(super) fn server_error(e: &RedisError) -> Error {
    let code = e.code().unwrap_or_default().to_owned();
    let kind = match e.kind() {
        _ if code == "OOM" => ServerErrorKind::OutOfMemory,
        // No password given (`NOAUTH`), a wrong one or an unknown user (`WRONGPASS`), an ACL
        // user without a command or key pattern (`NOPERM`).
        ErrorKind::AuthenticationFailed | ErrorKind::Server(Kind::NoPerm) => {
            ServerErrorKind::Denied
        }
        _ if matches!(code.as_str(), "NOAUTH" | "WRONGPASS" | "NOPERM") => ServerErrorKind::Denied,
        // A unix socket (or its directory) this process may not open; a Cluster's nodes that
        // refused the credentials (the crate reports them as one I/O error, codes in the text).
        _ if io_denied(e) => ServerErrorKind::Denied,
        ErrorKind::Server(Kind::BusyLoading) => ServerErrorKind::Loading,
        ErrorKind::Server(Kind::ReadOnly) => ServerErrorKind::ReadOnly,
        ErrorKind::Server(Kind::Moved | Kind::Ask) => ServerErrorKind::Moved,
        ErrorKind::Server(Kind::ClusterDown | Kind::MasterDown | Kind::TryAgain) => {
            ServerErrorKind::ClusterDown
        }
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => ServerErrorKind::Unreachable,
        _ if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => {
            ServerErrorKind::Unreachable
        }
        _ if e.to_string().contains("OOM") => ServerErrorKind::OutOfMemory,
        _ => ServerErrorKind::Other,
    };
    Error::Server { kind, message: e.to_string() }
}

/// Whether `e` is an I/O error of the operating system's permissions (`EACCES`, `EPERM`), or a
/// Cluster's refusal of the credentials: the redis crate keeps the `io::Error` behind an `Arc`
/// that cannot be downcast, and a Cluster's in a message, so by the codes in its text.
fn io_denied(e: &RedisError) -> bool {
    let text = e.to_string();
    let refused = ["(os error 13)", "(os error 1)", "NOAUTH", "WRONGPASS", "NOPERM"];
    e.kind() == ErrorKind::Io && refused.iter().any(|r| text.contains(r))
}
