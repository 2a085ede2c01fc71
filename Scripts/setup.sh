#!/usr/bin/env bash
# Installs what building and testing frost needs, when it is missing (Debian; run as root).
set -euo pipefail
packages=(
    python3 python3-dev python3-venv pkg-config    # the CPython frost embeds and freezes with
    libarchive-dev                                 # zip and tar writing, in the packager (linked statically)
    libdeflate-dev                                 # the loader's entry reading (linked statically)
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
# The loader links Swift's standard library statically, from copies of the toolchain's
# archives whose public code the linker may drop (Scripts/strippable-archive.py says why;
# about 0.9 MB less in every bundle). Package.swift points the loader's link at this
# directory when it exists. Rebuilt when the toolchain's archives change.
toolchain=$(cd "$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift_static" && pwd)
runtime=.build-static-swift
archives=(libswiftCore.a libswift_Concurrency.a libswiftDispatch.a libswiftGlibc.a libswiftSynchronization.a)
stamp="$toolchain $(cd "$toolchain/linux" && stat -c '%n %s %Y' "${archives[@]}" 2>/dev/null | tr '\n' ' ')"
if [ "$(cat "$runtime/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$runtime.new" "$runtime"
    mkdir -p "$runtime.new/linux"
    for entry in "$toolchain"/*; do
        [ "$(basename "$entry")" = linux ] || ln -s "$entry" "$runtime.new/"
    done
    for entry in "$toolchain"/linux/*; do ln -s "$entry" "$runtime.new/linux/"; done
    copied=()
    for archive in "${archives[@]}"; do
        [ -e "$toolchain/linux/$archive" ] || continue
        rm "$runtime.new/linux/$archive"
        cp "$toolchain/linux/$archive" "$runtime.new/linux/$archive"
        copied+=("$runtime.new/linux/$archive")
    done
    /usr/bin/python3 Scripts/strippable-archive.py "${copied[@]}"
    echo "$stamp" > "$runtime.new/stamp"
    mv "$runtime.new" "$runtime"
    # A build planned before this directory existed keeps linking the toolchain's own
    # archives (SwiftPM re-plans only when Package.swift changes): drop its plans.
    rm -f .build/debug.yaml .build/release.yaml .build/*/description.json
fi
