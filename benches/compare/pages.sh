#!/usr/bin/env bash
# Pages and syncs per save (issue 17): traces N single-operation commits of each kind on a
# preloaded sessiondb-multi store (100,000 sessions, src/bin/pages.rs) and prints a markdown
# table of what each commit wrote and synced to the database file.
#
#   benches/compare/pages.sh [N] [OPS]          # default 200, all five kinds
#
# Environment: SESSIONS (100000); SYNC_BASE, SYNC_SCATTERED, SYNC_ADJACENT: the sync-cost
# model, in ms. Each sync of a commit flushes the pages written since the previous one; they
# form runs of adjacent pages. Modelled cost of that sync = SYNC_BASE + SYNC_SCATTERED per run
# (its first page) + SYNC_ADJACENT per further page of a run; a commit's cost is the sum over
# its syncs. Defaults 0.09, 0.068, 0.0033: least-squares fits of `sync_probe 300 200` and
# `sync_probe 300 300` on this machine's disk (2026-12-02 14:39 UTC: a one-page sync 0.16 ms,
# 16 scattered pages 1.23–1.25 ms, 64 adjacent pages 0.35–0.38 ms). The preloaded template is cached in $TMPDIR under the git tree hash of src/, so a
# change to the library (its file format) makes a new one.
set -euo pipefail
cd "$(dirname "$0")"
N="${1:-200}"
OPS="${2:-create save-append save-evict save-session-only touch}"
SESSIONS="${SESSIONS:-100000}"
TMP="${TMPDIR:-/tmp}"
command -v strace >/dev/null || { echo "pages.sh: strace is missing (apt-get install -y strace)" >&2; exit 1; }
cargo build --release --quiet --bin pages
BIN=./target/release/pages
TREE="$(git rev-parse --short HEAD:src 2>/dev/null || echo nogit)$(git diff --quiet HEAD -- ../../src 2>/dev/null || echo -dirty)"
TPL="$TMP/sessiondb-pages-$TREE-$SESSIONS.redb"
if [[ ! -f "$TPL.keys" ]]; then
  echo "pages.sh: preloading $SESSIONS sessions into $TPL" >&2
  start=$(date +%s)
  "$BIN" prepare "$TPL" "$SESSIONS"
  echo "pages.sh: preloaded in $(( $(date +%s) - start )) s, file $(du -m "$TPL" | cut -f1) MiB" >&2
fi
WORK="$TMP/sessiondb-pages-work.redb"
TRACES="$TMP/sessiondb-pages-traces"
mkdir -p "$TRACES"
echo "- sessiondb commit $(git rev-parse --short HEAD) (src/ last changed in $(git log -1 --format=%h -- ../../src))$(git diff --quiet HEAD -- ../../src || echo ', src modified'), $SESSIONS sessions, $N commits per kind, $(date -u '+%Y-%m-%d %H:%M UTC')"
for op in $OPS; do
  rm -rf "$WORK" "$WORK.locks"
  cp "$TPL" "$WORK"
  sync "$WORK"
  strace -f -y -s 16 -e trace=pwrite64,pwritev,pwritev2,write,fdatasync,fsync \
    -o "$TRACES/$op.trace" "$BIN" run "$WORK" "$TPL.keys" "$op" "$N" 2>/dev/null \
    > "$TRACES/$op.stats"
done
rm -rf "$WORK" "$WORK.locks"
python3 - "$TRACES" "$(realpath -m "$WORK")" $OPS <<'EOF'
import os, re, sys
traces, db, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
base = float(os.environ.get("SYNC_BASE", "0.09"))
scat = float(os.environ.get("SYNC_SCATTERED", "0.068"))
adj = float(os.environ.get("SYNC_ADJACENT", "0.0033"))
PAGE = 4096
line_re = re.compile(r'^(?:\[pid\s+)?(\d+)\]?\s+(.*)$')
call_re = re.compile(r'^(\w+)\((\d+)<([^>]*)>(.*)\)\s+=\s+(-?\d+)')
def calls(path):
    """Yields (name, fd_path, args, result), joining <unfinished ...> with its resumption."""
    pending = {}
    for raw in open(path, errors="replace"):
        m = line_re.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, rest = m.groups()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        r = re.match(r'^<\.\.\. (\w+) resumed>(.*)$', rest)
        if r:
            rest = pending.pop(pid, r.group(1) + "(") + r.group(2)
        c = call_re.match(rest)
        if c:
            yield c.group(1), c.group(3), c.group(4), int(c.group(5))
print()
print(f"| op | commits | pwrite calls per commit | bytes written per commit | fdatasync+fsync per commit | distinct 4 KiB pages per commit | scattered pages per commit | modelled sync ms per commit |")
print("|---|---|---|---|---|---|---|---|")
for op in ops:
    stats = dict(kv.split("=") for kv in open(f"{traces}/{op}.stats").read().split())
    commits = int(stats["commits"])
    state = "before"
    windows = []  # one per operation: [writes, bytes, syncs, pages:set, modelled ms, unsynced:set]
    other = [0, 0, 0]  # writes, bytes, syncs to other files (not the markers)
    for name, fd, args, ret in calls(f"{traces}/{op}.trace"):
        if name == "write" and '"@@' in args:
            if '"@@BEGIN' in args:
                state = "in"
            elif '"@@OP' in args and state == "in":
                windows.append([0, 0, 0, set(), 0.0, set()])
            elif '"@@END' in args:
                state = "after"
            continue
        if state != "in" or not windows:
            continue
        w = windows[-1]
        if fd != db:
            if ret >= 0 and not fd.startswith(("pipe:", "socket:", "/dev/")):
                i = 2 if name in ("fdatasync", "fsync") else 0
                other[i] += 1
                other[1] += ret if i == 0 else 0
            continue
        if ret < 0:
            continue
        if name in ("fdatasync", "fsync"):
            w[2] += 1
            runs = sum(1 for p in w[5] if p - 1 not in w[5])
            w[4] += base + runs * scat + (len(w[5]) - runs) * adj
            w[5] = set()
        elif name in ("pwrite64", "pwritev", "pwritev2"):
            offset = int(args.rsplit(",", 2 if name == "pwritev2" else 1)[-1 if name != "pwritev2" else -2].strip())
            w[0] += 1
            w[1] += ret
            pages = range(offset // PAGE, (offset + max(ret, 1) - 1) // PAGE + 1)
            w[3].update(pages)
            w[5].update(pages)
        elif name == "write":
            w[0] += 1  # no offset: counted, not placed
            w[1] += ret
    n = max(commits, 1)
    pw = sum(w[0] for w in windows)
    by = sum(w[1] for w in windows)
    sy = sum(w[2] for w in windows)
    pages = sum(len(w[3]) for w in windows)
    scattered = sum(sum(1 for p in w[3] if p - 1 not in w[3] and p + 1 not in w[3]) for w in windows)
    cost = sum(w[4] for w in windows) / n
    note = f" ({len(windows)} ops, {stats['operations']} operations)" if len(windows) != commits else ""
    print(f"| `{op}` | {commits}{note} | {pw/n:.1f} | {by/n/1024:.1f} KiB | {sy/n:.2f} | {pages/n:.1f} | {scattered/n:.1f} | {cost:.2f} |")
    if any(other):
        print(f"| `{op}`: other files | | {other[0]/n:.1f} | {other[1]/n/1024:.1f} KiB | {other[2]/n:.2f} | | | |")
print()
print(f"A page is scattered when neither neighbour was written in the same commit. Modelled sync cost: each sync costs {base} ms + {scat} ms per run of adjacent pages written since the previous sync + {adj} ms per further page of a run. Only writes and syncs of the database file count (an 'other files' row shows any others).")
EOF
