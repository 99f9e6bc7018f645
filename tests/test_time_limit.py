"""`harness run --time-limit` and `--plan` as a user meets them: bad values, the plan printed before
anything trains, a budget below the cheapest plan, a planned run that trains what it planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import harness_cli


@pytest.mark.parametrize("args, needle", [
    (["--time-limit", "0"], "--time-limit must be positive"),
    (["--time-limit", "5x"], "--time-limit must be a duration"),
    (["--time-limit=-5m"], "--time-limit must be a duration"),
    (["--plan"], "--plan needs a time limit"),
    (["--time-limit", "10m", "--epochs", "3"], "use one or the other"),
    (["--time-limit", "10m", "--bags", "2"], "use one or the other"),
    (["--time-limit", "10m", "--pseudo-label"], "not in a time-limited plan yet"),
    (["--time-limit", "10m", "--tta", "3"], "not in a time-limited plan yet"),
    (["--replay", "x", "--time-limit", "10m"], "--replay takes the models"),
    (["--replay", "x", "--model", "ann_tiny"], "--replay takes the models"),
])
def test_bad_time_limits_are_one_line_exit_2(tmp_path, args, needle):
    proc = harness_cli("run", "--model", "ann_tiny", *args, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_time_limit_from_the_environment_is_checked_too(tmp_path):
    proc = harness_cli("run", "--model", "ann_tiny", cwd=tmp_path, env={"HARNESS_TIME_LIMIT": "soon"})
    assert proc.returncode == 2 and "--time-limit must be a duration" in proc.stderr


@pytest.mark.e2e
def test_plan_then_a_run_that_trains_what_it_planned(project: Path):
    common = ["run", "--model", "ann_tiny", "--model", "cnn_tiny", "--limit", "1000", "--folds", "2",
              "--no-bench", "--no-report", "--no-int8"]
    # far below what even the fewest epochs cost here: exit 2, naming what it would need
    low = harness_cli(*common, "--time-limit", "2s", "--plan", cwd=project)
    assert low.returncode == 2 and "below the cheapest plan on this machine" in low.stderr, low.stderr
    assert "it needs about" in low.stderr.strip().splitlines()[-1]
    assert sum("harness: error" in line for line in low.stderr.splitlines()) == 1
    # a roomy limit: the plan, as JSON, before anything is trained or written
    plan = harness_cli(*common, "--time-limit", "30m", "--plan", "--json", cwd=project, check=True)
    doc = json.loads(plan.stdout)
    assert doc["limit_s"] == 1800 and doc["plan"]["predicted_s"] <= 0.95 * 1800
    assert set(doc["plan"]["epochs"]) == {"ann_tiny", "cnn_tiny"} and doc["plan"]["full_recipes"]
    # both probed: under 2 s only the first model is worth probing, and a roomier plan adds the other
    assert set(doc["calibration"]["probes"]) == {"ann_tiny", "cnn_tiny"}
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())
    # the run trains the planned epochs and records its budget
    done = harness_cli(*common, "--time-limit", "30m", "--json", cwd=project, check=True)
    run_dir = Path(json.loads(done.stdout)["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["budget"]["plan"]["epochs"] == doc["plan"]["epochs"]
    for model, epochs in doc["plan"]["epochs"].items():
        assert manifest["params"][model]["epochs"] == epochs
        assert json.loads((run_dir / model / "fold_0" / "fold.json").read_text())["epochs"] == epochs
    # what the run's folds took is kept for the next plan of the same setup
    again = json.loads(harness_cli(*common, "--time-limit", "30m", "--plan", "--json", cwd=project, check=True).stdout)
    observed = again["calibration"]["observed"]
    assert set(observed) == {"ann_tiny", "cnn_tiny"} and all(o["train_s_per_image"] > 0 for o in observed.values())


TINY = ["run", "--model", "ann_tiny", "--model", "cnn_tiny", "--limit", "1000", "--folds", "3", "--no-bench",
        "--no-int8"]


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.mark.e2e
def test_replay_trains_the_same_plan_to_the_same_oof_predictions(project: Path):
    import numpy as np

    first = harness_cli(*TINY, "--no-report", "--time-limit", "20m", "--deterministic", "--json", cwd=project,
                        check=True)
    src = Path(json.loads(first.stdout)["run_dir"])
    # as if the keeper had started cnn_tiny's last fold with one epoch fewer than its others
    epochs = _manifest(src)["params"]["cnn_tiny"]["epochs"]
    assert epochs >= 2
    last = src / "cnn_tiny" / "fold_2" / "fold.json"
    last.write_text(json.dumps({**json.loads(last.read_text()), "epochs": epochs - 1}))
    again = harness_cli("run", "--replay", src.name, "--no-bench", "--no-int8", "--no-report", "--json",
                        cwd=project, check=True)
    dst = Path(json.loads(again.stdout)["run_dir"])
    assert dst != src
    manifest = _manifest(dst)
    assert manifest["budget"] is None and manifest["config"]["deterministic"]
    for model in ("ann_tiny", "cnn_tiny"):
        assert manifest["params"][model]["epochs"] == _manifest(src)["params"][model]["epochs"]
    assert np.array_equal(np.load(src / "ann_tiny" / "oof.npy"), np.load(dst / "ann_tiny" / "oof.npy"))
    for fold in (0, 1):  # the folds that kept the model's epochs: the same predictions
        assert np.array_equal(*(np.load(d / "cnn_tiny" / f"fold_{fold}" / "oof.npy") for d in (src, dst))), fold
    assert json.loads((dst / "cnn_tiny" / "fold_2" / "fold.json").read_text())["epochs"] == epochs - 1
    # a run without a plan has nothing to replay
    fixed = harness_cli("run", "--model", "ann_tiny", "--limit", "500", "--folds", "2", "--epochs", "1",
                        "--no-bench", "--no-report", "--json", cwd=project, check=True)
    bad = harness_cli("run", "--replay", Path(json.loads(fixed.stdout)["run_dir"]).name, cwd=project)
    assert bad.returncode != 0 and "no --time-limit plan to replay" in bad.stderr


@pytest.mark.e2e
def test_a_run_killed_mid_training_resumes_under_its_recorded_plan(project: Path):
    cmd = [*TINY, "--time-limit", "20m"]
    # killed as the first model's CV is written: the plan and that model's folds are on disk
    killed = harness_cli(*cmd, cwd=project, env={"HARNESS_FAILPOINT": "cv.json"})
    runs = list((project / "runs").glob("*/manifest.json"))
    if killed.returncode != -9:  # the failpoint names a file the fold writes; it must have fired
        pytest.fail(f"not killed: {killed.stderr[-2000:]}")
    assert len(runs) == 1
    plan = _manifest(runs[0].parent)["budget"]["plan"]
    resumed = harness_cli(*cmd, cwd=project, check=True)
    assert "keeping the plan run" in resumed.stderr and "calibrating" not in resumed.stderr
    assert "already trained, resumed" in resumed.stderr
    manifest = _manifest(runs[0].parent)
    assert manifest["budget"]["plan"] == plan and manifest["finished"] and len(manifest["sessions"]) == 2
    # the report's Budget section: the limit, the plan, planned against used time
    html = (project / "reports" / f"{runs[0].parent.name}.html").read_text()
    budget = html[html.index('<section id="budget">'):]
    budget = budget[:budget.index("</section>")]
    assert "Time limit <strong>20 min" in budget and "planned against used" in budget.lower()
    assert f"harness run --replay {runs[0].parent.name}" in budget


@pytest.mark.e2e
def test_a_budget_too_short_for_every_model_trains_the_cheaper_ones(project: Path):
    # This test's own cache, whose calibration then says cnn_tiny trains 100,000x slower than it
    # does: as on a slow machine, its fewest epochs fit no fold count of a 3-minute budget.
    cache = project / "cache"
    cmd = [*TINY, "--no-report", "--json"]
    harness_cli(*cmd, "--time-limit", "30m", "--plan", cwd=project, env={"HARNESS_CACHE": str(cache)}, check=True)
    record = json.loads((cache / "calibration.json").read_text())
    (probe,) = [r["probes"]["cnn_tiny"] for r in record.values()]
    probe["train_s_per_image"] *= 100_000
    (cache / "calibration.json").write_text(json.dumps(record))
    plan = harness_cli(*cmd, "--time-limit", "3m", "--plan", cwd=project, env={"HARNESS_CACHE": str(cache)},
                       check=True)
    doc = json.loads(plan.stdout)
    assert doc["left_out"] == ["cnn_tiny"] and set(doc["plan"]["epochs"]) == {"ann_tiny"}, doc
    assert "left out cnn_tiny (every model needs about" in plan.stderr
    table = harness_cli(*TINY, "--no-report", "--time-limit", "3m", "--plan", cwd=project,
                        env={"HARNESS_CACHE": str(cache)}, check=True)
    assert "left out cnn_tiny (their fewest epochs do not fit this limit here" in table.stdout
    done = harness_cli(*TINY, "--json", "--time-limit", "3m", cwd=project, env={"HARNESS_CACHE": str(cache)},
                       check=True)
    run_dir = Path(json.loads(done.stdout)["run_dir"])
    assert _manifest(run_dir)["trained"] == ["ann_tiny"] and not (run_dir / "cnn_tiny").exists()
    assert json.loads(done.stdout)["best"] == "ann_tiny"
    html = (project / "reports" / f"{run_dir.name}.html").read_text()
    assert "left out cnn_tiny (their fewest epochs did not fit" in html
    # below even the cheapest model's plan: exit 2, one line naming it and the budget it needs
    low = harness_cli(*cmd, "--time-limit", "5s", cwd=project, env={"HARNESS_CACHE": str(cache)})
    assert low.returncode == 2 and "(ann_tiny alone at its fewest epochs" in low.stderr, low.stderr


@pytest.mark.e2e
def test_a_runs_recorded_time_counts_its_calibration(project: Path):
    # a cache of its own: the calibration runs in this command, before the run's first stage
    done = harness_cli("run", "--model", "ann_tiny", "--limit", "600", "--folds", "2", "--no-bench", "--no-int8",
                       "--no-report", "--time-limit", "10m", "--jobs", "2", "--json", cwd=project,
                       env={"HARNESS_CACHE": str(project / "cache")}, check=True)
    run_dir = Path(json.loads(done.stdout)["run_dir"])
    manifest = _manifest(run_dir)
    stages = manifest["stages_s"]
    assert stages["calibration"] > 0 and manifest["duration_s"] >= sum(stages.values()) - 0.5, manifest
    # the probe's workers, kept warm, trained the folds: the plan paid no second TensorFlow import,
    # and the cached record keeps the import the workers paid, for a later run that starts cold
    calibration = manifest["budget"]["calibration"]
    assert manifest["budget"]["costs"]["warmup_s"] == 0 and calibration["warmup_s"] > 0
    folds = {json.loads((run_dir / "ann_tiny" / f"fold_{f}" / "fold.json").read_text())["pid"] for f in (0, 1)}
    assert calibration["probes"]["ann_tiny"]["pid"] in folds
    cached = json.loads(harness_cli("run", "--model", "ann_tiny", "--limit", "600", "--folds", "2", "--no-bench",
                                    "--no-int8", "--no-report", "--time-limit", "10m", "--jobs", "2", "--plan",
                                    "--json", cwd=project, env={"HARNESS_CACHE": str(project / "cache")},
                                    check=True).stdout)
    assert cached["calibration"]["cached"] and cached["costs"]["warmup_s"] == calibration["warmup_s"]


@pytest.mark.integration
def test_a_worker_slowed_partway_makes_the_driver_replan_and_end_in_time(project: Path):
    import time

    # cnn_tiny's folds after its first sleep 10 minutes: far past the limit. The keeper cancels them
    # at the deadline, drops cnn_tiny whole and ends with ann_tiny's submission and report. A cache
    # of its own: the plan's shares come from this test's calibration, not from earlier runs'.
    cmd = [*TINY, "--jobs", "2", "--time-limit", "150s", "--json"]
    cache = {"HARNESS_CACHE": str(project / "cache")}
    harness_cli(*cmd, "--plan", cwd=project, env=cache, check=True)  # the calibration of this layout, cached
    start = time.perf_counter()
    done = harness_cli(*cmd, cwd=project, env={**cache, "HARNESS_FAILPOINT_SLEEP": "cnn_tiny:600"}, check=True)
    wall = time.perf_counter() - start
    assert wall <= 150 * 1.05 + 30, wall
    results = json.loads(done.stdout)
    run_dir = Path(results["run_dir"])
    events = _manifest(run_dir)["budget"]["events"]
    assert {e["model"] for e in events if e["event"] in ("cancelled", "dropped")} == {"cnn_tiny"}, events
    assert "budget: cnn_tiny dropped" in done.stderr
    assert _manifest(run_dir)["trained"] == ["ann_tiny"] and not (run_dir / "cnn_tiny" / "cv.json").exists()
    assert results["best"] == "ann_tiny" and Path(results["submission"]["path"]).is_file()
    html = (project / "reports" / f"{run_dir.name}.html").read_text()
    assert "<code>cnn_tiny</code> cancelled" in html or "<code>cnn_tiny</code> dropped" in html


@pytest.mark.e2e
@pytest.mark.parametrize("flags, limit", [([], 1800), (["--quick"], 300), (["--epochs", "1"], None),
                                          (["--time-limit", "none"], None)])
def test_the_default_time_limit_is_30_minutes_and_5_with_quick(project: Path, flags, limit):
    proc = harness_cli("run", "--model", "ann_tiny", "--plan", "--json", *flags, cwd=project,
                       env={"HARNESS_TIME_LIMIT": ""})  # unset: the built-in default
    if limit is None:  # a fixed recipe, or none asked for: nothing to plan
        assert proc.returncode == 2 and "--plan needs a time limit" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["limit_s"] == limit
