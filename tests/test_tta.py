"""Test-time augmentation: the shifted views, Keras vs ONNX equivalence of a TTA graph, and a
resumed run whose --tta changed (only predictions, export and benchmark are redone)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.train import tta
from tests.conftest import harness_cli


def _numpy_shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_views_are_zero_filled_whole_pixel_shifts():
    from harness.core.tfquiet import import_tensorflow

    import_tensorflow()
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
    assert tta.VIEWS[0] == (0, 0) and len(set(tta.VIEWS)) == tta.MAX_VIEWS
    for dy, dx in tta.VIEWS:
        np.testing.assert_array_equal(np.asarray(tta.shift(x, dy, dx)), _numpy_shift(x, dy, dx))
    assert np.asarray(tta.shift(x, 1, 0))[:, 0].sum() == 0  # the top row came in empty


def test_bad_tta_values_are_usage_errors(project: Path):
    for value in ("0", "10", "x"):
        proc = harness_cli("run", "--model", "ann_tiny", "--tta", value, cwd=project, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


SMALL = ["--model", "cnn_tiny", "--limit", "1500", "--folds", "2", "--epochs", "1", "--no-bench",
         "--no-report", "--no-ensemble", "--json"]


@pytest.mark.e2e
@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_tta_graph_matches_keras_and_a_changed_tta_resumes(project: Path, replica_dir: Path):
    import keras

    from harness.data.dataset import load
    from harness.export.convert import onnx_metadata, predict_onnx

    proc = harness_cli("run", *SMALL, "--tta", "3", cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = Path(json.loads(proc.stdout)["run_dir"])
    cv = json.loads((run / "cnn_tiny" / "cv.json").read_text())
    assert cv["tta"] == 3 and "oof_accuracy_plain" in cv
    assert (run / "cnn_tiny" / "fold_0" / "oof.tta3.npy").is_file()
    export = json.loads((run / "cnn_tiny" / "export.json").read_text())
    assert export["ok"] and export["metadata"]["tta"] == 3
    assert onnx_metadata(run / "cnn_tiny" / "model.onnx")["tta"] == "3"

    # The graph computes the views: its output is the Keras folds' 3-view mean, and differs from
    # the plain fold mean.
    x = load(replica_dir).x_test[:300]
    folds = [keras.saving.load_model(run / "cnn_tiny" / f"fold_{f}" / "model.keras", compile=False)
             for f in range(2)]
    with_tta = np.mean([tta.predict(m, x, 3) for m in folds], axis=0)
    plain = np.mean([tta.predict(m, x, 1) for m in folds], axis=0)
    onnx = predict_onnx(run / "cnn_tiny" / "model.onnx", x)
    np.testing.assert_allclose(onnx, with_tta, atol=1e-4)
    assert np.abs(onnx - plain).max() > 1e-3
    # The model's test predictions (the submission's source) are the same 3-view mean.
    test = np.load(run / "cnn_tiny" / "test.npy")[:300]
    np.testing.assert_allclose(test, with_tta, atol=1e-4)

    fold_mtime = (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns
    again = harness_cli("run", *SMALL, "--tta", "1", "--resume", run.name, cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "--tta changed" in again.stderr
    assert (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns == fold_mtime
    assert json.loads((run / "cnn_tiny" / "cv.json").read_text())["tta"] == 1
    assert json.loads((run / "cnn_tiny" / "export.json").read_text())["metadata"]["tta"] == 1
    np.testing.assert_allclose(predict_onnx(run / "cnn_tiny" / "model.onnx", x), plain, atol=1e-4)
