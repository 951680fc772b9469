#!/usr/bin/env bash
# Load test of authenticated status queries against a release build of klingwatch-mock.
# Usage: crates/klingwatch-mock/bench/status-query.sh [DURATION] [CONNECTIONS]
# Needs: wrk, python3, curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION=${1:-10s}
CONNS=${2:-64}
cargo build --release -q -p klingwatch-mock --bin klingwatch-mock
BIN=target/release/klingwatch-mock
OUT=$(mktemp)
"$BIN" --port 0 --time-scale 0 >"$OUT" 2>/dev/null &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; rm -f "$OUT"' EXIT
for _ in $(seq 50); do grep -q listening "$OUT" && break; sleep 0.1; done
URL=$(sed -n 's/^klingwatch-mock listening on //p' "$OUT")
# A token exactly like the official PyJWT sample (HS256, {iss,exp,nbf}).
TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
now = int(time.time())
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
p = b(json.dumps({"iss": "klingwatch-test-ak", "exp": now + 1800, "nbf": now - 5}, separators=(",", ":")).encode())
s = b(hmac.new(b"klingwatch-test-sk", h + b"." + p, hashlib.sha256).digest())
print((h + b"." + p + b"." + s).decode())
PY
)
TASK=$(curl -s -X POST "$URL/v1/images/generations" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"prompt":"benchmark","n":2}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["task_id"])')
echo "server $URL, task $TASK"
wrk -t1 -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer $TOKEN" "$URL/v1/images/generations/$TASK"
echo "server RSS after the run: $(ps -o rss= -p $PID) KiB"
