#!/usr/bin/env bash
# User-space instructions per keep-alive request, counted by callgrind: a measure of the
# request path that does not move with the load on this shared machine (req/s moves by
# ±15% from one run to the next here; this count by well under 1%), for comparing a change
# with the commit before it. It counts what the worker's threads execute outside the
# kernel (the event loop, the Python thread, libpython, libc), not system calls or waits.
#
# Usage: Benchmarks/instructions/run.sh [REQUESTS]   (default 2000 per bundle)
# Prints one line per bundle: hello (Samples/hello.py, the native handler) and hello_wsgi
# (Samples/wsgi_hello.py through isapi.wsgi), served with --workers 0 --threads 1 and
# --inline-budget 50 (callgrind runs code about 50 times slower, so that the handlers that
# run on the event loop natively do so here too, every time) and --busy-poll 0 (the one
# client waits for each response, and a loop's polls while it waits would count as the
# request's: about 7,000 instructions); LOADER_ARGS adds options
# (LOADER_ARGS=--no-inline: every handler on the Python thread); BROWSER=1 also sends the
# 14 fields a browser sends besides Host (Benchmarks/bench.py's BROWSER_FIELDS).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
requests=${1:-2000}
work=$(mktemp -d /tmp/frost-instructions.XXXXXX)
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

cd "$repo"
bash Scripts/setup.sh >/dev/null  # what building frost needs, as for the tests
bash Scripts/install-missing.sh "instructions benchmark" valgrind curl
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
bin=$(Scripts/build-release.sh --show-bin-path)

port=18190
for spec in hello hello_wsgi; do
    "$bin/frost" build "Bundles/$spec.toml" --dist "$work/dist" --quiet
    out="$work/callgrind.$spec"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$work/dist/$spec/_$spec" --listen "127.0.0.1:$port" --workers 0 --threads 1 --no-access-log --inline-budget 50 --busy-poll 0 ${LOADER_ARGS:-} \
        >"$work/valgrind.$spec.log" 2>&1 &
    server=$!
    for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.5; done
    # The counts are zeroed after the first requests (imports, caches, the connection's
    # set-up) and dumped after exactly REQUESTS more on the same keep-alive connection.
    /usr/bin/python3 - "$port" "$requests" "$server" "$here/.." <<'PY'
import os, socket, subprocess, sys
port, count, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = socket.create_connection(("127.0.0.1", port))
# BROWSER=1: also the fields a browser sends (Chrome's for a page), as the benchmark's
# hello-browser scenario sends them.
fields = b""
if os.environ.get("BROWSER") == "1":
    sys.path.insert(0, sys.argv[4])
    from bench import BROWSER_FIELDS
    fields = b"".join(f"{name}: {value}\r\n".encode() for name, value in BROWSER_FIELDS)
request = b"GET / HTTP/1.1\r\nHost: bench\r\n" + fields + b"\r\n"

def exchange():
    connection.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head

for _ in range(200):
    exchange()
subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
for _ in range(count):
    exchange()
subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)  # writes $out.1
PY
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    server=
    total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
    echo "$spec: $((total / requests)) instructions per request ($requests requests)"
    port=$((port + 1))
done
