#!/usr/bin/env bash
# The Flask sample frozen by frost and by PyInstaller (one-dir, served by waitress), side
# by side in one run: build time, dist size (bytes, files), and time from exec to the
# first answer; with the hello bundle and the loader against the lean bundles targets.
# Prints the table and writes it to results.md beside this script.
# Usage: Benchmarks/flask-vs-pyinstaller/run.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${1:-10}
python=/usr/bin/python3
work=$(mktemp -d /tmp/frost-vs-pyinstaller.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

cd "$repo"
bash Scripts/setup.sh >/dev/null  # what building frost needs, as for the tests
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
bin=$(Scripts/build-release.sh --show-bin-path)
sample=$repo/Samples/flask_site

ms() { $python -c 'import sys,time; print(int(time.time()*1000))'; }

# frost: the build venv is made once (pip is not what is measured); the bytecode cache
# starts empty, as on a first build.
export FROST_CACHE=$work/frost-cache
"$bin/frost" build Bundles/flask_site.toml --dist "$work/warmup" --quiet
rm -rf "$FROST_CACHE/bytecode" "$FROST_CACHE/stamps"
start=$(ms); "$bin/frost" build Bundles/flask_site.toml --dist "$work/frost" --quiet; frost_build=$(( $(ms) - start ))
start=$(ms); "$bin/frost" build Bundles/flask_site.toml --dist "$work/frost" --quiet; frost_rebuild=$(( $(ms) - start ))

# PyInstaller: its own venv with the same Flask, waitress and PyInstaller.
$python -m venv "$work/pyi-venv"
"$work/pyi-venv/bin/pip" install -q --disable-pip-version-check -r "$sample/requirements.txt" waitress pyinstaller
cp -r "$sample/site_app" "$here/serve_waitress.py" "$work/"
start=$(ms)
(cd "$work" && "$work/pyi-venv/bin/pyinstaller" --onedir --noconfirm --log-level ERROR --distpath "$work/pyi-dist" \
    --workpath "$work/pyi-build" --specpath "$work" --add-data "site_app/templates:site_app/templates" \
    --add-data "site_app/static:site_app/static" serve_waitress.py >/dev/null)
pyi_build=$(( $(ms) - start ))
# The same with the Flask spec's excludes, for a like-for-like size (not timed).
mapfile -t spec_excludes < <($python -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb")).get("excludes", [])))' Bundles/flask_site.toml)
(cd "$work" && "$work/pyi-venv/bin/pyinstaller" --onedir --noconfirm --log-level ERROR --distpath "$work/pyi-dist-excludes" \
    --workpath "$work/pyi-build-excludes" --specpath "$work/excludes" --add-data "$work/site_app/templates:site_app/templates" \
    --add-data "$work/site_app/static:site_app/static" "${spec_excludes[@]/#/--exclude-module=}" serve_waitress.py >/dev/null)
pyi_excludes_bytes=$(du -sb "$work/pyi-dist-excludes/serve_waitress" | cut -f1)

# The hello bundle and the loader, for the lean bundles targets.
"$bin/frost" build Bundles/hello.toml --dist "$work/hello" --json > "$work/hello.json"
hello_bytes=$(du -sb "$work/hello/hello" | cut -f1)
hello_stdlib=$($python -c 'import json, sys; print(json.load(open(sys.argv[1]))["modules"]["stdlib"])' "$work/hello.json")
hello_heavy=$(ls "$work/hello/hello/lib" | grep -E '^lib(crypto|ssl|readline)' | tr '\n' ' ' || true)
loader_bytes=$(stat -c %s "$work/hello/hello/_hello")

frost_dir=$work/frost/flask_site
pyi_dir=$work/pyi-dist/serve_waitress
# Bytes as stored (hard links once, as du counts them) and regular files.
frost_bytes=$(du -sb "$frost_dir" | cut -f1); frost_files=$(find "$frost_dir" -type f | wc -l)
pyi_bytes=$(du -sb "$pyi_dir" | cut -f1); pyi_files=$(find "$pyi_dir" -type f | wc -l)

# Exec to the first HTTP 200 of GET /, timed by first_200.py (polls every 1 ms in-process).
first_http_200() { $python "$here/first_200.py" "$@"; }
pyi_times=(); frost_times=(); single_times=(); unfrozen_times=()
# One start of each first, not counted: the page cache, and the unfrozen app's bytecode.
first_http_200 "$pyi_dir/serve_waitress" >/dev/null
first_http_200 "$work/pyi-venv/bin/python" "$work/serve_waitress.py" >/dev/null
first_http_200 "$here/frost_serve.sh" "$frost_dir/_flask_site" >/dev/null
for _ in $(seq "$rounds"); do
    pyi_times+=("$(first_http_200 "$pyi_dir/serve_waitress")")
    # The same app, not frozen: the venv's python, bytecode cached beside the sources.
    unfrozen_times+=("$(first_http_200 "$work/pyi-venv/bin/python" "$work/serve_waitress.py")")
    frost_times+=("$(first_http_200 "$here/frost_serve.sh" "$frost_dir/_flask_site")")
    single_times+=("$(FROST_WORKERS=0 first_http_200 "$here/frost_serve.sh" "$frost_dir/_flask_site")")
done

$python - "$frost_build" "$frost_rebuild" "$pyi_build" "$frost_bytes" "$frost_files" "$pyi_bytes" "$pyi_files" \
    "${frost_times[*]}" "${pyi_times[*]}" "${single_times[*]}" \
    "$hello_bytes" "$hello_stdlib" "$loader_bytes" "$hello_heavy" "$here/results.md" \
    "$pyi_excludes_bytes" "${spec_excludes[*]}" "${unfrozen_times[*]}" <<'PY'
import datetime, os, platform, statistics, sys
fb, frb, pb, fbytes, ffiles, pbytes, pfiles = map(int, sys.argv[1:8])
ft = [float(x) for x in sys.argv[8].split()]
pt = [float(x) for x in sys.argv[9].split()]
st = [float(x) for x in sys.argv[10].split()]
hello_bytes, hello_stdlib, loader_bytes = map(int, sys.argv[11:14])
hello_heavy, results = sys.argv[14].split(), sys.argv[15]
pxbytes, spec_excludes = int(sys.argv[16]), sys.argv[17].split()
ut = [float(x) for x in sys.argv[18].split()]
print(f"{'':28}{'frost':>14}{'PyInstaller':>14}{'ratio':>8}")
print(f"{'build (s)':28}{fb/1000:>14.1f}{pb/1000:>14.1f}{fb/pb:>8.2f}")
print(f"{'rebuild, no change (s)':28}{frb/1000:>14.1f}{'':>14}")
print(f"{'dist size (MiB)':28}{fbytes/2**20:>14.1f}{pbytes/2**20:>14.1f}{fbytes/pbytes:>8.2f}")
print(f"{'dist files':28}{ffiles:>14}{pfiles:>14}{ffiles/pfiles:>8.2f}")
fm, pm = statistics.median(ft), statistics.median(pt)
print(f"{'exec to first 200 (ms, med)':28}{fm:>14.0f}{pm:>14.0f}{fm/pm:>8.2f}")
sm = statistics.median(st)
print(f"{'  the same, --workers 0':28}{sm:>14.0f}{pm:>14.0f}{sm/pm:>8.2f}")
um = statistics.median(ut)
print(f"{'  unfrozen: python + waitress':28}{um:>14.0f}{pm:>14.0f}{um/pm:>8.2f}")
print("  all: exec to the first HTTP 200 for GET /, polled every 1 ms (frost: its own host, a master and")
print("  one worker, or one process with --workers 0; PyInstaller and unfrozen: waitress, one process)")

# The lean bundles targets, each with what was measured in this run.
mib = lambda n: n / 2**20
rows = [
    ("hello bundle", "≤ 18 MiB", f"{mib(hello_bytes):.1f} MiB", hello_bytes <= 18 * 2**20),
    ("hello: stdlib modules", "≤ 120", str(hello_stdlib), hello_stdlib <= 120),
    ("hello: libcrypto, libssl, readline", "none", " ".join(hello_heavy) or "none", not hello_heavy),
    ("loader, stripped", "≤ 9 MiB", f"{mib(loader_bytes):.1f} MiB", loader_bytes <= 9 * 2**20),
    ("Flask: bytes ÷ PyInstaller one-dir", "≤ 1.2", f"{fbytes / pbytes:.2f}", fbytes <= 1.2 * pbytes),
    ("Flask: files", "fewer", f"{ffiles} vs {pfiles}", ffiles < pfiles),
    ("Flask: payload (all but the loader) ÷ PyInstaller", "≤ 0.8", f"{(fbytes - loader_bytes) / pbytes:.2f}",
     fbytes - loader_bytes <= 0.8 * pbytes),
    ("Flask: exec → first 200 ÷ PyInstaller (master + 1 worker)", "≤ 0.6", f"{fm / pm:.2f}", fm <= 0.6 * pm),
]
lines = [f"# The lean bundles targets, measured\n",
         f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
         f"{platform.platform()}, Python {platform.python_version()}; Benchmarks/flask-vs-pyinstaller/run.sh, "
         f"{len(ft)} start-up rounds, medians.\n",
         "| what | target | measured | met |", "|---|---|---|---|"]
lines += [f"| {what} | {target} | {measured} | {'yes' if met else 'no'} |" for what, target, measured, met in rows]
lines += ["", f"Flask sample: frost {mib(fbytes):.1f} MiB in {ffiles} files (the loader {mib(loader_bytes):.1f} MiB), "
          f"PyInstaller one-dir {mib(pbytes):.1f} MiB in {pfiles} files; exec to the first 200: frost {fm:.0f} ms "
          f"(--workers 0: {sm:.0f} ms), PyInstaller {pm:.0f} ms, the same app unfrozen (the venv's python, "
          f"waitress, bytecode cached: the floor) {um:.0f} ms; builds {fb/1000:.1f} s and {pb/1000:.1f} s.",
          "", f"The Flask spec excludes {', '.join(spec_excludes) or 'nothing'} (optional pulls the site does without); "
          f"PyInstaller with the same `--exclude-module`s: {mib(pxbytes):.1f} MiB, frost {fbytes / pxbytes:.2f}× that, "
          f"its payload {(fbytes - loader_bytes) / pxbytes:.2f}×."]
with open(results, "w") as out:
    out.write("\n".join(lines) + "\n")
print()
print("\n".join(lines[2:]))
print(f"written: {results}")
PY
