#!/usr/bin/env bash
# The test suite's wall time at two commits, back to back on this machine (compare only times
# measured in one run: these machines flip between a fast and a slow mode).
#
#     bash benchmarks/suite_time.sh BEFORE [AFTER] [BEFORE_COMMAND]
#
# Each commit is cloned from this repository into a temporary folder with ../shared beside it,
# gets its own venv (pip install -e '.[test]'), and runs its tests: BEFORE with BEFORE_COMMAND
# (default: the serial `pytest --durations=25` of the commits before pytest-xdist), AFTER
# (default: HEAD) with the README's command through its own .ci/run. Prints both times.
set -u
before=$1
after=${2:-HEAD}
before_command=${3:-pytest --durations=25 -p no:cacheprovider}
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$(mktemp -d)
ln -s "$repo/../shared" "$root/shared"
for name in before after; do
    git clone -q "$repo" "$root/$name"
done
git -C "$root/before" checkout -q "$before"
git -C "$root/after" checkout -q "$after"

cd "$root/before"
python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[test]' > install.log 2>&1
start=$(date +%s)
$before_command > tests.log 2>&1
echo "before ($before, $before_command): exit $? in $(( $(date +%s) - start )) s; log $root/before/tests.log"
deactivate

cd "$root/after"
start=$(date +%s)
bash .ci/run > tests.log 2>&1
echo "after ($after, .ci/run: venv, install, lint and tests): exit $? in $(( $(date +%s) - start )) s; log $root/after/tests.log"
