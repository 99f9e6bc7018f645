"""The `harness` command line: a thin layer that parses flags, calls library functions, prints.

Each subcommand lives in its own module here and exposes `register(subparsers)` which adds its
parser and sets `func=run`; `run(args, settings)` returns an exit code. Data goes to stdout,
messages and progress to stderr. HarnessError becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from harness import __version__
from harness.core.config import load_settings
from harness.core.errors import EXIT_CODES, HarnessError, UsageError

__all__ = ["COMMANDS", "main"]

# Order here is the order in `harness --help`.
COMMANDS = [
    "run", "data", "models", "leaderboard", "export", "bench", "score",
    "submit", "submissions", "report", "tune",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; keep it one line
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes:\n" + "\n".join(f"  {c:>3}  {d}" for c, d in EXIT_CODES.items())
    parser = _Parser(
        prog="harness",
        description="Kaggle image-competition harness (Digit Recognizer unless --competition names "
        "another): data, k-fold CV, ONNX, latency, leaderboard, submission, report.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"harness.cli.{name}":
                continue  # a stage not built yet simply has no command
            raise
        module.register(sub)
    return parser


# Commands that train, convert or run models (the others read files and need no engine).
ENGINE_COMMANDS = {"run", "export", "bench", "tune", "predict"}


def main(argv: list[str] | None = None) -> int:
    debug = bool(os.environ.get("HARNESS_DEBUG"))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        if args.command in ENGINE_COMMANDS:  # missing or doubled TensorFlow/ONNX Runtime: one clear line
            from harness.core.device import check_engines

            check_engines()
        return int(args.func(args, load_settings()) or 0)
    except HarnessError as e:
        if debug:
            traceback.print_exc()
        print(f"harness: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a traceback is a bug: show one line unless debugging
        if debug:
            traceback.print_exc()
        else:
            print(f"harness: internal error: {type(e).__name__}: {e} (HARNESS_DEBUG=1 for the traceback)",
                  file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
