"""The local executors (in-process, spawned processes) and the progress of jobs: real training of
a tiny CNN on real replica digits; faults injected by killing worker processes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import UsageError
from harness.executors import InProcess, JobFailed, Processes, make_executor, run_jobs
from harness.train.jobs import FoldJob, JobData, clean_stale_stages
from tests.conftest import kill_worker_of


@pytest.fixture(scope="module")
def data(replica_dir: Path) -> JobData:
    from harness.data.dataset import load
    from harness.train.cv import make_folds, stratified_subset

    ds = load(replica_dir)
    rows = stratified_subset(ds.y_train, 3000, 0)
    return JobData(ds.x_train[rows], ds.y_train[rows], ds.x_test[:100], make_folds(ds.y_train[rows], 2, 0))


def _job(run_dir: Path, fold: int = 0, **params) -> FoldJob:
    from harness.registry import get_model

    return FoldJob(run_dir=str(run_dir), model="cnn_tiny", fold=fold, k=2,
                   params={**get_model("cnn_tiny").params(), **params}, seed=fold, epochs=3)


def test_flags_are_checked():
    assert isinstance(make_executor("local"), InProcess)
    ex = make_executor("local", jobs=2)
    assert isinstance(ex, Processes) and ex.slots == 2 and ex.cpus_per_job == max(1, os.cpu_count() // 2)
    for kwargs, text in (({"jobs": 0}, "--jobs must be at least 1"), ({"cpus_per_job": 0}, "--cpus-per-job"),
                         ({"address": "h:1"}, "--ray-address needs --executor ray")):
        with pytest.raises(UsageError, match=text):
            make_executor("local", **kwargs)
    with pytest.raises(UsageError, match="--executor must be one of local, ray"):
        make_executor("dask")


def test_jobs_auto_follows_cores_and_memory(monkeypatch):
    from harness.executors import local as executor

    for cores, jobs in ((1, 1), (2, 2), (3, 1), (8, 4), (16, 8)):
        monkeypatch.setattr(executor.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        monkeypatch.setattr(executor.os, "sysconf", lambda key: {"SC_PAGE_SIZE": 4096}.get(key, 64 << 20))
        assert executor.auto_jobs() == jobs, cores  # 256 GiB: memory is no limit
    monkeypatch.setattr(executor.os, "sysconf", lambda key: {"SC_PAGE_SIZE": 4096}.get(key, 2 << 20))
    assert executor.auto_jobs() == 2  # 16 cores but 8 GiB: memory holds two
    assert executor.parse_jobs("auto", "ray") is None and executor.parse_jobs("3") == 3
    with pytest.raises(UsageError, match="--jobs must be a whole number or 'auto', got 'two'"):
        executor.parse_jobs("two")


def test_run_defaults_to_jobs_auto_and_env_overrides(monkeypatch):
    import argparse

    from harness.cli import _common

    parser = argparse.ArgumentParser()
    _common.add_executor(parser, "jobs", auto=True)
    monkeypatch.delenv("HARNESS_JOBS", raising=False)
    from harness.executors import auto_jobs

    assert _common.executor_kwargs(parser.parse_args([]))["jobs"] == auto_jobs()
    assert _common.executor_kwargs(parser.parse_args(["--executor", "ray"]))["jobs"] is None  # Ray: as CPUs allow
    monkeypatch.setenv("HARNESS_JOBS", "1")
    assert _common.executor_kwargs(parser.parse_args([]))["jobs"] == 1
    assert _common.executor_kwargs(parser.parse_args(["--jobs", "3"]))["jobs"] == 3
    tune = argparse.ArgumentParser()
    _common.add_executor(tune, "trials")  # tune keeps one trial at a time unless asked
    assert _common.executor_kwargs(tune.parse_args([]))["jobs"] is None


def test_longest_jobs_go_first_and_the_eta_scales_by_cost(tmp_path):
    from harness.core.progress import TrainingProgress
    from harness.registry import get_model
    from harness.run.training import job_costs, longest_first

    specs = {m: get_model(m) for m in ("ann_tiny", "cnn_tiny", "cnn_deep_tiny")}
    # forward FLOPs per image: ann_tiny 50,816, cnn_tiny 125,088, cnn_deep_tiny 516,704
    epochs = {"ann_tiny": 30, "cnn_tiny": 2, "cnn_deep_tiny": 2}
    jobs = [FoldJob(run_dir=str(tmp_path), model=m, fold=f, k=2, params=specs[m].params(), seed=f, epochs=e)
            for m, e in epochs.items() for f in (0, 1)]
    costs = job_costs(jobs, specs)
    assert costs == {"ann_tiny": 30 * 50_816, "cnn_tiny": 2 * 125_088, "cnn_deep_tiny": 2 * 516_704}
    # ann_tiny at 30 epochs costs most, then cnn_deep_tiny's convs, then cnn_tiny; folds keep their order
    assert [(j.model, j.fold) for j in longest_first(jobs, costs)] == [
        ("ann_tiny", 0), ("ann_tiny", 1), ("cnn_deep_tiny", 0), ("cnn_deep_tiny", 1), ("cnn_tiny", 0), ("cnn_tiny", 1)]

    # ETA: a model with no finished job is estimated from the others' seconds per unit of cost.
    fake = [FoldJob(run_dir=str(tmp_path), model=m, fold=f, k=3, params={}, seed=0, epochs=1)
            for m, n in (("big", 1), ("small", 3)) for f in range(n)]
    progress = TrainingProgress(enabled=False)
    progress.set_costs({"big": 10.0, "small": 1.0})
    progress.jobs_begin(fake, slots=1)
    progress.job_started(fake[0])
    progress.job_done(fake[0], {"status": "trained", "wall_s": 100.0, "accuracy": 0.9, "seconds": 99.0,
                                "images_per_s": 1.0})
    assert progress.eta() == pytest.approx(3 * 100.0 / 10.0)  # not 3 x 100 s, the big job's time
    # a time limit's stand-by bag counts once one of its jobs starts
    progress.set_costs({"big": 10.0, "small": 1.0}, optional={"small"})
    assert progress.eta() == 0.0
    progress.job_started(fake[1])
    assert progress.eta() == pytest.approx(3 * 100.0 / 10.0, abs=0.5)


def test_two_processes_train_two_folds_at_once(data, tmp_path):
    done: dict[int, dict] = {}
    with Processes(2).session(data, tmp_path) as ex:
        run_jobs(ex, [_job(tmp_path, 0), _job(tmp_path, 1)], lambda job, r: done.__setitem__(job.fold, r))
    assert {r["status"] for r in done.values()} == {"trained"}
    assert len({r["pid"] for r in done.values()}) == 2 and os.getpid() not in {r["pid"] for r in done.values()}
    assert {r["threads"] for r in done.values()} == {max(1, os.cpu_count() // 2)}
    assert all(r["wall_s"] >= r["worker_s"] > 0 for r in done.values())
    for f in (0, 1):
        record = json.loads((tmp_path / "cnn_tiny" / f"fold_{f}" / "fold.json").read_text())
        assert record["pid"] == done[f]["pid"] and record["executor"] == "local"
    assert not list((tmp_path / "cnn_tiny").glob(".fold_*"))


def test_a_reused_worker_trains_a_fold_exactly_as_a_fresh_one(data, tmp_path):
    """Workers are reused from job to job (TF imported once): the second job of a worker must give
    the same weights and predictions as the same job in a worker of its own."""
    done: list[dict] = []
    with Processes(1, cpus_per_job=1).session(data, tmp_path / "reused") as ex:
        run_jobs(ex, [_job(tmp_path / "reused", 0), _job(tmp_path / "reused", 1)], lambda job, r: done.append(r))
    assert len({r["pid"] for r in done}) == 1  # one worker ran both
    with Processes(1, cpus_per_job=1).session(data, tmp_path / "fresh") as ex:
        run_jobs(ex, [_job(tmp_path / "fresh", 1)], lambda job, r: done.append(r))
    assert done[2]["pid"] != done[0]["pid"]
    for name in ("oof.npy", "test.npy"):
        a, b = (np.load(tmp_path / d / "cnn_tiny" / "fold_1" / name) for d in ("reused", "fresh"))
        np.testing.assert_array_equal(a, b)


def test_a_session_kept_warm_hands_its_workers_to_the_next_with_its_data(data, tmp_path, monkeypatch):
    """A run's calibration keeps its workers for the training (TensorFlow imported once per slot):
    the next session of the same layout adopts them and they train on its data; a session of
    another environment (a failpoint set since) starts its own and the warm ones are stopped."""
    from harness.executors import local, warm_slots
    from harness.registry import get_model
    from harness.train.jobs import ProbeJob

    first: list[dict] = []
    probe = ProbeJob(model="cnn_tiny", params=get_model("cnn_tiny").params(), rows=512, seed=0)
    with Processes(1, cpus_per_job=1).session(data, keep_warm=True) as ex:
        run_jobs(ex, [probe], lambda job, r: first.append(r))
    assert warm_slots(1, 1) == 1 and warm_slots(2, 1) == 1 and warm_slots(1, 2) == 0
    (worker,) = local._WARM
    smaller = JobData(data.x[:1000], data.y[:1000], data.x_test[:10], data.folds[:1000])
    done: list[dict] = []
    with Processes(1, cpus_per_job=1).session(smaller, tmp_path) as ex:
        assert warm_slots(1, 1) == 0 and ex._workers == [worker]
        run_jobs(ex, [_job(tmp_path, 0)], lambda job, r: done.append(r))
    assert done[0]["pid"] == first[0]["pid"] and worker.proc.exitcode == 0  # closed cleanly, not kept
    assert done[0]["n_train"] + done[0]["n_val"] == 1000  # trained on the new session's data
    assert np.load(tmp_path / "cnn_tiny" / "fold_0" / "test.npy").shape[0] == 10
    assert first[0]["import_s"] > 0  # a warm worker goes on reporting the import it paid

    with Processes(1, cpus_per_job=1).session(data, keep_warm=True) as ex:
        run_jobs(ex, [probe], lambda job, r: first.append(r))
    (worker,) = local._WARM
    monkeypatch.setenv("HARNESS_FAILPOINT_SLEEP", "nothing:0")
    assert warm_slots(1, 1) == 0
    with Processes(1, cpus_per_job=1).session(data, tmp_path / "other") as ex:
        assert not local._WARM and not worker.proc.is_alive() and not ex._workers
    assert first[1]["pid"] != first[0]["pid"]  # the first worker was not kept by a session without keep_warm


def test_a_calibration_skips_the_models_not_worth_probing_and_a_later_one_adds_them(data, tmp_path):
    """The first model is probed and counts every model's FLOPs; a model `worth` declines is left
    out of the record; a later calibration of the same setup that affords it probes it alone."""
    from harness.registry import get_model
    from harness.run.calibrate import calibrate

    specs = [get_model("cnn_tiny"), get_model("ann_tiny")]
    params = {s.name: s.params() for s in specs}
    layout = {"executor": "local", "jobs": 1}
    asked: list[str] = []
    said: list[str] = []

    def never(model: str, s_per_image: float, elapsed: float, probed: dict, slots: int) -> bool:
        asked.append(model)
        assert s_per_image > 0 and elapsed >= 0 and set(probed) == {"cnn_tiny"} and slots == 1
        return False

    first = calibrate(specs, params, data.x, data.y, layout, tmp_path, say=said.append, worth=never)
    assert set(first["probes"]) == {"cnn_tiny"} and asked == ["ann_tiny"] and not first.get("cached")
    assert set(first["flops"]) == {"cnn_tiny", "ann_tiny"} and all(v > 0 for v in first["flops"].values())
    assert "not probed, too dear for this time limit: ann_tiny" in said[-1]
    again = calibrate(specs, params, data.x, data.y, layout, tmp_path, worth=never)
    assert again["cached"] and set(again["probes"]) == {"cnn_tiny"}
    later = calibrate(specs, params, data.x, data.y, layout, tmp_path, worth=lambda *_: True)
    assert not later["cached"] and set(later["probes"]) == {"cnn_tiny", "ann_tiny"}
    assert later["probes"]["cnn_tiny"] == first["probes"]["cnn_tiny"]  # kept, not probed again
    assert calibrate(specs, params, data.x, data.y, layout, tmp_path)["cached"]


def test_a_killed_worker_is_retried_once_then_the_run_stops(data, tmp_path):
    killed: set[int] = set()
    killer = threading.Thread(target=kill_worker_of, args=(tmp_path / "cnn_tiny", killed), daemon=True)
    killer.start()
    done = []
    with Processes(1, cpus_per_job=1).session(data, tmp_path) as ex:
        run_jobs(ex, [_job(tmp_path, 0)], lambda job, r: done.append(r))
    killer.join(5)
    assert len(killed) == 1 and done[0]["status"] == "trained" and done[0]["pid"] not in killed
    # The killed attempt's staging folder is left (SIGKILL): the next driver removes it.
    left = list((tmp_path / "cnn_tiny").glob(".fold_*"))
    assert [int(p.name.split(".")[-2]) for p in left] == list(killed)
    assert clean_stale_stages(tmp_path / "cnn_tiny") == left
    assert not list((tmp_path / "cnn_tiny").glob(".fold_*"))

    def kill_twice() -> None:
        kill_worker_of(tmp_path / "cnn_tiny", killed)
        kill_worker_of(tmp_path / "cnn_tiny", killed)

    killer = threading.Thread(target=kill_twice, daemon=True)
    killer.start()
    with pytest.raises(JobFailed, match=r"job cnn_tiny fold 2/2 failed on the local executor: its worker "
                                        r"process died twice \(exit code -9\)"):
        with Processes(1, cpus_per_job=1).session(data, tmp_path) as ex:
            run_jobs(ex, [_job(tmp_path, 1)], lambda job, r: None)
    killer.join(5)
    assert len(killed) == 3 and not (tmp_path / "cnn_tiny" / "fold_1").exists()
    assert (tmp_path / "cnn_tiny" / "fold_0" / "fold.json").is_file()  # what finished is kept


def test_a_worker_that_dies_before_the_next_submit_keeps_its_job(data, tmp_path):
    """A busy worker found dead while another job is being handed out is not forgotten: its job is
    retried by `wait`, and both jobs finish (the run would otherwise wait for it forever)."""
    import time

    done: dict[int, object] = {}
    with Processes(2, cpus_per_job=1).session(data, tmp_path) as ex:
        ex.submit(_job(tmp_path, 0))
        first = ex._workers[0]
        first.proc.kill()
        first.proc.join()
        ex.submit(_job(tmp_path, 1))
        deadline = time.monotonic() + 240
        while ex.in_flight and time.monotonic() < deadline:
            for job, outcome in ex.wait(1.0):
                done[job.fold] = outcome
        left = sorted(ex.in_flight)
    assert set(done) == {0, 1}, f"jobs never finished: {left}"
    assert all(isinstance(r, dict) and r["status"] == "trained" for r in done.values())
    assert done[0]["pid"] != first.proc.pid


def test_a_worker_that_dies_while_starting_stops_the_run_instead_of_hanging_it(tmp_path):
    """A script without `if __name__ == "__main__":` makes every spawned worker die while it imports
    the script, before it reads its data. The driver must see the dead workers, not wait for ever."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "from harness.executors import Processes, run_jobs\n"
        "from harness.train.jobs import FoldJob, JobData\n"
        "x = np.zeros((400, 28, 28, 1), np.float32)  # ~1.2 MB: far more than a pipe's buffer\n"
        "data = JobData(x, np.arange(400) % 10, x[:10], np.arange(400) % 2)\n"
        f"job = FoldJob(run_dir={str(tmp_path)!r}, model='cnn_tiny', fold=0, k=2, params={{}}, seed=0, epochs=1)\n"
        f"with Processes(1, cpus_per_job=1).session(data, None) as ex:\n"
        "    run_jobs(ex, [job], lambda job, r: None)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode != 0
    assert "job cnn_tiny fold 1/2 failed on the local executor: its worker process died twice" in proc.stderr


def test_a_failing_job_names_itself(data, tmp_path):
    for executor in (InProcess(), Processes(2, cpus_per_job=1)):
        with pytest.raises(JobFailed, match=r"job cnn_tiny fold 1/2 failed on the local executor: RunError: "
                                            r"unknown optimizer 'nope'"):
            with executor.session(data, tmp_path) as ex:
                run_jobs(ex, [_job(tmp_path, 0, optimizer="nope")], lambda job, r: None)
        assert not list((tmp_path / "cnn_tiny").glob(".fold_*")) and not (tmp_path / "cnn_tiny" / "fold_0").exists()


def test_stale_stage_of_a_dead_process_is_cleaned(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / "m" / f".fold_0.{host}.{dead}.abcd"
    live = tmp_path / "m" / f".fold_1.{host}.{os.getpid()}.abcd"
    other = tmp_path / "m" / f".fold_2.elsewhere.{dead}.abcd"
    for d in (stale, live, other):
        d.mkdir(parents=True)
    assert clean_stale_stages(tmp_path / "m") == [stale]
    assert live.exists() and other.exists() and not stale.exists()


def test_progress_eta_counts_jobs_in_flight_per_model():
    from harness.core.progress import TrainingProgress

    class J:
        kind = "fold"

        def __init__(self, model: str, n: int) -> None:
            self.model, self.name, self.key = model, f"{model} fold {n}/2", f"{model}/{n}"

    p = TrainingProgress(enabled=False)
    jobs = [J("fast", 1), J("fast", 2), J("slow", 1), J("slow", 2)]
    p.jobs_begin(jobs, 2)
    assert p.eta() is None
    p.job_started(jobs[0])
    p.job_started(jobs[2])
    started_slow, _ = p._running[jobs[2].name]
    p._running[jobs[2].name] = (started_slow - 5.0, "slow")  # started 5 s before
    p.job_done(jobs[0], {"status": "trained", "wall_s": 10.0, "seconds": 9.0, "accuracy": 0.9, "images_per_s": 1.0})
    # slow has no finished job yet: it costs the overall mean, 10 s. Left: slow running (5 s) +
    # fast queued (10 s) + slow queued (10 s) = 25 s of work over 2 slots.
    assert p.eta() == pytest.approx(12.5, abs=0.5)
    p.job_started(jobs[1])
    p.job_done(jobs[2], {"status": "trained", "wall_s": 40.0, "seconds": 39.0, "accuracy": 0.9, "images_per_s": 1.0})
    # now slow costs 40 s: fast running (~10 s) + slow queued (40 s) = 50 s over 2 slots
    assert p.eta() == pytest.approx(25.0, abs=0.5)
    assert "2/4 done, 1 running, ETA 2" in p._status()
    assert np.isfinite(p.eta())


def test_ray_executor_without_ray_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UsageError, match=r"--executor ray needs Ray, which is not installed: "
                                         r"pip install 'harness\[ray\]' \(installs ray==2\.60\.0\)"):
        make_executor("ray")


@pytest.mark.e2e
def test_workers_stop_when_their_driver_is_killed(project: Path):
    """A driver killed with SIGKILL runs no clean-up: its workers must not train on as orphans."""
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "harness", "run", "--model", "cnn_tiny", "--limit", "3000", "--folds", "2",
            "--epochs", "40", "--jobs", "2", "--no-bench", "--no-report"]
    driver = subprocess.Popen(args, cwd=project, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, pids = time.monotonic() + 180, set()
        while len(pids) < 2 and time.monotonic() < deadline and driver.poll() is None:
            pids = {int(p.name.split(".")[-2]) for p in (project / "runs").glob("*/cnn_tiny/.fold_*")}
            time.sleep(0.1)
        assert len(pids) == 2, "the two workers never started training"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"worker(s) {left} still training after their driver died"
    assert not any((project / "runs").glob("*/cnn_tiny/fold_*/fold.json"))  # nothing published by an orphan


def test_the_calibration_probe_times_a_first_and_a_steady_epoch(data: JobData):
    from harness.registry import get_model
    from harness.train.jobs import ProbeJob, Where, execute

    params = get_model("cnn_tiny").params()
    result = execute(ProbeJob(model="cnn_tiny", params=params, rows=1024, seed=0), data, Where("in-process"))
    first, steady = result["epochs_s"]
    assert result["rows"] == 1024 and result["train_s_per_image"] == pytest.approx(steady / 1024, abs=1e-6)
    assert result["fit_fixed_s"] == pytest.approx(max(first - steady, 0.0), abs=1e-9)
    assert result["predict_s_per_image"] > 0 and result["import_s"] >= 0
