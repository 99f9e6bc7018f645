"""Helpers shared by subcommands: JSON output, message printing, common flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from harness.core.io import _json_default


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --competition: which competition, and where its files are."""
    parser.add_argument("--competition", metavar="SLUG|SPEC.toml", default=None,
                        help="the competition: digit-recognizer (default), Kannada-MNIST, or a TOML spec of "
                        "your own (env HARNESS_COMPETITION; see README, 'Other competitions')")
    parser.add_argument("--data-dir", type=str, default=None,
                        help="competition data folder (default data/<competition>, env HARNESS_DATA_DIR)")


def data_settings(settings: Any, args: argparse.Namespace) -> Any:
    """The settings with --competition and --data-dir applied (the data folder follows the
    competition unless one is given)."""
    return settings.replace(competition=getattr(args, "competition", None), data_dir=args.data_dir)


def add_executor(parser: argparse.ArgumentParser, what: str, auto: bool = False) -> None:
    """--executor/--jobs/--cpus-per-job/--ray-address/--ray-timeout (harness.executors.local). With `auto`,
    the local default is `--jobs auto` (HARNESS_JOBS overrides it), else 1."""
    g = parser.add_argument_group("executor", f"where {what} run (see README, 'Scaling out with Ray')")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: this machine (default); ray: a Ray cluster (pip install 'harness[ray]')")
    local = ("auto, or HARNESS_JOBS: one job per core up to 2 cores, else one per 2 cores; 1 trains in "
             "this process"
             if auto else "1, in this process")
    parser.set_defaults(jobs_auto=auto)
    g.add_argument("--jobs", metavar="N|auto",
                   help=f"{what} at once (local default {local}; ray default: as many as the "
                   "cluster's CPUs allow)")
    g.add_argument("--cpus-per-job", type=int, metavar="K",
                   help="TensorFlow threads (and Ray CPUs) per job (local: cores // N; ray: 1)")
    g.add_argument("--ray-address", metavar="HOST:PORT",
                   help="a running Ray cluster's address (default: start a local Ray for this command)")
    g.add_argument("--ray-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="limit on connecting to Ray and on each node's start-up probe (default 30)")


def executor_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The executor flags, checked (bad values are usage errors before any work starts)."""
    from harness.core.errors import UsageError
    from harness.executors import make_executor, parse_jobs

    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    if args.jobs is None and getattr(args, "jobs_auto", False) and args.executor == "local":
        args.jobs = os.environ.get("HARNESS_JOBS") or "auto"
    args.jobs = parse_jobs(args.jobs, args.executor)
    make_executor(args.executor, jobs=args.jobs, cpus_per_job=args.cpus_per_job, address=args.ray_address,
                  timeout=args.ray_timeout)
    return {"executor": args.executor, "jobs": args.jobs, "cpus_per_job": args.cpus_per_job,
            "ray_address": args.ray_address, "ray_timeout": args.ray_timeout}


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def say(message: str) -> None:
    """A message for the human: stderr, so stdout stays clean data."""
    print(message, file=sys.stderr, flush=True)


def color_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")
