"""Run folders: the unit of record. Every stage reads and writes artefacts here.

Layout (one direction of data flow, each file written atomically):

    runs/<run-id>/
      manifest.json            config, versions, data hashes, git commit, hardware, sessions, times
      train_index.npy          int32: the train.csv rows this run uses (all, or a --limit subset)
      folds.npy                int8: the fold of each of those rows (same for every model)
      results.json             the leaderboard rows (written by harness.results.leaderboard)
      <model>/
        fold_<k>/model.keras   fold model (input float32 pixels 0..255, output softmax [N,10])
        fold_<k>/history.json  per-epoch loss/accuracy, train and validation; each epoch's end (s)
        fold_<k>/oof.npy       float32 [n_val,10] probabilities on the fold's validation rows
        fold_<k>/test.npy      float32 [28000,10] probabilities on test.csv
        fold_<k>/fold.json     the marker that the fold is complete (accuracy, times, where it ran)
        .fold_<k>.<host>.<pid>.<token>/   an attempt in progress (harness.train.jobs): renamed to
                               fold_<k> when complete, so a fold folder is always whole
        params.json            resolved parameters (a resumed run retrains the model if they changed)
        cv.json                OOF accuracy, per-fold mean/std, params, throughput
        oof.npy, test.npy      assembled [n_train,10] / [n_test,10] (test: mean over folds)
        model.onnx             the fold ensemble as one graph (harness.export.convert)
        export.json            parity figures
        bench.json             latency figures (harness.bench.latency)
        score.json             local public/private accuracy (only with the replica's solution)
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from harness.core.errors import RunError

RUN_MARKER = "manifest.json"


def new_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now()
    return now.strftime("%Y%m%d-%H%M%S")


def list_runs(runs_dir: Path) -> list[Path]:
    """Run folders, oldest first (run ids sort by time)."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / RUN_MARKER).is_file())


def resolve_run(runs_dir: Path, run: str | None) -> Path:
    """A run by id or path; None means the latest. A clear error when there is none."""
    if run is None:
        runs = list_runs(runs_dir)
        if not runs:
            raise RunError(f"no runs in {runs_dir}/ yet; start one with `harness run --all`")
        return runs[-1]
    candidate = Path(run)
    for path in (candidate, runs_dir / run):
        if path.is_dir() and (path / RUN_MARKER).is_file():
            return path
    known = ", ".join(p.name for p in list_runs(runs_dir)[-5:]) or "none"
    raise RunError(f"run {run!r} not found in {runs_dir}/ (recent: {known})")


def model_dir(run_dir: Path, model: str) -> Path:
    return run_dir / model


def fold_dir(run_dir: Path, model: str, fold: int) -> Path:
    return run_dir / model / f"fold_{fold}"


def run_models(run_dir: Path) -> list[str]:
    """Models that have a cv.json in this run (trained to completion), in name order."""
    return sorted(p.name for p in run_dir.iterdir() if (p / "cv.json").is_file())
