#!/bin/bash
# py-spy --gil profile of `cnnkit serve RUN --workers 1` under wrk load (c=16, one 28x28 MNIST PNG per POST /predict).
#   bash benchmarks/serve_profile.sh RUN RUNS_DIR OUT_DIR [SOURCE_TREE]
# SOURCE_TREE: serve another checkout of cnnkit (e.g. `git worktree add /tmp/old COMMIT`) for a before/after pair.
# Writes OUT_DIR/profile.txt (py-spy raw: "stack count" lines) and OUT_DIR/wrk.txt. Needs py-spy and wrk.
set -euo pipefail
RUN=$1; RUNS=$(realpath "$2"); OUT=$(realpath -m "$3"); TREE=${4:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH=$(cd "$(dirname "$0")" && pwd); PORT=${PORT:-8795}
mkdir -p "$OUT"
python -c "import sys; sys.path.insert(0, '$BENCH'); from serve_load import multipart, digit_png; \
open('$OUT/body.bin', 'wb').write(multipart(digit_png('${CNNKIT_DATA:-$BENCH/../../shared/data}')))"
boundary=$(python -c "import sys; sys.path.insert(0, '$BENCH'); import serve_load; print(serve_load.BOUNDARY)")
printf 'local f = io.open("%s", "rb"); wrk.body = f:read("*a"); f:close()\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "multipart/form-data; boundary=%s"\n' \
  "$OUT/body.bin" "$boundary" > "$OUT/post.lua"
(cd "$TREE" && exec python -m cnnkit serve "$RUN" --runs-dir "$RUNS" --workers 1 --port "$PORT") > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 90); do curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break; sleep 1; done
WORKER=$(pgrep -f spawn_main -P "$SERVER" | head -1 || true); WORKER=${WORKER:-$SERVER}
wrk -t1 -c16 -d25s -s "$OUT/post.lua" "http://127.0.0.1:$PORT/predict" > "$OUT/wrk.txt" 2>&1 &
sleep 3
py-spy record --gil -r 200 -d 20 -f raw -o "$OUT/profile.txt" -p "$WORKER"
wait %2 || true
grep "Requests/sec" "$OUT/wrk.txt"
