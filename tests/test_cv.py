"""Stratified folds, OOF bookkeeping, fold ensembles, determinism."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from harness.core.errors import RunError
from harness.executors import InProcess, run_jobs
from harness.registry import get_model
from harness.train.cv import assemble_cv, make_folds, stratified_subset
from harness.train.jobs import FoldJob, JobData


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(10, size=4203, p=np.linspace(0.05, 0.15, 10) / np.linspace(0.05, 0.15, 10).sum())


def test_folds_are_deterministic_and_seeded(labels):
    a, b, c = make_folds(labels, 5, 1), make_folds(labels, 5, 1), make_folds(labels, 5, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_folds_are_stratified_and_balanced(labels):
    folds = make_folds(labels, 5, 7)
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(labels)
    for label in range(10):
        per_fold = np.bincount(folds[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1  # each class dealt evenly


def test_fold_errors(labels):
    with pytest.raises(RunError, match="at least 2"):
        make_folds(labels, 1, 0)
    with pytest.raises(RunError, match="rarest class"):
        make_folds(np.array([0, 0, 0, 1]), 2, 0)


def test_stratified_subset_keeps_class_shares(labels):
    idx = stratified_subset(labels, 1000, 3)
    assert abs(len(idx) - 1000) <= 10 and np.all(np.diff(idx) > 0)
    full = np.bincount(labels, minlength=10) / len(labels)
    sub = np.bincount(labels[idx], minlength=10) / len(idx)
    assert np.abs(full - sub).max() < 0.01
    assert np.array_equal(stratified_subset(labels, 10**6, 3), np.arange(len(labels)))


def _toy(n=600, seed=0):
    """Separable toy digits: class k lights up row band k, so a tiny MLP learns them in 2 epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 2 * k + 2: 2 * k + 5, :, 0] = 250
    return x, y


def run_cv(run_dir, spec, params, x, y, x_test, folds, *, seed, epochs, executor=None):
    """Every fold as a job on `executor` (in this process by default), then the model's CV;
    returns (CVResult, the jobs' results)."""
    k = int(folds.max()) + 1
    jobs = [FoldJob(run_dir=str(run_dir), model=spec.name, fold=f, k=k, params=params, seed=seed * 100 + f,
                    epochs=epochs) for f in range(k)]
    results = {}
    with (executor or InProcess()).session(JobData(x, y, x_test, folds), run_dir) as ex:
        run_jobs(ex, jobs, lambda job, r: results.__setitem__(job.fold, r))
    return assemble_cv(run_dir, spec, params, y, folds, epochs=epochs), [results[f] for f in range(k)]


def test_oof_bookkeeping_and_fold_ensemble(tmp_path):
    x, y = _toy()
    x_test = x[:50]
    folds = make_folds(y, 3, 0)
    spec = get_model("ann_tiny")
    cv, results = run_cv(tmp_path, spec, spec.params(), x, y, x_test, folds, seed=0, epochs=2)
    assert [r["status"] for r in results] == ["trained"] * 3
    assert results[0]["executor"] == "local" and results[0]["pid"] == os.getpid()
    oof = np.load(tmp_path / "ann_tiny" / "oof.npy")
    test = np.load(tmp_path / "ann_tiny" / "test.npy")
    assert oof.shape == (600, 10) and test.shape == (50, 10)
    for f in range(3):  # each row's OOF prediction comes from the model that did not see it
        assert np.array_equal(oof[folds == f], np.load(tmp_path / "ann_tiny" / f"fold_{f}" / "oof.npy"))
    mean = np.mean([np.load(tmp_path / "ann_tiny" / f"fold_{f}" / "test.npy") for f in range(3)], axis=0)
    assert np.allclose(test, mean, atol=1e-6)
    assert cv.oof_accuracy == pytest.approx((oof.argmax(1) == y).mean())
    assert cv.oof_accuracy > 0.5  # it learned something
    info = json.loads((tmp_path / "ann_tiny" / "cv.json").read_text())
    assert info["n_params"] == 25546 and len(info["folds"]) == 3
    history = json.loads((tmp_path / "ann_tiny" / "fold_0" / "history.json").read_text())
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    ends = history["epoch_end_s"]   # seconds into training at each epoch's end
    assert len(ends) == len(history["loss"]) == 2 and 0 < ends[0] < ends[1] <= info["folds"][0]["seconds"] + 0.01

    # A second call resumes every fold: nothing is retrained, the figures are the same.
    before = (tmp_path / "ann_tiny" / "fold_1" / "model.keras").stat().st_mtime_ns
    again, results = run_cv(tmp_path, spec, spec.params(), x, y, x_test, folds, seed=0, epochs=2)
    assert [r["status"] for r in results] == ["skipped"] * 3 and again.oof_accuracy == cv.oof_accuracy
    assert (tmp_path / "ann_tiny" / "fold_1" / "model.keras").stat().st_mtime_ns == before


def test_half_written_fold_is_retrained(tmp_path):
    x, y = _toy(300)
    folds = make_folds(y, 2, 0)
    spec = get_model("ann_tiny")
    run_cv(tmp_path, spec, spec.params(), x, y, x[:10], folds, seed=0, epochs=1)
    (tmp_path / "ann_tiny" / "fold_1" / "fold.json").unlink()  # as if killed before the marker
    (tmp_path / "ann_tiny" / "cv.json").unlink()
    _, results = run_cv(tmp_path, spec, spec.params(), x, y, x[:10], folds, seed=0, epochs=1)
    assert [r["status"] for r in results] == ["skipped", "trained"]
    assert not list((tmp_path / "ann_tiny").glob(".fold_*")), "a staging folder was left behind"


def test_bfloat16_recipe_trains_mixed_and_keeps_a_float32_model(tmp_path):
    import keras

    from harness.core.device import bf16_fast

    x, y = _toy(400)
    folds = make_folds(y, 2, 0)
    spec = get_model("ann_tiny")
    params = {**spec.params(), "precision": "bfloat16"}
    cv, results = run_cv(tmp_path, spec, params, x, y, x[:10], folds, seed=0, epochs=2)
    assert results[0]["precision"] == ("mixed_bfloat16" if bf16_fast() else "float32")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for the process
    saved = keras.saving.load_model(tmp_path / "ann_tiny" / "fold_0" / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert saved(x[:4].astype(np.float32)).dtype == "float32"
    assert cv.oof_accuracy > 0.5


def test_unknown_precision_is_an_error(tmp_path):
    x, y = _toy(100)
    spec = get_model("ann_tiny")
    with pytest.raises(Exception, match="unknown precision 'fp8'"):
        run_cv(tmp_path, spec, {**spec.params(), "precision": "fp8"}, x, y, x[:5], make_folds(y, 2, 0),
               seed=0, epochs=1)
    with pytest.raises(Exception, match="unknown batch_norm 'fast'"):
        run_cv(tmp_path, spec, {**spec.params(), "batch_norm": "fast"}, x, y, x[:5], make_folds(y, 2, 0),
               seed=0, epochs=1)


def test_fused_batch_norm_trains_and_saves_plain_keras_layers(tmp_path):
    """Training takes the fused batch norm (harness.train.batchnorm); the saved fold model has Keras's own
    layers, loads without custom objects, and `batch_norm: keras` still trains the plain layers."""
    import keras

    x, y = _toy(400)
    folds = make_folds(y, 2, 0)
    for name, mode, epochs in (("ann_tiny", "fused", 2), ("ann_tiny", "keras", 2), ("cnn_tiny", "fused", 1)):
        spec = get_model(name)
        cv, _ = run_cv(tmp_path / mode, spec, {**spec.params(), "batch_norm": mode}, x, y, x[:10], folds,
                       seed=0, epochs=epochs)
        saved = keras.saving.load_model(tmp_path / mode / name / "fold_0" / "model.keras", compile=False)
        kinds = {type(layer).__name__ for layer in saved.layers}
        assert "BatchNormalization" in kinds and "FusedBatchNormalization" not in kinds
        assert json.loads((tmp_path / mode / name / "fold_0" / "fold.json").read_text())["batch_norm"] == mode
        if name == "ann_tiny":  # the toy digits are made for an MLP (see _toy)
            assert cv.oof_accuracy > 0.5
