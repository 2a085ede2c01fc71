"""Frost against the fastest Python servers and nginx, scenario by scenario, in one run.

Run through Benchmarks/run (which installs what this needs). Every server serves the same
bytes with 2 workers; wrk (-t1) loads one server at a time, round after round; the figure
reported for a server is the median over the rounds of its requests per second divided by
nginx's serving the same bytes as a static file in the same round.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")


class Server:
    """A server under test: a command started in its own process group, on its own port."""

    def __init__(self, name, port, command, cwd=None, env=None):
        self.name, self.port, self.command, self.cwd, self.env = name, port, command, cwd, env
        self.process = None

    def start(self, logs):
        log = open(os.path.join(logs, f"{self.name}.log"), "w")
        environment = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=environment, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, path="/", timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited with {self.process.returncode} (see its log)")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"bench: {self.name} did not answer on port {self.port} within {timeout} s")

    def stop(self):
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


UPLOAD_BYTES = 10 << 20


def wrk(port, path, connections, seconds, script=None):
    """Requests per second and the 99th percentile latency (ms) of one load run."""
    extra = ["-s", script] if script else []
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    latency = None
    if p99:
        value, unit = float(p99.group(1)), p99.group(2)
        latency = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return (float(rps.group(1)) if rps and not errors else 0.0), latency


def upload_script(work):
    """A wrk script that POSTs UPLOAD_BYTES with every request."""
    path = os.path.join(work, "upload.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\n'
                f'wrk.body = string.rep("u", {UPLOAD_BYTES})\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


# The fields Chrome sends for a page, besides Host (wrk adds that): most requests carry
# about this many, and most of these values are longer than a short string.
BROWSER_FIELDS = [
    ("Connection", "keep-alive"),
    ("sec-ch-ua", '"Chromium";v="130", "Google Chrome";v="130", "Not?A_Brand";v="99"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Linux"'),
    ("Upgrade-Insecure-Requests", "1"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("Sec-Fetch-Site", "none"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-User", "?1"),
    ("Sec-Fetch-Dest", "document"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-GB,en;q=0.9"),
    ("Cookie", "session=4f2a9c1e8b7d6a5f3e2c1b0a9f8e7d6c; theme=dark"),
]


def browser_script(work):
    """A wrk script that sends BROWSER_FIELDS with every request."""
    path = os.path.join(work, "browser.lua")
    with open(path, "w") as f:
        for name, value in BROWSER_FIELDS:
            f.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    return path


def resident_kib(parent=None, group=None):
    """RSS (KiB) by pid of the processes whose parent is `parent` or whose process group
    is `group`, from /proc."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command: state, ppid, pgrp, ...
            if int(fields[1]) != parent and int(fields[2]) != group:
                continue
            with open(f"/proc/{entry}/status") as f:
                result[int(entry)] = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return result


def largest_rss_mib(server):
    """The largest resident set among the server's processes (its process group, led by
    the server), MiB."""
    return max(resident_kib(group=server.process.pid).values(), default=0) / 1024


class IdleConnections:
    """`count` keep-alive connections that each made one request and then stay idle."""

    def __init__(self, port, count):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < count + 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
        self.sockets = []
        selector = selectors.DefaultSelector()
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(request)
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ)
            self.sockets.append(connection)
        pending, deadline = set(self.sockets), time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(1):
                if key.fileobj.recv(65536):  # a response (small: it arrives whole)
                    pending.discard(key.fileobj)
                    selector.unregister(key.fileobj)
        selector.close()
        self.answered = count - len(pending)

    def close(self):
        for connection in self.sockets:
            connection.close()


def nginx_server(work, port):
    root = os.path.join(work, "static")
    os.makedirs(root, exist_ok=True)
    os.chmod(work, 0o755)  # nginx's workers run as another user
    for name, body in (("hello.txt", b"Hello, world!\n"), ("64k", b"x" * 65536), ("1m", b"x" * 1048576)):
        with open(os.path.join(root, name), "wb") as f:
            f.write(body)
    config = os.path.join(work, "nginx.conf")
    with open(config, "w") as f:
        f.write(f"""worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {work}/nginx-body;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {root};
        location = / {{ try_files /hello.txt =404; }}
        location = /flask {{ default_type text/html; try_files /flask.html =404; }}
    }}
}}
""")
    return Server("nginx static", port, ["nginx", "-c", config, "-e", os.path.join(work, "nginx-error.log")])


def python_servers(venv, base, app_dir, module, names):
    """The Python peers serving `module` (e.g. "bench_wsgi:app")."""
    python = os.path.join(venv, "bin", "python")
    name, attribute = module.split(":")
    bjoern = ("import bjoern, os, sys; sys.path.insert(0, %r); from %s import %s as app; "
              "bjoern.listen(app, '127.0.0.1', int(sys.argv[1]), reuse_port=True); "
              "os.fork() or None; bjoern.run()") % (app_dir, name, attribute)
    fastpysgi = ("import fastpysgi, sys; sys.path.insert(0, %r); from %s import %s as app; "
                 "fastpysgi.run(wsgi_app=app, host='127.0.0.1', port=int(sys.argv[1]), workers=2)") % (app_dir, name, attribute)
    peers = {
        # --backlog: granian admits at most backlog/workers connections per worker, 512 by
        # default, too few for the 5,000 idle connections of idle-5000.
        "granian": lambda port: [os.path.join(venv, "bin", "granian"), "--interface", "wsgi", "--workers", "2",
                                 "--backlog", "8192", "--host", "127.0.0.1", "--port", str(port), "--no-ws",
                                 "--log-level", "warning", module],
        "bjoern": lambda port: [python, "-c", bjoern, str(port)],
        "fastpysgi": lambda port: [python, "-c", fastpysgi, str(port)],
        "gunicorn gthread": lambda port: [os.path.join(venv, "bin", "gunicorn"), "--workers", "2", "--worker-class", "gthread",
                                          "--threads", "4", "--bind", f"127.0.0.1:{port}", "--log-level", "warning", module],
    }
    return [Server(peer, port, peers[peer](port), cwd=app_dir)
            for port, peer in zip(range(base, base + len(names)), names)]


SCENARIOS = [
    # name, title, path, connections, servers (by name), nginx path
    ("hello-c32", "hello, 32 connections", "/", 32,
     ["frost", "frost wsgi", "granian", "bjoern", "fastpysgi", "gunicorn gthread"], "/"),
    ("hello-c256", "hello, 256 connections", "/", 256,
     ["frost", "frost wsgi", "granian", "bjoern", "fastpysgi", "gunicorn gthread"], "/"),
    ("hello-browser", "hello, a browser's request (15 fields), 32 connections", "/", 32,
     ["frost", "frost wsgi", "granian", "bjoern", "fastpysgi", "gunicorn gthread"], "/"),
    ("response-64k", "64 KiB response", "/64k", 32, ["frost", "frost wsgi", "granian", "gunicorn gthread"], "/64k"),
    ("response-1m", "1 MiB response", "/1m", 32, ["frost", "frost wsgi", "granian", "gunicorn gthread"], "/1m"),
    ("flask-page", "Flask page (template render)", "/", 32, ["frost flask", "granian flask", "gunicorn flask"], "/flask"),
    ("upload-10m", "10 MiB upload read by the application", "/upload", 8,
     ["frost", "frost wsgi", "granian", "gunicorn gthread"], "/upload"),
]
# Served while IDLE_COUNT idle keep-alive connections are open; compared with each
# server's own hello-c32 figure of the same round.
IDLE = ("idle-5000", "hello, 32 connections while 5,000 idle keep-alive connections are open", "/", 32,
        ["frost", "frost wsgi", "granian"])
IDLE_COUNT = 5000
QUICK = [("hello-c32", "hello, 32 connections", "/", 32, ["frost", "frost wsgi", "granian", "bjoern"], "/")]


def machine():
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python {platform.python_version()}"


def chart(path, title, rows, reference="nginx serving the same bytes as a static file"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [row["server"] for row in rows]
    ratios = [row["ratio"] for row in rows]
    colours = ["#1f77b4" if name.startswith("frost") else "#999999" for name in names]
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows)))
    axis.barh(names[::-1], ratios[::-1], color=colours[::-1])
    axis.axvline(1.0, color="black", linewidth=0.8)
    for index, ratio in enumerate(ratios[::-1]):
        axis.text(ratio, index, f" {ratio:.2f}×", va="center")
    axis.set_xlabel(f"requests per second ÷ {reference} (median)")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--venv", required=True)
    parser.add_argument("--dist", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable; hello-c32 comes "
                        "along with idle-5000); results are printed, not written")
    options = parser.parse_args()
    scenarios = QUICK if options.quick else SCENARIOS
    if options.only:
        scenarios = [s for s in SCENARIOS if s[0] in options.only or (s[0] == "hello-c32" and IDLE[0] in options.only)]
        options.quick = True  # printed only
        with_idle = IDLE[0] in options.only
    else:
        with_idle = not options.quick
    rounds, seconds = (1, 3) if options.quick and not options.only else (options.rounds, min(options.seconds, 15))
    logs = os.path.join(options.work, "logs")
    os.makedirs(logs, exist_ok=True)

    frost = lambda name, port: [os.path.join(options.dist, name, "_" + name), "--listen", f"127.0.0.1:{port}",
                                "--workers", "2", "--no-access-log"]
    servers = {
        "nginx static": nginx_server(options.work, 18100),
        "frost": Server("frost", 18101, frost("bench_isapi", 18101)),
        "frost wsgi": Server("frost wsgi", 18102, frost("wsgi_bench", 18102)),
    }
    needed = {name for scenario in scenarios for name in scenario[4]}
    for server in python_servers(options.venv, 18110, APPS, "bench_wsgi:app",
                                 [n for n in ("granian", "bjoern", "fastpysgi", "gunicorn gthread") if n in needed]):
        servers[server.name] = server
    if "frost flask" in needed:
        servers["frost flask"] = Server("frost flask", 18103, frost("flask_bench", 18103))
        for server in python_servers(options.venv, 18120, APPS, "flask_page:app", ["granian", "gunicorn gthread"]):
            server.name = server.name.split()[0] + " flask"
            servers[server.name] = server
    running = [server for name, server in servers.items() if name == "nginx static" or name in needed]

    def stop_all(*_):
        for server in running:
            server.stop()
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        for server in running:
            server.start(logs)
        for server in running:
            server.wait_ready("/" if server.name != "nginx static" else "/64k")
        if "frost flask" in needed:  # nginx serves the page's bytes as a file
            with urllib.request.urlopen(f"http://127.0.0.1:{servers['frost flask'].port}/") as response:
                page = response.read()
            with open(os.path.join(options.work, "static", "flask.html"), "wb") as f:
                f.write(page)

        # Every server gets the same unmeasured warm-up (lazily built state, page faults,
        # caches), so the first round measures what the others do.
        for server in running:
            wrk(server.port, "/" if server.name != "nginx static" else "/64k", 32, 2)

        results = {scenario[0]: {} for scenario in scenarios}
        idle = {}
        script = upload_script(options.work)
        browser = browser_script(options.work)
        for round_number in range(1, rounds + 1):
            for key, title, path, connections, names, nginx_path in scenarios:
                uploading = key == "upload-10m"
                fields = browser if key == "hello-browser" else None
                if uploading:
                    # No static file is the same work as reading an upload: the ratio is to granian's.
                    base, _ = wrk(servers["granian"].port, path, connections, seconds, script)
                    print(f"round {round_number} {key}: granian {base:.0f} req/s", flush=True)
                else:
                    base, _ = wrk(servers["nginx static"].port, nginx_path, connections, seconds, fields)
                    print(f"round {round_number} {key}: nginx static {base:.0f} req/s", flush=True)
                for name in names:
                    rps, p99 = wrk(servers[name].port, path, connections, seconds, script if uploading else fields)
                    ratio = rps / base if base else 0.0
                    run = {"rps": rps, "p99": p99, "ratio": ratio, "nginx": base}
                    if uploading:
                        run["rss"] = largest_rss_mib(servers[name])
                    results[key].setdefault(name, []).append(run)
                    print(f"round {round_number} {key}: {name} {rps:.0f} req/s ({ratio:.2f}× {'granian' if uploading else 'nginx'}), "
                          f"p99 {p99 if p99 is not None else '?'} ms" + (f", RSS {run['rss']:.0f} MiB" if uploading else ""),
                          flush=True)
            if with_idle:
                for name in IDLE[4]:
                    held = IdleConnections(servers[name].port, IDLE_COUNT)
                    try:
                        rps, p99 = wrk(servers[name].port, IDLE[2], IDLE[3], seconds)
                    finally:
                        held.close()
                    alone = results["hello-c32"][name][-1]["rps"]
                    ratio = rps / alone if alone else 0.0
                    idle.setdefault(name, []).append({"rps": rps, "p99": p99, "ratio": ratio, "alone": alone,
                                                      "answered": held.answered})
                    print(f"round {round_number} {IDLE[0]}: {name} {rps:.0f} req/s with {held.answered} idle connections "
                          f"({ratio:.2f}× without), p99 {p99 if p99 is not None else '?'} ms", flush=True)
    finally:
        stop_all()

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = [f"# Benchmark results\n", f"{stamp}; {machine()}; wrk -t1, {rounds} rounds of {seconds} s, medians; "
               "2 workers per server, access logs off. Ratio: requests per second ÷ nginx serving the same bytes "
               "as a static file in the same round.\n"]
    for key, title, path, connections, names, nginx_path in scenarios:
        rows = []
        for name in names:
            runs = results[key][name]
            p99s = [run["p99"] for run in runs if run["p99"] is not None]
            rows.append({"server": name, "ratio": statistics.median(run["ratio"] for run in runs),
                         "rps": statistics.median(run["rps"] for run in runs),
                         "p99": statistics.median(p99s) if p99s else None})
        rows.sort(key=lambda row: -row["ratio"])
        nginx = statistics.median(run["nginx"] for run in results[key][names[0]])
        uploading = key == "upload-10m"
        method = "POST" if uploading else "GET"
        if uploading:
            table = [f"## {title} (`{method} {path}`, {connections} connections; ratios to granian)\n",
                     "| server | × granian | req/s | p99 ms | largest RSS MiB |", "|---|---:|---:|---:|---:|"]
        else:
            table = [f"## {title} (`{method} {path}`, {connections} connections)\n",
                     "| server | × nginx | req/s | p99 ms |", "|---|---:|---:|---:|",
                     f"| nginx static | 1.00 | {nginx:.0f} | |"]
        for row in rows:
            p99 = "" if row["p99"] is None else f"{row['p99']:.2f}"
            ratio = f"{row['ratio']:.2f}" if row["ratio"] >= 0.1 else f"{row['ratio']:.3f}"
            rss = ""
            if uploading:
                rss = f" {statistics.median(run['rss'] for run in results[key][row['server']]):.0f} |"
            table.append(f"| {row['server']} | {ratio} | {row['rps']:.0f} | {p99} |{rss}")
        print("\n".join(table) + "\n")
        if not options.quick:
            os.makedirs(options.results, exist_ok=True)
            with open(os.path.join(options.results, f"{key}.md"), "w") as f:
                f.write(f"{stamp}; {machine()}\n\n" + "\n".join(table) + "\n")
            chart(os.path.join(options.results, f"{key}.png"), title, rows,
                  *(["granian's in the same round"] if uploading else []))
            summary += ["\n".join(table), f"\n![{title}]({key}.png)\n"]
    if idle:
        key, title, path, connections, names = IDLE
        table = [f"## {title} (`GET {path}`, {connections} connections)\n",
                 "| server | × without them | req/s | req/s without | p99 ms |", "|---|---:|---:|---:|---:|"]
        for name in names:
            runs = idle[name]
            p99s = [run["p99"] for run in runs if run["p99"] is not None]
            p99 = f"{statistics.median(p99s):.2f}" if p99s else ""
            table.append(f"| {name} | {statistics.median(run['ratio'] for run in runs):.2f} | "
                         f"{statistics.median(run['rps'] for run in runs):.0f} | "
                         f"{statistics.median(run['alone'] for run in runs):.0f} | {p99} |")
        print("\n".join(table) + "\n")
        if not options.quick:
            with open(os.path.join(options.results, f"{key}.md"), "w") as f:
                f.write(f"{stamp}; {machine()}\n\n" + "\n".join(table) + "\n")
            summary += ["\n".join(table) + "\n"]
    if not options.quick:
        with open(os.path.join(options.results, "README.md"), "w") as f:
            f.write("\n".join(summary) + "\n")
        with open(os.path.join(options.results, "results.json"), "w") as f:
            json.dump({"date": stamp, "machine": machine(), "rounds": rounds, "seconds": seconds, "runs": results,
                       "idle": idle}, f, indent=1)


if __name__ == "__main__":
    main()
