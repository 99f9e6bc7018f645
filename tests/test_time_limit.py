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
    (["--plan"], "--plan needs --time-limit"),
    (["--time-limit", "10m", "--epochs", "3"], "use one or the other"),
    (["--time-limit", "10m", "--bags", "2"], "use one or the other"),
    (["--time-limit", "10m", "--pseudo-label"], "not in a --time-limit plan yet"),
    (["--time-limit", "10m", "--tta", "3"], "not in a --time-limit plan yet"),
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
    assert doc["calibration"]["cached"] and set(doc["calibration"]["probes"]) == {"ann_tiny", "cnn_tiny"}
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
