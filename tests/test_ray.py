"""The Ray executor on a real Ray cluster on this machine: a head with no CPUs and two 1-CPU worker
nodes (`ray.cluster_utils.Cluster`), every process on 127.0.0.1. Real training of tiny models on
real replica digits; every wait has a timeout; the cluster is shut down and checked gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import harness_cli, kill_worker_of

# Every Ray process this module starts (cluster and drivers) binds to 127.0.0.1 only, and no
# token file is needed (the auth test starts its own cluster with a token).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray
GRID = ["--model", "cnn_tiny", "--model", "ann_tiny", "--limit", "1500", "--folds", "2", "--epochs", "1",
        "--deterministic", "--no-bench", "--no-report", "--json"]


def _start_cluster(**env: str):
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "object_store_memory": 150 * 2**20, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
        cluster.wait_for_nodes(timeout=60)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return cluster


def _stop_cluster(cluster) -> None:
    nodes = [cluster.head_node, *cluster.worker_nodes]
    cluster.shutdown()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(n.live_processes() for n in nodes):
        time.sleep(0.2)
    assert not any(n.live_processes() for n in nodes), "a Ray process outlived the test cluster"


@pytest.fixture(scope="module")
def cluster():
    c = _start_cluster()
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_cluster(c)


def _folds(run: Path, models=("cnn_tiny", "ann_tiny")) -> list[dict]:
    return [json.loads(p.read_text()) for m in models for p in sorted((run / m).glob("fold_*/fold.json"))]


@pytest.mark.e2e
def test_grid_runs_on_both_nodes_and_matches_local(project: Path, cluster):
    remote = harness_cli("run", *GRID, "--executor", "ray", "--ray-address", cluster.address, cwd=project,
                         timeout=600)
    assert remote.returncode == 0, remote.stderr
    local = harness_cli("run", *GRID, "--jobs", "2", "--new", cwd=project, timeout=600)
    assert local.returncode == 0, local.stderr
    r_run, l_run = (Path(json.loads(p.stdout)["run_dir"]) for p in (remote, local))

    folds = _folds(r_run)
    assert len(folds) == 4 and {f["executor"] for f in folds} == {"ray"}
    assert len({f["node"] for f in folds}) == 2, "the grid did not use both worker nodes"
    assert {f["threads"] for f in folds} == {1} and all(f["host"] and f["pid"] for f in folds)
    assert len({f["pid"] for f in folds}) < len(folds), "every job started a worker process of its own"
    manifest = json.loads((r_run / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and manifest["executor"]["resources"]["CPU"] == 2
    assert len(manifest["executor"]["nodes"]) == 2 and manifest["sessions"][-1]["executor"]["name"] == "ray"
    assert "training 4 fold job(s) on the ray executor, 2 at once" in remote.stderr
    assert "ETA" in remote.stderr

    # Same seed, same folds, same one-thread deterministic training: the same predictions.
    assert np.array_equal(np.load(r_run / "folds.npy"), np.load(l_run / "folds.npy"))
    for model in ("cnn_tiny", "ann_tiny"):
        a, b = np.load(r_run / model / "oof.npy"), np.load(l_run / model / "oof.npy")
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert {f["executor"] for f in _folds(l_run)} == {"local"}
    assert not list(r_run.rglob(".fold_*")) and not list(r_run.glob(".probe-*"))


@pytest.mark.e2e
def test_bags_run_on_the_cluster(project: Path, cluster):
    proc = harness_cli("run", "--model", "ann_tiny", "--bags", "2", "--limit", "1200", "--folds", "2", "--epochs", "1",
                       "--no-bench", "--no-report", "--no-int8", "--json", "--executor", "ray",
                       "--ray-address", cluster.address, cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = Path(json.loads(proc.stdout)["run_dir"])
    folds = _folds(run, ("ann_tiny", "ann_tiny~2"))
    assert len(folds) == 4 and {f["executor"] for f in folds} == {"ray"}
    assert [f["seed"] for f in folds] == [4200, 4201, 104200, 104201]
    assert "training 4 fold job(s) on the ray executor" in proc.stderr


@pytest.mark.e2e
def test_killed_driver_resumes(project: Path, cluster):
    args = [sys.executable, "-m", "harness", "run", "--model", "cnn_tiny", "--limit", "3000", "--folds", "3",
            "--epochs", "2", "--no-bench", "--no-report", "--executor", "ray", "--ray-address", cluster.address]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, marker = time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None and marker is None:
        found = list((project / "runs").glob("*/cnn_tiny/fold_*/fold.json"))
        marker = found[0] if found else None
        time.sleep(0.1)
    assert marker is not None, "no fold finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run, fold = marker.parents[2], marker.parent
    before = (fold / "model.keras").stat().st_mtime_ns

    again = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.name}" in again.stderr
    assert f"cnn_tiny fold {int(fold.name[-1]) + 1}/3: already trained, resumed" in again.stderr
    assert (fold / "model.keras").stat().st_mtime_ns == before
    assert (run / "cnn_tiny" / "cv.json").is_file()
    assert not list(run.rglob(".fold_*")), "a killed attempt's staging folder was left behind"
    assert len(json.loads((run / "manifest.json").read_text())["sessions"]) == 2


def _job(run_dir: Path, fold: int = 0, **params):
    from harness.registry import get_model
    from harness.train.jobs import FoldJob

    spec = get_model("cnn_tiny")
    return FoldJob(run_dir=str(run_dir), model="cnn_tiny", fold=fold, k=2, params={**spec.params(), **params},
                   seed=fold, epochs=3)


@pytest.fixture
def executor(cluster, replica_dir: Path, tmp_path: Path):
    """A Ray executor connected to the cluster, with the data of a small 2-fold grid."""
    from harness.data.dataset import load
    from harness.executors import make_executor
    from harness.train.cv import make_folds, stratified_subset
    from harness.train.jobs import JobData

    ds = load(replica_dir)
    rows = stratified_subset(ds.y_train, 3000, 0)
    data = JobData(ds.x_train[rows], ds.y_train[rows], ds.x_test[:100], make_folds(ds.y_train[rows], 2, 0))
    ex = make_executor("ray", address=cluster.address, timeout=60)
    with ex.session(data, tmp_path) as started:
        yield started


def test_duplicated_job_publishes_one_whole_fold(executor, tmp_path: Path):
    job = _job(tmp_path)
    refs = [executor._remote.options(num_cpus=1).remote(job, executor._data_ref, 1) for _ in range(2)]
    results = ray.get(refs, timeout=300)
    assert sorted(r["status"] for r in results) in (["duplicate", "trained"], ["skipped", "trained"])
    winner = next(r for r in results if r["status"] == "trained")
    fold = tmp_path / "cnn_tiny" / "fold_0"
    record = json.loads((fold / "fold.json").read_text())
    assert record["pid"] == winner["pid"] and record["node"] == winner["node"]
    oof = np.load(fold / "oof.npy")
    assert record["accuracy"] == pytest.approx(
        float((oof.argmax(1) == executor.data.y[executor.data.folds == 0]).mean()))
    assert not list((tmp_path / "cnn_tiny").glob(".fold_*")), "the losing attempt's staging folder was left"


def test_failing_job_stops_naming_it(executor, tmp_path: Path):
    from harness.executors import JobFailed, run_jobs

    done = []
    with pytest.raises(JobFailed, match=r"job cnn_tiny fold 2/2 failed on the ray executor: RunError: "
                                        r"unknown optimizer 'nope'.*finished jobs are kept"):
        run_jobs(executor, [_job(tmp_path, 1, optimizer="nope")], lambda job, r: done.append(r))
    assert not done and not list((tmp_path / "cnn_tiny").glob(".fold_*"))
    assert not (tmp_path / "cnn_tiny" / "fold_1").exists()


def test_dead_worker_is_retried_once(executor, tmp_path: Path):
    import threading

    from harness.executors import run_jobs

    killed: set[int] = set()
    killer = threading.Thread(target=kill_worker_of, args=(tmp_path / "cnn_tiny", killed), daemon=True)
    killer.start()
    done = []
    run_jobs(executor, [_job(tmp_path, 0, )], lambda job, r: done.append(r))
    killer.join(timeout=5)
    assert len(killed) == 1 and done[0]["status"] == "trained" and done[0]["pid"] not in killed
    assert (tmp_path / "cnn_tiny" / "fold_0" / "fold.json").is_file()


def test_worker_that_dies_twice_stops_the_run(executor, tmp_path: Path):
    import threading

    from harness.executors import JobFailed, run_jobs

    killed: set[int] = set()

    def kill_twice() -> None:
        kill_worker_of(tmp_path / "cnn_tiny", killed)
        kill_worker_of(tmp_path / "cnn_tiny", killed)

    killer = threading.Thread(target=kill_twice, daemon=True)
    killer.start()
    with pytest.raises(JobFailed, match=r"job cnn_tiny fold 1/2 failed on the ray executor: its Ray worker died"):
        run_jobs(executor, [_job(tmp_path, 0)], lambda job, r: None)
    killer.join(timeout=5)
    assert len(killed) == 2 and not (tmp_path / "cnn_tiny" / "fold_0").exists()


def test_version_mismatch_is_caught_before_training(cluster, tmp_path: Path, monkeypatch):
    import harness
    from harness.core.errors import RunError
    from harness.executors import make_executor
    from harness.train.jobs import JobData

    monkeypatch.setattr(harness, "__version__", "0.0.0-other")  # the driver's view only
    ex = make_executor("ray", address=cluster.address, timeout=60)
    empty = JobData(np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2, int), np.zeros((1, 28, 28, 1), np.uint8),
                    np.zeros(2, np.int8))
    with pytest.raises(RunError, match=r"Ray node 127\.0\.0\.1 \(\w+\) runs other versions than this driver: "
                                       r"harness 0\.1\.0 there, 0\.0\.0-other here"):
        ex.start(empty, tmp_path)
    assert not ray.is_initialized()


def test_unreachable_address_is_a_quick_clear_error(project: Path):
    start = time.monotonic()
    proc = harness_cli("run", "--model", "ann_tiny", "--limit", "500", "--folds", "2", "--epochs", "1",
                       "--no-bench", "--no-report", "--executor", "ray", "--ray-address", "127.0.0.1:9",
                       cwd=project, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "harness: error: cannot reach the Ray cluster at 127.0.0.1:9: Connection refused")
    assert time.monotonic() - start < 60


def test_ray_flags_are_usage_errors(project: Path):
    for args, text in ((["--jobs", "0"], "--jobs must be at least 1"),
                       (["--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"),
                       (["--executor", "ray", "--cpus-per-job", "0"], "--cpus-per-job must be at least 1"),
                       (["--executor", "ray", "--ray-timeout", "0"], "--ray-timeout must be positive")):
        proc = harness_cli("run", "--model", "ann_tiny", *args, cwd=project, timeout=60)
        assert proc.returncode == 2 and text in proc.stderr, (args, proc.stderr)


# A cluster with token authentication, in a process of its own (Ray reads RAY_AUTH_MODE once
# per process); it prints its address, and shuts down when its stdin closes.
SECURED = """
import sys
from tests.test_ray import _start_cluster, _stop_cluster
c = _start_cluster()
print(c.address, flush=True)
sys.stdin.read()
_stop_cluster(c)
print("stopped", flush=True)
"""


@pytest.mark.e2e
def test_wrong_token_is_an_error_not_a_hang(project: Path):
    from tests.conftest import ROOT

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "a" * 32, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", SECURED], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = holder.stdout.readline().strip()
        assert address, "the secured cluster did not start"
        start = time.monotonic()
        proc = harness_cli("run", "--model", "ann_tiny", "--limit", "500", "--folds", "2", "--epochs", "1",
                           "--no-bench", "--no-report", "--executor", "ray", "--ray-address", address,
                           "--ray-timeout", "15", cwd=project, timeout=120,
                           env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "b" * 32})
        elapsed = time.monotonic() - start
        assert proc.returncode == 5, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("harness: error: ") and "token" in last, last
        assert elapsed < 90, elapsed
    finally:
        out, _ = holder.communicate(input="", timeout=60)
        assert "stopped" in out, "the secured cluster did not shut down cleanly"


@pytest.mark.e2e
def test_workers_that_cannot_see_the_run_folder(project: Path, cluster):
    """The driver's runs/ is a tmpfs in a mount namespace of its own: the workers see an empty folder."""
    (project / "runs").mkdir()
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    cmd = (f"mount -t tmpfs -o size=64m tmpfs {project / 'runs'} && exec {sys.executable} -m harness run "
           f"--model ann_tiny --limit 500 --folds 2 --epochs 1 --no-bench --no-report --executor ray "
           f"--ray-address {cluster.address}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], cwd=project,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot see the run folder" in last and "shared by every node" in last, last


@pytest.mark.e2e
def test_parallel_study_reaches_its_trial_count(project: Path, cluster):
    proc = harness_cli("tune", "ann_tiny", "--trials", "6", "--limit", "1000", "--epochs", "2", "--executor",
                       "ray", "--ray-address", cluster.address, "--json", cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["n_trials"]["complete"] + doc["n_trials"]["pruned"] == 6 and doc["n_trials"]["running"] == 0
    assert "trials on the ray executor, 2 at once" in proc.stderr
    params = [json.dumps(t["params"], sort_keys=True) for t in doc["trials"]]
    assert len(set(params)) == len(params), "two trials were handed the same parameters"
    # Resuming to a higher target adds trials to the same study.
    more = harness_cli("tune", "ann_tiny", "--trials", "8", "--limit", "1000", "--epochs", "2", "--jobs", "2",
                       "--json", cwd=project, timeout=600)
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["n_trials"]["complete"] + json.loads(more.stdout)["n_trials"]["pruned"] == 8
