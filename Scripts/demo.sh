#!/usr/bin/env bash
# The main job: freeze Samples/hello.py with `frost build` into dist/hello/ and serve it on
# 127.0.0.1 (PORT, default 8000) in the foreground; Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash Scripts/setup.sh
Scripts/build-release.sh --product frost-stub
Scripts/build-release.sh --product frost
bin=$(Scripts/build-release.sh --show-bin-path)
"$bin/frost" build Bundles/hello.toml
port=${PORT:-8000}
echo "try: curl http://127.0.0.1:$port/"
exec dist/hello/_hello --listen "127.0.0.1:$port"
