"""`harness leaderboard`: the ranked table of a run's models."""

from __future__ import annotations

import argparse
import sys

from harness.core.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="print a run's leaderboard (text, json, csv, md)",
                       description="Rank a run's models by CV accuracy; best row marked *, "
                       "accuracy/latency Pareto front marked ^, missing values shown as -.")
    p.add_argument("--run", metavar="RUN", help="run id or folder (default: the latest run)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="JSON on stdout")
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="CSV on stdout")
    fmt.add_argument("--md", dest="fmt", action="store_const", const="md", help="Markdown table on stdout")
    p.set_defaults(func=run, fmt="text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.core.runs import resolve_run
    from harness.results import leaderboard

    run_dir = resolve_run(settings.runs_dir, args.run)
    sys.stdout.write(leaderboard.render(leaderboard.load_results(run_dir), args.fmt))
    return 0
