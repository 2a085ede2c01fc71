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
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages must not start their services here (nginx is started by the tests, on their
    # own ports): policy-rc.d refuses every start while installing.
    policy=/usr/sbin/policy-rc.d
    had_policy=false; [ -e "$policy" ] && had_policy=true
    $had_policy || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; }
    apt-get install -y -qq "${missing[@]}" >/dev/null
    $had_policy || rm -f "$policy"
fi
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
