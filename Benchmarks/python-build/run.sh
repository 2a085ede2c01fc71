#!/usr/bin/env bash
# How fast one CPython version runs the same Python code, by how Debian built it:
# /usr/bin/python3 (libpython linked in statically, built with profile-guided optimization:
# what a venv, gunicorn, granian, waitress and `python app.py` run on), and the shared
# libpython3.11.so (position-independent, without that optimization: what frost's loader
# and PyInstaller's bootloader load; frost bundles carry it). A small embedding program
# (embed.c) is linked once with the shared library and once with the static archive, to
# tell the build from the cost of embedding. The workload
# (workload.py): importing the Flask sample, then the benchmark's Flask page through Flask's
# test client. Rounds interleave the three; medians.
#
# Usage: Benchmarks/python-build/run.sh [ROUNDS]   (default 9)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${1:-9}
python=/usr/bin/python3
version=$($python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
bash "$repo/Scripts/install-missing.sh" "python-build benchmark" gcc "libpython$version-dev" python3-venv
work=$(mktemp -d /tmp/frost-python-build.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# Flask from PyPI, in a venv made once (pip is not what is measured).
venv=$repo/.build-bench/python-build-venv
[ -x "$venv/bin/python" ] || { $python -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/Samples/flask_site/requirements.txt"; }
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export WORKLOAD_PATH="$repo/Python:$repo/Samples/flask_site:$repo/Benchmarks/apps:$site_packages"
unset PYTHONDONTWRITEBYTECODE  # bytecode cached beside the sources after the first run

config=$($python -c 'import sysconfig; print(sysconfig.get_config_var("LIBPL"))')
libdir=$($python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
include=$($python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
libs=$($python -c 'import sysconfig; print(sysconfig.get_config_var("LIBS"), sysconfig.get_config_var("SYSLIBS"))')
gcc -O2 -I"$include" "$here/embed.c" -o "$work/embed-shared" "$libdir/libpython$version.so.1.0" -Wl,-rpath,"$libdir"
# The static archive: every object (extension modules in lib-dynload link against its
# symbols), exported to them.
gcc -O2 -no-pie -I"$include" "$here/embed.c" -o "$work/embed-static" -Wl,--export-dynamic \
    -Wl,--whole-archive "$config/libpython$version.a" -Wl,--no-whole-archive $libs -lm -lz -lexpat

source_text=$(cat "$here/workload.py")
run() {  # name: prints "import_ms render_ms"
    case $1 in
        python3) $python -S -c "$source_text" ;;
        embed-shared) "$work/embed-shared" "$source_text" ;;
        embed-static) "$work/embed-static" "$source_text" ;;
    esac
}
names=(python3 embed-static embed-shared)
for name in "${names[@]}"; do run "$name" >/dev/null; done  # bytecode and page cache
declare -A results
for _ in $(seq "$rounds"); do
    for name in "${names[@]}"; do results[$name]+="$(run "$name");"; done
done
$python - "$rounds" "${results[python3]}" "${results[embed-static]}" "${results[embed-shared]}" <<'PY'
import statistics, sys
rounds = sys.argv[1]
rows = [("/usr/bin/python3 (static libpython)", sys.argv[2]), ("embedded, static libpython", sys.argv[3]),
        ("embedded, shared libpython (frost, PyInstaller)", sys.argv[4])]
medians = []
for name, text in rows:
    pairs = [tuple(map(float, item.split())) for item in text.strip(";").split(";")]
    medians.append((name, statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)))
base = medians[0]
print(f"{'interpreter':50}{'import (ms)':>12}{'×':>6}{'page (ms)':>11}{'×':>6}")
for name, imported, page in medians:
    print(f"{name:50}{imported:>12.1f}{imported / base[1]:>6.2f}{page:>11.3f}{page / base[2]:>6.2f}")
print(f"  medians of {rounds} rounds; import: the Flask sample (flask_site) from the filesystem, bytecode cached;")
print("  page: Benchmarks/run's Flask page (Benchmarks/apps/flask_page.py: a template compiled and rendered")
print("  for every request) through Flask's test client, per request")
PY
