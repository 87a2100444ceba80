//! Tables (markdown), raw numbers (TSV) and the ratio chart (hand-written SVG).

use std::fmt::Write as _;

use crate::Cell;
use crate::opts::{Opts, PxT, pxt};
use crate::systems::{Kind, R};

pub(crate) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn fmt_rps(x: f64) -> String {
    if x >= 100.0 { format!("{:.0}", x) } else { format!("{:.1}", x) }
}

pub(crate) fn fmt_ms(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub fn line(c: &Cell) -> String {
    let mut s = format!(
        "  {:<12} P×T={:<5} {:<17} {:>9} req/s  p50 {:>7} ms  p99 {:>7} ms  max {:>7} ms  busy {:>3.0}%  rss {} MiB",
        c.workload,
        pxt(c.pxt()),
        c.kind.name(),
        fmt_rps(c.rps()),
        fmt_ms(ms(c.hist.quantile(0.5))),
        fmt_ms(ms(c.hist.quantile(0.99))),
        fmt_ms(ms(c.hist.max_ns)),
        c.busy * 100.0,
        c.hwm_kb / 1024
    );
    if let Some((n, secs)) = c.swept {
        let _ = write!(s, "  swept {n} in {secs:.2} s ({:.0}/s)", n as f64 / secs);
    }
    if let (Some(b), Some(w)) = (c.mean_batch(), c.writes_per_commit()) {
        let _ = write!(s, "  batch {b:.2} writes/commit {w:.2}");
    }
    if let Some(r) = &c.redis {
        let _ = write!(
            s,
            "  conflicts {}  server commands/request {:.2} ({})  sent/request {:.2} ({})",
            c.conflicts, r.commands, r.mix, r.sent, r.sent_mix
        );
    }
    s
}

pub(crate) fn find<'a>(cells: &'a [Cell], w: &str, k: Kind, pt: PxT) -> Option<&'a Cell> {
    cells.iter().find(|c| c.workload == w && c.kind == k && c.pxt() == pt)
}

/// The cells of `cgi` (one request per process: T = 1).
pub(crate) fn cgi_pt(p: usize) -> PxT {
    (p, 1)
}

fn opt2(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| format!("{x:.2}"))
}

/// Mean wall time of one CGI request, ms: each driver runs requests back to back.
pub(crate) fn cgi_cost(c: &Cell) -> f64 {
    c.secs * c.procs as f64 * 1000.0 / c.requests.max(1) as f64
}

const BASELINES: [Kind; 3] = [Kind::SqlFull, Kind::SqlNormal, Kind::Tower];

/// sessiondb-multi ÷ baseline, higher is better for sessiondb (for `cgi`: the baseline's mean
/// cost ÷ sessiondb's).
pub(crate) fn ratio(cells: &[Cell], w: &str, base: Kind, pt: PxT) -> Option<f64> {
    let s = find(cells, w, Kind::Multi, pt)?;
    let b = find(cells, w, base, pt)?;
    if w == "cgi" { Some(cgi_cost(b) / cgi_cost(s)) } else { Some(s.rps() / b.rps()) }
}

/// `redis`: what the Redis server of the `redis-*` cells was (`None`: they did not run).
pub fn write_all(o: &Opts, cells: &[Cell], redis: Option<&str>) -> R<()> {
    let mut md = String::new();
    let mut tsv = String::from(
        "workload\tsystem\tP\tT\tsessions\trequests\tsecs\treq_per_s\tp50_ms\tp99_ms\tmax_ms\tconflicts\tcpu_ms\tpeak_rss_kib\tmachine_busy\tswept\tsweep_secs\twrites\tcommits\toperations\tserver_commands_per_req\tsent_commands_per_req\tserver_cpu_ms\tserver_commands\tsent_commands\n",
    );
    for c in cells {
        let (sw, ss) = c
            .swept
            .map_or((String::new(), String::new()), |(n, s)| (n.to_string(), format!("{s:.3}")));
        let (bc, bo) = c
            .batches
            .map_or((String::new(), String::new()), |(c, o)| (c.to_string(), o.to_string()));
        let rd = c.redis.as_ref().map_or("\t\t\t\t".into(), |r| {
            format!(
                "{:.3}\t{:.3}\t{}\t{}\t{}",
                r.commands, r.sent, r.server_cpu_ms, r.mix, r.sent_mix
            )
        });
        let _ = writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.1}\t{:.4}\t{:.4}\t{:.4}\t{}\t{}\t{}\t{:.2}\t{sw}\t{ss}\t{}\t{bc}\t{bo}\t{rd}",
            c.workload,
            c.kind.name(),
            c.procs,
            c.threads,
            c.sessions,
            c.requests,
            c.secs,
            c.rps(),
            ms(c.hist.quantile(0.5)),
            ms(c.hist.quantile(0.99)),
            ms(c.hist.max_ns),
            c.conflicts,
            c.cpu_ms,
            c.hwm_kb,
            c.busy,
            c.writes
        );
    }
    std::fs::write(o.out.join("results.tsv"), tsv)?;

    for w in ["read", "web", "write", "churn"] {
        if !cells.iter().any(|c| c.workload == w) {
            continue;
        }
        let _ = writeln!(md, "#### `{w}`\n");
        md.push_str("| P | T | system | requests/s | p50 ms | p99 ms | max ms | CPU µs/request | conflicts | mean batch | writes per commit | sessiondb-multi ÷ this |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for &(p, t) in &o.cells {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, w, k, (p, t)) else { continue };
                let r = find(cells, w, Kind::Multi, (p, t)).map(|s| s.rps() / c.rps());
                let _ = writeln!(
                    md,
                    "| {p} | {t} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
                    k.name(),
                    fmt_rps(c.rps()),
                    fmt_ms(ms(c.hist.quantile(0.5))),
                    fmt_ms(ms(c.hist.quantile(0.99))),
                    fmt_ms(ms(c.hist.max_ns)),
                    c.cpu_ms as f64 * 1000.0 / c.requests.max(1) as f64,
                    c.conflicts,
                    opt2(c.mean_batch()),
                    opt2(c.writes_per_commit()),
                    ratio_cell(k, r)
                );
            }
        }
        md.push('\n');
    }
    if cells.iter().any(|c| c.workload == "cgi") {
        md.push_str(
            "#### `cgi` (one fresh process per request: open, load, save a new state, exit)\n\n",
        );
        md.push_str("| P (concurrent) | system | requests/s | mean ms/request | p50 ms | p99 ms | this ÷ sessiondb-multi (cost) |\n|---|---|---|---|---|---|---|\n");
        for &p in &o.cgi_procs {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, "cgi", k, cgi_pt(p)) else { continue };
                let r =
                    find(cells, "cgi", Kind::Multi, cgi_pt(p)).map(|s| cgi_cost(c) / cgi_cost(s));
                let _ = writeln!(
                    md,
                    "| {p} | {} | {} | {} | {} | {} | {} |",
                    k.name(),
                    fmt_rps(c.rps()),
                    fmt_ms(cgi_cost(c)),
                    fmt_ms(ms(c.hist.quantile(0.5))),
                    fmt_ms(ms(c.hist.quantile(0.99))),
                    ratio_cell(k, r)
                );
            }
        }
        md.push('\n');
    }
    if cells.iter().any(|c| c.workload == "sweep") {
        md.push_str("#### `sweep` (remove the expired sessions while `web` runs)\n\n");
        md.push_str("| P (web workers) | T | system | removed | sweep s | removed/s | web requests/s | web p99 ms | worst web request ms |\n|---|---|---|---|---|---|---|---|---|\n");
        for &(p, t) in &o.sweep_cells {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, "sweep", k, (p, t)) else { continue };
                let (n, s) = c.swept.unwrap_or((0, f64::NAN));
                let _ = writeln!(
                    md,
                    "| {p} | {t} | {} | {n} | {s:.2} | {:.0} | {} | {} | {} |",
                    k.name(),
                    n as f64 / s,
                    fmt_rps(c.rps()),
                    fmt_ms(ms(c.hist.quantile(0.99))),
                    fmt_ms(ms(c.hist.max_ns)),
                );
            }
        }
        md.push('\n');
    }
    let scale: Vec<&Cell> = cells.iter().filter(|c| c.workload.starts_with("scale-")).collect();
    if !scale.is_empty() {
        let big = scale.iter().map(|c| c.sessions).max().unwrap_or(0);
        let _ = writeln!(
            md,
            "#### Scale: sessiondb-multi at {} and {} sessions (cells run next to each other)\n",
            o.sessions, big
        );
        md.push_str("| workload | P | T | requests/s small | requests/s big | big ÷ small | p99 ms small | p99 ms big | peak RSS small (MiB) | peak RSS big (MiB) |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for w in ["scale-read", "scale-web"] {
            for &(p, t) in &o.scale_cells {
                let (a, b) = scale_pair(cells, o, w, (p, t));
                if let (Some(a), Some(b)) = (a, b) {
                    let _ = writeln!(
                        md,
                        "| `{}` | {p} | {t} | {} | {} | {:.2} | {} | {} | {:.1} | {:.1} |",
                        &w[6..],
                        fmt_rps(a.rps()),
                        fmt_rps(b.rps()),
                        b.rps() / a.rps(),
                        fmt_ms(ms(a.hist.quantile(0.99))),
                        fmt_ms(ms(b.hist.quantile(0.99))),
                        a.hwm_kb as f64 / 1024.0,
                        b.hwm_kb as f64 / 1024.0
                    );
                }
            }
        }
        md.push('\n');
    }
    md.push_str(&floor_section(o, cells));
    if let Some(about) = redis {
        md.push_str(&crate::redis_report::section(o, cells, about));
    }
    // (A run of the Redis workloads alone has no row for issue 17's table.)
    if cells.iter().any(|c| !c.kind.is_redis()) {
        md.push_str(&crate::targets::issue17(o, cells));
    }
    md.push_str(&crate::targets::issue6(o, cells));
    std::fs::write(o.out.join("results.md"), &md)?;
    std::fs::write(o.out.join("compare.svg"), svg(o, cells))?;
    print!("{md}");
    Ok(())
}

/// The floor cells (`floor.rs`): redb `MultiWriter` alone.
fn floor_section(o: &Opts, cells: &[Cell]) -> String {
    let mut md = String::new();
    if !cells.iter().any(|c| c.kind == Kind::Floor) {
        return md;
    }
    md.push_str("#### redb floor: redb 4.5 `MultiWriter` alone, nothing else (`src/floor.rs`)\n\n");
    md.push_str("Writes: each latency is one commit. `floor-web`: requests/s and the latency of a request (a read, and on 30% of them a save).\n\n");
    md.push_str("| P | T | cell | rows per commit | rows/s (`floor-web`: requests/s) | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|\n");
    for &(p, t) in &o.cells {
        for name in ["floor-write", "floor-write-xp", "floor-web"] {
            let Some(c) = find(cells, name, Kind::Floor, (p, t)) else { continue };
            let k = match name {
                "floor-write" => t.to_string(),
                "floor-write-xp" => format!("{} (one process)", p * t),
                _ => format!("≤ {t} (group commit)"),
            };
            let _ = writeln!(
                md,
                "| {p} | {t} | `{name}` | {k} | {} | {} | {} | {} |",
                fmt_rps(c.rps()),
                fmt_ms(ms(c.hist.quantile(0.5))),
                fmt_ms(ms(c.hist.quantile(0.99))),
                fmt_ms(ms(c.hist.max_ns))
            );
        }
    }
    md.push_str("\n| P (concurrent) | cell | requests/s | mean ms/request | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n");
    for &p in &o.cgi_procs {
        for name in ["floor-cgi", "floor-cgi-noclose"] {
            let Some(c) = find(cells, name, Kind::Floor, cgi_pt(p)) else { continue };
            let _ = writeln!(
                md,
                "| {p} | `{name}` | {} | {} | {} | {} |",
                fmt_rps(c.rps()),
                fmt_ms(cgi_cost(c)),
                fmt_ms(ms(c.hist.quantile(0.5))),
                fmt_ms(ms(c.hist.quantile(0.99)))
            );
        }
    }
    md.push_str("\n| cell | rows removed | seconds | removed/s | commit p50 ms | longest commit ms |\n|---|---|---|---|---|---|\n");
    for c in cells.iter().filter(|c| c.workload.starts_with("floor-sweep-")) {
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.2} | {:.0} | {} | {} |",
            c.workload,
            c.requests,
            c.secs,
            c.rps(),
            fmt_ms(ms(c.hist.quantile(0.5))),
            fmt_ms(ms(c.hist.max_ns))
        );
    }
    md.push('\n');
    md
}

/// Grouped bars of sessiondb-multi ÷ each baseline, per workload and P, on a log scale.
fn svg(o: &Opts, cells: &[Cell]) -> String {
    let workloads: Vec<&str> = ["read", "web", "write", "churn", "cgi"]
        .into_iter()
        .filter(|w| cells.iter().any(|c| c.workload == *w))
        .collect();
    let groups: Vec<(&str, PxT)> = workloads
        .iter()
        .flat_map(|w| {
            let pts: Vec<PxT> = if *w == "cgi" {
                o.cgi_procs.iter().map(|&p| cgi_pt(p)).collect()
            } else {
                o.cells.clone()
            };
            pts.into_iter().map(move |pt| (*w, pt))
        })
        .collect();
    let (lo, hi) = (0.125f64, 64.0f64);
    let (left, top, plot_h, bar_w, gap, wl_gap) = (60.0, 50.0, 300.0, 9.0, 8.0, 18.0);
    let group_w = bar_w * 3.0 + gap;
    let width = left + groups.len() as f64 * group_w + workloads.len() as f64 * wl_gap + 20.0;
    let height = top + plot_h + 70.0;
    let y = |r: f64| {
        top + plot_h * (1.0 - (r.clamp(lo, hi).log2() - lo.log2()) / (hi.log2() - lo.log2()))
    };
    let colors = ["#1f77b4", "#9ecae1", "#ff7f0e"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="13" font-weight="bold">sessiondb (MultiProcess) ÷ baseline: requests/s (cgi: cost per request), log scale; above 1 = sessiondb faster</text>"#
    );
    for (i, k) in
        ["plain SQLite FULL", "plain SQLite NORMAL", "tower-sessions SQLite"].iter().enumerate()
    {
        let x = left + i as f64 * 170.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{k}</text>"#,
            colors[i],
            x + 14.0
        );
    }
    let mut r = lo;
    while r <= hi {
        let yy = y(r);
        let stroke = if (r - 1.0).abs() < 1e-9 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="{stroke}"/>"#,
            width - 20.0
        );
        let label =
            if r < 1.0 { format!("1/{}", (1.0 / r) as u32) } else { format!("{}×", r as u32) };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 4.0,
            yy + 4.0
        );
        r *= 2.0;
    }
    let mut x = left + 6.0;
    let mut last_w = "";
    let mut wl_start = x;
    for (gi, (w, p)) in groups.iter().enumerate() {
        if *w != last_w {
            if gi > 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.0}" text-anchor="middle" font-weight="bold">{last_w}</text>"#,
                    (wl_start + x - gap) / 2.0,
                    top + plot_h + 34.0
                );
                x += wl_gap;
            }
            last_w = w;
            wl_start = x;
        }
        for (bi, base) in BASELINES.iter().enumerate() {
            if let Some(v) = ratio(cells, w, *base, *p) {
                let (y1, y0) = (y(v), y(1.0));
                let (ytop, h) = if y1 < y0 { (y1, y0 - y1) } else { (y0, y1 - y0) };
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{ytop:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{w} P×T={} vs {}: {v:.2}×</title></rect>"#,
                    x + bi as f64 * bar_w,
                    h.max(0.5),
                    colors[bi],
                    pxt(*p),
                    base.name()
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
            x + bar_w * 1.5,
            top + plot_h + 16.0,
            if *w == "cgi" { format!("P={}", p.0) } else { pxt(*p) }
        );
        x += group_w;
    }
    if !groups.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle" font-weight="bold">{last_w}</text>"#,
            (wl_start + x - gap) / 2.0,
            top + plot_h + 34.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="{:.0}" fill="gray">P×T: P worker processes of T threads (cgi: P concurrent requests), {} sessions of {} B, {} s per cell; BENCHMARKS.md has the numbers and the machine.</text>"#,
        height - 10.0,
        o.sessions,
        crate::DATA,
        o.secs
    );
    s.push_str("</svg>\n");
    s
}

/// The ratio column: `—` in sessiondb-multi's own row, `?` when its cell is missing.
fn ratio_cell(k: Kind, r: Option<f64>) -> String {
    if k == Kind::Multi { "—".into() } else { r.map_or("?".into(), |r| format!("{r:.2}×")) }
}

/// The scale cells of workload `w` (`scale-read`, `scale-web`) at `pt`: at `o.sessions`
/// sessions and at the most sessions run.
pub(crate) fn scale_pair<'a>(
    cells: &'a [Cell],
    o: &Opts,
    w: &str,
    pt: PxT,
) -> (Option<&'a Cell>, Option<&'a Cell>) {
    let at = |n: usize| cells.iter().find(|c| c.workload == w && c.pxt() == pt && c.sessions == n);
    let big = cells
        .iter()
        .filter(|c| c.workload.starts_with("scale-"))
        .map(|c| c.sessions)
        .max()
        .unwrap_or(0);
    (at(o.sessions), at(big))
}
