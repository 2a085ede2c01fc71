"""Milliseconds from exec to the first HTTP 200 for GET /: first_200.py COMMAND [ARG...]

Runs COMMAND ARG... PORT (a free port is appended) and asks for / every millisecond,
in this process: the clock starts just before the exec and stops when the status line
arrives, so neither the poller's own start nor a coarse poll interval is counted (a
shell loop of curl every 5 ms added 10-30 ms to a server that refuses connections until
it listens, and nothing to one whose socket is bound at once and queues them). The
command's process group is killed afterwards (a master's workers with it), as
Benchmarks/bench.py stops its servers. Prints the milliseconds, or exits 1 when the command exits first or 10 s pass."""
import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main():
    port = free_port()
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    begin = time.monotonic()
    server = subprocess.Popen(sys.argv[1:] + [str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - begin < 10 and server.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                    connection.sendall(request)
                    status = connection.recv(12)
                if status in (b"HTTP/1.1 200", b"HTTP/1.0 200"):
                    print(f"{(time.monotonic() - begin) * 1000:.1f}")
                    return 0
            except OSError:
                pass  # not listening yet
            time.sleep(0.001)
        why = f"it exited with status {server.returncode}" if server.poll() is not None else "not within 10 s"
        print(f"no 200 from {sys.argv[1]}: {why}", file=sys.stderr)
        return 1
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it exited, and nothing of its group is left
        server.wait()


sys.exit(main())
