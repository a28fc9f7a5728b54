#!/usr/bin/env bash
# Makes sure NATS (with JetStream) and PostgreSQL answer on this machine, for `make up`
# and `make test`: installs them with apt if missing, starts them if not answering, and
# waits (with a deadline) until each one does. Idempotent; needs no systemd.
#
#   NATS        127.0.0.1:4222, JetStream on, store /var/lib/nats-server
#   PostgreSQL  127.0.0.1:5432, user postgres without a password from localhost
#
# NEXYSYNC_SKIP_SERVICES=1 skips all of it (services provided elsewhere, e.g. CI containers).
set -euo pipefail

# The ports and names can be overridden (e.g. to try this script beside running services).
NATS_HOST=127.0.0.1
NATS_PORT=${NATS_PORT:-4222}
NATS_STORE=${NATS_STORE:-/var/lib/nats-server}
NATS_LOG=${NATS_LOG:-/var/log/nats-server.log}
NATS_PIDFILE=${NATS_PIDFILE:-/run/nexysync-nats-$NATS_PORT.pid}
PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
PG_CLUSTER=${PG_CLUSTER:-main}
DEADLINE_S=${NEXYSYNC_SERVICES_DEADLINE_S:-60}

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [[ "${NEXYSYNC_SKIP_SERVICES:-}" == 1 ]]; then
  say "NEXYSYNC_SKIP_SERVICES=1: not checking NATS and PostgreSQL"
  exit 0
fi

# Root for apt and the daemons; sudo when we are not root.
if [[ $EUID -eq 0 ]]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
else
  as_root() { die "'$*' needs root: run as root or install sudo"; }
fi

# Waits until "$@" succeeds, for at most DEADLINE_S seconds, then says "$1".
wait_for() {
  local done_message=$1; shift
  local deadline=$((SECONDS + DEADLINE_S))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  say "$done_message"
}

# --- install what is missing ------------------------------------------------------------

missing=()
[[ -x /usr/sbin/nats-server ]] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  missing+=(postgresql)
fi
if ((${#missing[@]})); then
  say "installing ${missing[*]} (apt)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

# --- NATS with JetStream ----------------------------------------------------------------

# Prints the INFO line a NATS server greets a client with, or fails if none answers.
nats_info() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$NATS_HOST/$NATS_PORT && IFS= read -r -t 2 line <&3 && printf '%s\n' \"\$line\"" 2>/dev/null
}

nats_answers() { nats_info | grep -q '^INFO '; }

if nats_answers; then
  say "NATS answers on $NATS_HOST:$NATS_PORT"
else
  say "starting nats-server with JetStream on $NATS_HOST:$NATS_PORT (log $NATS_LOG)"
  as_root mkdir -p "$NATS_STORE"
  # The pid file tells this server apart from other nats-servers already running.
  as_root start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$NATS_PIDFILE" \
    --exec "$NATS_SERVER" -- \
    -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG"
  wait_for "NATS is up" nats_answers ||
    die "nats-server did not answer on $NATS_HOST:$NATS_PORT within ${DEADLINE_S}s; see $NATS_LOG"
fi
# The greeting says whether JetStream is on; a plain NATS cannot hold the log.
if ! nats_info | grep -q '"jetstream":true'; then
  die "the NATS server on $NATS_HOST:$NATS_PORT runs without JetStream; restart it with -js (e.g. -js -sd $NATS_STORE)"
fi

# --- PostgreSQL -------------------------------------------------------------------------

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

# The newest installed PostgreSQL major version (a fresh install has exactly one).
pg_version() {
  local versions=(/usr/lib/postgresql/*/bin/postgres)
  printf '%s\n' "${versions[@]}" | awk -F/ '{print $5}' | sort -V | tail -n1
}

if pg_ready; then
  say "PostgreSQL answers on $PG_HOST:$PG_PORT"
else
  version=$(pg_version)
  if [[ ! -d "/etc/postgresql/$version/$PG_CLUSTER" ]]; then
    say "creating PostgreSQL cluster $version/$PG_CLUSTER on port $PG_PORT"
    as_root pg_createcluster --port "$PG_PORT" "$version" "$PG_CLUSTER"
  fi
  pg_log="/var/log/postgresql/postgresql-$version-$PG_CLUSTER.log"
  say "starting PostgreSQL $version/$PG_CLUSTER (pg_ctlcluster; it runs as the postgres user)"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start ||
    die "PostgreSQL $version/$PG_CLUSTER did not start; see $pg_log"
  wait_for "PostgreSQL is up" pg_ready ||
    die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${DEADLINE_S}s; see $pg_log"
fi

# The default DATABASE_URL (postgres://postgres@127.0.0.1:5432/nexysync) has no password.
# A fresh Debian cluster asks for one over TCP, so let the postgres user in from this
# machine only, once, and say so.
pg_login() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'select 1' >/dev/null 2>&1; }
if ! pg_login; then
  version=$(pg_version)
  hba="/etc/postgresql/$version/$PG_CLUSTER/pg_hba.conf"
  [[ -f "$hba" ]] || die "cannot log in to PostgreSQL as postgres from $PG_HOST, and $hba does not exist; set DATABASE_URL with a user and password that work"
  say "allowing the postgres user to connect without a password from this machine only ($hba)"
  as_root cp "$hba" "$hba.before-nexysync"
  {
    printf '# added by nexysync scripts/services.sh: passwordless postgres from this machine\n'
    printf 'host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n'
    as_root cat "$hba.before-nexysync"
  } | as_root tee "$hba" >/dev/null
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" reload
  wait_for "PostgreSQL lets postgres in from this machine" pg_login ||
    die "still cannot log in to PostgreSQL as postgres from $PG_HOST; check $hba, or set DATABASE_URL"
fi

say "services ready: NATS nats://$NATS_HOST:$NATS_PORT (JetStream), PostgreSQL postgres://postgres@$PG_HOST:$PG_PORT"
