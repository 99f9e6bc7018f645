"""Run-level bookkeeping: which invocations resume which run, and per-model parameter checks."""

from __future__ import annotations

from harness.core import io
from harness.core.progress import TrainingProgress
from harness.run.pipeline import RunOptions, _benched, _fingerprint
from harness.run.training import check_params as _check_params


def test_fingerprint_follows_command_line_choices_and_data():
    base = _fingerprint(RunOptions(all_models=True), ["ann"], 5, 42, {"train": "a"})
    assert base == _fingerprint(RunOptions(all_models=True), ["ann"], 5, 42, {"train": "a"})
    assert base != _fingerprint(RunOptions(all_models=True, epochs=3), ["ann"], 5, 42, {"train": "a"})
    assert base != _fingerprint(RunOptions(all_models=True), ["ann"], 5, 42, {"train": "b"})
    assert base != _fingerprint(RunOptions(all_models=True), ["ann"], 3, 42, {"train": "a"})


def test_changed_parameters_retrain_only_that_model(tmp_path, capsys):
    progress = TrainingProgress()
    io.write_json(tmp_path / "m" / "fold_0" / "fold.json", {"fold": 0})
    _check_params(tmp_path, "m", {"width": 8}, progress)          # first time: recorded
    assert io.read_json(tmp_path / "m" / "params.json") == {"width": 8}
    _check_params(tmp_path, "m", {"width": 8}, progress)          # same: artefacts kept
    assert (tmp_path / "m" / "fold_0" / "fold.json").is_file()
    _check_params(tmp_path, "m", {"width": 16}, progress)         # changed: old folds discarded
    assert not (tmp_path / "m" / "fold_0").exists()
    assert io.read_json(tmp_path / "m" / "params.json") == {"width": 16}
    assert "parameters changed since this run trained it" in capsys.readouterr().err


def test_params_fall_back_to_cv_json(tmp_path):
    io.write_json(tmp_path / "m" / "cv.json", {"params": {"width": 8}})
    _check_params(tmp_path, "m", {"width": 8}, TrainingProgress())
    assert (tmp_path / "m" / "cv.json").is_file() and io.read_json(tmp_path / "m" / "params.json") == {"width": 8}


def test_a_resume_that_asks_for_keras_baselines_benchmarks_again(tmp_path):
    """Baselines are opt-in (--baselines): a bench.json without them is enough unless they are asked
    for; an INT8 row never has them, so it is never re-benchmarked for them."""
    fp32, int8 = tmp_path / "bench.json", tmp_path / "bench.int8.json"
    io.write_json(fp32, {"precision": "fp32", "settings": {"batches": [1, 64, 1024]}})
    io.write_json(int8, {"precision": "int8", "settings": {"batches": [1, 64, 1024]}})
    assert not _benched(tmp_path / "missing.json", RunOptions())
    assert _benched(fp32, RunOptions()) and _benched(int8, RunOptions())
    assert not _benched(fp32, RunOptions(baselines=True)) and _benched(int8, RunOptions(baselines=True))
    io.write_json(fp32, {"precision": "fp32", "settings": {"batches": [1, 64, 1024]}, "baselines": {}})
    assert _benched(fp32, RunOptions(baselines=True))
    assert not _benched(fp32, RunOptions(baselines=True, max_latency_ms=1.0, latency_batch=8))
