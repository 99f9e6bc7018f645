"""Submission files: validate them, write them, and score them the way Kaggle does.

    sub = validate_submission("submissions/run.csv", n_rows=28000)   # -> Submission(image_ids, labels)
    write_submission(path, image_ids, labels)                       # validates, then writes atomically
    score = score_submission(path, solution_path(data_dir))         # -> Score(public, private, overall)
    score = score_labels(image_ids, labels, read_solution(solution_path(data_dir)))  # in memory

A submission is `ImageId,Label` with one row per test image: ImageIds 1..N, each once (any order),
labels integers 0..9. Every defect is a SubmissionError (exit 6) naming file, row and column; an
invalid file is never uploaded. Scoring matches rows by ImageId and reports accuracy on the
solution's Public (25%) and Private (75%) rows, like Kaggle's leaderboards.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness.core.errors import DataError, SubmissionError
from harness.kaggle.formats import SUBMISSION, read_table, write_table

SOLUTION_HEADER = ["ImageId", "Label", "Usage"]


class Submission(NamedTuple):
    """A validated submission, in file order. Unpacks as `ids, labels = validate_submission(p)`."""

    image_ids: np.ndarray  # int64 [N]
    labels: np.ndarray     # int64 [N]


class Solution(NamedTuple):
    """The answers: ImageIds 1..N in order, their labels, and which rows are on the public board."""

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


def validate_submission(path: str | os.PathLike, n_rows: int | None = None) -> Submission:
    """Check a submission file; return its ImageIds and labels. `n_rows` is the expected row count
    (the number of test images); None accepts any N as long as the ImageIds are exactly 1..N."""
    name = str(path)
    table = read_table(path, SUBMISSION, error=SubmissionError)
    ids, labels = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    if n_rows is not None and len(ids) != n_rows:
        raise SubmissionError(f"{name}: {len(ids):,} rows, expected {n_rows:,} (one per test image)")
    _check_ids(name, ids)
    return Submission(ids, labels)


def _check_ids(name: str, ids: np.ndarray) -> None:
    n = len(ids)
    out = np.flatnonzero((ids < 1) | (ids > n))
    if out.size:
        r = int(out[0])
        raise SubmissionError(f"{name}: row {r + 1} (line {r + 2}), column ImageId: "
                              f"{ids[r]} outside 1..{n}")
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        # Report the duplicate whose second occurrence comes first in the file.
        later = order[dup + 1]
        k = int(np.argmin(later))
        first, second = int(order[dup[k]]), int(later[k])
        raise SubmissionError(f"{name}: row {second + 1} (line {second + 2}), column ImageId: "
                              f"{ids[second]} appears twice (rows {first + 1} and {second + 1})")


def write_submission(path: str | os.PathLike, image_ids: Any, labels: Any) -> Path:
    """Validate predictions, then write `ImageId,Label` atomically. Returns the path."""
    ids, labels = np.asarray(image_ids), np.asarray(labels)
    if ids.ndim != 1 or labels.shape != ids.shape or len(ids) == 0:
        raise SubmissionError(f"{path}: need two equal-length 1-D arrays, got ImageIds {ids.shape} "
                              f"and labels {labels.shape}")
    for what, a in (("ImageIds", ids), ("labels", labels)):
        if a.dtype.kind not in "iu":
            raise SubmissionError(f"{path}: {what} must be integers, got dtype {a.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        r = int(bad[0])
        raise SubmissionError(f"{path}: label {labels[r]} for ImageId {ids[r]} outside 0..9")
    _check_ids(str(path), ids.astype(np.int64))
    return write_table(path, SUBMISSION.columns, np.column_stack([ids, labels]))


def read_solution(path: str | os.PathLike) -> Solution:
    """The replica's `ImageId,Label,Usage` answers (ImageIds 1..N in order, Usage Public/Private)."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError(f"{name}: solution file not found") from None
    if not rows or rows[0] != SOLUTION_HEADER:
        raise DataError(f"{name}: header must be {','.join(SOLUTION_HEADER)}")
    body = rows[1:]
    if not body:
        raise DataError(f"{name}: no rows")
    for i, row in enumerate(body):
        ok = (len(row) == 3 and row[0] == str(i + 1) and row[1] in "0123456789" and len(row[1]) == 1
              and row[2] in ("Public", "Private"))
        if not ok:
            raise DataError(f"{name}: row {i + 1} (line {i + 2}): expected '{i + 1},<0..9>,Public|Private', "
                            f"got {','.join(row)!r}")
    return Solution(image_ids=np.arange(1, len(body) + 1),
                    labels=np.array([int(r[1]) for r in body], dtype=np.int64),
                    public=np.array([r[2] == "Public" for r in body]))


def score_submission(path: str | os.PathLike, solution: str | os.PathLike | Solution) -> Score:
    """Validate `path` against the solution's row count, then score it as Kaggle would."""
    sol = solution if isinstance(solution, Solution) else read_solution(solution)
    sub = validate_submission(path, n_rows=len(sol.labels))
    return score_labels(sub.image_ids, sub.labels, sol)


def score_labels(image_ids: Any, labels: Any, solution: Solution) -> Score:
    """Score predictions held in memory (e.g. a model's test argmax) against the solution."""
    ids, labels = np.asarray(image_ids, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    n = len(solution.labels)
    if ids.shape != (n,) or labels.shape != (n,):
        raise SubmissionError(f"predictions for {len(ids)} images, the solution has {n}")
    _check_ids("predictions", ids)
    predicted = np.empty(n + 1, dtype=np.int64)
    predicted[ids] = labels                        # match by ImageId, whatever the row order
    hit = predicted[solution.image_ids] == solution.labels
    n_pub = int(solution.public.sum())
    n_priv = n - n_pub
    return Score(
        public=float(hit[solution.public].mean()) if n_pub else None,
        private=float(hit[~solution.public].mean()) if n_priv else None,
        overall=float(hit.mean()),
        n_public=n_pub, n_private=n_priv, n_total=n, correct=int(hit.sum()),
    )
