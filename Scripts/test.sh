#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
bash Scripts/setup.sh
swift build --build-tests
# The release loader too: the wire tests attack what users run (NIO's debug checks are off there).
Scripts/build-release.sh --product frost-stub
swift test --skip-build
