//! The dump of a Redis server or Cluster (feature `redis`): the same modes as on a file,
//! through the Redis engine's administration calls. It opens the engine with no timeouts of
//! its own (statuses follow the stored deadlines alone) and writes nothing unless `--repair`.

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::json;
use sessiondb::redis_engine::RedisInfo;
use sessiondb::{Contents, RedisEngine, SessionId, SessionInfo, StateInfo};

use super::{Args, Dump, Fail, Mode, Source, ages, when};

impl Source for RedisEngine {
    fn inspect(&self, id: &SessionId) -> sessiondb::Result<Option<(SessionInfo, Vec<StateInfo>)>> {
        RedisEngine::inspect(self, id)
    }
    fn contents(&self, id: &SessionId) -> sessiondb::Result<Option<Contents>> {
        RedisEngine::contents(self, id)
    }
}

/// Dumps the server at `args.path`; how many problems were found.
pub(super) fn run(args: &Args, wanted: Option<SessionId>) -> Result<u64, Fail> {
    let url = args.path.to_string_lossy().into_owned();
    let unusable = |e| Fail::File(PathBuf::from(&url), e);
    let mut builder = RedisEngine::builder_from_url(&url).map_err(unusable)?.idle_timeout(None);
    if let Some(prefix) = &args.prefix {
        builder = builder.prefix(prefix);
    }
    let engine = builder.open().map_err(unusable)?;
    let mut dump = Dump::new(args.json);
    match (args.mode, wanted) {
        (Mode::Session, Some(id)) => match engine.inspect(&id) {
            Ok(Some((info, _))) => dump.session(&engine, &info.id, true)?,
            Ok(None) => match engine.retired(&id) {
                Ok(Some(t)) => {
                    let to = t.successor.map_or_else(String::new, |s| format!(" to {s}"));
                    let until = when(dump.now, t.remove_at);
                    let msg = format!("session {id} was {}{to}; tombstone until {until}", t.reason);
                    dump.problem(msg)?;
                }
                Ok(None) => dump.problem(format!("no session {id} on the server"))?,
                Err(e) => dump.problem(format!("session {id}: {e}"))?,
            },
            Err(e) => dump.problem(format!("session {id}: {e}"))?,
        },
        (Mode::Verify, _) => {
            let report = engine.verify().map_err(unusable)?;
            dump.verified(&args.path, &report, None)?;
        }
        (Mode::Repair, _) => {
            let repaired = engine.repair().map_err(unusable)?;
            let report = engine.verify().map_err(unusable)?;
            dump.verified(&args.path, &report, Some(repaired.fixed))?;
        }
        (mode, _) => {
            let info = engine.info().map_err(unusable)?;
            let ids = engine.session_ids().map_err(unusable)?;
            let infos = ids
                .iter()
                .filter_map(|id| engine.inspect(id).map(|o| o.map(|(i, _)| i)).transpose());
            let ages = ages(infos, dump.now);
            header(&mut dump, &url, &info, &ages)?;
            if mode == Mode::All {
                for id in &ids {
                    dump.session(&engine, id, false)?;
                }
            }
            dump.footer(mode == Mode::All)?;
        }
    }
    dump.out.flush()?;
    Ok(dump.problems.len() as u64)
}

/// The summary of a server: what its prefix holds.
fn header(dump: &mut Dump<'_>, url: &str, info: &RedisInfo, ages: &super::Ages) -> io::Result<()> {
    if dump.json {
        let doc = json!({
            "oldest_created": ages.oldest,
            "newest_created": ages.newest,
            "next_expiry": ages.next_expiry,
            "expiring_within_5_min": ages.soon[0],
            "expiring_within_1_h": ages.soon[1],
            "unreadable": ages.unreadable,
            "path": url,
            "now": dump.now,
            "sessions": info.sessions,
            "tombstones": info.tombstones,
            "locks": info.locks,
            "users": info.users,
            "user_entries": info.user_entries,
            "cap_entries": info.cap_entries,
            "other_keys": info.other_keys,
        });
        return write!(dump.out, "{{\"store\":{doc},\n\"sessions\":[");
    }
    let now = dump.now;
    let when_opt = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), |ms| when(now, ms));
    let out = &mut dump.out;
    writeln!(out, "server          {url}")?;
    writeln!(out, "sessions        {}", info.sessions)?;
    writeln!(out, "tombstones      {}", info.tombstones)?;
    writeln!(out, "locks held      {}", info.locks)?;
    writeln!(out, "users           {} ({} index entries)", info.users, info.user_entries)?;
    let cap = info.cap_entries.map_or_else(|| "none".to_owned(), |n| n.to_string());
    writeln!(out, "cap entries     {cap}")?;
    if info.other_keys > 0 {
        writeln!(out, "other keys      {}", info.other_keys)?;
    }
    writeln!(out, "oldest session  {}", when_opt(ages.oldest))?;
    writeln!(out, "newest session  {}", when_opt(ages.newest))?;
    writeln!(out, "next expiry     {}", when_opt(ages.next_expiry))?;
    writeln!(out, "expiring soon   {} within 5 min, {} within 1 h", ages.soon[0], ages.soon[1])?;
    if ages.unreadable > 0 {
        writeln!(out, "unreadable      {} session records", ages.unreadable)?;
    }
    Ok(())
}
