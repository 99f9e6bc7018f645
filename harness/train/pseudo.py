"""Pseudo-labelling (opt-in: `harness run --pseudo-label`): a second round in which each model's
fold models are fine-tuned on their training rows plus the unlabelled test rows that round one
labels with confidence, as new leaderboard rows (`cnn_deep+pl`) beside the plain ones.

Out-of-fold honesty: fold f's pseudo-labels come only from round one's fold-f models (every
model's, mixed with the weights the greedy OOF selection gives round one), and those never saw
fold f's validation rows. So fold f's validation rows stay unseen, directly and through the test
labels, and the `+pl` rows' OOF accuracy is as honest as the plain rows'; the ensemble may pick
them on OOF like any model. Hidden labels are never read.

A `+pl` fold starts from round one's fold model and trains `epochs // 3` more epochs (at least 1)
at a third of the learning rate, on the same recipe otherwise: a fine-tune, not a second full
training. The labels (`runs/<run>/pseudo/`) are written once per threshold and set of teachers; a
change of either redoes the labels and the `+pl` models, nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import io, names
from harness.core.errors import UsageError
from harness.registry import ModelSpec

SUFFIX, name, base = names.PSEUDO_SUFFIX, names.pseudo_name, names.pseudo_base  # the `+pl` rows' names

DEFAULT_THRESHOLD = 0.9   # label smoothing 0.05 caps a softmax near 0.955: 0.9 keeps ~95-98 % of test rows
FINE_TUNE_EPOCHS = 1 / 3   # of the model's own epochs
FINE_TUNE_LR = 1 / 3       # of the model's own learning rate


def check(threshold: float) -> float:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.5 <= threshold < 1.0:
        raise UsageError(f"--pseudo-label's confidence must be at least 0.5 and below 1, got {threshold!r}")
    return float(threshold)


def spec_for(spec: ModelSpec) -> ModelSpec:
    return dataclasses.replace(spec, name=name(spec.name),
                               description=f"{spec.name} fine-tuned on confident pseudo-labelled test rows")


def params_for(params: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Round two's recipe: a short fine-tune at a lower learning rate; `pseudo_threshold` in the
    parameters makes a changed threshold retrain the `+pl` model (harness.run.pipeline._check_params)."""
    return {**params, "epochs": max(1, round(int(params["epochs"]) * FINE_TUNE_EPOCHS)),
            "learning_rate": float(params["learning_rate"]) * FINE_TUNE_LR, "pseudo_threshold": threshold}


def folder(run_dir: Path) -> Path:
    return run_dir / "pseudo"


def labels_path(run_dir: Path, fold: int) -> Path:
    return folder(run_dir) / f"fold_{fold}.npz"


def make_labels(run_dir: Path, teachers: list[str], y: np.ndarray, k: int, threshold: float) -> dict[str, Any]:
    """Write each fold's pseudo-labels (test row index, label) from round one's fold models and
    return `pseudo/labels.json`; kept when the teachers' predictions and the threshold are those
    already used, else the old labels and every `+pl` model are removed first."""
    from harness.train.ensemble import select

    digests = {m: hashlib.sha256(b"".join((run_dir / m / f"fold_{f}" / "test.npy").read_bytes()
                                           for f in range(k))).hexdigest()[:16] for m in teachers}
    key = {"threshold": threshold, "teachers": digests}
    doc_path = folder(run_dir) / "labels.json"
    if doc_path.is_file() and io.read_json(doc_path).get("key") == key:
        return io.read_json(doc_path)
    remove(run_dir)
    oofs = {m: np.load(run_dir / m / "oof.npy").astype(np.float64) for m in teachers}
    weights = select(oofs, y)["weights"] if len(teachers) > 1 else {teachers[0]: 1.0}
    folds = []
    for f in range(k):
        probs = sum(w * np.load(run_dir / m / f"fold_{f}" / "test.npy").astype(np.float64)
                    for m, w in weights.items())
        keep = np.flatnonzero(probs.max(1) >= threshold)
        labels = probs.argmax(1)[keep]
        with io.atomic_path(labels_path(run_dir, f), suffix=".npz") as tmp:
            np.savez(tmp, index=keep.astype(np.int32), label=labels.astype(np.int8))
        folds.append({"fold": f, "rows": int(len(keep)), "share": round(len(keep) / len(probs), 4),
                      "per_class": np.bincount(labels).tolist()})
    doc = {"threshold": threshold, "teachers": weights, "folds": folds, "key": key,
           "rule": "fold f: round one's fold-f models, weighted by the greedy OOF selection"}
    io.write_json(doc_path, doc)
    return doc


def load_labels(run_dir: Path, fold: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(labels_path(run_dir, fold)) as z:
        return z["index"].astype(np.int64), z["label"].astype(np.int64)


def remove(run_dir: Path) -> list[str]:
    """Drop the labels and every `+pl` model (when --pseudo-label is off or its inputs changed)."""
    gone = []
    if folder(run_dir).exists():
        shutil.rmtree(folder(run_dir))
    for d in sorted(run_dir.glob(f"*{SUFFIX}")):
        if d.is_dir():
            shutil.rmtree(d)
            gone.append(d.name)
    return gone


def summary(doc: dict[str, Any]) -> str:
    rows = [f["rows"] for f in doc["folds"]]
    return (f"{min(rows):,}-{max(rows):,} test rows per fold at confidence >= {doc['threshold']:g} "
            f"(teachers: {json.dumps({m: round(w, 2) for m, w in doc['teachers'].items()})})")
