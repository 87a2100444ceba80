#!/usr/bin/env bash
# Checks that a default build of sessiondb exports no fault-injection or fuzzing items (issue
# 16): a crate that depends on sessiondb with default features compiles against `Store`, and
# fails to compile against `sessiondb::faults` and `sessiondb::fuzzing`, which only the
# `testing` feature (this crate's tests and fuzz/) turns on.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cat > "$tmp/Cargo.toml" <<TOML
[package]
name = "default-api-check"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
sessiondb = { path = "$repo" }

[patch.crates-io]
redb = { path = "$repo/vendor/redb" }

[workspace]
TOML
cp "$repo/Cargo.lock" "$tmp/Cargo.lock"
export CARGO_TARGET_DIR="$repo/target/default-api"

check() { # $1: the code of main.rs; prints cargo's errors to $tmp/log
    printf '%s\nfn main() {}\n' "$1" > "$tmp/src/main.rs"
    cargo check --quiet --offline --manifest-path "$tmp/Cargo.toml" > "$tmp/log" 2>&1 \
        || cargo check --quiet --manifest-path "$tmp/Cargo.toml" > "$tmp/log" 2>&1
}

if ! check 'use sessiondb::{Engine as _, Store as _};'; then
    cat "$tmp/log"
    echo "default-api: the control (Store, Engine) does not compile" >&2
    exit 1
fi
for item in 'sessiondb::faults' 'sessiondb::fuzzing'; do
    if check "use $item as _;"; then
        echo "default-api: a default build exports $item" >&2
        exit 1
    fi
    grep -q "could not find \`${item#sessiondb::}\` in \`sessiondb\`\|unresolved import \`$item\`" "$tmp/log" || {
        cat "$tmp/log"
        echo "default-api: $item failed for another reason" >&2
        exit 1
    }
    echo "default-api: $item is not exported by a default build (good)"
done
