#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other, one job each:
#
#   bash fuzz/run.sh SECONDS [TARGET...]
#
# Without TARGETs: records, model, parse, dump and damaged_writes (what CI runs). FUZZ_SEED=N
# fixes libFuzzer's seed, so that a run replays the same inputs (CI uses it: a smoke must not
# fail at random on a new redb bug the dice happened to find; the long runs without it are where
# those are found). Crash inputs and what became of them: fuzz/regressions/README.md.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
# Works from any directory. Each target reads its checked-in seeds (fuzz/seeds/<target>/) and
# its working corpus (fuzz/corpus/<target>/, where new inputs go, gitignored); a crash input
# lands in fuzz/artifacts/<target>/ and the full log in fuzz/target/run-logs/<target>.log.
# Prints, per target, the wall and CPU seconds, executions, coverage, panics caught inside the
# API (see fuzz_targets/common/mod.rs) and whether it crashed. Exits 1 if any target crashed.
set -uo pipefail

usage="usage: bash fuzz/run.sh SECONDS [TARGET...]"
secs="${1:?$usage}"
shift
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir/.." || exit 2
# cargo-fuzz builds under fuzz/target (gitignored), whatever the caller's target dir.
unset CARGO_TARGET_DIR

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(records model parse dump damaged_writes) # grouped by sanitizer
# Input sizes: records and parse are short texts; model is an operation list; dump is a whole
# redb file (the seed files are 36 to 60 KiB).
declare -A max_len=([records]=4096 [parse]=4096 [model]=8192 [dump]=98304 [damaged_writes]=98304)
# AddressSanitizer where it is cheap (parse) or where redb's unsafe code reads damaged pages
# (dump). Not for records: cheap inputs, many of them (decoding allocates at most four times
# the input since issue 19, see src/format/codec.rs, so ASan would now be affordable). Not for model: its simulated disks are
# large allocations copied often, and sessiondb itself forbids unsafe code.
declare -A sanitizer=([records]=none [parse]=address [model]=none [dump]=address
    [damaged_writes]=address)
# dump: no leak detection. When redb panics on a damaged page while the store closes the file,
# the unwinding leaks a few bytes (fuzz/regressions/dump-leak-after-redb-panic.*): known, and
# not what this target looks for.
# The damaged-file targets may ask for gigabytes: redb sizes a buffer by a page order read from
# the damaged file (fuzz/regressions/dump-oom-huge-page-order.redb); the memory is zeroed and
# mostly never touched. Allow 8 GiB per allocation and 4 GiB of RSS before calling it a crash.
declare -A extra=([records]="" [parse]="" [model]=""
    [dump]="-detect_leaks=0 -malloc_limit_mb=8192 -rss_limit_mb=4096"
    [damaged_writes]="-detect_leaks=0 -malloc_limit_mb=8192 -rss_limit_mb=4096")
# No leak report at exit either for the targets on damaged files: a store that met a damaged
# file leaks its read-write handle on purpose (src/store/shared.rs, `Core`'s Drop), and redb leaks
# a panic message when it panics while closing one. (damaged_writes and model run the store on a
# `FaultyDisk` they discard after each input, so the leaked handles keep no file images.)
declare -A asan=([records]="" [parse]="" [model]="" [dump]="detect_leaks=0"
    [damaged_writes]="detect_leaks=0")
# How long one fuzzing process runs: damaged_writes is restarted every 20 s. A store that met a
# damaged file leaks its redb handle on drop rather than risk closing it (src/store/shared.rs),
# and with it what redb holds for that file (its cache, its dirty pages, buffers sized by the
# damaged header): about 30 KB per input on average and up to 380 KB for some, 3 GB of RSS
# after 100,000 inputs in one process (docs/reliability.md, Fuzzing). model every 300 s: its
# stores that met an injected I/O error leak their handles too (not the simulated disks, which
# it discards): about 87 KB per such store (measured the same before and after issue 16 with a
# probe that opens 3,000 stores and fails one write in each), so the rate depends on how many
# inputs of the corpus meet an error: 6 KB per input at `da95fb8`, up to 48 KB per input on the
# corpus of a 2026-12-02 run, which passed the 2 GB RSS limit after 154 s; hence 60-s slices.
# dump every 300 s: its RSS grows by about 1.5 KB per input (not found yet; records and parse
# stay flat).
declare -A slice=([records]=86400 [parse]=86400 [model]=60 [dump]=300 [damaged_writes]=20)
# Each target's checked-in seeds; damaged_writes starts from the dump seeds.
declare -A seeds=([records]=records [parse]=parse [model]=model [dump]=dump [damaged_writes]=dump)

# A store that met a damaged file leaks its read-write handle on drop (src/store/shared.rs,
# `Core`'s Drop). The targets run such stores on simulated disks (no descriptor), but a higher
# limit costs nothing.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

logs="$fuzz_dir/target/run-logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "unknown target $t" >&2; exit 2; }
    echo "== fuzz $t: building"
    if ! cargo +nightly fuzz build -O -s "${sanitizer[$t]}" "$t" >"$logs/$t.build.log" 2>&1; then
        tail -n 30 "$logs/$t.build.log"
        echo "fuzz $t: BUILD FAILED (log: $logs/$t.build.log)"
        failed+=("$t (build)")
        continue
    fi
    mkdir -p "$fuzz_dir/corpus/$t" "$fuzz_dir/artifacts/$t"
    echo "== fuzz $t: ${secs} s"
    start=$(date +%s)
    # CPU time of the fuzzer (the children of this shell, measured around the one run).
    read -r u0 s0 < <(awk '{ print $14 + $16, $15 + $17 }' /proc/$$/stat)
    # In slices of at most ${slice[$t]} s, each a fresh process on the same corpus, until SECONDS
    # are used up or a slice fails.
    : >"$logs/$t.log"
    status=0
    left=$secs
    while [ "$status" -eq 0 ] && [ "$left" -gt 0 ]; do
        run=$(( left < ${slice[$t]} ? left : ${slice[$t]} ))
        ASAN_OPTIONS="${asan[$t]}" cargo +nightly fuzz run -O -s "${sanitizer[$t]}" "$t" "$fuzz_dir/corpus/$t" "$fuzz_dir/seeds/${seeds[$t]}" -- \
            -max_total_time="$run" -max_len="${max_len[$t]}" -rss_limit_mb=2048 -timeout=60 \
            -print_final_stats=1 ${FUZZ_SEED:+-seed="$FUZZ_SEED"} ${extra[$t]} >>"$logs/$t.log" 2>&1
        status=$?
        left=$(( secs - ($(date +%s) - start) ))
    done
    read -r u1 s1 < <(awk '{ print $14 + $16, $15 + $17 }' /proc/$$/stat)
    wall=$(( $(date +%s) - start ))
    ticks=$(getconf CLK_TCK)
    cpu=$(awk -v a="$u1" -v b="$s1" -v c="$u0" -v d="$s0" -v t="$ticks" \
        'BEGIN { printf "%.1f", (a + b - c - d) / t }')
    execs=$(awk '/stat::number_of_executed_units:/ { n += $2 } END { print n }' "$logs/$t.log")
    last=$(grep -E '^#[0-9]+.*(cov|ft):' "$logs/$t.log" | tail -n 1)
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$last")
    panics=$(sed -nE 's/^sessiondb-fuzz panic at (.*) \(first time\).*/\1/p' "$logs/$t.log" | sort -u | wc -l)
    line="fuzz $t: ${wall} s wall, ${cpu} s CPU, ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, ${panics} distinct caught panic location(s)"
    if [ "$status" -ne 0 ]; then
        artifact=$(grep -oE "Test unit written to [^ ]+" "$logs/$t.log" | tail -n 1 | cut -d' ' -f5)
        line="$line: CRASHED (exit $status; input ${artifact:-?}; log $logs/$t.log)"
        grep -E -m 20 'panicked at|ERROR: |sessiondb-fuzz panic at|SUMMARY' "$logs/$t.log" | sed 's/^/    /'
        failed+=("$t")
    else
        line="$line: no crash"
    fi
    echo "$line"
    summary+=("$line")
done

echo "== fuzz summary (${secs} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: no crashes"
