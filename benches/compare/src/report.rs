//! Tables (markdown), raw numbers (TSV) and the ratio chart (hand-written SVG).

use std::fmt::Write as _;

use crate::Cell;
use crate::opts::Opts;
use crate::systems::{Kind, R};

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn fmt_rps(x: f64) -> String {
    if x >= 100.0 { format!("{:.0}", x) } else { format!("{:.1}", x) }
}

fn fmt_ms(x: f64) -> String {
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
        "  {:<12} P={} {:<17} {:>9} req/s  p50 {:>7} ms  p99 {:>7} ms  max {:>7} ms  busy {:>3.0}%  rss {} MiB",
        c.workload,
        c.procs,
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
    s
}

fn find<'a>(cells: &'a [Cell], w: &str, k: Kind, p: usize) -> Option<&'a Cell> {
    cells.iter().find(|c| c.workload == w && c.kind == k && c.procs == p)
}

/// Mean wall time of one CGI request, ms: each driver runs requests back to back.
fn cgi_cost(c: &Cell) -> f64 {
    c.secs * c.procs as f64 * 1000.0 / c.requests.max(1) as f64
}

const BASELINES: [Kind; 3] = [Kind::SqlFull, Kind::SqlNormal, Kind::Tower];

/// sessiondb-multi ÷ baseline, higher is better for sessiondb (for `cgi`: the baseline's mean
/// cost ÷ sessiondb's).
fn ratio(cells: &[Cell], w: &str, base: Kind, p: usize) -> Option<f64> {
    let s = find(cells, w, Kind::Multi, p)?;
    let b = find(cells, w, base, p)?;
    if w == "cgi" { Some(cgi_cost(b) / cgi_cost(s)) } else { Some(s.rps() / b.rps()) }
}

pub fn write_all(o: &Opts, cells: &[Cell]) -> R<()> {
    let mut md = String::new();
    let mut tsv = String::from(
        "workload\tsystem\tP\tsessions\trequests\tsecs\treq_per_s\tp50_ms\tp99_ms\tmax_ms\tconflicts\tcpu_ms\tpeak_rss_kib\tmachine_busy\tswept\tsweep_secs\n",
    );
    for c in cells {
        let (sw, ss) = c
            .swept
            .map_or((String::new(), String::new()), |(n, s)| (n.to_string(), format!("{s:.3}")));
        let _ = writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.1}\t{:.4}\t{:.4}\t{:.4}\t{}\t{}\t{}\t{:.2}\t{sw}\t{ss}",
            c.workload,
            c.kind.name(),
            c.procs,
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
            c.busy
        );
    }
    std::fs::write(o.out.join("results.tsv"), tsv)?;

    let procs = &o.procs;
    for w in ["read", "web", "write", "churn"] {
        if !cells.iter().any(|c| c.workload == w) {
            continue;
        }
        let _ = writeln!(md, "#### `{w}`\n");
        md.push_str("| P | system | requests/s | p50 ms | p99 ms | max ms | CPU µs/request | conflicts | sessiondb-multi ÷ this |\n|---|---|---|---|---|---|---|---|---|\n");
        for &p in procs {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, w, k, p) else { continue };
                let r = find(cells, w, Kind::Multi, p).map(|s| s.rps() / c.rps());
                let _ = writeln!(
                    md,
                    "| {p} | {} | {} | {} | {} | {} | {:.0} | {} | {} |",
                    k.name(),
                    fmt_rps(c.rps()),
                    fmt_ms(ms(c.hist.quantile(0.5))),
                    fmt_ms(ms(c.hist.quantile(0.99))),
                    fmt_ms(ms(c.hist.max_ns)),
                    c.cpu_ms as f64 * 1000.0 / c.requests.max(1) as f64,
                    c.conflicts,
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
        for &p in procs {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, "cgi", k, p) else { continue };
                let r = find(cells, "cgi", Kind::Multi, p).map(|s| cgi_cost(c) / cgi_cost(s));
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
        md.push_str("| P (web workers) | system | removed | sweep s | removed/s | web requests/s | web p99 ms | worst web request ms |\n|---|---|---|---|---|---|---|---|\n");
        for &p in procs {
            for k in crate::systems::ALL {
                let Some(c) = find(cells, "sweep", k, p) else { continue };
                let (n, s) = c.swept.unwrap_or((0, f64::NAN));
                let _ = writeln!(
                    md,
                    "| {p} | {} | {n} | {s:.2} | {:.0} | {} | {} | {} |",
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
        md.push_str("| workload | P | requests/s small | requests/s big | big ÷ small | p99 ms small | p99 ms big | peak RSS small (MiB) | peak RSS big (MiB) |\n|---|---|---|---|---|---|---|---|---|\n");
        for w in ["scale-read", "scale-web"] {
            for &p in procs {
                let a = scale
                    .iter()
                    .find(|c| c.workload == w && c.procs == p && c.sessions == o.sessions);
                let b = scale.iter().find(|c| c.workload == w && c.procs == p && c.sessions == big);
                if let (Some(a), Some(b)) = (a, b) {
                    let _ = writeln!(
                        md,
                        "| `{}` | {p} | {} | {} | {:.2} | {} | {} | {:.1} | {:.1} |",
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
    md.push_str(&targets(o, cells));
    std::fs::write(o.out.join("results.md"), &md)?;
    std::fs::write(o.out.join("compare.svg"), svg(o, cells))?;
    print!("{md}");
    Ok(())
}

/// The floor cells (`floor.rs`): redb `MultiWriter` alone.
fn floor_section(o: &Opts, cells: &[Cell]) -> String {
    let procs = &o.procs;
    let mut md = String::new();
    if !cells.iter().any(|c| c.kind == Kind::Floor) {
        return md;
    }
    md.push_str("#### redb floor: redb 4.5 `MultiWriter` alone, nothing else (`src/floor.rs`)\n\n");
    md.push_str("Writes: each latency is one commit. `floor-web`: requests/s and the latency of a request (a read, and on 30% of them a save).\n\n");
    md.push_str("| P | cell | rows per commit | rows/s (`floor-web`: requests/s) | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n");
    for &p in procs {
        for name in ["floor-write", "floor-write-xp", "floor-web"] {
            let Some(c) = find(cells, name, Kind::Floor, p) else { continue };
            let k = match name {
                "floor-write" => o.threads.to_string(),
                "floor-write-xp" => (p * o.threads).to_string(),
                _ => format!("≤ {} (group commit)", o.threads),
            };
            let _ = writeln!(
                md,
                "| {p} | `{name}` | {k} | {} | {} | {} | {} |",
                fmt_rps(c.rps()),
                fmt_ms(ms(c.hist.quantile(0.5))),
                fmt_ms(ms(c.hist.quantile(0.99))),
                fmt_ms(ms(c.hist.max_ns))
            );
        }
    }
    md.push_str("\n| P (concurrent) | cell | requests/s | mean ms/request | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n");
    for &p in procs {
        for name in ["floor-cgi", "floor-cgi-noclose"] {
            let Some(c) = find(cells, name, Kind::Floor, p) else { continue };
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

/// The redb floor's bounds on a ratio target (`floor.rs`).
struct Bound {
    /// The ratio that redb's part of the work alone reaches: no store on redb `MultiWriter`
    /// can do better. For `web`: every commit full (K = T) and loads free.
    strict: f64,
    /// `web`: the ratio of `floor-web`, bare redb with a minimal group commit.
    bare: Option<f64>,
    /// P > 1: the strict bound if one commit could hold the saves of all processes.
    shared: Option<f64>,
}

/// `None` where the floor says nothing (`read`) or was not run.
fn floor_bound(cells: &[Cell], w: &str, base: Kind, p: usize) -> Option<Bound> {
    let b = find(cells, w, base, p)?.rps();
    let rows = |name: &str| find(cells, name, Kind::Floor, p).map(Cell::rps);
    // A `web` request saves with probability WEB_SAVE: R saves/s allow R / WEB_SAVE requests/s.
    let share = if w == "web" { crate::WEB_SAVE } else { 1.0 };
    let strict = |r: f64| r / share / b;
    match w {
        "web" | "write" => Some(Bound {
            strict: strict(rows("floor-write")?),
            bare: if w == "web" { rows("floor-web").map(|r| r / b) } else { None },
            shared: rows("floor-write-xp").map(strict),
        }),
        "cgi" => {
            let base = find(cells, w, base, p)?;
            let c = find(cells, "floor-cgi-noclose", Kind::Floor, p)?;
            Some(Bound { strict: cgi_cost(base) / cgi_cost(c), bare: None, shared: None })
        }
        _ => None,
    }
}

/// The fastest floor sweep, among those whose longest commit is within `max_ms` if given:
/// (removed/s, batch, longest commit in ms).
fn floor_sweep(cells: &[Cell], max_ms: Option<f64>) -> Option<(f64, String, f64)> {
    cells
        .iter()
        .filter(|c| c.workload.starts_with("floor-sweep-"))
        .filter(|c| max_ms.is_none_or(|m| ms(c.hist.max_ns) <= m))
        .map(|c| (c.rps(), c.workload["floor-sweep-".len()..].to_string(), ms(c.hist.max_ns)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The floor column of the targets table, and what the floor says of the target: above the
/// strict bound (out of reach on redb), or above what bare redb with group commit reached.
fn bound_text(min: f64, bound: Option<Bound>) -> (String, &'static str) {
    let Some(b) = bound else { return ("—".into(), "") };
    let mut text = format!("≤ {:.2}×", b.strict);
    if let Some(bare) = b.bare {
        text = format!("{bare:.2}× bare redb with group commit; {text} with loads free");
    }
    if let Some(x) = b.shared {
        let _ = write!(text, "; one commit for all processes: ≤ {x:.2}×");
    }
    let verdict = if b.strict < min && b.shared.is_some_and(|x| x >= min) {
        "above the per-process floor"
    } else if b.strict < min {
        "above the floor"
    } else if b.bare.is_some_and(|r| r < min) {
        "above bare redb"
    } else {
        ""
    };
    (text, verdict)
}

fn targets(o: &Opts, cells: &[Cell]) -> String {
    // (target, measured, met, redb floor's bounds, what they say of the target)
    let mut rows: Vec<(String, String, bool, String, &str)> = Vec::new();
    let mut ratio_target = |w: &str, base: Kind, min: f64| {
        for &p in &o.procs {
            if let Some(r) = ratio(cells, w, base, p) {
                let (bound, above) = bound_text(min, floor_bound(cells, w, base, p));
                rows.push((
                    format!("`{w}` P={p}: sessiondb-multi ≥ {min}× {}", base.name()),
                    format!("{r:.2}×"),
                    r >= min,
                    bound,
                    above,
                ));
            }
        }
    };
    ratio_target("web", Kind::Tower, 2.0);
    ratio_target("web", Kind::SqlFull, 1.5);
    ratio_target("read", Kind::Tower, 2.0);
    ratio_target("read", Kind::SqlFull, 1.0);
    ratio_target("write", Kind::SqlFull, 1.5);
    ratio_target("cgi", Kind::SqlFull, 1.0);
    // The rate target alone is out of reach if no batch size reached it, however long its
    // commits; the best rate within the latency target is shown beside.
    let (fastest, within) = (floor_sweep(cells, None), floor_sweep(cells, Some(50.0)));
    for &p in &o.procs {
        if let Some(c) = find(cells, "sweep", Kind::Multi, p) {
            let (n, s) = c.swept.unwrap_or((0, f64::NAN));
            let rate = n as f64 / s;
            let (bound, above) = match &fastest {
                Some((r, batch, longest)) => {
                    let above = if *r < 100_000.0 { "above the floor" } else { "" };
                    let within = within.as_ref().map_or_else(
                        || "no batch size kept its commits within 50 ms".to_string(),
                        |(w, b, _)| {
                            format!("≤ {w:.0}/s with commits within 50 ms (batches of {b})")
                        },
                    );
                    let text = format!(
                        "≤ {r:.0}/s (batches of {batch}, commits up to {longest:.0} ms); {within}"
                    );
                    (text, above)
                }
                None => ("—".into(), ""),
            };
            rows.push((
                format!("`sweep` P={p}: ≥ 100k removed/s"),
                format!("{rate:.0}/s"),
                rate >= 100_000.0,
                bound,
                above,
            ));
            let worst = ms(c.hist.max_ns);
            rows.push((
                format!("`sweep` P={p}: worst `web` request ≤ 50 ms"),
                format!("{worst:.1} ms"),
                worst <= 50.0,
                "—".into(),
                "",
            ));
        }
    }
    let scale: Vec<&Cell> = cells.iter().filter(|c| c.workload.starts_with("scale-")).collect();
    let big = scale.iter().map(|c| c.sessions).max().unwrap_or(0);
    for w in ["scale-read", "scale-web"] {
        for &p in &o.procs {
            let a =
                scale.iter().find(|c| c.workload == w && c.procs == p && c.sessions == o.sessions);
            let b = scale.iter().find(|c| c.workload == w && c.procs == p && c.sessions == big);
            if let (Some(a), Some(b)) = (a, b) {
                let r = b.rps() / a.rps();
                rows.push((
                    format!("`{}` P={p}: {big} within 25% of {}", &w[6..], o.sessions),
                    format!("{r:.2}"),
                    r >= 0.75,
                    "—".into(),
                    "",
                ));
            }
        }
    }
    if let Some(hwm) = scale.iter().filter(|c| c.sessions == big).map(|c| c.hwm_kb).max() {
        let mib = hwm as f64 / 1024.0;
        rows.push((
            format!("peak RSS per worker at {big} sessions ≤ 64 MiB"),
            format!("{mib:.1} MiB"),
            mib <= 64.0,
            "—".into(),
            "",
        ));
    }
    let mut s = String::from(
        "#### Targets (issue 6)\n\n\"redb floor\": the most any store on redb `MultiWriter` could \
         reach in this run (`floor.rs`). \"above the floor\": the target is out of reach for any \
         store on redb; \"above the per-process floor\": out of reach unless one commit holds \
         the writes of several processes; \"above bare redb\": above what redb alone, with a \
         group commit, reached (not a bound).\n\n\
         | target | measured | met | redb floor | |\n|---|---|---|---|---|\n",
    );
    for (t, m, ok, bound, above) in rows {
        let met = if ok { "yes" } else { "**no**" };
        let _ = writeln!(s, "| {t} | {m} | {met} | {bound} | {above} |");
    }
    s.push('\n');
    s
}

/// Grouped bars of sessiondb-multi ÷ each baseline, per workload and P, on a log scale.
fn svg(o: &Opts, cells: &[Cell]) -> String {
    let workloads: Vec<&str> = ["read", "web", "write", "churn", "cgi"]
        .into_iter()
        .filter(|w| cells.iter().any(|c| c.workload == *w))
        .collect();
    let groups: Vec<(&str, usize)> =
        workloads.iter().flat_map(|w| o.procs.iter().map(move |p| (*w, *p))).collect();
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
                    r#"<rect x="{:.1}" y="{ytop:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{w} P={p} vs {}: {v:.2}×</title></rect>"#,
                    x + bi as f64 * bar_w,
                    h.max(0.5),
                    colors[bi],
                    base.name()
                );
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">P={p}</text>"#,
            x + bar_w * 1.5,
            top + plot_h + 16.0
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
        r#"<text x="{left}" y="{:.0}" fill="gray">P worker processes × {} threads, {} sessions of {} B, {} s per cell; BENCHMARKS.md has the numbers and the machine.</text>"#,
        height - 10.0,
        o.threads,
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
