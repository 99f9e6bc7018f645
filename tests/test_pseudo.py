"""Pseudo-labelling (harness.train.pseudo): fold f's labels come from round one's fold-f models only, a
changed threshold redoes them and the `+pl` models, and the CLI makes it an opt-in row."""

from __future__ import annotations

import json
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from harness.core import io
from harness.core.errors import UsageError
from harness.train import pseudo
from tests.conftest import harness_cli


def _teacher(run: Path, name: str, fold_tests: list[np.ndarray], oof: np.ndarray) -> None:
    for f, t in enumerate(fold_tests):
        io.write_npy(run / name / f"fold_{f}" / "test.npy", t.astype(np.float32))
    io.write_npy(run / name / "oof.npy", oof.astype(np.float32))


def _onehot(labels: list[int], conf: list[float]) -> np.ndarray:
    p = np.full((len(labels), 10), 0.0)
    for i, (c, q) in enumerate(zip(labels, conf)):
        p[i] = (1 - q) / 9
        p[i, c] = q
    return p


def test_each_fold_is_labelled_by_its_own_fold_models_only(tmp_path: Path):
    y = np.array([0, 1, 2, 3])
    # Fold 0's model says 5 (confident) for test row 0; fold 1's says 7 for it (unsure for row 1).
    _teacher(tmp_path, "a", [_onehot([5, 6], [0.97, 0.95]), _onehot([7, 6], [0.95, 0.6])], _onehot([0, 1, 2, 3], [0.9] * 4))
    doc = pseudo.make_labels(tmp_path, ["a"], y, k=2, threshold=0.9)
    i0, l0 = pseudo.load_labels(tmp_path, 0)
    i1, l1 = pseudo.load_labels(tmp_path, 1)
    assert i0.tolist() == [0, 1] and l0.tolist() == [5, 6]
    assert i1.tolist() == [0] and l1.tolist() == [7]  # row 1 below the threshold in fold 1
    assert [f["rows"] for f in doc["folds"]] == [2, 1]

    # Same inputs: kept as they are. A new threshold: labels redone and every +pl model dropped.
    (tmp_path / "a+pl").mkdir()
    assert pseudo.make_labels(tmp_path, ["a"], y, k=2, threshold=0.9) == doc and (tmp_path / "a+pl").exists()
    pseudo.make_labels(tmp_path, ["a"], y, k=2, threshold=0.96)
    assert not (tmp_path / "a+pl").exists()
    assert pseudo.load_labels(tmp_path, 0)[0].tolist() == [0]


def test_teachers_are_mixed_with_the_oof_selection_weights(tmp_path: Path):
    y = np.array([0, 1, 2, 3, 4, 5])
    good_oof = _onehot([0, 1, 2, 3, 4, 5], [0.9] * 6)
    bad_oof = _onehot([9, 9, 9, 9, 9, 9], [0.9] * 6)  # never right: the selection gives it no weight
    _teacher(tmp_path, "good", [_onehot([3], [0.95])] * 2, good_oof)
    _teacher(tmp_path, "bad", [_onehot([8], [0.99])] * 2, bad_oof)
    doc = pseudo.make_labels(tmp_path, ["bad", "good"], y, k=2, threshold=0.9)
    assert doc["teachers"] == {"good": 1.0}
    assert pseudo.load_labels(tmp_path, 0)[1].tolist() == [3]


def test_fine_tune_recipe_and_names():
    p = pseudo.params_for({"epochs": 24, "learning_rate": 3e-3, "width": 32}, 0.9)
    assert p["epochs"] == 8 and p["learning_rate"] == pytest.approx(1e-3) and p["width"] == 32
    assert p["pseudo_threshold"] == 0.9
    assert pseudo.params_for({"epochs": 1, "learning_rate": 1.0}, 0.9)["epochs"] == 1
    assert pseudo.base("cnn_deep+pl") == "cnn_deep" and pseudo.name("ann") == "ann+pl"
    for bad in (0.3, 1.0, 1.5):
        with pytest.raises(UsageError, match="--pseudo-label"):
            pseudo.check(bad)


TINY = ["--model", "ann_tiny", "--model", "cnn_tiny", "--limit", "2000", "--folds", "2", "--epochs", "2",
        "--no-bench", "--no-report", "--json"]


@pytest.mark.e2e
@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_pseudo_label_rows_are_opt_in_and_removed_when_off(project: Path):
    bad = harness_cli("run", *TINY, "--pseudo-label", "1.5", cwd=project, timeout=120)
    assert bad.returncode == 2 and "--pseudo-label" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    plain = harness_cli("run", *TINY, cwd=project, timeout=600)
    assert plain.returncode == 0, plain.stderr
    run = Path(json.loads(plain.stdout)["run_dir"])
    assert not any(r["model"].endswith("+pl") for r in json.loads(plain.stdout)["rows"])
    fold_model = (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns

    # Opting in on the same run adds the +pl rows; round one is reused, not retrained.
    on = harness_cli("run", *TINY, "--pseudo-label", "0.5", "--resume", run.name, cwd=project, timeout=600)
    assert on.returncode == 0, on.stderr
    rows = {r["model"] for r in json.loads(on.stdout)["rows"]}
    assert {"ann_tiny+pl", "cnn_tiny+pl"} <= rows
    assert (run / "cnn_tiny" / "fold_0" / "model.keras").stat().st_mtime_ns == fold_model
    labels = json.loads((run / "pseudo" / "labels.json").read_text())
    assert labels["threshold"] == 0.5 and all(f["rows"] > 0 for f in labels["folds"])
    fold = json.loads((run / "cnn_tiny+pl" / "fold_0" / "fold.json").read_text())
    assert fold["n_train"] == 1000 + labels["folds"][0]["rows"] and fold["epochs"] == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["pseudo_label"] == 0.5 and manifest["params"]["cnn_tiny+pl"]["pseudo_threshold"] == 0.5
    assert (run / "cnn_tiny+pl" / "model.onnx").is_file()  # exported behind the parity gate like any model
    report = harness_cli("report", "--run", run.name, cwd=project, timeout=300)
    assert report.returncode == 0, report.stderr
    html = unescape((project / "reports" / f"{run.name}.html").read_text())
    assert "Pseudo-labelling (--pseudo-label 0.5, opt-in)" in html and '"pseudo_label": 0.5' in html

    off = harness_cli("run", *TINY, "--resume", run.name, cwd=project, timeout=600)
    assert off.returncode == 0, off.stderr
    assert not any(r["model"].endswith("+pl") for r in json.loads(off.stdout)["rows"])
    assert not (run / "pseudo").exists() and not (run / "cnn_tiny+pl").exists()
