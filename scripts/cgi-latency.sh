#!/usr/bin/env bash
# Latency of parallel requests of ONE browser (one session cookie) to examples/cgi_counter
# under lighttpd + mod_cgi on 127.0.0.1: a fresh CGI process per request, all of them counting
# on the same session at once (a page with parallel XHRs, several tabs).
#
#   bash scripts/cgi-latency.sh                    # P = 16 and 48, 10 rounds each
#   PARALLEL="16 48" ROUNDS=10 CGI_COUNTER_BIN=path/to/cgi_counter bash scripts/cgi-latency.sh
#
# Each round: a new session (one request), then P requests at once with its cookie (curl, each
# in the background). Per P, over all rounds: how many answered 200, latency p50 / p99 / max
# (curl's time_total, client side), and whether each round's counter is exact (P + 1 = every
# 200 counted once, and nothing else). Needs lighttpd and curl (scripts/lighttpd-cgi.sh
# installs them). Builds the release example unless CGI_COUNTER_BIN names a program.
# SESSIONDB_LOCKLESS_ATTEMPTS, if set, is passed to the program (0: lock every request).
set -euo pipefail
cd "$(dirname "$0")/.."

PARALLEL="${PARALLEL:-16 48}"
ROUNDS="${ROUNDS:-10}"
LIGHTTPD="$(command -v lighttpd || echo /usr/sbin/lighttpd)"
[ -x "$LIGHTTPD" ] || { echo "lighttpd is not installed" >&2; exit 1; }

if [ -n "${CGI_COUNTER_BIN:-}" ]; then
    bin="$CGI_COUNTER_BIN"
else
    cargo build --release --example cgi_counter >&2
    bin="$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/cgi_counter"
fi

tmp="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/www" "$tmp/data"
chmod 700 "$tmp/data"
cp "$bin" "$tmp/www/counter.cgi"
extra=""
if [ -n "${SESSIONDB_LOCKLESS_ATTEMPTS:-}" ]; then
    extra=", \"SESSIONDB_LOCKLESS_ATTEMPTS\" => \"$SESSIONDB_LOCKLESS_ATTEMPTS\""
fi
port=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    try=$((20000 + RANDOM % 40000))
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$try/" && continue
    cat > "$tmp/lighttpd.conf" <<EOF
server.modules = ( "mod_setenv", "mod_cgi" )
server.bind = "127.0.0.1"
server.port = $try
server.document-root = "$tmp/www"
server.errorlog = "$tmp/error.log"
server.max-connections = 1024
cgi.assign = ( ".cgi" => "" )
setenv.add-environment = ( "SESSIONDB_PATH" => "$tmp/data/sessions.redb"$extra )
EOF
    "$LIGHTTPD" -D -f "$tmp/lighttpd.conf" > "$tmp/lighttpd.out" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        if curl -s -o /dev/null "http://127.0.0.1:$try/" && kill -0 "$pid" 2>/dev/null; then
            port=$try
            break
        fi
        sleep 0.1
    done
    [ -n "$port" ] && break
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
done
[ -n "$port" ] || { echo "lighttpd did not start" >&2; exit 1; }
url="http://127.0.0.1:$port/counter.cgi"
echo "lighttpd $("$LIGHTTPD" -v | head -n 1 | cut -d' ' -f1), $(nproc) cores, $bin" >&2

printf '| parallel | rounds | requests | answered 200 | other answers | p50 ms | p99 ms | max ms | rounds with the counter exact |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for p in $PARALLEL; do
    : > "$tmp/all"
    exact=0
    for round in $(seq "$ROUNDS"); do
        jar="$tmp/jar"
        rm -f "$jar"
        curl -s -S -m 30 -c "$jar" -b "$jar" -o /dev/null "$url"
        requests=()
        for i in $(seq "$p"); do
            curl -s -S -m 60 -b "$jar" -o /dev/null -w '%{http_code} %{time_total}\n' "$url" \
                > "$tmp/r$i" 2>/dev/null &
            requests+=($!)
        done
        wait "${requests[@]}" || true
        for i in $(seq "$p"); do cat "$tmp/r$i"; done >> "$tmp/all"
        ok_now="$(for i in $(seq "$p"); do cat "$tmp/r$i"; done | awk '$1 == 200' | wc -l)"
        curl -s -S -m 30 -b "$jar" -o "$tmp/b" "$url?state=0"
        total="$(sed -n 's/.*id="total">\([^<]*\)<.*/\1/p' "$tmp/b")"
        [ "$total" = "$((ok_now + 1))" ] && exact=$((exact + 1))
        echo "P=$p round $round: $ok_now of $p answered 200, counter $total" >&2
    done
    n="$(wc -l < "$tmp/all")"
    ok="$(awk '$1 == 200' "$tmp/all" | wc -l)"
    sort -n -k2 "$tmp/all" | awk -v n="$n" -v p="$p" -v rounds="$ROUNDS" -v ok="$ok" \
        -v exact="$exact" '
        { t[NR] = $2 * 1000 }
        END {
            i50 = int(n * 0.50 + 0.999999); if (i50 < 1) i50 = 1
            i99 = int(n * 0.99 + 0.999999); if (i99 > n) i99 = n
            printf "| %d | %d | %d | %d | %d | %.0f | %.0f | %.0f | %d of %d |\n",
                p, rounds, n, ok, n - ok, t[i50], t[i99], t[n], exact, rounds
        }'
done
