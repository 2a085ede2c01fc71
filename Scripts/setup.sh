#!/usr/bin/env bash
# Installs what building and testing frost needs, when it is missing (Debian; run as root).
set -euo pipefail
packages=(
    python3 python3-dev python3-venv pkg-config    # the CPython frost embeds and freezes with
    libarchive-dev                                 # zip reading and writing (linked statically)
    zlib1g-dev liblzma-dev libzstd-dev libbz2-dev nettle-dev   # what static libarchive needs
    nginx systemd curl                             # the installer's tests: nginx -t, a real nginx, systemd-analyze
    strace                                         # the request-path tests count write(2) calls
    skopeo umoci podman                            # the image tests: inspect, unpack and load OCI images
)
bash "$(dirname "$0")/install-missing.sh" setup "${packages[@]}"
if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "setup: add /opt/swift/usr/bin to PATH" >&2
    else
        echo "setup: Swift 6 is needed (swift not on PATH)" >&2
    fi
    exit 1
fi
# The loader links libstdc++ statically: a directory holding only gcc's libstdc++.a, which
# Package.swift puts first on the loader's library path (see the frost-stub target).
cd "$(dirname "$0")/.."
archive=$(ls /usr/lib/gcc/"$(uname -m)"-linux-gnu/*/libstdc++.a 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$archive" ]; then
    mkdir -p .build-static-cxx
    ln -sfn "$archive" .build-static-cxx/libstdc++.a
else
    echo "setup: no libstdc++.a (libstdc++-12-dev): the loader links the shared libstdc++" >&2
fi
