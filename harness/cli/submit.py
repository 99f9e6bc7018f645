"""`harness submit`: validate a submission, check rules and limits, upload it once, maybe wait.

    harness submit                       the latest run's submissions/<run>.csv
    harness submit --run 20240501-120000 --wait 300
    harness submit my.csv -m "blend v2" --dry-run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli._common import add_json, print_json, say
from harness.core.config import Settings
from harness.core.errors import KaggleUploadFailed, RunError, UsageError
from harness.core.io import read_json
from harness.core.runs import list_runs, resolve_run
from harness.kaggle import api as kaggle


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "submit", help="upload a submission to Kaggle (validated first; never twice)",
        description="Validate a submission, check that the competition rules are accepted and a "
        "submission is allowed today, upload it once and record it in submissions/history.jsonl. "
        "Credentials come from the kaggle client's usual places: KAGGLE_API_TOKEN or "
        "~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY, or kaggle.json.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("file", nargs="?", metavar="SUBMISSION.csv", help="the file to submit")
    src.add_argument("--run", metavar="RUN", help="submit the run's submissions/<RUN>.csv (default: the latest run)")
    p.add_argument("-m", "--message", help="submission description shown on Kaggle (default: run and model)")
    p.add_argument("--dry-run", action="store_true", help="do every check but do not upload")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the score (default 0: do not wait)")
    p.add_argument("--competition", metavar="SLUG|SPEC.toml", default=None,
                   help="the competition to submit to (default: the run's, else digit-recognizer)")
    add_json(p)
    p.set_defaults(func=run)


def _best_model(run_dir: Path) -> str | None:
    try:
        return read_json(run_dir / "results.json").get("best")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_submission(args: argparse.Namespace, settings: Settings) -> tuple[Path, str | None, str | None]:
    """(file, run id, model) for the command's arguments."""
    if args.file:
        path = Path(args.file)
        # A run's own submission file keeps its run and model in the history.
        runs = {p.name: p for p in list_runs(settings.runs_dir)}
        if path.stem in runs and path.resolve().parent == settings.submissions_dir.resolve():
            return path, path.stem, _best_model(runs[path.stem])
        return path, None, None
    run_dir = resolve_run(settings.runs_dir, args.run)
    path = settings.submissions_dir / f"{run_dir.name}.csv"
    if not path.is_file():
        raise RunError(f"run {run_dir.name} has no submission file {path}; write it with "
                       f"`harness run` (or `harness submit FILE`)")
    return path, run_dir.name, _best_model(run_dir)


def _competition(settings: Settings, run_id: str | None):
    """The run's recorded competition, else the configured one (--competition, HARNESS_COMPETITION)."""
    from harness.core.competition import of_manifest

    if run_id is not None and getattr(settings, "competition_spec", None) is None:
        try:
            return of_manifest(read_json(settings.runs_dir / run_id / "manifest.json"))
        except (OSError, ValueError):
            pass
    return settings.competition


def _test_rows(settings: Settings, comp) -> int | None:
    """How many rows Kaggle scores: Digit Recognizer's is known; another's is its test.csv's."""
    if comp.is_digits:
        return None
    from harness.data.dataset import check_data

    try:
        return check_data(settings.data_dir, comp).rows["test"]
    except Exception:  # no data here: the file is still validated for its format
        return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.wait < 0:
        raise UsageError("--wait must be >= 0 seconds")
    settings = settings.replace(competition=args.competition)
    path, run_id, model = resolve_submission(args, settings)
    comp = _competition(settings, run_id)
    if not comp.kaggle:
        raise UsageError(f"{comp.slug} is not a Kaggle competition (its spec says kaggle = false): "
                         "nothing to upload; score it locally with `harness score`")
    message = args.message if args.message is not None else (
        f"harness run {run_id}" + (f": {model}" if model else "") if run_id else f"harness {path.name}")
    result = kaggle.submit_file(path, message=message, run_id=run_id, model=model, wait=args.wait,
                                dry_run=args.dry_run, history_path=kaggle.history_file(settings.submissions_dir),
                                competition=comp.slug, n_rows=_test_rows(settings, comp), spec=comp, progress=say)
    code = KaggleUploadFailed.exit_code if result.status == "ERROR" else 0
    if args.json:
        print_json(result.to_dict() | {"exit_code": code})
    elif result.status == "dry-run":
        print(f"dry-run\t{path}\tsha256 {result.sha256}")
    else:
        score = f"public score {result.public_score:.5f}" if result.public_score is not None else ""
        error = f"error: {result.error}" if result.status == "ERROR" and result.error else ""
        print("\t".join(x for x in (f"ref {result.ref}", result.status, score or error, str(path)) if x))
    if result.status == "ERROR":
        say(f"harness: error: Kaggle could not score submission {result.ref}: {result.error or 'no description'}")
    return code
