"""MLflow tracking (harness.results.track) against a real MLflow server started on 127.0.0.1 by the test:
what a run logs is read back; an unreachable server is one warning and the run still succeeds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import harness_cli

pytest.importorskip("mlflow", reason="the tracking tests need the MLflow client: pip install -e '.[test]' "
                    "(harness[mlflow], mlflow-skinny)")
pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVER_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_command() -> list[str]:
    """How to start `mlflow server`. The tests' environment holds what `harness[mlflow]` installs,
    the client alone (mlflow-skinny, no server), as a user's would; the server comes from its own
    environment, HARNESS_MLFLOW_SERVER (its `mlflow` executable; .ci/run makes one), or from this
    environment where full mlflow is installed."""
    given = os.environ.get("HARNESS_MLFLOW_SERVER")
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"HARNESS_MLFLOW_SERVER={given} is not an executable `mlflow`")
        return [given]
    try:
        import mlflow.server  # noqa: F401  (only full mlflow has it)
    except ImportError:
        pytest.skip("needs an MLflow server: set HARNESS_MLFLOW_SERVER to the `mlflow` of an environment with "
                    "`pip install mlflow==3.17.2` (.ci/run makes one); this environment has the client alone")
    return [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artefacts; stopped after."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [*_server_command(), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the MLflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


ARGS = ["run", "--model", "ann_tiny", "--model", "cnn_tiny", "--limit", "1000", "--folds", "2", "--epochs", "1",
        "--no-bench", "--json"]


def test_a_run_is_logged_and_read_back(project: Path, mlflow_server: str):
    from mlflow.tracking import MlflowClient

    proc = harness_cli(*ARGS, "--track", "mlflow", "--tracking-uri", mlflow_server, cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    run_id = Path(results["run_dir"]).name
    assert "tracked in MLflow" in proc.stderr

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("harness-digit-recognizer")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`harness.run_id` = '{run_id}'")
    parents = [r for r in runs if r.data.tags["harness.role"] == "run"]
    children = {r.data.tags["harness.model"]: r for r in runs if r.data.tags["harness.role"] == "model"}
    assert len(parents) == 1 and set(children) == {row["model"] for row in results["rows"]}
    parent = parents[0]
    assert parent.data.params["folds"] == "2" and parent.data.tags["harness.best"] == results["best"]
    assert parent.data.metrics["submission_private"] == pytest.approx(results["submission"]["private"])
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert f"{run_id}.csv" in parent_files and f"{run_id}.html" in parent_files

    row = next(r for r in results["rows"] if r["model"] == "ann_tiny")
    child = children["ann_tiny"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.metrics["cv_accuracy"] == pytest.approx(row["cv_accuracy"])
    assert child.data.params["width"] == "32"
    history = client.get_metric_history(child.info.run_id, "fold_accuracy")
    assert sorted(m.step for m in history) == [0, 1]
    files = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"model.onnx", "cv.json", "export.json"} <= files
    local = client.download_artifacts(child.info.run_id, "model.onnx", str(project / "dl"))
    assert Path(local).read_bytes() == (Path(results["run_dir"]) / "ann_tiny" / "model.onnx").read_bytes()

    # Logging the same harness run again replaces what was logged, never duplicates it.
    again = harness_cli(*ARGS, "--track", "mlflow", "--tracking-uri", mlflow_server, "--resume", run_id,
                        cwd=project, timeout=600)
    assert again.returncode == 0, again.stderr
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`harness.run_id` = '{run_id}'")
    assert len([r for r in runs if r.data.tags["harness.role"] == "run"]) == 1
    assert len(runs) == 1 + len(children)

    # another competition's runs go to an experiment of its own
    import shutil

    from harness.results import track

    other = project / "runs" / "20990101-000000"
    shutil.copytree(results["run_dir"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest.update(run_id=other.name, competition={**manifest["competition"], "slug": "Kannada-MNIST"})
    (other / "manifest.json").write_text(json.dumps(manifest))
    tracked = track.log_run(other, mlflow_server)
    kannada = client.get_experiment_by_name("harness-Kannada-MNIST")
    assert tracked and kannada and tracked["experiment_id"] == kannada.experiment_id != exp.experiment_id


def test_an_unreachable_server_is_one_warning_and_the_run_succeeds(project: Path):
    port = _free_port()  # nothing listens there
    start = time.monotonic()
    proc = harness_cli(*ARGS, "--no-report", "--track", "mlflow", "--tracking-uri", f"http://127.0.0.1:{port}",
                       cwd=project, timeout=600)
    assert proc.returncode == 0, proc.stderr
    warnings = [x for x in proc.stderr.splitlines() if "MLflow" in x]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "not tracked" in warnings[0], proc.stderr
    assert json.loads(proc.stdout)["submission"]["path"]
    assert time.monotonic() - start < 300


def test_bad_tracking_flags_are_usage_errors(project: Path):
    bad = harness_cli(*ARGS, "--track", "wandb", cwd=project, timeout=120)
    assert bad.returncode == 2 and "--track must be one of none, mlflow" in bad.stderr
    orphan = harness_cli(*ARGS, "--tracking-uri", "http://x", cwd=project, timeout=120)
    assert orphan.returncode == 2 and "--tracking-uri needs --track mlflow" in orphan.stderr
