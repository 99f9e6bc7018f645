"""Measure test-time augmentation on a finished run, without touching it: for each model and each
number of views, the OOF errors (what `--tta` would be chosen by) beside the replica's hidden
public/private errors (shown, never used to choose), and the extra inference it costs.

    python scripts/measure_tta.py runs/RUN [--views 1,3,5,9] [--models cnn_deep,cnn_small]

Every fold model predicts every view of its own validation rows and of the test rows once; a
setting of N views averages the first N (harness.train.tta.VIEWS order). With the run's ensemble
weights (ensemble/ensemble.json) the ensemble's row is computed the same way.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--views", default="1,3,5,9")
    ap.add_argument("--models", default=None, help="comma-separated (default: every trained model)")
    args = ap.parse_args()

    from harness.train.cv import configure_threads

    configure_threads()
    import keras

    from harness.core.runs import fold_dir
    from harness.data import dataset as data
    from harness.kaggle.submission import read_solution, score_labels
    from harness.train import tta

    run = args.run.resolve()
    manifest = json.loads((run / "manifest.json").read_text())
    data_dir = Path(manifest["config"]["data_dir"])
    ds = data.load(data_dir)
    answers = read_solution(data.solution_path(data_dir))
    folds = np.load(run / "folds.npy")
    index = np.load(run / "train_index.npy") if (run / "train_index.npy").is_file() else None
    x, y = (ds.x_train, ds.y_train) if index is None else (ds.x_train[index], ds.y_train[index])
    counts = [int(v) for v in args.views.split(",")]
    top = max(counts)
    names = args.models.split(",") if args.models else sorted(
        p.parent.name for p in run.glob("*/cv.json") if p.parent.name != "ensemble")

    per_view: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for name in names:
        oof = np.zeros((top, len(y), 10), np.float32)
        test = np.zeros((top, len(ds.x_test), 10), np.float32)
        start = time.perf_counter()
        for f in range(int(folds.max()) + 1):
            model = keras.saving.load_model(fold_dir(run, name, f) / "model.keras", compile=False)
            for v, (dy, dx) in enumerate(tta.VIEWS[:top]):
                def view(a: np.ndarray) -> np.ndarray:
                    return np.asarray(tta.shift(a.astype(np.float32), dy, dx))
                oof[v, folds == f] = tta.predict(model, view(x[folds == f]), 1)
                test[v] += tta.predict(model, view(ds.x_test), 1)
        k = int(folds.max()) + 1
        per_view[name] = (oof, test / k, time.perf_counter() - start)
        print(f"# {name}: {top} views of {len(y):,} OOF + {len(ds.x_test):,} test rows in "
              f"{per_view[name][2]:.0f} s", flush=True)

    weights = {}
    ens = run / "ensemble" / "ensemble.json"
    if ens.is_file() and all(m in per_view for m in json.loads(ens.read_text())["members"]):
        weights = json.loads(ens.read_text())["members"]

    print(f"\n{'model':<10} {'views':>5} {'OOF errors':>10} {'OOF %':>8} {'public err':>10} {'private err':>11} "
          f"{'private %':>9}")
    rows = [(n, {n: 1.0}) for n in names] + ([("ensemble", weights)] if weights else [])
    for label, mix in rows:
        for n in counts:
            oof = sum(w * per_view[m][0][:n].mean(0) for m, w in mix.items())
            test = sum(w * per_view[m][1][:n].mean(0) for m, w in mix.items())
            errors = int((oof.argmax(1) != y).sum())
            s = score_labels(ds.image_ids, test.argmax(1), answers).to_dict()
            pub_err = round((1 - s["public"]) * s["n_public"])
            priv_err = round((1 - s["private"]) * s["n_private"])
            print(f"{label:<10} {n:>5} {errors:>10} {100 * (1 - errors / len(y)):>8.3f} {pub_err:>10} "
                  f"{priv_err:>11} {100 * s['private']:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
