"""`harness tune`: search spaces and their errors, a tiny study, pruning, resume after Ctrl-C,
and `harness run --tuned` picking the stored parameters (tiny models, a few hundred rows)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from harness.core.config import load_settings
from harness.core.errors import ModelError, UsageError
from harness.registry import get_model, list_models, register_model, unregister_model
from harness.tune.space import active_space, in_space, load_tuned, parse_assignments, search_space, tuned_path
from harness.tune.study import TuneOptions, protocol_rows, tune
from tests.conftest import harness_cli

TINY = dict(limit=1100, folds=2, folds_used=2, epochs=2)  # run's parity gate wants 1000 rows


def _write(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ----------------------------------------------------------------------------- spaces and bad input

def test_declared_spaces_are_valid_and_hold_the_defaults():
    for spec in list_models():
        space = search_space(spec)
        defaults = spec.params()
        for name, entry in space.items():
            assert in_space(defaults[name], entry), (spec.name, name)  # the baseline trial is possible
    assert search_space(get_model("ann"))["batch_size"] == ("categorical", [128, 256, 512])


def test_fix_and_only_reject_unknown_names_and_values_outside_the_space():
    spec = get_model("cnn_small")
    with pytest.raises(ModelError, match=r"width=999 is outside the search space .*int 16\.\.48 step 8"):
        parse_assignments(spec, ["width=999"])
    with pytest.raises(ModelError, match=r"width=20 is outside"):  # off the declared step
        parse_assignments(spec, ["width=20"])
    with pytest.raises(ModelError, match=r"no parameter 'widht'.*did you mean 'width'"):
        parse_assignments(spec, ["widht=32"])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_assignments(spec, ["width"])
    with pytest.raises(ModelError, match="batch_size=100 is outside .*one of 128, 256, 512"):
        parse_assignments(get_model("ann"), ["batch_size=100"])
    assert parse_assignments(spec, ["width=24", "label_smoothing=0.1"]) == {"width": 24, "label_smoothing": 0.1}

    with pytest.raises(ModelError, match=r"no parameter 'widht'.*did you mean 'width'"):
        active_space(spec, ["widht"], {})
    with pytest.raises(ModelError, match="'epochs' is not in the search space"):
        active_space(spec, ["epochs"], {})
    with pytest.raises(UsageError, match="contradict"):
        active_space(spec, ["width"], {"width": 24})
    assert list(active_space(spec, ["width,dropout"], {})) == ["width", "dropout"]
    assert "width" not in active_space(spec, None, {"width": 24})


def test_load_tuned_validates_a_hand_edited_file(tmp_path: Path):
    spec = get_model("cnn_small")
    runs = tmp_path / "runs"
    assert load_tuned(runs, spec) == ({}, None)
    path = tuned_path(runs, "cnn_small")
    _write(path, {"model": "cnn_small", "params": {"width": 40, "dense": 128.0, "learning_rate": 0.002}})
    params, where = load_tuned(runs, spec)
    assert params == {"width": 40, "dense": 128, "learning_rate": 0.002} and where == path
    assert isinstance(params["dense"], int)
    bad = [({"params": {"width": 999}}, r"width=999 is outside the search space"),
           ({"params": {"widht": 32}}, r"did you mean 'width'"),
           ({"params": {"dropout": "lots"}}, r"must be a number"),
           ({"params": {"epochs": 2.5}}, r"whole number"),
           ({"params": {"epochs": 0}}, r"must be positive"),
           ({"model": "ann", "params": {}}, r"model 'ann', not 'cnn_small'"),
           ({"best": {}}, r'"params" object'),
           ("{not json", r"not readable JSON")]
    for doc, message in bad:
        _write(path, doc)
        with pytest.raises(ModelError, match=message):
            load_tuned(runs, spec)


def test_cli_reports_bad_parameters_with_exit_4(project: Path):
    proc = harness_cli("tune", "cnn_small", "--fix", "width=999", cwd=project)
    assert proc.returncode == 4 and "width=999 is outside the search space" in proc.stderr
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    proc = harness_cli("tune", "cnn_small", "--only", "widht", cwd=project)
    assert proc.returncode == 4 and "did you mean 'width'" in proc.stderr
    proc = harness_cli("tune", "cnn_small", "--folds-used", "0", cwd=project)
    assert proc.returncode == 2

    _write(project / "runs" / "tuned" / "ann_tiny.json", {"model": "ann_tiny", "params": {"width": 999}})
    proc = harness_cli("run", "--model", "ann_tiny", "--tuned", "--limit", "300", "--folds", "2", "--epochs", "1",
                       "--no-bench", "--no-report", cwd=project)
    assert proc.returncode == 4 and "width=999 is outside the search space" in proc.stderr
    assert not list((project / "runs").glob("*/ann_tiny/fold_0"))  # failed before any training


# ----------------------------------------------------------------------------- studies

def test_tiny_study_saves_best_params_and_run_tuned_uses_them(project: Path):
    from harness.run.pipeline import RunOptions
    from harness.run.pipeline import run as run_pipeline

    settings = load_settings()
    before = set(Path(tempfile.gettempdir()).glob("harness-tune-*"))
    lines: list[str] = []
    t0 = time.perf_counter()
    doc = tune(settings, TuneOptions(model="ann_tiny", trials=2, pruner="none", **TINY), say=lines.append, tty=False)
    assert time.perf_counter() - t0 < 60

    saved = json.loads(tuned_path(settings.runs_dir, "ann_tiny").read_text())
    assert saved == {k: v for k, v in doc.items() if k != "path"}
    assert [t["state"] for t in saved["trials"]] == ["complete"] * 2
    base = saved["trials"][0]
    assert base["baseline"] and base["params"] == {"width": 32, "learning_rate": 0.003}
    assert saved["baseline"]["value"] == base["value"]
    best = max(saved["trials"], key=lambda t: t["value"])
    assert saved["best_value"] == best["value"] and saved["params"] == best["params"]
    budget = saved["budget"]
    assert abs(budget.pop("rows") - 1100) <= 5  # a class-balanced subset rounds per class
    assert budget.pop("trial_seconds") == pytest.approx(sum(t["duration_s"] for t in saved["trials"]), abs=0.1)
    assert budget == {"limit": 1100, "folds": 2, "folds_used": 2, "epochs": 2, "seed": 42, "pruner": "none",
                      "trials": 2, "timeout_s": None}
    for t in saved["trials"]:
        assert len(t["curve"]) == 2 and len(t["fold_accuracies"]) == 2 and t["datetime_complete"]
    assert len({json.dumps(t["params"], sort_keys=True) for t in saved["trials"]}) == 2
    assert set(saved["importances"]) == {"width", "learning_rate"}
    assert (project / "runs" / "tune" / "ann_tiny.db").is_file()
    assert [ln for ln in lines if ln.startswith("trial 2/2 (#1)") and "best" in ln and "ETA" in ln]
    assert set(Path(tempfile.gettempdir()).glob("harness-tune-*")) <= before  # trial folders removed
    assert not [p for p in (project / "runs").iterdir() if p.name not in ("tune", "tuned")]  # no run folder

    # `harness run --tuned` trains with the stored parameters, on the folds the trials used.
    results = run_pipeline(RunOptions(models=["ann_tiny"], tuned=True, limit=1100, folds=2, epochs=1,
                                      bench=False, report=False), settings)
    run_dir = Path(results["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["param_sources"]["ann_tiny"] == str(tuned_path(settings.runs_dir, "ann_tiny"))
    used = manifest["params"]["ann_tiny"]
    assert {k: used[k] for k in saved["params"]} == saved["params"] and used["epochs"] == 1
    from harness.data.dataset import load

    index, folds = protocol_rows(load(settings.data_dir).y_train, 1100, 2, 42)
    assert np.array_equal(np.load(run_dir / "train_index.npy"), index)
    assert np.array_equal(np.load(run_dir / "folds.npy"), folds)


@pytest.fixture
def probe_model():
    """A tiny model whose space reaches a learning rate too small to learn anything."""
    from harness_models.ann import _dense_net

    name = "tune_probe_tiny"
    unregister_model(name)
    register_model(name, family="ann", description="pruning probe", tiny=True,
                   recipe=dict(epochs=2, batch_size=64, learning_rate=3e-3),
                   search_space={"learning_rate": ("log", 1e-7, 1e-2)})(
        lambda width=32, dropout=0.0: _dense_net((width,), dropout))
    yield name
    unregister_model(name)


def test_hopeless_trial_is_pruned_after_its_first_epoch(project: Path, probe_model: str):
    import optuna

    from harness.tune.study import storage_url

    settings = load_settings()
    opts = dict(model=probe_model, limit=600, folds=3, folds_used=2)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    tune(settings, TuneOptions(trials=1, **opts), pruner=pruner)  # the baseline, lr 3e-3
    study = optuna.load_study(study_name=probe_model, storage=storage_url(settings.runs_dir, probe_model)[0])
    study.enqueue_trial({"learning_rate": 1e-7})
    doc = tune(settings, TuneOptions(trials=2, **opts), pruner=pruner)

    good, hopeless = doc["trials"]
    assert good["state"] == "complete" and good["value"] > 0.5
    assert hopeless["state"] == "pruned" and hopeless["pruned_at_epoch"] == 1
    assert hopeless["value"] is None and len(hopeless["curve"]) == 1 and hopeless["curve"][0] < good["curve"][0]
    assert hopeless["fold_accuracies"] is None  # the second fold was never trained
    assert doc["n_trials"]["pruned"] == 1 and doc["params"] == good["params"]


def test_interrupted_tune_resumes_where_it_stopped(project: Path, monkeypatch: pytest.MonkeyPatch):
    import harness.train.cv

    settings = load_settings()
    opts = dict(model="ann_tiny", trials=2, limit=600, folds=3, folds_used=1, epochs=2, pruner="none")
    real_train_fold, calls, ctrl_c_at = harness.train.cv.train_fold, [], [2]

    def train_fold_with_ctrl_c(*args, **kwargs):
        calls.append(kwargs["out"].name)
        if len(calls) in ctrl_c_at:  # Ctrl-C in the second trial
            raise KeyboardInterrupt
        return real_train_fold(*args, **kwargs)

    monkeypatch.setattr(harness.train.cv, "train_fold", train_fold_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tune(settings, TuneOptions(**opts))
    first = json.loads(tuned_path(settings.runs_dir, "ann_tiny").read_text())
    assert first["n_trials"] == {"complete": 1, "pruned": 0, "fail": 1, "running": 0, "waiting": 1}
    cut = first["trials"][1]

    ctrl_c_at.clear()
    lines: list[str] = []
    doc = tune(settings, TuneOptions(**opts), say=lines.append, tty=False)
    assert lines[0].startswith("augmentation policy digits: the competition's spec")
    assert "resuming study 'ann_tiny'" in lines[1] and "1/2 trials finished" in lines[1]
    complete = [t for t in doc["trials"] if t["state"] == "complete"]
    assert len(complete) == 2 and complete[0] == first["trials"][0]  # trial 0 kept, not re-run
    assert complete[1]["params"] == cut["params"]  # the cut-off trial ran again, with its parameters
    assert len(doc["trials"]) == 3 and len(calls) == 3  # only the cut-off trial was trained again

    # The CLI on a finished study: nothing to train, prints the result.
    proc = harness_cli("tune", "ann_tiny", "--trials", "2", "--limit", "600", "--folds", "3", "--folds-used", "1",
                       "--epochs", "2", "--pruner", "none", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "2/2 trials finished" in proc.stderr and "harness run --model ann_tiny --tuned" in proc.stderr
    assert proc.stdout.startswith(f"ann_tiny: best CV accuracy {doc['best_value']:.4f}")


def test_changed_protocol_is_refused(project: Path):
    settings = load_settings()
    tune(settings, TuneOptions(model="ann_tiny", trials=1, limit=300, folds=2, folds_used=1, epochs=1))
    with pytest.raises(UsageError, match=r"limit, rows differ.*--fresh"):
        tune(settings, TuneOptions(model="ann_tiny", trials=2, limit=400, folds=2, folds_used=1, epochs=1))
    doc = tune(settings, TuneOptions(model="ann_tiny", trials=1, limit=400, folds=2, folds_used=1, epochs=1,
                                     fresh=True))
    assert doc["budget"]["limit"] == 400 and len(doc["trials"]) == 1


def test_trials_train_under_the_augmentation_policy_a_run_would_use(project: Path, tmp_path: Path):
    from types import SimpleNamespace

    from harness.core import io
    from harness.core.runs import RUN_MARKER
    from harness.tune.study import augmentation_policy

    pinned, free = SimpleNamespace(augment="digits", slug="digit-recognizer"), SimpleNamespace(augment="", slug="x")
    assert augmentation_policy(TuneOptions(model="ann_tiny", augment="none"), pinned, tmp_path, {})[0] == "none"
    assert augmentation_policy(TuneOptions(model="ann_tiny"), pinned, tmp_path, {})[0] == "digits"
    assert augmentation_policy(TuneOptions(model="ann_tiny"), free, tmp_path, {"a": "1"})[0] == "digits"
    for name, policy, data, finished in (("20260101-000000", "objects", {"a": "1"}, "then"),
                                         ("20260102-000000", "none", {"a": "2"}, "then"),       # other data
                                         ("20260103-000000", "none", {"a": "1"}, None)):        # unfinished
        io.write_json(tmp_path / name / RUN_MARKER,
                      {"augmentation": {"policy": policy}, "data": data, "finished": finished})
    policy, why = augmentation_policy(TuneOptions(model="ann_tiny"), free, tmp_path, {"a": "1"})
    assert (policy, why) == ("objects", "chosen by run 20260101-000000 on this data")
    from harness.train.augment import apply_policy
    from harness.tune.study import _Setup

    spec = get_model("cnn_tiny")
    setup = _Setup(spec=spec, opts=TuneOptions(model="cnn_tiny"), space={}, fixed={}, k=2, seed=0, base_epochs=1,
                   x=None, y=None, x_test=None, folds=None, protocol={}, budget={}, url="", db_path=tmp_path,
                   out_path=tmp_path, policy="none")
    assert setup.trial_params(None)[0] == apply_policy(spec.params({}), "none") != spec.params({})

    # the policy is the protocol's: a study goes on only under the one it began with
    settings = load_settings()
    doc = tune(settings, TuneOptions(model="ann_tiny", trials=1, limit=300, folds=2, folds_used=1, epochs=1,
                                     augment="none"))
    assert doc["budget"]["augment"] == "none"
    with pytest.raises(UsageError, match=r"augment.*--fresh"):
        tune(settings, TuneOptions(model="ann_tiny", trials=2, limit=300, folds=2, folds_used=1, epochs=1))
