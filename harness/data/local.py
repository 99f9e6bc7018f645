"""A competition of the user's own, built from images and labels they have (NPZ or IDX).

    detail = build(comp, "idx", Path("/usr/share/datasets/fashion-mnist"), staged_paths, say)

The source's own train/test split is kept (Fashion-MNIST: 60,000 / 10,000): its training rows
become train.csv, its test rows test.csv (ids as the spec numbers them) and, where the spec names
one, a sample_submission.csv predicting the first class; the test labels become the hidden
solution (`<id_column>,<submission_label>,Usage`, 25 % of the rows Public by a fixed seed), so
`harness score` and the leaderboard's public/private columns work as with the replica. Labels in
the source are the values the competition's files hold (its `labels`, else 0..K-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from harness.core.competition import Competition
from harness.core.errors import DataError
from harness.core.io import write_text
from harness.data import replica
from harness.kaggle.formats import schemas, write_table
from harness.kaggle.submission import PUBLIC_FRACTION, PUBLIC_SEED


def build(comp: Competition, source: str, path: Path | None, paths: dict[str, Path],
          say: Callable[[str], None]) -> str:
    """Write the competition's files (and the solution) to `paths` from an npz/idx source."""
    if source not in ("npz", "idx"):
        raise DataError(f"cannot build {comp.slug}'s files from source {source!r} (use npz or idx)")
    if path is None:
        raise DataError(f"--source {source} needs --path (the {source} file or folder you have)")
    if not path.exists():
        raise DataError(f"{path}: not found")
    top = max(comp.label_values)
    read = replica.read_npz if source == "npz" else replica.read_idx
    images = read(path, comp.n_pixels, top)
    unknown = np.setdiff1d(np.unique(images.labels), np.array(comp.label_values))
    if unknown.size:
        raise DataError(f"{path}: label {unknown[0]} is not one of {comp.slug}'s label values")
    n = images.n_train
    say(f"building {comp.slug} from {images.origin}: {n:,} train / {len(images.labels) - n:,} test images "
        "(the source's own split)")
    write_split(comp, images.images[:n], images.labels[:n], images.images[n:], images.labels[n:], paths)
    return f"{images.origin}; its own train/test split"


def write_split(comp: Competition, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray, paths: dict[str, Path]) -> None:
    """Train/test images [N, pixels] with their label values -> the competition's files and the
    solution (`paths["solution"]`)."""
    layouts = schemas(comp)
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    write_table(paths["train"], layouts["train"].columns, np.column_stack([y_train, x_train]))
    ids = np.arange(comp.id_start, comp.id_start + len(x_test))
    test = np.column_stack([ids, x_test]) if comp.test_id_column else x_test
    write_table(paths["test"], layouts["test"].columns, test)
    if "sample_submission" in paths:
        first = np.full_like(ids, comp.label_values[0])
        write_table(paths["sample_submission"], comp.submission_header, np.column_stack([ids, first]))
    public = np.zeros(len(ids), dtype=bool)
    public[np.random.default_rng(PUBLIC_SEED).permutation(len(ids))[:int(round(len(ids) * PUBLIC_FRACTION))]] = True
    rows = (f"{i},{y},{'Public' if p else 'Private'}" for i, y, p in zip(ids, y_test, public))
    write_text(paths["solution"], f"{comp.id_column},{comp.submission_label},Usage\n" + "\n".join(rows) + "\n")
