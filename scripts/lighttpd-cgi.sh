#!/usr/bin/env bash
# examples/cgi_counter under a real web server: lighttpd with mod_cgi on 127.0.0.1, checked
# with curl and a cookie jar. Exits non-zero if any check fails.
#
#   bash scripts/lighttpd-cgi.sh
#   REDIS=1 bash scripts/lighttpd-cgi.sh                             # sessions on Redis
#   SESSIONDB_URL=redis://127.0.0.1:6379 bash scripts/lighttpd-cgi.sh # on a server of yours
#
# - Installs lighttpd and curl with apt-get if they are missing (as root, or through sudo).
#   Set NO_INSTALL=1 to fail instead. Note: on a machine with systemd, installing the Debian
#   package also starts its system service on port 80; this script never uses that one.
# - Builds the program with `cargo build --release --example cgi_counter`, unless
#   CGI_COUNTER_BIN names one already built (tests/cgi.rs passes its own).
# - Runs lighttpd in the foreground, in the background of this script, on a free port of
#   127.0.0.1 only, with a temporary document root holding the program as counter.cgi and a
#   temporary session file (SESSIONDB_PATH, passed by mod_setenv). Everything is removed at
#   the end, and the server stopped, whatever happens. KEEP=1 keeps the directory.
# - Sessions on Redis instead of the file: REDIS=1 starts a redis-server of its own (installed
#   with apt-get like lighttpd if missing) on a free port of 127.0.0.1, in the temporary
#   directory, nothing kept on disk, stopped at the end whatever happens; SESSIONDB_URL=URL
#   (redis://host:port or redis+cluster://host1:port1,...) uses that server or Cluster instead.
#   The program gets SESSIONDB_URL (and no SESSIONDB_PATH) through mod_setenv, and is built
#   with `--features redis`; the same checks run. The clean-up observation below is the file's
#   and is skipped (Redis removes expired sessions by their keys' TTLs).
# - Last, it prints an observation (not a check): requests timed while a clean-up is due on a
#   file of expired sessions, the response complete well before the CGI process exits after
#   its share of the sweep (SWEEP_SESSIONS, default 500, sets how many sessions).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }

# ---- where the sessions are: the file, a redis-server started here, or SESSIONDB_URL
redis_url="${SESSIONDB_URL:-}"
start_redis=no
if [ -z "$redis_url" ] && [ "${REDIS:-0}" = 1 ]; then start_redis=yes; fi

# ---- lighttpd and curl
lighttpd_bin() { command -v lighttpd || { [ -x /usr/sbin/lighttpd ] && echo /usr/sbin/lighttpd; }; }
missing=()
lighttpd_bin >/dev/null || missing+=(lighttpd)
command -v curl >/dev/null || missing+=(curl)
if [ "$start_redis" = yes ]; then command -v redis-server >/dev/null || missing+=(redis-server); fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "${NO_INSTALL:-0}" = 1 ]; then
        echo "missing: ${missing[*]} (NO_INSTALL=1)" >&2
        exit 1
    fi
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "missing: ${missing[*]}, and not root and no sudo to install them" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    ${sudo[@]+"${sudo[@]}"} apt-get update
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
LIGHTTPD="$(lighttpd_bin)"
"$LIGHTTPD" -v

# ---- the program
if [ -n "${CGI_COUNTER_BIN:-}" ]; then
    bin="$CGI_COUNTER_BIN"
else
    features=()
    if [ -n "$redis_url" ] || [ "$start_redis" = yes ]; then features=(--features redis); fi
    say "cargo build --release --example cgi_counter --example dump ${features[*]+${features[*]}}"
    cargo build --release --example cgi_counter --example dump ${features[@]+"${features[@]}"}
    bin="$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/cgi_counter"
fi
[ -x "$bin" ] || { echo "no program at $bin" >&2; exit 1; }

# ---- the server
tmp="$(mktemp -d)"
pid=""
redis_pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
mkdir "$tmp/www"
cp "$bin" "$tmp/www/counter.cgi"
db="$tmp/sessions.redb"

# Whether a Redis server answers PING on 127.0.0.1:$1 (bash's /dev/tcp: no redis-cli needed).
redis_pong() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        read -r -t 2 reply <&3 || exit 1
        [ "${reply%$'\r'}" = "+PONG" ]
    ) 2>/dev/null
}
if [ "$start_redis" = yes ]; then
    mkdir -m 700 "$tmp/redis"
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        try=$((20000 + RANDOM % 40000))
        redis_pong "$try" && continue # something answers there already
        redis-server --bind 127.0.0.1 --port "$try" --dir "$tmp/redis" --save "" \
            --appendonly no --logfile "$tmp/redis/redis.log" > /dev/null 2>&1 &
        redis_pid=$!
        for _ in $(seq 50); do
            kill -0 "$redis_pid" 2>/dev/null || break
            if redis_pong "$try"; then redis_url="redis://127.0.0.1:$try"; break; fi
            sleep 0.1
        done
        [ -n "$redis_url" ] && break
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
        cat "$tmp/redis/redis.log" 2>/dev/null || true
    done
    [ -n "$redis_url" ] || { echo "redis-server did not start" >&2; exit 1; }
    say "redis-server (pid $redis_pid) on $redis_url"
fi
if [ -n "$redis_url" ]; then
    sessions_env="\"SESSIONDB_URL\" => \"$redis_url\""
    where="sessions on $redis_url"
else
    sessions_env="\"SESSIONDB_PATH\" => \"$db\""
    where="sessions in $db"
fi

# A free port: pick one, and try another if lighttpd cannot bind it.
port=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    try=$((20000 + RANDOM % 40000))
    # Something already answers there: another port.
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$try/" && continue
    cat > "$tmp/lighttpd.conf" <<EOF
server.modules = ( "mod_setenv", "mod_cgi" )
server.bind = "127.0.0.1"
server.port = $try
server.document-root = "$tmp/www"
server.errorlog = "$tmp/error.log"
cgi.assign = ( ".cgi" => "" )
setenv.add-environment = ( $sessions_env )
EOF
    "$LIGHTTPD" -tt -f "$tmp/lighttpd.conf"
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
    cat "$tmp/lighttpd.out" "$tmp/error.log" 2>/dev/null || true
done
[ -n "$port" ] || { echo "lighttpd did not start" >&2; exit 1; }
url="http://127.0.0.1:$port/counter.cgi"
say "lighttpd (pid $pid) serves $url, $where"

# ---- the checks
failures=0
check() { # what expected actual
    if [ "$2" = "$3" ]; then
        echo "ok   $1: $3"
    else
        echo "FAIL $1: expected '$2', got '$3'"
        failures=$((failures + 1))
    fi
}
# get JAR QUERY: one request through the jar; headers in $tmp/h, body in $tmp/b.
get() {
    curl -s -S -m 30 -c "$1" -b "$1" -D "$tmp/h" -o "$tmp/b" "$url${2:+?$2}"
}
# The text of <span id="$1"> in the last body.
marker() { sed -n "s/.*id=\"$1\">\([^<]*\)<.*/\1/p" "$tmp/b"; }
status() { head -n 1 "$tmp/h" | tr -d '\r' | cut -d' ' -f2; }
header() { grep -i "^$1:" "$tmp/h" | head -n 1 | cut -d' ' -f2- | tr -d '\r' || true; }
# The session cookie's value in a jar (HttpOnly lines start with #HttpOnly_).
jar_cookie() { awk '$6 == "sessiondb" { print $7 }' "$1"; }

jar="$tmp/jar"
touch "$jar"
for n in 1 2 3; do
    get "$jar" ""
    check "request $n: status" 200 "$(status)"
    check "request $n: counter" "$n" "$(marker counter)"
    check "request $n: state" "$((n - 1))" "$(marker state)"
done
check "headers: Cache-Control" "no-store" "$(header Cache-Control)"
check "headers: Content-Type" "text/html; charset=utf-8" "$(header Content-Type)"
first_cookie="$(jar_cookie "$jar")"
check "a session cookie is in the jar" yes "$([ -n "$first_cookie" ] && echo yes || echo no)"

get "$jar" "state=0"
check "?state=0 (the first state): state" 0 "$(marker state)"
check "?state=0: its counter" 1 "$(marker counter)"
check "?state=0: does not count" 3 "$(marker total)"
get "$jar" "state=1"
check "?state=1: its counter" 2 "$(marker counter)"
get "$jar" ""
check "counting again: counter" 4 "$(marker counter)"

# post JAR FORM: a form POST through the jar, as the page's buttons send it.
post() {
    curl -s -S -m 30 -c "$1" -b "$1" -D "$tmp/h" -o "$tmp/b" -d "$2" "$url"
}
get "$jar" "login=1"
check "GET ?login=1 does not log in: user" none "$(marker user)"
check "GET ?login=1 only counts: counter" 5 "$(marker counter)"
post "$jar" "action=login"
check "login: counter" 6 "$(marker counter)"
check "login: user" demo "$(marker user)"
login_cookie="$(jar_cookie "$jar")"
check "login: the cookie changed" yes "$([ "$login_cookie" != "$first_cookie" ] && echo yes || echo no)"
check "login: the page shows the new id" "${login_cookie%%.*}" "$(marker session)"

# The pre-login cookie (planted by someone else, say) does not follow the log-in. For the
# 10 s in which a request with it may have raced the log-in it gets 503 and no cookie (a
# racing request of the same browser must not replace the new cookie); later, a new session.
curl -s -S -m 30 -b "sessiondb=$first_cookie" -D "$tmp/h" -o "$tmp/b" "$url"
check "old cookie, just after the log-in: status" 503 "$(status)"
check "old cookie, just after the log-in: no cookie" "" "$(header Set-Cookie)"
sleep 10.5
curl -s -S -m 30 -b "sessiondb=$first_cookie" -D "$tmp/h" -o "$tmp/b" "$url"
check "old cookie, 10 s later: outcome" Revoked "$(marker outcome)"
check "old cookie, 10 s later: user" none "$(marker user)"
check "old cookie, 10 s later: a new session" 1 "$(marker counter)"

# A cross-site form post is refused.
curl -s -S -m 30 -b "$jar" -H "Origin: http://evil.example" -D "$tmp/h" -o "$tmp/b" \
    -d action=logout "$url"
check "cross-site POST: status" 403 "$(status)"

# A cookie that was never issued (well-formed, forged) gets a fresh session, never its id.
forged="$(printf 'A%.0s' $(seq 32)).$(printf 'B%.0s' $(seq 43))"
curl -s -S -m 30 -b "sessiondb=$forged" -D "$tmp/h" -o "$tmp/b" "$url"
check "forged cookie: outcome" Unknown "$(marker outcome)"
check "forged cookie: a new session" 1 "$(marker counter)"
fresh="$(header Set-Cookie | sed -n 's/^sessiondb=\([^;]*\);.*/\1/p')"
check "forged cookie: a new cookie, not the forged id" yes \
    "$([ -n "$fresh" ] && [ "${fresh%%.*}" != "${forged%%.*}" ] && echo yes || echo no)"

get "$jar" "state=abc"
check "?state=abc: shows the latest" 6 "$(marker counter)"
check "?state=abc: does not count" 6 "$(marker total)"

post "$jar" "action=logout"
check "logout: session" none "$(marker session)"
check "logout: Max-Age=0" yes "$(header Set-Cookie | grep -q 'Max-Age=0' && echo yes || echo no)"
check "logout: the jar has no session cookie" "" "$(jar_cookie "$jar")"
get "$jar" ""
check "after logout: outcome" New "$(marker outcome)"
check "after logout: counter" 1 "$(marker counter)"

# One browser, 16 requests at once (parallel XHRs): every one answered 200, each counted once.
say "one browser, 16 requests at once"
requests=()
for i in $(seq 16); do
    curl -s -S -m 30 -b "$jar" -o "$tmp/par$i" -w '%{http_code}\n' "$url" > "$tmp/code$i" &
    requests+=($!)
done
wait "${requests[@]}"
ok=0
for i in $(seq 16); do [ "$(cat "$tmp/code$i")" = 200 ] && ok=$((ok + 1)); done
check "16 at once: answered 200" 16 "$ok"
get "$jar" "state=0"
check "16 at once: every one counted" 17 "$(marker total)"

# Several browsers at once, each with its own jar.
say "5 browsers x 5 requests at once"
browsers=()
for b in 1 2 3 4 5; do
    (
        for _ in 1 2 3 4 5; do
            curl -s -S -m 30 -c "$tmp/jar$b" -b "$tmp/jar$b" -o "$tmp/body$b" "$url"
        done
    ) &
    browsers+=($!)
done
wait "${browsers[@]}"
for b in 1 2 3 4 5; do
    check "browser $b: counter" 5 "$(sed -n 's/.*id="counter">\([^<]*\)<.*/\1/p' "$tmp/body$b")"
done

# An observation, not a check (timings on a shared machine): the response is complete before
# the clean-up the demo does after it. A second script, sweep.cgi, runs the same program on its
# own file with a 1 s idle timeout and no grace, started by a wrapper that hands it the
# response pipe, passes the server's SIGTERM on to it, and records when it exits. SWEEP_SESSIONS (default 500) cookie-less requests
# fill that file with sessions (clean-up off); 1.5 s later all have expired, the clean-up is
# turned on (1 s interval, so one is due) and a few requests are timed: curl's time to the
# whole response against the time the CGI process exited, after its batch of the sweep.
# The checks' verdict; exits.
finish() {
    if [ "$failures" -ne 0 ]; then
        echo "== lighttpd output and error log"
        cat "$tmp/lighttpd.out" "$tmp/error.log" 2>/dev/null || true
        echo "$failures checks failed"
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
if [ -n "$redis_url" ]; then
    say "the after-response clean-up observation is the file's: skipped on Redis"
    finish
fi

say "the response completes before the after-response clean-up (observation)"
sweep_db="$tmp/sweep/sessions.redb"
mkdir -m 700 "$tmp/sweep"
echo off > "$tmp/sweep/interval"
DATE="$(command -v date)"
CAT="$(command -v cat)"
cat > "$tmp/www/sweep.cgi" <<EOF
#!/bin/sh
export SESSIONDB_PATH="$sweep_db" SESSIONDB_IDLE_TIMEOUT=1s SESSIONDB_GRACE=0
SESSIONDB_CLEANUP_INTERVAL="\$($CAT "$tmp/sweep/interval")"
export SESSIONDB_CLEANUP_INTERVAL
# The program gets the response pipe as its standard output; this shell lets go of it, so
# the server sees the response end when the program closes it, not when this shell exits.
# lighttpd signals this shell (SIGTERM) once the response has ended: passed on to the program,
# as if the server had sent it there.
trap 'kill -TERM "\$child" 2>/dev/null; termed=yes' TERM
exec 3>&1 4<&0 >/dev/null
"$tmp/www/counter.cgi" <&4 >&3 3>&- 4<&- &
child=\$!
exec 3>&- 4<&-
while :; do
    wait "\$child"; status=\$?
    [ "\$status" -gt 128 ] && kill -0 "\$child" 2>/dev/null && continue
    break
done
echo "\$($DATE +%s%N) \$status \${termed:-no}" > "$tmp/sweep/ended"
EOF
chmod 755 "$tmp/www/sweep.cgi"
sweep_url="http://127.0.0.1:$port/sweep.cgi"
dump_bin="$(dirname "$bin")/dump"
sessions_in() {
    if [ -x "$dump_bin" ]; then
        n=$("$dump_bin" --json --summary "$1" 2>/dev/null | grep -o '"sessions":[0-9]*' | cut -d: -f2 || true)
        # A process killed mid-use leaves the file for the next writer to repair; until then
        # a read-only open (the dump) is refused.
        echo "${n:-? (dump cannot open it read-only now)}"
    else
        echo "? (no dump beside the program)"
    fi
}
seq "${SWEEP_SESSIONS:-500}" | xargs -P 4 -I{} curl -s -o /dev/null -m 30 "$sweep_url"
echo "   $(sessions_in "$sweep_db") sessions in the file; waiting 1.5 s for them to expire"
sleep 1.5
echo 1s > "$tmp/sweep/interval"
for n in 1 2 3 4 5; do
    rm -f "$tmp/sweep/ended"
    began=$("$DATE" +%s%N)
    code=$(curl -s -o /dev/null -m 30 -w '%{http_code}' "$sweep_url")
    answered=$("$DATE" +%s%N)
    for _ in $(seq 100); do [ -s "$tmp/sweep/ended" ] && break; sleep 0.01; done
    read -r ended status termed < "$tmp/sweep/ended" 2>/dev/null ||
        { ended=$answered status="?" termed="?"; }
    printf '   request %d: %s; response complete after %d ms, the CGI process exited after %d ms (status %s, SIGTERM from the server: %s); %s sessions left\n' \
        "$n" "$code" $(((answered - began) / 1000000)) $(((ended - began) / 1000000)) \
        "$status" "$termed" "$(sessions_in "$sweep_db")"
done

finish
