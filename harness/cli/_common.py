"""Helpers shared by subcommands: JSON output, message printing, common flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from harness.io import _json_default


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=str, default=None,
                        help="competition data folder (default data/digit-recognizer, env HARNESS_DATA_DIR)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def say(message: str) -> None:
    """A message for the human: stderr, so stdout stays clean data."""
    print(message, file=sys.stderr, flush=True)


def color_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")
