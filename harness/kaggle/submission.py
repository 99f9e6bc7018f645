"""Submission files: validate them, write them, and score them the way Kaggle does.

    sub = validate_submission("submissions/run.csv", n_rows=28000)   # -> Submission(image_ids, labels)
    write_submission(path, image_ids, labels)                       # validates, then writes atomically
    score = score_submission(path, solution_path(data_dir))         # -> Score(public, private, overall)
    score = score_labels(image_ids, labels, read_solution(solution_path(data_dir)))  # in memory

A submission has one id and one label per test row, in the competition's header (Digit
Recognizer: `ImageId,Label`, ImageIds 1..N; Kannada-MNIST: `id,label`, ids 0..N-1; any other per
its spec, harness.core.competition), each id once (any order), labels among the competition's label
values. Every defect is a SubmissionError (exit 6) naming file, row and column; an invalid file is
never uploaded. Scoring matches rows by id and reports accuracy on the solution's Public (25%) and
Private (75%) rows, like Kaggle's leaderboards.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness.core.competition import DIGIT_RECOGNIZER, Competition
from harness.core.errors import DataError, SubmissionError
from harness.kaggle.formats import read_table, schemas, write_table

SOLUTION_HEADER = ["ImageId", "Label", "Usage"]
PUBLIC_FRACTION = 0.25   # Kaggle's public leaderboard: 25 % of the test rows
PUBLIC_SEED = 2012       # which rows of a plain labels file are public: fixed, like the replica's split


class Submission(NamedTuple):
    """A validated submission, in file order. Unpacks as `ids, labels = validate_submission(p)`."""

    image_ids: np.ndarray  # int64 [N]
    labels: np.ndarray     # int64 [N]: the label values as written


class Solution(NamedTuple):
    """The answers: the test rows' ids in order, their labels, and which rows are on the public board."""

    image_ids: np.ndarray
    labels: np.ndarray
    public: np.ndarray  # bool [N]


@dataclass(frozen=True)
class Score:
    """Accuracy as Kaggle reports it (public/private leaderboards) plus overall, with counts."""

    public: float | None   # None when the solution has no rows of that kind (tiny replicas)
    private: float | None
    overall: float
    n_public: int
    n_private: int
    n_total: int
    correct: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_submission(path: str | os.PathLike, n_rows: int | None = None, *,
                        competition: Competition = DIGIT_RECOGNIZER,
                        ids: np.ndarray | None = None) -> Submission:
    """Check a submission file; return its ids and labels. `n_rows` is the expected row count
    (the number of test images); `ids` the test rows' ids, when known. Without them the ids must
    run id_start..id_start+N-1 (Digit Recognizer: 1..N) unless the competition's test.csv carries
    its own ids, in which case each must appear once."""
    name = str(path)
    table = read_table(path, schemas(competition)["sample_submission"], error=SubmissionError)
    got, labels = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    if n_rows is None and ids is not None:
        n_rows = len(ids)
    if n_rows is not None and len(got) != n_rows:
        raise SubmissionError(f"{name}: {len(got):,} rows, expected {n_rows:,} (one per test image)")
    _check_ids(name, got, competition, ids)
    _check_labels(name, labels, competition)
    return Submission(got, labels)


def _check_ids(name: str, ids: np.ndarray, comp: Competition = DIGIT_RECOGNIZER,
               expected: np.ndarray | None = None) -> None:
    column = comp.id_column
    if expected is None and not comp.test_id_column:
        expected = np.arange(comp.id_start, comp.id_start + len(ids))
    if expected is not None:
        known = np.sort(np.asarray(expected, dtype=np.int64))
        at = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
        out = np.flatnonzero(known[at] != ids) if len(known) else np.arange(len(ids))
        if out.size:
            r = int(out[0])
            span = (f"{known[0]}..{known[-1]}" if len(known) and known[-1] - known[0] == len(known) - 1
                    else "the test rows' ids")
            raise SubmissionError(f"{name}: row {r + 1} (line {r + 2}), column {column}: {ids[r]} outside {span}")
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        # Report the duplicate whose second occurrence comes first in the file.
        later = order[dup + 1]
        k = int(np.argmin(later))
        first, second = int(order[dup[k]]), int(later[k])
        raise SubmissionError(f"{name}: row {second + 1} (line {second + 2}), column {column}: "
                              f"{ids[second]} appears twice (rows {first + 1} and {second + 1})")


def _allowed(comp: Competition) -> str:
    values = np.array(comp.label_values)
    if len(values) == values.max() - values.min() + 1:
        return f"outside {values.min()}..{values.max()}"
    return f"is not one of {', '.join(map(str, values))}"


def _check_labels(name: str, labels: np.ndarray, comp: Competition) -> None:
    bad = np.flatnonzero(~np.isin(labels, np.array(comp.label_values)))
    if bad.size:
        r = int(bad[0])
        raise SubmissionError(f"{name}: row {r + 1} (line {r + 2}), column {comp.submission_label}: "
                              f"label {labels[r]} {_allowed(comp)}")


def write_submission(path: str | os.PathLike, image_ids: Any, labels: Any, *,
                     competition: Competition = DIGIT_RECOGNIZER) -> Path:
    """Validate predictions (label values as the competition writes them), then write the
    competition's two columns atomically. Returns the path."""
    ids, labels = np.asarray(image_ids), np.asarray(labels)
    if ids.ndim != 1 or labels.shape != ids.shape or len(ids) == 0:
        raise SubmissionError(f"{path}: need two equal-length 1-D arrays, got ids {ids.shape} "
                              f"and labels {labels.shape}")
    for what, a in (("ids", ids), ("labels", labels)):
        if a.dtype.kind not in "iu":
            raise SubmissionError(f"{path}: {what} must be integers, got dtype {a.dtype}")
    bad = np.flatnonzero(~np.isin(labels, np.array(competition.label_values)))
    if bad.size:
        r = int(bad[0])
        raise SubmissionError(f"{path}: label {labels[r]} for {competition.id_column} {ids[r]} "
                              f"{_allowed(competition)}")
    _check_ids(str(path), ids.astype(np.int64), competition, ids if competition.test_id_column else None)
    return write_table(path, competition.submission_header, np.column_stack([ids, labels]))


def read_solution(path: str | os.PathLike) -> Solution:
    """The answers: `<id>,<label>,Usage` (the solution the harness builds: Usage Public/Private), or
    a plain `<id>,<label>` labels file (25 % of its rows, fixed by a seed, count as public)."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError(f"{name}: solution file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: cannot read the solution ({e})") from None
    if not rows or len(rows[0]) not in (2, 3) or (len(rows[0]) == 3 and rows[0][2] != "Usage"):
        raise DataError(f"{name}: header must be <id>,<label>,Usage or <id>,<label> "
                        f"(got {','.join(rows[0]) if rows else 'nothing'})")
    width, body = len(rows[0]), rows[1:]
    if not body:
        raise DataError(f"{name}: no rows")
    for i, row in enumerate(body):
        ok = (len(row) == width and row[0].lstrip("-").isdigit() and row[1].isdigit()
              and (width == 2 or row[2] in ("Public", "Private")))
        if not ok:
            want = "<id>,<label>" + (",Public|Private" if width == 3 else "")
            raise DataError(f"{name}: row {i + 1} (line {i + 2}): expected '{want}' (whole numbers), "
                            f"got {','.join(row)!r}")
    ids = np.array([int(r[0]) for r in body], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{name}: an id appears twice")
    if width == 3:
        public = np.array([r[2] == "Public" for r in body])
    else:
        public = np.zeros(len(body), dtype=bool)
        rng = np.random.default_rng(PUBLIC_SEED)
        public[rng.permutation(len(body))[:int(round(len(body) * PUBLIC_FRACTION))]] = True
    return Solution(image_ids=ids, labels=np.array([int(r[1]) for r in body], dtype=np.int64), public=public)


def score_submission(path: str | os.PathLike, solution: str | os.PathLike | Solution, *,
                     competition: Competition = DIGIT_RECOGNIZER) -> Score:
    """Validate `path` against the solution's rows, then score it as Kaggle would."""
    sol = solution if isinstance(solution, Solution) else read_solution(solution)
    sub = validate_submission(path, competition=competition, ids=sol.image_ids)
    return score_labels(sub.image_ids, sub.labels, sol)


def score_labels(image_ids: Any, labels: Any, solution: Solution) -> Score:
    """Score predictions held in memory (ids and label values, e.g. a model's test argmax
    mapped to the competition's labels) against the solution."""
    ids, labels = np.asarray(image_ids, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    n = len(solution.labels)
    if ids.shape != (n,) or labels.shape != (n,):
        raise SubmissionError(f"predictions for {len(ids)} images, the solution has {n}")
    order = np.argsort(ids)
    at = np.clip(np.searchsorted(ids[order], solution.image_ids), 0, n - 1)
    if not np.array_equal(ids[order][at], solution.image_ids):
        raise SubmissionError("the predictions' ids are not the solution's ids")
    hit = labels[order][at] == solution.labels     # matched by id, whatever the row order
    n_pub = int(solution.public.sum())
    n_priv = n - n_pub
    return Score(
        public=float(hit[solution.public].mean()) if n_pub else None,
        private=float(hit[~solution.public].mean()) if n_priv else None,
        overall=float(hit.mean()),
        n_public=n_pub, n_private=n_priv, n_total=n, correct=int(hit.sum()),
    )
