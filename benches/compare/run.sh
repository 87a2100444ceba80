#!/usr/bin/env bash
# Side-by-side comparison (issues 6 and 17): builds the harness in release and runs every
# workload; results.md ends with the targets tables of issue 17 and issue 6.
#
#   benches/compare/run.sh [SECONDS_PER_CELL]        # default 3
#
# Extra arguments after the first go to the harness (e.g. `--sessions 10000 --big 0`). By
# default `read`, `web`, `write`, `churn` (and the floor's write cells) run the cells P×T
# 1x4,2x4,4x4,1x1,4x1,8x1,16x1 (P processes of T threads; `--cells` changes them), `cgi` at
# P = 1, 2, 4 (`--cgi-procs`), `sweep` at 1x4,2x4,4x4 (`--sweep-cells`) and `scale` (1M
# sessions) at 1x4,2x4,4x4,8x1,16x1 (`--scale-cells`); `--workloads web,write,cgi,floor,scale`
# runs just what issue 17's targets need. The old `--procs 1,2,4 --threads 4` still works.
# The harness prints its estimated run time first (`--estimate` prints only that).
# Redis (issue 18, REDIS.md): `--redis` runs the Redis workloads `redis-read`, `redis-web`
# alone (or add them to a list: `--workloads web,redis-read,redis-web`) on sessiondb-redis,
# tower-redis and redis-bare, against one redis-server the harness starts (`appendonly yes`,
# `--redis-fsync always|everysec`, default everysec; cells `--redis-cells`, default
# 1x4,2x4,4x4,1x1,2x1,4x1). They need redis-server (apt-get install redis-server); nothing
# else does.
# Results go to benches/compare/results/: results.md (the tables, ready for BENCHMARKS.md),
# results.tsv (every cell), compare.svg (the ratio chart), machine.txt (what it ran on).
set -euo pipefail
cd "$(dirname "$0")"
SECS="${1:-3}"
shift || true
OUT="results"
mkdir -p "$OUT"
cargo build --release --quiet
./target/release/sessiondb-compare --secs "$SECS" --estimate "$@"
TMP="${TMPDIR:-/tmp}"
{
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), sessiondb commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- ../../src 2>/dev/null || echo ' (src modified)')"
  echo "- CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); RAM $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- kernel: $(uname -sr)"
  echo "- temp dir: $TMP on $(df -T "$TMP" | awk 'NR==2 {print $1 " (" $2 ")"}')"
  echo "- synced 4 KiB writes (dd oflag=dsync, 500 × 4 KiB): $(dd if=/dev/zero of="$TMP/sessiondb-compare-dd" bs=4k count=500 oflag=dsync 2>&1 | tail -1 | awk '{print $(NF-3), $(NF-2) " for 500 writes"}')"
  rm -f "$TMP/sessiondb-compare-dd"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: benches/compare/run.sh $SECS $*"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
./target/release/sessiondb-compare --secs "$SECS" --dir "$TMP" --out "$OUT" "$@"
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo
echo "Written: $OUT/results.md, $OUT/results.tsv, $OUT/compare.svg, $OUT/machine.txt"
