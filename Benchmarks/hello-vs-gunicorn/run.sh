#!/usr/bin/env bash
# Requests per second and latency for Samples/hello.py frozen and served by frost, next to
# gunicorn (1 sync worker) serving the same hello world as WSGI, measured with wrk in one
# run on this machine. Usage: Benchmarks/hello-vs-gunicorn/run.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
seconds=${1:-10}
connections=${2:-16}
work=$(mktemp -d /tmp/frost-vs-gunicorn.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null

cd "$repo"
bash Scripts/setup.sh >/dev/null  # what building frost needs, as for the tests
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
"$(Scripts/build-release.sh --show-bin-path)/frost" build Bundles/hello.toml --dist "$work/dist" --quiet
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check gunicorn

wait_for() { for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.05; done; return 1; }

"$work/dist/hello/_hello" --listen 127.0.0.1:18081 --workers 1 --no-access-log >/dev/null 2>&1 & pids+=($!)
(cd "$here" && exec "$work/venv/bin/gunicorn" --workers 1 --worker-class sync --bind 127.0.0.1:18082 \
    --log-level warning hello_wsgi:app) >/dev/null 2>&1 & pids+=($!)
"$work/dist/hello/_hello" --listen 127.0.0.1:18083 --workers 2 --no-access-log >/dev/null 2>&1 & pids+=($!)
(cd "$here" && exec "$work/venv/bin/gunicorn" --workers 2 --worker-class sync --bind 127.0.0.1:18084 \
    --log-level warning hello_wsgi:app) >/dev/null 2>&1 & pids+=($!)
wait_for 18081; wait_for 18082; wait_for 18083; wait_for 18084

run() {  # name port
    wrk -t2 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$2/" > "$work/$1.txt"
    local rps p99
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$work/$1.txt")
    p99=$(sed -n 's/^ *99% *\(.*\)$/\1/p' "$work/$1.txt")
    printf "%-28s %12s req/s   p99 %s\n" "$1" "$rps" "$p99"
}
echo "wrk: 2 threads, $connections connections, ${seconds}s each, GET / (14-byte body)"
run "frost (1 worker)" 18081
run "gunicorn (1 sync worker)" 18082
run "frost (2 workers)" 18083
run "gunicorn (2 sync workers)" 18084
