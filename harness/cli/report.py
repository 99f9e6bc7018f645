"""`harness report`: render a run's self-contained HTML report (also run at the end of `harness run`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.cli._common import say
from harness.core.config import Settings
from harness.core.io import read_json
from harness.core.runs import RUN_MARKER, resolve_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write reports/<run>.html: EDA, leaderboard, per-model errors, latency",
        description="Render one self-contained HTML file (works offline: figures, style and script "
        "inline) from a run folder. Prints the report's path on stdout.")
    p.add_argument("--run", default=None, help="run id or folder (default: the latest run)")
    p.add_argument("--output", "-o", default=None,
                   help="HTML file (or folder) to write (default: <reports_dir>/<run-id>.html)")
    p.add_argument("--data-dir", default=None,
                   help="competition data for the data plots and the mistakes gallery (default: the "
                   "folder the run recorded, else the configured data folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.report import render_report

    run_dir = resolve_run(settings.runs_dir, args.run)
    output = Path(args.output) if args.output else settings.reports_dir
    if output.is_dir() or str(args.output or "").endswith(("/", "\\")) or not args.output:
        output = output / f"{run_dir.name}.html"  # a folder: the report goes inside it
    t0 = time.perf_counter()
    say(f"report: rendering {run_dir} ...")
    path = render_report(run_dir, output, _data_dir(args, settings, run_dir))
    say(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s)")
    print(path)
    return 0


def _data_dir(args: argparse.Namespace, settings: Settings, run_dir: Path) -> Path | None:
    """--data-dir, else the folder the run recorded if it is there (a relative path may have been
    relative to another working directory), else the configured data folder."""
    if args.data_dir:
        return Path(args.data_dir)
    try:
        recorded = (read_json(run_dir / RUN_MARKER).get("config") or {}).get("data_dir")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return None if recorded and Path(recorded).is_dir() else settings.data_dir
