#!/usr/bin/env bash
# The main job, as far as it goes today: freeze Samples/hello.py with `frost build` into
# dist/hello/ and run the loader's --check. (Serving HTTP arrives with the host.)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash Scripts/setup.sh
swift build -c release --product frost-stub
swift build -c release --product frost
bin=$(swift build -c release --show-bin-path)
"$bin/frost" build Bundles/hello.toml
dist/hello/_hello --check
