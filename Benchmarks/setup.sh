# Sourced by Benchmarks/run and Benchmarks/soak: runs frost's build set-up (Scripts/setup.sh),
# installs what the measurements need (wrk, nginx and libev from Debian; a venv from
# /usr/bin/python3 with the peers from PyPI, kept in .build-bench/), builds frost and the
# benchmark bundles into .build-bench/dist, and sets
# $here, $repo, $venv and $dist. With --quick among the arguments the Flask bundle is skipped.
repo=$(cd "$here/.." && pwd)
export PATH="/opt/swift/usr/bin:$PATH"

# What building frost needs (Debian packages, the loader's static libstdc++ and Swift
# runtime), as for the tests; then what only the measurements need.
bash "$repo/Scripts/setup.sh"
bash "$repo/Scripts/install-missing.sh" bench wrk nginx libev-dev

state="$repo/.build-bench"
venv="$state/venv"
if [ ! -x "$venv/bin/granian" ] || [ ! -f "$venv/.complete" ]; then
    echo "bench: creating $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check wheel
    "$venv/bin/pip" install -q --disable-pip-version-check gunicorn granian bjoern fastpysgi waitress \
        -r "$here/apps/flask_requirements.txt" pyinstaller matplotlib
    touch "$venv/.complete"
fi

cd "$repo"
Scripts/build-release.sh --product frost-stub >/dev/null
Scripts/build-release.sh --product frost >/dev/null
frost="$(Scripts/build-release.sh --show-bin-path)/frost"
dist="$state/dist"
for spec in bench_isapi bench_wsgi flask_page; do
    if [ "$spec" = flask_page ] && printf '%s\n' "$@" | grep -qx -- --quick; then continue; fi
    "$frost" build "$here/apps/$spec.toml" --dist "$dist" --quiet
done
