#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it with the [cpu] engines into a
# fresh environment outside this checkout, and run `harness run --all --quick` in an empty folder
# (the offline replica, no Kaggle credentials). Prints the run's wall time; exit status is the run's.
#
#     bash scripts/wheel_check.sh [EXTRA harness run FLAGS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m pip wheel --no-deps -q -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/harness-*.whl)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel[cpu]"
mkdir "$work/project"
cd "$work/project"  # nothing of the checkout on sys.path: the installed package alone
"$work/venv/bin/python" -c "import harness, sys; assert '$root' not in harness.__file__, harness.__file__; print('installed:', harness.__file__)"
start=$SECONDS
"$work/venv/bin/harness" run --all --quick "$@"
echo "wheel_check: harness run --all --quick from the installed wheel took $(( SECONDS - start )) s" >&2
