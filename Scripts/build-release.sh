#!/usr/bin/env bash
# `swift build -c release` as every release build of frost runs it (arguments follow),
# from the repository's root. Every invocation must pass the same flags, or SwiftPM
# rebuilds everything when they change.
#
# -enforce-exclusivity=unchecked for every module, the dependencies included: frost's own
# modules drop the run-time exclusivity checks in Package.swift, but SwiftPM cannot set a
# dependency's flags, and NIO's checks (swift_beginAccess on its event loop, selector and
# buffers) were about 6,000 instructions of a hello request's 78,000 (callgrind).
set -euo pipefail
exec swift build -c release -Xswiftc -enforce-exclusivity=unchecked "$@"
