#!/usr/bin/env bash
# A newcomer's first run, timed from clone to report: clone this repository into a fresh folder,
# follow the README's quickstart (a virtual environment, `pip install -e ".[cpu]"`, then
# `harness run --all --quick`), and print the seconds each step took.
#
#   bash scripts/newcomer.sh [WORKDIR]        # default: a new temp folder
#
# pip's cache is left as it is (a newcomer's machine may or may not have one: say which in notes).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d -t harness-newcomer-XXXX)}"
mkdir -p "$work"
cd "$work"

t0=$(date +%s.%N)
stamp() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$1" "$2"; }

git clone -q "$repo" harness
cd harness
t_clone=$(date +%s.%N)

# The README's quickstart, verbatim: the line after <!-- quickstart -->.
cmd=$(awk '/<!-- quickstart -->/{getline; getline; print; exit}' README.md)
[ -n "$cmd" ] || { echo "newcomer: no quickstart command in README.md" >&2; exit 1; }
install=${cmd%%&& harness*}
run="harness${cmd#*&& harness}"
echo "newcomer: $install" >&2
bash -c "$install" >/dev/null 2>"$work/install.log" || { cat "$work/install.log" >&2; exit 1; }
t_install=$(date +%s.%N)
echo "newcomer: $run --quick" >&2
bash -c ". .venv/bin/activate && $run --quick" >/dev/null
t_run=$(date +%s.%N)

echo "clone_s $(stamp "$t0" "$t_clone")"
echo "install_s $(stamp "$t_clone" "$t_install")"
echo "quick_run_s $(stamp "$t_install" "$t_run")"
echo "clone_to_report_s $(stamp "$t0" "$t_run")"
ls reports/*.html >/dev/null && echo "report $(ls reports/*.html)"
