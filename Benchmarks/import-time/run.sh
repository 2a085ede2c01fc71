#!/usr/bin/env bash
# Import time of the same stdlib modules, from the same bytecode, three ways, side by side:
#   mounted    the frost loader, stdlib in the bundle's lib/python3XY.zip (native importer)
#   zipimport  /usr/bin/python3 with CPython's zipimport over that same archive
#   filesystem /usr/bin/python3 with the same .pyc files extracted to a directory
# Usage: Benchmarks/import-time/run.sh [ROUNDS]   (default 15 fresh processes per way)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${1:-15}
python=/usr/bin/python3
work=$(mktemp -d /tmp/frost-import-bench.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

cd "$repo"
bash Scripts/setup.sh >/dev/null  # what building frost needs, as for the tests
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
bin=$(Scripts/build-release.sh --show-bin-path)

stdlib=$($python -I -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
tag=$($python -I -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
dynload=$stdlib/lib-dynload

# The pure-Python stdlib, compiled once with the target interpreter: unchecked-hash .pyc
# next to where the .py was (zipimport layout), sources removed.
$python -I - "$stdlib" "$work/stdlib" <<'PY'
import os, shutil, sys
source, target = sys.argv[1:]
skip = {"test", "idlelib", "tkinter", "lib2to3", "ensurepip", "turtledemo", "site-packages", "dist-packages",
        "__pycache__", "lib-dynload"}
for root, dirs, files in os.walk(source):
    dirs[:] = [d for d in dirs if d not in skip and not d.startswith("config-")]
    for name in files:
        if name.endswith(".py"):
            relative = os.path.relpath(os.path.join(root, name), source)
            os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
            shutil.copy(os.path.join(root, name), os.path.join(target, relative))
PY
$python -I -m compileall -q -b --invalidation-mode unchecked-hash -d "" "$work/stdlib" >/dev/null || true
find "$work/stdlib" -name '*.py' -delete

bundle=$work/dist/importbench
mkdir -p "$bundle/lib" "$work/entry"
cp "$here/timer.py" "$work/entry/importbench.py"
$python -I -m py_compile "$work/entry/importbench.py"
"$bin/frost" archive create "$work/stdlib" -o "$bundle/lib/python$tag.zip" >/dev/null
"$bin/frost" archive create "$work/entry" -o "$bundle/importbench.zip" >/dev/null
ln -s "$dynload" "$bundle/lib/lib-dynload"
cp "$bin/frost-stub" "$bundle/_importbench"

measure() {  # prints one elapsed time per round
    for _ in $(seq "$rounds"); do "$@" | sed -n 's/^IMPORT_SECONDS \([0-9.]*\).*/\1/p'; done
}
timer=$(cat "$here/timer.py")
mounted=$(measure "$bundle/_importbench" --check)
zipimport=$(measure $python -I -S -c "import sys; sys.path[:] = ['$bundle/lib/python$tag.zip', '$dynload']
$timer")
filesystem=$(measure $python -I -S -c "import sys; sys.path[:] = ['$work/stdlib', '$dynload']
$timer")

# Where json came from, to show each way really used its own source.
echo "json came from:"
"$bundle/_importbench" --check | sed -n 's/.*JSON_FROM /  mounted:    /p'
$python -I -S -c "import sys; sys.path[:] = ['$bundle/lib/python$tag.zip', '$dynload']
$timer" | sed -n 's/.*JSON_FROM /  zipimport:  /p'
$python -I -S -c "import sys; sys.path[:] = ['$work/stdlib', '$dynload']
$timer" | sed -n 's/.*JSON_FROM /  filesystem: /p'

$python -I - "$mounted" "$zipimport" "$filesystem" <<'PY'
import statistics, sys
names = ["mounted", "zipimport", "filesystem"]
runs = {n: [float(x) for x in arg.split()] for n, arg in zip(names, sys.argv[1:])}
base = statistics.median(runs["zipimport"])
print(f"\n{'way':<12}{'median ms':>10}{'min ms':>10}{'rounds':>8}{'vs zipimport':>14}")
for n in names:
    m = statistics.median(runs[n])
    print(f"{n:<12}{m * 1000:>10.1f}{min(runs[n]) * 1000:>10.1f}{len(runs[n]):>8}{m / base:>13.2f}x")
PY
