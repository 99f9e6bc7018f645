"""Greedy OOF ensembles over models of several runs that share their folds (same seed, folds and
rows): what a run with all of them would have chosen, without training them again.

    python scripts/mix_runs.py RUN_A RUN_B [--models cnn_deep,ann,cnn_small~2] [--mix "a,b;a,b,c"]

A name found in two runs is taken from the first run given that has it.
Prints each model's and each mix's OOF errors, and private/public errors where the replica's hidden
solution exists (HARNESS_DATA_DIR, default data/digit-recognizer); the mixes are chosen exactly as
`harness run` chooses its ensemble (harness.train.ensemble.select: OOF errors, then log-loss), never by
the hidden labels.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.errors import RunError  # noqa: E402
from harness.train.ensemble import select  # noqa: E402


def load(runs: list[Path]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """{model: (oof, test)} over the runs, and the labels of their (common) rows."""
    folds = np.load(runs[0] / "folds.npy")
    index = np.load(runs[0] / "train_index.npy")
    for run in runs[1:]:
        if not (np.array_equal(np.load(run / "folds.npy"), folds) and np.array_equal(np.load(run / "train_index.npy"), index)):
            raise RunError(f"{run.name} has other folds or rows than {runs[0].name}: its OOF predictions do not mix")
    models: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for run in runs:
        for cv in sorted(run.glob("*/cv.json")):
            name = cv.parent.name
            if name not in models and name != "ensemble":
                models[name] = (np.load(cv.parent / "oof.npy").astype(np.float64), np.load(cv.parent / "test.npy").astype(np.float64))
    return models, index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--models", help="comma-separated models to list (default: all)")
    ap.add_argument("--mix", default="", help="';'-separated candidate sets (','-joined models: names may hold '+') "
                    "to select among")
    args = ap.parse_args()

    from harness.data.dataset import load as load_data
    from harness.data.dataset import solution_path
    from harness.kaggle.submission import read_solution, score_labels

    data_dir = Path(os.environ.get("HARNESS_DATA_DIR", "data/digit-recognizer"))
    ds = load_data(data_dir)
    models, index = load(args.runs)
    y = ds.y_train[index]
    sol = solution_path(data_dir)
    answers = read_solution(sol) if sol.is_file() else None

    def row(name: str, oof: np.ndarray, test: np.ndarray, note: str = "") -> str:
        line = f"{name:<44} OOF errors {int((oof.argmax(1) != y).sum()):>4}"
        if answers is not None:
            s = score_labels(ds.image_ids, test.argmax(1), answers)
            line += f"   public {round((1 - s.public) * s.n_public):>3}   private {round((1 - s.private) * s.n_private):>3}"
        return line + (f"   {note}" if note else "")

    names = args.models.split(",") if args.models else sorted(models)
    for m in names:
        print(row(m, *models[m]))
    for mix in filter(None, args.mix.split(";")):
        members = mix.split(",")
        doc = select({m: models[m][0] for m in members}, y)
        w = doc["weights"]
        oof = sum(wt * models[m][0] for m, wt in w.items())
        test = sum(wt * models[m][1] for m, wt in w.items())
        print(row("mix(" + mix + ")", oof, test, " + ".join(f"{wt:.2f} {m}" for m, wt in w.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
