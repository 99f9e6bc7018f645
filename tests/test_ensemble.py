"""The OOF ensemble: greedy selection on synthetic OOF with a known answer, its ONNX graph behind
the parity gate (real tiny models on real digits), and resume of a run with an ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.train import ensemble
from tests.conftest import harness_cli


def _onehot(labels: np.ndarray, p: float) -> np.ndarray:
    out = np.full((len(labels), 10), (1 - p) / 9, dtype=np.float64)
    out[np.arange(len(labels)), labels] = p
    return out


def _synthetic(n: int = 1000, seed: int = 0):
    """A is right on the first 60 % of rows, B on the last 60 %; each is confidently wrong elsewhere,
    but less confident than when right. C is right only by chance. The answer: A and B, half each."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    wrong = (y + 1 + rng.integers(0, 9, n)) % 10
    a = np.where((np.arange(n) < 0.6 * n)[:, None], _onehot(y, 0.9), _onehot(wrong, 0.6))
    b = np.where((np.arange(n) >= 0.4 * n)[:, None], _onehot(y, 0.9), _onehot(wrong, 0.6))
    c = _onehot(rng.integers(0, 10, n), 0.5)
    return {"a": a, "b": b, "c": c}, y


def test_selection_finds_the_known_mix():
    oofs, y = _synthetic()
    chosen = ensemble.select(oofs, y)
    assert set(chosen["weights"]) == {"a", "b"}
    assert abs(chosen["weights"]["a"] - 0.5) <= 0.1 and sum(chosen["weights"].values()) == pytest.approx(1.0)
    mix = sum(w * oofs[m] for m, w in chosen["weights"].items())
    assert (mix.argmax(1) == y).mean() == 1.0  # each single model: 0.6
    assert chosen["logloss"] == pytest.approx(ensemble.logloss(mix, y), rel=1e-9) and chosen["errors"] == 0
    assert chosen["steps"][0]["added"] in ("a", "b") and len(chosen["steps"]) == ensemble.ITERATIONS
    assert chosen == ensemble.select(oofs, y)  # deterministic


def test_a_model_that_dominates_is_kept_alone():
    oofs, y = _synthetic()
    oofs["perfect"] = _onehot(y, 0.99)
    assert ensemble.select(oofs, y)["weights"] == {"perfect": 1.0}


def test_logloss_matches_its_definition():
    y = np.array([0, 1])
    p = np.array([[0.5, 0.5] + [0] * 8, [0.25, 0.75] + [0] * 8])
    assert ensemble.logloss(p, y) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


SMALL = ["--model", "ann_tiny", "--model", "cnn_tiny", "--limit", "3000", "--folds", "2", "--epochs", "2",
         "--no-bench", "--no-report", "--no-int8", "--json"]  # INT8 has its own tests (test_quantize)


@pytest.mark.e2e
@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_ensemble_graph_passes_parity_and_resume_rebuilds_only_it(project: Path, replica_dir: Path):
    from harness.data.dataset import load
    from harness.export.convert import export_model, predict_onnx

    first = harness_cli("run", *SMALL, "--no-ensemble", cwd=project, timeout=600)
    assert first.returncode == 0, first.stderr
    run = Path(json.loads(first.stdout)["run_dir"])
    assert not (run / "ensemble").exists() and "ensemble" not in first.stdout
    members_export = {m: (run / m / "export.json").stat().st_mtime_ns for m in ("ann_tiny", "cnn_tiny")}

    # A fixed mix, written and exported as the run does it: the graph must equal the weighted mean.
    y, folds = np.load(run / "train_index.npy"), np.load(run / "folds.npy")
    ds = load(replica_dir)
    y = ds.y_train[y]
    doc = ensemble.write(run, {"ann_tiny": 0.75, "cnn_tiny": 0.25}, y, folds, {"selection": "test"})
    assert doc["members"] == {"ann_tiny": 0.75, "cnn_tiny": 0.25}
    result = export_model(run, "ensemble", ds.x_train[:1000])
    assert result.ok and result.argmax_mismatches == 0 and result.max_abs_diff <= 1e-4
    x = ds.x_test[:500]
    mixed = 0.75 * predict_onnx(run / "ann_tiny" / "model.onnx", x) + 0.25 * predict_onnx(
        run / "cnn_tiny" / "model.onnx", x)
    np.testing.assert_allclose(predict_onnx(run / "ensemble" / "model.onnx", x), mixed, atol=2e-5)
    cli = harness_cli("export", "--run", run.name, "--model", "ensemble", "--json", cwd=project, timeout=300)
    assert cli.returncode == 0 and "ensemble" in cli.stdout, cli.stderr  # `harness export` knows it too
    cv = json.loads((run / "ensemble" / "cv.json").read_text())
    oof = 0.75 * np.load(run / "ann_tiny" / "oof.npy") + 0.25 * np.load(run / "cnn_tiny" / "oof.npy")
    assert cv["oof_accuracy"] == pytest.approx(float((oof.argmax(1) == y).mean()))

    # Resuming that run with the ensemble on (the default) recomputes only the ensemble.
    again = harness_cli("run", *SMALL, "--resume", run.name, cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "ensemble:" in again.stderr
    for m, mtime in members_export.items():
        assert (run / m / "export.json").stat().st_mtime_ns == mtime, f"{m} was exported again"
    results = json.loads(again.stdout)
    rows = {r["model"]: r for r in results["rows"]}
    if (run / "ensemble" / "cv.json").is_file():  # the selection found a mix worth keeping
        chosen = json.loads((run / "ensemble" / "ensemble.json").read_text())
        assert chosen["selection"].startswith("greedy") and rows["ensemble"]["members"]
        assert (run / "ensemble" / "model.onnx").is_file() and rows["ensemble"]["status"] == "ok"
    else:  # one model alone was best: no ensemble row, and the hand-written one is gone
        assert "ensemble" not in rows and "kept" in again.stderr

    # --no-ensemble on the same run removes the ensemble and nothing else.
    off = harness_cli("run", *SMALL, "--no-ensemble", "--resume", run.name, cwd=project, timeout=600)
    assert off.returncode == 0, off.stderr
    assert not (run / "ensemble").exists()
    assert {r["model"] for r in json.loads(off.stdout)["rows"]} == {"ann_tiny", "cnn_tiny"}
