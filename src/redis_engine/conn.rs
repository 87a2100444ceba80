//! Connections to the server: a small pool of the redis crate's sync connections (standalone
//! or Cluster), dropped when they fail or when the process forked, and the one place where the
//! crate's errors become [`Error::Server`].

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{ConnectionLike, ErrorKind, RedisError, ServerErrorKind as Kind};

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
    Cluster(redis::cluster::ClusterConnection),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c,
        }
    }
}

/// The pool: idle connections, and the process they were opened in.
pub(super) struct Pool {
    target: Target,
    idle: Mutex<(u32, Vec<Conn>)>,
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
        Self { target, idle: Mutex::new((std::process::id(), Vec::new())) }
    }

    fn connect(&self) -> Result<Conn> {
        match &self.target {
            Target::Single(client) => {
                let conn = client.get_connection_with_timeout(TIMEOUT).map_err(server_error)?;
                conn.set_read_timeout(Some(TIMEOUT)).map_err(server_error)?;
                conn.set_write_timeout(Some(TIMEOUT)).map_err(server_error)?;
                Ok(Conn::Single(conn))
            }
            Target::Cluster(client) => {
                Ok(Conn::Cluster(client.get_connection().map_err(server_error)?))
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
                // Closing the child's copies of the sockets leaves the parent's open.
                idle.1.clear();
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
        match f(conn.like()) {
            Ok(out) => {
                self.give_back(conn);
                Ok(out)
            }
            Err(e) => {
                // A server's answer leaves the connection usable; anything else may not.
                if !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                    drop(conn);
                } else {
                    self.give_back(conn);
                }
                Err(server_error(e))
            }
        }
    }
}

/// The one mapping of the redis crate's errors to [`Error::Server`], by what to do about them.
pub(super) fn server_error(e: RedisError) -> Error {
    let code = e.code().unwrap_or_default().to_owned();
    let kind = match e.kind() {
        _ if code == "OOM" => ServerErrorKind::OutOfMemory,
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
