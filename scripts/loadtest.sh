#!/usr/bin/env bash
# Load test of the release server (figures for the issue notes; never a pass/fail test).
#
# Starts authkit-server (release build) on a free loopback port with a throw-away SQLite
# database and development secrets, registers a user, then drives it with wrk (floods) and
# oha (a fixed-rate probe, so that latency is compared under the same offered load):
#   1. GET /api/v1/auth/session with a valid cookie, flooded (through the session layer);
#   2. GET /api/v1/bench/bare, the same body with no session layer in front, flooded, and
#      GET /api/v1/bench/layered, that static body behind the auth layer with the cookie;
#   3. POST /api/v1/auth/login at concurrency 1 (≈ one hash's time);
#   4. the probe alone: GET /api/v1/auth/session at PROBE_QPS → the quiet p99;
#   5. a login storm (wrk) with the same probe running → login/s and the p99 during it;
# and reports requests/s, the session layer's cost per request (1/rps(session) − 1/rps(bare)),
# login throughput against cores ÷ one login's time, and the server's peak RSS (VmHWM).
#
# Usage: scripts/loadtest.sh [seconds-per-run]   (default 10)
# Env:   SERVER_CPUS (default 0) and LOAD_CPUS (default 1) pin server and load generator with
#        taskset so that they do not steal each other's core; CONNS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-10}"
SERVER_CPUS="${SERVER_CPUS:-0}"
LOAD_CPUS="${LOAD_CPUS:-1}"
CONNS="${CONNS:-32}"
PROBE_QPS="${PROBE_QPS:-200}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)"
  (apt-get install -y wrk >/dev/null 2>&1) || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)
fi

if ! command -v oha >/dev/null; then
  echo "installing oha (cargo install oha --locked; a few minutes the first time)"
  cargo install oha --locked >/dev/null 2>&1
fi

cargo build --release -p authkit-server >/dev/null
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
origin="http://localhost:$port"

cleanup() { [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

(
  cd "$work"
  AUTHKIT_LISTEN_ADDR="127.0.0.1:$port" AUTHKIT_PUBLIC_URL="$origin" AUTHKIT_BENCH_ROUTES=true \
  AUTHKIT_DATABASE_URL="sqlite://$work/load.db?mode=rwc" AUTHKIT_LOG=warn \
  AUTHKIT_REGISTRATION_MODE=instant AUTHKIT_RATELIMIT__ENABLED=false \
  AUTHKIT_MAIL__NOTIFY_NEW_SIGN_IN=false AUTHKIT_DEV_MAILBOX_DIR="$work/mail" \
    exec taskset -c "$SERVER_CPUS" "$OLDPWD/target/release/authkit-server"
) &
server_pid=$!
for _ in $(seq 1 100); do curl -fsS "$base/api/v1/health/live" >/dev/null 2>&1 && break; sleep 0.1; done

body='{"email":"load@example.com","password":"correct horse battery staple"}'
cookie="$(curl -fsS -D - -o /dev/null -H 'content-type: application/json' -H "Origin: $origin" \
  -d "$body" "$base/api/v1/auth/register" | tr -d '\r' | sed -n 's/^set-cookie: \(authkit_session=[^;]*\).*/\1/Ip' | head -n1)"
[ -n "$cookie" ] || { echo "registration failed" >&2; exit 1; }

cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "$origin"
LUA

run() { # name, wrk args…
  local name="$1"; shift
  taskset -c "$LOAD_CPUS" wrk --latency "$@" >"$work/$name.txt" 2>&1
}
rps() { awk '/Requests\/sec/ {print $2}' "$work/$1.txt"; }
pct() { awk -v p="$2" '$1==p {print $2}' "$work/$1.txt"; }
non2xx() { awk '/Non-2xx/ {print $5}' "$work/$1.txt"; }

echo "server pid $server_pid on CPU(s) $SERVER_CPUS; load on CPU(s) $LOAD_CPUS; ${DURATION}s per run, $CONNS connections"
run session -t1 -c"$CONNS" -d"${DURATION}s" -H "Cookie: $cookie" "$base/api/v1/auth/session"
run bare    -t1 -c"$CONNS" -d"${DURATION}s" "$base/api/v1/bench/bare"
run layered -t1 -c"$CONNS" -d"${DURATION}s" -H "Cookie: $cookie" "$base/api/v1/bench/layered"
run login1  -t1 -c1 -d"${DURATION}s" -s "$work/login.lua" "$base/api/v1/auth/login"

probe() { # name: GET /session at a fixed rate, JSON summary
  taskset -c "$LOAD_CPUS" oha --no-tui --output-format json -q "$PROBE_QPS" -c 4 -z "${DURATION}s" \
    -H "Cookie: $cookie" "$base/api/v1/auth/session" >"$work/$1.json" 2>/dev/null
}
probe probe_quiet

# Login storm with the probe running at the same time.
run storm -t1 -c"$CONNS" -d"$((DURATION + 4))s" -s "$work/login.lua" "$base/api/v1/auth/login" &
storm_pid=$!
sleep 2
probe probe_storm
wait "$storm_pid"
peak_kib="$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")"
cores="$(taskset -c "$SERVER_CPUS" nproc)"

p99() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["latencyPercentiles"]["p99"], d["statusCodeDistribution"])' "$work/$1.json"; }
read -r quiet_p99 quiet_codes <<<"$(p99 probe_quiet)"
read -r storm_p99 storm_codes <<<"$(p99 probe_storm)"

python3 - "$(rps session)" "$(rps bare)" "$(rps login1)" "$(rps storm)" \
  "${quiet_p99}s" "${storm_p99}s" "$peak_kib" "$cores" \
  "$(non2xx session)" "$(non2xx storm)" "$PROBE_QPS" "$(rps layered)" <<'PY'
import sys
def secs(t):
    t = t or "0s"
    for unit, f in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * f
    return float(t)
s, bare, login1, storm = (float(x or 0) for x in sys.argv[1:5])
p99, p99_storm = secs(sys.argv[5]), secs(sys.argv[6])
peak_mib = int(sys.argv[7] or 0) / 1024
cores = int(sys.argv[8])
errors = [x or "0" for x in sys.argv[9:11]]
probe_qps = sys.argv[11]
layered = float(sys.argv[12] or 0)
hash_time = 1 / login1 if login1 else float("nan")
print(f"GET /session (session layer, cache hit): {s:10.0f} req/s")
print(f"GET /bench/bare (no session layer):      {bare:10.0f} req/s")
print(f"GET /bench/layered (auth layer, static):  {layered:10.0f} req/s")
if s and bare:
    print(f"GET /session − bare, per request:          {(1/s - 1/bare)*1e6:.2f} us   (target <= 5 us; includes the auth service's routing and JSON)")
if layered and bare:
    print(f"auth layer alone (layered − bare):         {(1/layered - 1/bare)*1e6:.2f} us")
print(f"login at concurrency 1:                    {login1:8.1f} req/s  (~{hash_time*1e3:.1f} ms per login)")
print(f"login storm ({cores} core(s)):                 {storm:8.1f} req/s  = {storm*hash_time/cores*100:.0f}% of cores/hash-time (target >= 90%)")
print(f"GET /session p99 at {probe_qps} req/s, quiet:      {p99*1e3:8.2f} ms")
print(f"GET /session p99 at {probe_qps} req/s, in storm:   {p99_storm*1e3:8.2f} ms  = {p99_storm/p99 if p99 else float('nan'):.1f}x the quiet p99 (target <= 3x)")
print(f"server peak RSS (VmHWM):                  {peak_mib:8.1f} MiB (target < 128 MiB)")
print(f"non-2xx responses (session flood, login storm): {', '.join(errors)}")
PY
echo "probe status codes (quiet, storm): $quiet_codes $storm_codes"
