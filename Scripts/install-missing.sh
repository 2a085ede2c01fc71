#!/usr/bin/env bash
# install-missing.sh LABEL PACKAGE...: installs the Debian packages not installed yet (as
# root), without starting their services. Scripts/setup.sh and Benchmarks/setup.sh use it.
set -euo pipefail
label=$1; shift
missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "$label: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packages must not start their services here (nginx is started by the tests and the
# benchmarks, on their own ports): policy-rc.d refuses every start while installing.
policy=/usr/sbin/policy-rc.d
had_policy=false; [ -e "$policy" ] && had_policy=true
$had_policy || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; }
apt-get install -y -qq "${missing[@]}" >/dev/null
$had_policy || rm -f "$policy"
