#!/usr/bin/env bash
# The main job, as far as it goes today: assemble dist/hello from Samples/hello.py (the
# isapi package and the module compiled to .pyc in NAME.zip beside the loader) and run
# the loader's --check. Serving HTTP arrives with the host; `frost build` with the packager.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash Scripts/setup.sh
swift build --product frost-stub
swift build --product frost
bin=$(swift build --show-bin-path)

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/isapi"
cp Python/isapi/*.py "$staging/isapi/"
cp Samples/hello.py "$staging/hello.py"
# Unchecked-hash .pyc next to where the .py was (zipimport layout), sources dropped.
/usr/bin/python3 -I -m compileall -q -b --invalidation-mode unchecked-hash -d "" "$staging" >/dev/null
find "$staging" -name '*.py' -delete

rm -rf dist/hello
mkdir -p dist/hello
"$bin/frost" archive create "$staging" -o dist/hello/hello.zip
cp "$bin/frost-stub" dist/hello/_hello
dist/hello/_hello --check
