# Run by each interpreter (the paths come from the environment: sys.argv is not set when
# embedded): imports the Flask sample (Samples/flask_site) from the filesystem, then
# serves the benchmark's Flask page (Benchmarks/apps/flask_page.py, what Benchmarks/run's
# flask-page scenario serves) through Flask's test client; prints the import's
# milliseconds and the page's milliseconds per request.
import os, sys, time
sys.path[:0] = os.environ["WORKLOAD_PATH"].split(":")
begin = time.perf_counter()
import flask_site
imported = time.perf_counter()
from flask_page import app
client = app.test_client()
client.get("/")
renders = int(os.environ.get("WORKLOAD_RENDERS", "1000"))
start = time.perf_counter()
for _ in range(renders):
    assert client.get("/").status_code == 200
done = time.perf_counter()
print(f"{(imported - begin) * 1000:.1f} {(done - start) * 1000 / renders:.4f}")
