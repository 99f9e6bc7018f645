"""`harness submissions`: the submission history (submissions/history.jsonl), newest last.

    harness submissions              table of every attempt
    harness submissions --refresh    first ask Kaggle about PENDING / unknown attempts
    harness submissions --json
"""

from __future__ import annotations

import argparse

from harness.cli._common import add_json, print_json, say
from harness.core.config import Settings
from harness.kaggle import api as kaggle

COLUMNS = ("time", "status", "public_score", "ref", "model", "run", "file_name", "message")
HEADERS = ("time", "status", "score", "ref", "model", "run", "file", "message")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "submissions", help="show the history of Kaggle submissions (and refresh pending ones)",
        description="Show every submission attempt recorded in submissions/history.jsonl: time, "
        "status, public score, Kaggle ref, model, run, file, message. Lowercase statuses are local "
        "(invalid, dry-run, failed: nothing created on Kaggle; unknown: may have been created); "
        "uppercase ones are Kaggle's (PENDING, COMPLETE, ERROR).")
    p.add_argument("--refresh", action="store_true",
                   help="ask Kaggle for the status and score of PENDING and unknown attempts first")
    p.add_argument("--last", type=int, default=None, metavar="N", help="show only the last N attempts")
    add_json(p)
    p.set_defaults(func=run)


def _cell(rec: dict, key: str) -> str:
    value = rec.get(key)
    if value is None or value == "":
        return "-"
    if key == "public_score":
        return f"{value:.5f}" if isinstance(value, (int, float)) else str(value)
    if key == "time":
        return str(value).replace("T", " ").removesuffix("Z")[:16]
    if key == "message" and len(str(value)) > 40:
        return str(value)[:39] + "…"
    return str(value)


def render_table(records: list[dict]) -> str:
    rows = [HEADERS] + [tuple(_cell(r, k) for k in COLUMNS) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    numeric = {2, 3}  # score and ref right-aligned
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = kaggle.history_file(settings.submissions_dir)
    if args.refresh:
        records = kaggle.refresh_history(path, progress=say)
    else:
        records = kaggle.read_history(path)
    if args.last is not None:
        records = records[-args.last:] if args.last > 0 else []
    if args.json:
        print_json(records)
    elif not records:
        say(f"no submissions recorded yet in {path}; submit with `harness submit`")
    else:
        print(render_table(records))
    return 0
