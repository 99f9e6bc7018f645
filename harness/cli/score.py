"""`harness score`: validate a submission file and, with the test rows' answers, score it."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli._common import add_data_dir, add_json, data_settings, print_json, say
from harness.core.config import Settings
from harness.data.dataset import check_data, data_paths, load, solution_path
from harness.kaggle.submission import score_submission, validate_submission


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score", help="validate a submission CSV and score it against the test rows' answers",
        description="Validate SUBMISSION (the competition's two columns, Digit Recognizer's ImageId,Label; "
        "one row per test image; each id once; labels among the competition's) and, where answers "
        "exist (the offline replica's solution, files built from labelled NPZ/IDX images, or the "
        "spec's test_labels file), print its public and private accuracy as Kaggle would. Exit 6 on "
        "an invalid file.")
    p.add_argument("submission", help="the submission CSV to check")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings = data_settings(settings, args)
    data_dir, comp = settings.data_dir, settings.competition
    have_data = all(p.is_file() for p in data_paths(data_dir, comp).values())
    info = check_data(data_dir, comp) if have_data else None
    path = Path(args.submission)
    if info and info.solution:
        score = score_submission(path, info.solution, competition=comp)
        result = {"path": str(path), "valid": True, "rows": score.n_total,
                  "solution": str(info.solution), "score": score.to_dict()}
    else:
        ids, _ = validate_submission(path, competition=comp, ids=load(data_dir, comp).image_ids if info else None)
        result = {"path": str(path), "valid": True, "rows": len(ids), "solution": None, "score": None}
    if args.json:
        print_json(result)
        return 0
    say(f"harness: {path} is a valid submission ({result['rows']:,} rows)")
    if result["score"] is None:
        why = ("there is no data folder" if not info else
               "the data did not come from the offline replica or labelled images"
               + (f" and has no {comp.test_labels}" if comp.test_labels else "")
               if not solution_path(data_dir).is_file()
               else "the data files changed since the answers were built")
        say(f"harness: no score: {why}, so no answers at {solution_path(data_dir)} "
            "(Kaggle scores real submissions: `harness submit`)")
        return 0
    s = score
    for name, acc, n in (("public", s.public, s.n_public), ("private", s.private, s.n_private),
                         ("overall", s.overall, s.n_total)):
        print(f"{name:<8} {'-' if acc is None else f'{acc:.5f}':>8} {n:>7,} rows")
    return 0
