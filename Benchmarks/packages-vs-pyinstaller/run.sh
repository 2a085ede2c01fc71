#!/usr/bin/env bash
# The package corpus (Tests/Corpus: one smoke script per popular package) frozen by frost
# and by PyInstaller (one-dir) from the same venv, in one run: which of the two froze what
# (the frozen program prints "ok", run on this machine and in a root that has only glibc,
# as the tests do), build time and dist size per package.
# Usage: Benchmarks/packages-vs-pyinstaller/run.sh    (root; writes results.md beside itself)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
corpus=$repo/Tests/Corpus
python=/usr/bin/python3
work=$(mktemp -d /tmp/frost-corpus-bench.XXXXXX)
cleanup() { umount "$work/root/proc" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

cd "$repo"
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash Scripts/setup.sh >/dev/null  # what building frost needs, as for the tests
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
bin=$(Scripts/build-release.sh --show-bin-path)

# One venv for both: the corpus's requirements and PyInstaller (frost uses it through a
# requirements file; its own build venv is made first, outside the timing).
export FROST_CACHE=$work/frost-cache
"$bin/frost" build "$corpus/smoke_orjson.py" --requirements "$corpus/requirements.txt" --dist "$work/warmup" --quiet
$python -m venv "$work/pyi-venv"
"$work/pyi-venv/bin/pip" install -q --disable-pip-version-check -r "$corpus/requirements.txt" pyinstaller

# A root with glibc's own libraries only.
mkdir -p "$work/root/lib/x86_64-linux-gnu" "$work/root/lib64" "$work/root/proc" "$work/root/app"
for f in $(dpkg -L libc6 | grep -E '^/lib/x86_64-linux-gnu/.*\.so'); do cp -L "$f" "$work/root/lib/x86_64-linux-gnu/"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$work/root/lib64/"
mount -t proc proc "$work/root/proc"

ms() { $python -c 'import time; print(int(time.time()*1000))'; }
runs_ok() {  # DIR EXECUTABLE-IN-ROOT NAME: "host/root", each yes or no
    local host root
    host=$(timeout 60 "$1/$(basename "$2")" 2>/dev/null | grep -q "^ok $3" && echo yes || echo no)
    rm -rf "$work/root/app/$(basename "$1")"; cp -a "$1" "$work/root/app/"
    root=$(timeout 60 chroot "$work/root" "$2" 2>/dev/null | grep -q "^ok $3" && echo yes || echo no)
    echo "$host/$root"
}
rows=()
for script in "$corpus"/smoke_*.py; do
    name=$(basename "$script" .py); package=${name#smoke_}
    start=$(ms)
    if "$bin/frost" build "$script" --requirements "$corpus/requirements.txt" --dist "$work/frost" --quiet >/dev/null 2>&1; then
        frost_build=$(( $(ms) - start ))
        frost_ok=$(runs_ok "$work/frost/$name" "/app/$name/$name" "$package")
        frost_size=$(du -sb "$work/frost/$name" | cut -f1)
    else
        frost_build=0; frost_ok=no; frost_size=0
    fi
    start=$(ms)
    if (cd "$work" && "$work/pyi-venv/bin/pyinstaller" --onedir --noconfirm --log-level ERROR --distpath "$work/pyi-dist" \
            --workpath "$work/pyi-build" --specpath "$work/pyi-spec" "$script" >/dev/null 2>&1); then
        pyi_build=$(( $(ms) - start ))
        pyi_ok=$(runs_ok "$work/pyi-dist/$name" "/app/$name/$name" "$package")
        pyi_size=$(du -sb "$work/pyi-dist/$name" | cut -f1)
    else
        pyi_build=0; pyi_ok=no; pyi_size=0
    fi
    rows+=("$package $frost_ok $frost_build $frost_size $pyi_ok $pyi_build $pyi_size")
    echo "$package: frost $frost_ok ${frost_build} ms $frost_size B; PyInstaller $pyi_ok ${pyi_build} ms $pyi_size B" >&2
done

printf '%s\n' "${rows[@]}" | $python -c '
import sys, datetime, platform
rows = [line.split() for line in sys.stdin if line.strip()]
print(f"Package corpus, frost vs PyInstaller one-dir ({datetime.date.today()}, {platform.node()}, Python {platform.python_version()} from Debian)\n")
print("Runs: on this machine / in a root with only glibc (yes or no).\n")
print("| package | frost runs | frost build (s) | frost size (MiB) | PyInstaller runs | PyInstaller build (s) | PyInstaller size (MiB) | size ratio |")
print("|---|---|---|---|---|---|---|---|")
for p, fo, fb, fs, po, pb, ps in rows:
    ratio = "%.2f" % (int(fs) / int(ps)) if int(ps) else "-"
    print(f"| {p} | {fo} | {int(fb)/1000:.1f} | {int(fs)/2**20:.1f} | {po} | {int(pb)/1000:.1f} | {int(ps)/2**20:.1f} | {ratio} |")
def count(column, where):
    return sum(r[column].split("/")[where] == "yes" for r in rows)
print()
print("frost ran %d of %d on this machine and %d in the glibc-only root; PyInstaller %d and %d."
      % (count(1, 0), len(rows), count(1, 1), count(4, 0), count(4, 1)))
' | tee "$here/results.md"
