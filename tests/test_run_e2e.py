"""`harness run` end to end, as a user runs it: a subprocess on a small stratified subset of the
real replica. Covers resume after a kill, determinism, and the artefacts each stage leaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import harness_cli

pytestmark = pytest.mark.e2e

SMALL = ["--limit", "1500", "--folds", "2", "--epochs", "1"]


def test_run_writes_every_artefact(project: Path):
    secret = "sekrit-key-5f3a9c"  # configured but never used (no --submit); must not leak anywhere
    proc = harness_cli("run", "--model", "ann_tiny", "--model", "cnn_tiny", *SMALL, "--quick", "--json", cwd=project,
                       env={"KAGGLE_USERNAME": "tester", "KAGGLE_KEY": secret})
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    run = Path(results["run_dir"])
    rows = {r["model"]: r for r in results["rows"]}
    assert set(rows) - {"ensemble"} == {"ann_tiny", "cnn_tiny"} and results["best"] in rows
    if "ensemble" in rows:  # chosen on OOF: a mix of the two with fewer OOF errors than either
        assert rows["ensemble"]["members"] and rows["ensemble"]["status"] == "ok"
        assert rows["ensemble"]["cv_accuracy"] >= max(rows[m]["cv_accuracy"] for m in ("ann_tiny", "cnn_tiny"))
        assert (run / "ensemble" / "model.onnx").is_file() and (run / "ensemble" / "bench.json").is_file()
    for model in ("ann_tiny", "cnn_tiny"):
        for name in ("cv.json", "oof.npy", "test.npy", "model.onnx", "export.json", "bench.json",
                     "fold_0/model.keras", "fold_1/history.json"):
            assert (run / model / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["finished"] and manifest["config"]["n_train_rows"] == len(np.load(run / "train_index.npy"))
    assert manifest["data"]["train"] and "keras" in manifest["versions"]
    assert isinstance(manifest["git_tree"]["dirty"], bool)  # provenance: the code is a git checkout
    assert manifest["executor"]["name"] == "local" and manifest["executor"]["jobs"] == 1
    folds = [json.loads(p.read_text()) for p in run.glob("*/fold_*/fold.json")]
    assert {f["executor"] for f in folds} == {"local"} and all(f["pid"] for f in folds)

    sub = project / "submissions" / f"{run.name}.csv"
    lines = sub.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 28001
    assert results["submission"]["private"] is not None  # scored against the replica's solution
    report = project / "reports" / f"{run.name}.html"
    assert report.is_file()
    for path in [*run.rglob("*.json"), report, sub]:  # never a credential in any artefact
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in proc.stderr + proc.stdout

    board = harness_cli("leaderboard", "--md", cwd=project, check=True)
    assert board.stdout.startswith("| # | model |") and "ann_tiny" in board.stdout
    scored = harness_cli("score", str(sub), "--json", cwd=project, check=True)
    assert json.loads(scored.stdout)["score"]["private"] == pytest.approx(results["submission"]["private"])


def test_interrupted_run_resumes_from_last_finished_fold(project: Path):
    args = [sys.executable, "-m", "harness", "run", "--model", "cnn_tiny", "--limit", "3000", "--folds", "3",
            "--epochs", "2", "--no-bench", "--no-report"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    marker = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((project / "runs").glob("*/cnn_tiny/fold_0/fold.json"))
        if found:
            marker = found[0]
            break
        time.sleep(0.2)
    assert marker is not None, "fold 0 never finished"
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the worst case
    proc.wait(timeout=30)
    run = marker.parents[2]
    assert not (run / "cnn_tiny" / "cv.json").exists()
    before = (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns

    again = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.name}" in again.stderr
    assert "cnn_tiny fold 1/3: already trained, resumed" in again.stderr
    assert (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns == before
    assert (run / "cnn_tiny" / "cv.json").is_file()
    assert not list(run.rglob("*.tmp*")), "a temp file was left behind"


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_deterministic_runs_give_identical_cv(project: Path):
    args = ["run", "--model", "cnn_tiny", *SMALL, "--deterministic", "--new", "--no-bench", "--no-report",
            "--json"]
    first = json.loads(harness_cli(*args, cwd=project, check=True).stdout)
    second = json.loads(harness_cli(*args, cwd=project, check=True).stdout)
    assert first["run_dir"] != second["run_dir"]
    a, b = (np.load(Path(r["run_dir"]) / "cnn_tiny" / "oof.npy") for r in (first, second))
    assert np.array_equal(np.load(Path(first["run_dir"]) / "folds.npy"), np.load(Path(second["run_dir"]) / "folds.npy"))
    assert np.array_equal(a, b)
    assert first["rows"][0]["cv_accuracy"] == second["rows"][0]["cv_accuracy"]
