//! What a durable commit's `fdatasync` costs on this machine's disk, by how many 4 KiB pages it
//! flushes and where they lie: scattered over a large file (as redb's copy-on-write pages are)
//! or next to each other (as a write-ahead log appends them). No database involved.
//!
//! `cargo run --release --bin sync_probe [FILE_MIB] [ROUNDS]` (default 300 MiB, 200 rounds).
//! It fills a file of FILE_MIB in a temporary directory (so every block is allocated), then
//! for k in 1, 2, 4, ... 64, and each placement, runs ROUNDS rounds of: write k pages with
//! `pwrite`, one `fdatasync`. It prints the mean milliseconds per round, alternating the two
//! placements so that drift hits both.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Xorshift64: a page number below `pages`.
fn next(state: &mut u64, pages: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % pages
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().map_or(300, |a| a.parse().expect("FILE_MIB: a size in MiB"));
    let rounds: u32 = args.next().map_or(200, |a| a.parse().expect("ROUNDS: a count"));
    let dir = tempfile::tempdir()?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("p"))?;
    let chunk = vec![1u8; 1 << 20];
    for i in 0..mib {
        file.write_all_at(&chunk, i << 20)?;
    }
    file.sync_all()?;
    let pages = (mib << 20) / 4096;
    let page = [2u8; 4096];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    println!("sync_probe: {mib} MiB file, {rounds} rounds of (k pages written, one fdatasync)");
    println!("{:>3} {:>16} {:>16}", "k", "scattered ms", "adjacent ms");
    for k in [1u64, 2, 4, 8, 16, 32, 64] {
        let (mut scattered, mut adjacent) = (0.0, 0.0);
        for round in 0..2 * rounds {
            let spread = round % 2 == 0;
            let base = next(&mut rng, pages - k);
            let t = Instant::now();
            for i in 0..k {
                let at = if spread { next(&mut rng, pages) } else { base + i };
                file.write_all_at(&page, at * 4096)?;
            }
            file.sync_data()?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if spread { scattered += ms } else { adjacent += ms }
        }
        let n = f64::from(rounds);
        println!("{k:>3} {:>16.3} {:>16.3}", scattered / n, adjacent / n);
    }
    Ok(())
}
