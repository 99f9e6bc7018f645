"""One writer per run folder and per study (harness.core.lock), with real processes: a second command
stops naming the first; a lock whose holder was killed is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core import lock
from harness.core.errors import BusyError
from tests.conftest import ROOT, harness_cli

pytestmark = pytest.mark.integration

HOLD = """
import sys, time
from pathlib import Path
from harness.core import lock
with lock.hold(Path(sys.argv[1]), what="the thing"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path: Path):
    path = tmp_path / "run" / ".lock"
    proc = _holder(path)
    try:
        with pytest.raises(BusyError, match=rf"the thing is being worked on by pid {proc.pid} on .*; wait for it"):
            with lock.hold(path, what="the thing"):
                pass
        start = time.monotonic()
        with pytest.raises(BusyError):
            with lock.hold(path, what="the thing", wait=0.5):
                pass
        assert time.monotonic() - start >= 0.5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel dropped the dead process's lock: taken over at once, and released on exit.
    with lock.hold(path, what="the thing"):
        assert lock.holder(path)["pid"] == os.getpid()
    assert lock.holder(path) == {}
    with lock.hold(path, what="the thing"):  # and taken again
        pass


RUN = ["run", "--model", "cnn_tiny", "--limit", "6000", "--folds", "2", "--epochs", "8", "--no-bench",
       "--no-report", "--jobs", "1"]


@pytest.mark.e2e
def test_second_run_on_a_live_run_stops_and_a_killed_run_resumes(project: Path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([sys.executable, "-m", "harness", *RUN], cwd=project, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((project / "runs").glob("*/cnn_tiny/params.json")):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        run = next((project / "runs").glob("*/manifest.json")).parent

        # Same options: it would resume the unfinished run, which a live process holds.
        second = harness_cli(*RUN, cwd=project, timeout=120)
        assert second.returncode == 7, second.stderr
        errors = [x for x in second.stderr.splitlines() if x.startswith("harness: error:")]
        assert len(errors) == 1, second.stderr
        line = errors[0]
        assert f"run {run.name} is being worked on by pid {first.pid}" in line
        assert "--new" in line
        # --resume RUN names it explicitly: the same answer.
        third = harness_cli(*RUN, "--resume", run.name, cwd=project, timeout=120)
        assert third.returncode == 7 and f"pid {first.pid}" in third.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # mid-training: no clean-up runs
        first.wait()

    # The killed run's lock is taken over and the run finishes from what it had.
    again = harness_cli(*RUN, "--json", cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.name}" in again.stderr
    assert json.loads(again.stdout)["run_dir"].endswith(run.name)
    assert json.loads((run / "manifest.json").read_text())["finished"]


@pytest.mark.e2e
def test_second_tune_on_one_study_stops(project: Path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tune = ["tune", "ann_tiny", "--trials", "40", "--limit", "2000", "--epochs", "3"]
    first = subprocess.Popen([sys.executable, "-m", "harness", *tune], cwd=project, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (project / "runs" / "tune" / "ann_tiny.db").is_file():
            assert first.poll() is None and time.monotonic() < deadline, "the first tune did not start"
            time.sleep(0.2)
        second = harness_cli(*tune, cwd=project, timeout=120)
        assert second.returncode == 7, second.stderr
        assert f"ann_tiny.db is being worked on by pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = harness_cli("tune", "ann_tiny", "--trials", "2", "--limit", "2000", "--epochs", "3", cwd=project,
                          timeout=300)
    assert resumed.returncode == 0, resumed.stderr  # the killed tune's lock is taken over
