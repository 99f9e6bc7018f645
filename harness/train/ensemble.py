"""An ensemble of the run's models, chosen on out-of-fold (OOF) predictions only.

    info = build(run_dir, y, folds)          # writes runs/<run>/ensemble/ (or returns why not)

Greedy ensemble selection with replacement (Caruana et al. 2004, as AutoGluon's
WeightedEnsemble does it with the competition's metric): start from nothing; at each of
`ITERATIONS` steps add the model (again, if it helps) whose addition gives the fewest OOF errors of
the running average of the members' softmax, OOF log-loss breaking ties; keep the best step's
multiset. A model's weight is how often it was picked over the size of that multiset. Errors
first, not log-loss alone: in a full run log-loss chose 0.82 cnn_small + 0.18 cnn_deep, with more
OOF errors (198) than cnn_deep alone (173), because label smoothing and dropout make the most
accurate model the least confident. The ensemble's OOF accuracy is slightly optimistic (the weights
were fitted on the same OOF rows, which is why they are few and coarse). Hidden labels are never read.

The ensemble then is a model like the others: `ensemble/cv.json` (a leaderboard row, family
`ensemble`), `oof.npy`, `test.npy` (the weighted mean of the members' fold-ensemble test
probabilities) and `ensemble.json` (members, weights, the selection's steps). `harness.export.convert`
turns it into one ONNX graph (each member's fold models, weighted) behind the same parity gate.
It is rebuilt only when its members' OOF predictions or the selection change; a rebuild drops
its export and benchmark, nothing else.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import io

NAME = "ensemble"
ITERATIONS = 25
EPS = 1e-7


def logloss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0))))


def select(oofs: dict[str, np.ndarray], y: np.ndarray, iterations: int = ITERATIONS) -> dict[str, Any]:
    """Caruana's greedy selection with replacement on (OOF errors, OOF log-loss); returns the
    weights, the picks and each step."""
    names = sorted(oofs)
    total = np.zeros_like(oofs[names[0]], dtype=np.float64)
    counts: Counter[str] = Counter()
    steps: list[dict[str, Any]] = []
    best: tuple[tuple[int, float], Counter[str]] = ((len(y) + 1, float("inf")), Counter())

    def score(probs: np.ndarray) -> tuple[int, float]:
        return int((probs.argmax(1) != y).sum()), logloss(probs, y)

    for n in range(1, iterations + 1):
        scores = {m: score((total + oofs[m]) / n) for m in names}
        pick = min(names, key=lambda m: (scores[m], m))  # ties: the name, so the result is reproducible
        total += oofs[pick]
        counts[pick] += 1
        errors, loss = scores[pick]
        steps.append({"step": n, "added": pick, "errors": errors, "logloss": round(loss, 6),
                      "accuracy": 1 - errors / len(y)})
        if (errors, loss) < (best[0][0], best[0][1] - 1e-12):
            best = ((errors, loss), Counter(counts))
    size = sum(best[1].values())
    weights = {m: best[1][m] / size for m in sorted(best[1], key=lambda m: (-best[1][m], m))}
    return {"weights": weights, "counts": dict(best[1]), "errors": best[0][0], "logloss": best[0][1],
            "steps": steps}


def candidates(run_dir: Path, models: list[str]) -> list[str]:
    """Members may be models whose CV is complete and whose ONNX export passed the parity gate."""
    out = []
    for m in models:
        export = run_dir / m / "export.json"
        if m != NAME and (run_dir / m / "cv.json").is_file() and (run_dir / m / "model.onnx").is_file() \
                and export.is_file() and io.read_json(export).get("ok"):
            out.append(m)
    return out


def _digest(path: Path) -> str:
    return io.sha256_file(path)[:16]


def remove(run_dir: Path) -> bool:
    d = run_dir / NAME
    if d.exists():
        shutil.rmtree(d)
        return True
    return False


def build(run_dir: Path, y: np.ndarray, folds: np.ndarray, models: list[str],
          iterations: int = ITERATIONS) -> dict[str, Any]:
    """Select and write the ensemble; returns ensemble.json's content, or {"skipped": why}."""
    names = candidates(run_dir, models)
    if len(names) < 2:
        remove(run_dir)
        return {"skipped": f"needs two exported models, has {len(names)}"}
    oofs = {m: np.load(run_dir / m / "oof.npy").astype(np.float64) for m in names}
    chosen = select(oofs, y, iterations)
    weights = chosen["weights"]
    if len(weights) < 2:
        remove(run_dir)
        return {"skipped": f"the selection kept {next(iter(weights))} alone: no mix has fewer OOF errors"}
    single = {m: float((oofs[m].argmax(1) == y).mean()) for m in names}
    return write(run_dir, weights, y, folds, {
        "counts": chosen["counts"], "iterations": iterations, "oof_logloss": chosen["logloss"],
        "selection": "greedy with replacement on OOF errors, then log-loss (Caruana et al. 2004)",
        "candidates": single,
        "steps": chosen["steps"]})


def write(run_dir: Path, weights: dict[str, float], y: np.ndarray, folds: np.ndarray,
          info: dict[str, Any]) -> dict[str, Any]:
    """Write the ensemble of `weights` (member -> weight, summing to 1), unless the same one with
    the same members' predictions is already there; returns ensemble.json's content."""
    key = {"weights": weights, "oof": {m: _digest(run_dir / m / "oof.npy") for m in weights},
           "test": {m: _digest(run_dir / m / "test.npy") for m in weights}}
    out = run_dir / NAME
    if (out / "cv.json").is_file() and (out / "ensemble.json").is_file() \
            and io.read_json(out / "ensemble.json").get("key") == key:
        return io.read_json(out / "ensemble.json")
    remove(run_dir)  # a changed ensemble: its export and benchmark go with it
    oofs = {m: np.load(run_dir / m / "oof.npy").astype(np.float64) for m in weights}
    oof = sum(w * oofs[m] for m, w in weights.items()).astype(np.float32)
    test = sum(w * np.load(run_dir / m / "test.npy").astype(np.float64) for m, w in weights.items()).astype(np.float32)
    member_cv = {m: io.read_json(run_dir / m / "cv.json") for m in weights}
    from harness.train.cv import oof_fold_stats

    fold_acc, fold_mean, fold_std = oof_fold_stats(oof, y, folds)
    accuracy = float((oof.argmax(1) == y).mean())
    doc = {"members": weights, **info, "oof_accuracy": accuracy, "key": key}
    io.write_npy(out / "oof.npy", oof)
    io.write_npy(out / "test.npy", test)
    io.write_json(out / "ensemble.json", doc)
    description = "weighted mean of " + " + ".join(f"{w:.2f} {m}" for m, w in weights.items())
    io.write_json(out / "cv.json", {  # last: makes it a leaderboard row
        "model": NAME, "family": NAME, "description": description, "source": "harness.train.ensemble",
        "params": {"members": weights}, "epochs": None, "oof_accuracy": accuracy,
        "tta": max(int(c.get("tta") or 1) for c in member_cv.values()),
        "fold_mean": fold_mean, "fold_std": fold_std,
        "train_seconds": round(sum(c["train_seconds"] for c in member_cv.values()), 2), "train_ips": None,
        "n_params": sum(int(c.get("n_params") or 0) for c in member_cv.values()),
        "folds": [{"fold": f, "accuracy": a, "n_val": int((folds == f).sum())} for f, a in enumerate(fold_acc)]})
    return doc


def members(run_dir: Path, model: str) -> dict[str, float] | None:
    """The member weights when `model` is an ensemble folder, else None."""
    path = run_dir / model / "ensemble.json"
    return io.read_json(path)["members"] if path.is_file() else None
