#!/usr/bin/env bash
# Measures whether response times tell known from unknown accounts (SECURITY.md #20):
# login (unknown address vs wrong password, and vs a locked account with the right password)
# and password/forgot (unknown vs known), then verify-first register (taken vs free), 200
# interleaved samples per case against the release
# server on SQLite, with medians and a Mann-Whitney U test. Figures for the issue notes; never
# a pass/fail test.
#
# Usage: scripts/enumeration.sh [samples-per-case]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES="${1:-200}"
cargo build --release -p authkit-server >/dev/null
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
origin="http://localhost:$port"
cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

(
  cd "$work"
  AUTHKIT_LISTEN_ADDR="127.0.0.1:$port" AUTHKIT_PUBLIC_URL="$origin" \
  AUTHKIT_DATABASE_URL="sqlite://$work/enum.db?mode=rwc" AUTHKIT_LOG=warn \
  AUTHKIT_REGISTRATION_MODE=instant AUTHKIT_TRUSTED_PROXIES=127.0.0.1/32 \
  AUTHKIT_MAIL__NOTIFY_NEW_SIGN_IN=false AUTHKIT_DEV_MAILBOX_DIR="$work/mail" \
    exec "$OLDPWD/target/release/authkit-server"
) &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/api/v1/health/live" >/dev/null 2>&1 && break; sleep 0.1; done

python3 scripts/enumeration_timing.py "$port" "$origin" "$SAMPLES"

# Phase 2: the same database in verify-first mode (the default), register taken vs free.
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
(
  cd "$work"
  AUTHKIT_LISTEN_ADDR="127.0.0.1:$port" AUTHKIT_PUBLIC_URL="$origin" \
  AUTHKIT_DATABASE_URL="sqlite://$work/enum.db?mode=rwc" AUTHKIT_LOG=warn \
  AUTHKIT_REGISTRATION_MODE=verify-first AUTHKIT_TRUSTED_PROXIES=127.0.0.1/32 \
  AUTHKIT_DEV_MAILBOX_DIR="$work/mail" \
    exec "$OLDPWD/target/release/authkit-server"
) &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/api/v1/health/live" >/dev/null 2>&1 && break; sleep 0.1; done
python3 scripts/enumeration_timing.py "$port" "$origin" "$SAMPLES" register
