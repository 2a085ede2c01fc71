"""The soak behind Benchmarks/soak: a million requests with a SIGHUP every 100,000.

Segments go round the samples (ISAPI hello, WSGI hello, Flask page); each segment is a wrk
run (-t1 -c16) timed to about 100,000 requests at the sample's warm-up rate, counting every
answer with a status of 400 or more and every socket error. After each segment the sample's master gets SIGHUP and
the next segment of that sample runs on the new generation. A worker's RSS is read at the
end of each segment and compared with its sample's RSS after warm-up.
"""
import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Server, HERE, resident_kib  # noqa: E402

def worker_rss_kib(master_pid):
    """RSS (KiB) of each worker (the master's children), by pid."""
    return resident_kib(parent=master_pid)


def run_segment(port, seconds):
    """One wrk run (-t1 -c16): requests answered, failures (statuses of 400 or more, socket errors), rate."""
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    served = re.search(r"(\d+) requests in", out)
    statuses = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    failures = (int(statuses.group(1)) if statuses else 0) + (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)
    if not served:
        failures += 1
    return (int(served.group(1)) if served else 0), failures, (float(rate.group(1)) if rate else 0.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--dist", required=True)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--segment", type=int, default=100_000)
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    options = parser.parse_args()
    logs = os.path.join(options.work, "logs")
    os.makedirs(logs, exist_ok=True)

    samples = [("isapi hello", "bench_isapi", 18201), ("wsgi hello", "wsgi_bench", 18202), ("flask page", "flask_bench", 18203)]
    servers = {}
    for name, bundle, port in samples:
        servers[name] = Server(name, port, [os.path.join(options.dist, bundle, "_" + bundle), "--listen", f"127.0.0.1:{port}",
                                            "--workers", "2", "--no-access-log"])
        servers[name].start(logs)
    try:
        for server in servers.values():
            server.wait_ready()
        baseline, rates = {}, {}
        for name, server in servers.items():  # warm-up: 5 s each, then the RSS to hold to and the rate
            _, _, rates[name] = run_segment(server.port, 5)
            baseline[name] = max(worker_rss_kib(server.process.pid).values())
        segments, total, failed = [], 0, 0
        index = 0
        # The Flask page is ~15x slower than the hellos: it gets one segment in ten.
        order = ["isapi hello", "wsgi hello", "isapi hello", "wsgi hello", "flask page"]
        while total < options.total:
            name = order[index % len(order)]
            server = servers[name]
            # A segment is timed to about `segment` requests at the sample's warm-up rate.
            count = min(options.segment, options.total - total)
            started = time.monotonic()
            served, errors, rate = run_segment(server.port, max(2, round(count / max(rates[name], 1))))
            rss = worker_rss_kib(server.process.pid)
            growth = max((value - baseline[name]) / baseline[name] for value in rss.values()) if rss else 1.0
            segments.append({"sample": name, "requests": served, "failed": errors, "req_per_s": rate,
                             "seconds": round(time.monotonic() - started, 1), "worker_rss_kib": sorted(rss.values()),
                             "largest_growth_vs_warm": round(growth, 3)})
            print(f"soak: segment {index + 1}: {name}: {served} requests, {errors} failed, {rate:.0f} req/s, "
                  f"worker RSS {sorted(rss.values())} KiB ({growth:+.1%} vs warm {baseline[name]} KiB)", flush=True)
            total += served
            failed += errors
            os.kill(server.process.pid, signal.SIGHUP)  # a new generation for the next segment of this sample
            time.sleep(1.5)
            index += 1
        worst = max(s["largest_growth_vs_warm"] for s in segments)
        verdict = failed == 0 and worst <= 0.10
        summary = {"date": datetime.date.today().isoformat(), "requests": total, "failed": failed,
                   "worst_rss_growth_vs_warm": worst, "warm_rss_kib": baseline, "segments": segments, "passed": verdict}
        os.makedirs(options.results, exist_ok=True)
        with open(os.path.join(options.results, "soak.json"), "w") as f:
            json.dump(summary, f, indent=2)
        print(f"soak: {total} requests, {failed} failed, worst worker RSS {worst:+.1%} vs warm-up: "
              f"{'passed' if verdict else 'FAILED'}")
        sys.exit(0 if verdict else 1)
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
