//! The Redis table of results.md (REDIS.md): each `redis-*` cell of each Redis system, with
//! the commands per request and its ratio to tower-redis and to redis-bare.

use std::fmt::Write as _;

use crate::Cell;
use crate::opts::{Opts, pxt};
use crate::report::{find, fmt_ms, ms};
use crate::systems::{Kind, REDIS};

fn ratio(c: &Cell, base: Option<&Cell>) -> String {
    base.map_or("—".into(), |b| format!("{:.2}", c.rps() / b.rps()))
}

fn rate(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

/// The section, or nothing if no Redis cell ran.
pub fn section(o: &Opts, cells: &[Cell], about: &str) -> String {
    let mut md = String::new();
    if !cells.iter().any(|c| c.redis.is_some()) {
        return md;
    }
    let _ = writeln!(md, "#### Redis (issue 18): one server for all systems\n");
    let _ = writeln!(md, "Server: {about}.\n");
    md.push_str(
        "\"server cmds\": commands the server ran per request (`INFO commandstats`, those a \
         script runs included). \"sent\": commands the client sent per request, a script call \
         (`EVALSHA`) counting as one, from an untimed probe of 1000 requests on one thread with \
         `MONITOR` on: the round trips per request unless commands are pipelined. CPU: µs per \
         request of the worker processes and of redis-server. tower-redis saves without a \
         version check (last writer wins); conflicts are sessiondb-redis's refused stale \
         saves.\n\n",
    );
    md.push_str("| workload | P | T | system | requests/s | p50 ms | p99 ms | max ms | server cmds/request | sent/request | client CPU µs/request | server CPU µs/request | conflicts | this ÷ tower-redis | this ÷ redis-bare |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for w in ["redis-read", "redis-web"] {
        for &pt in &o.redis_cells {
            let tower = find(cells, w, Kind::TowerRedis, pt);
            let bare = find(cells, w, Kind::RedisBare, pt);
            for k in REDIS {
                let Some(c) = find(cells, w, k, pt) else { continue };
                let Some(r) = &c.redis else { continue };
                let per = |ms: u64| ms as f64 * 1000.0 / c.requests.max(1) as f64;
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {} | {} | {} |",
                    &w["redis-".len()..],
                    pt.0,
                    pt.1,
                    k.name(),
                    rate(c.rps()),
                    fmt_ms(ms(c.hist.quantile(0.5))),
                    fmt_ms(ms(c.hist.quantile(0.99))),
                    fmt_ms(ms(c.hist.max_ns)),
                    r.commands,
                    r.sent,
                    per(c.cpu_ms),
                    per(r.server_cpu_ms),
                    c.conflicts,
                    ratio(c, tower),
                    ratio(c, bare),
                );
            }
        }
    }
    md.push_str(&targets(o, cells));
    md.push_str("\nCommands by name, per request (server; sent):\n\n");
    for w in ["redis-read", "redis-web"] {
        for k in REDIS {
            // The mix of the first cell that ran (it hardly depends on the cell).
            let Some(c) = o.redis_cells.iter().find_map(|&pt| find(cells, w, k, pt)) else {
                continue;
            };
            let Some(r) = &c.redis else { continue };
            let _ = writeln!(
                md,
                "- `{}` {} ({}): {}; sent: {}",
                &w["redis-".len()..],
                k.name(),
                pxt(c.pxt()),
                r.mix,
                r.sent_mix
            );
        }
    }
    md.push('\n');
    md
}

/// Issue 18's goal, a row per cell: sessiondb-redis at least as fast as tower-redis on `read`
/// and `web`; beside it, what is left of redis-bare's rate (the overhead over a bare `GET`/`SET`).
fn targets(o: &Opts, cells: &[Cell]) -> String {
    let mut md = String::from(
        "\nTargets (issue 18): sessiondb-redis at least as fast as tower-redis (which checks no \
         version); its overhead over a bare `GET`/`SET` stated.\n\n\
         | target | measured | met | sessiondb-redis ÷ redis-bare |\n|---|---|---|---|\n",
    );
    let mut any = false;
    for w in ["redis-read", "redis-web"] {
        for &pt in &o.redis_cells {
            let Some(s) = find(cells, w, Kind::SdbRedis, pt) else { continue };
            let t = find(cells, w, Kind::TowerRedis, pt);
            let (measured, met) = t.map_or(("tower-redis not run".into(), "—"), |t| {
                let r = s.rps() / t.rps();
                (format!("{r:.2}×"), if r >= 1.0 { "yes" } else { "no" })
            });
            let bare = find(cells, w, Kind::RedisBare, pt).map_or("—".into(), |b| {
                let r = s.rps() / b.rps();
                format!("{r:.2} (requests cost {:.2}× a bare one)", 1.0 / r)
            });
            let _ = writeln!(
                md,
                "| `{}` {}: sessiondb-redis ≥ 1× tower-redis | {measured} | {met} | {bare} |",
                &w["redis-".len()..],
                pxt(pt)
            );
            any = true;
        }
    }
    if any { md } else { String::new() }
}
