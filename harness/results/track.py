"""Experiment tracking (opt-in: `harness run --track mlflow [--tracking-uri URI]`).

After a run's report, the run folder is logged to MLflow: one parent MLflow run per harness run
(its command, config and the submission's score; the submission and the report as artefacts) and
one child run per leaderboard row (its parameters, per-fold and CV accuracy, training time,
latency figures, and its ONNX file, cv.json, export.json, bench.json as artefacts). Logging reads
only the finished run folder, so it adds nothing to training and a resumed run logs the same
thing: an earlier logging of the same harness run is replaced, not duplicated.

Tracking never fails a run: an unreachable server or any MLflow error is one warning line. The
URI is `--tracking-uri`, else MLFLOW_TRACKING_URI, else a local store in the working folder
(`sqlite:///mlflow.db`, artefacts in `./mlartifacts`). MLflow is the extra `harness[mlflow]`.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from harness.core import io

TRACKERS = ("none", "mlflow")
EXPERIMENT = "harness-{slug}"       # one MLflow experiment per competition: harness-digit-recognizer
DEFAULT_URI = "sqlite:///mlflow.db"
PIN = "mlflow-skinny==3.17.2"
INSTALL = "pip install 'harness[mlflow]'"
PROBE_TIMEOUT_S = 5.0


def check(tracker: str) -> str:
    from harness.core.errors import UsageError

    if tracker not in TRACKERS:
        raise UsageError(f"--track must be one of {', '.join(TRACKERS)}, got {tracker!r}")
    if tracker == "mlflow":
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise UsageError(f"--track mlflow needs MLflow, which is not installed: {INSTALL} (installs {PIN})")
    return tracker


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def reachable(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when an http(s) tracking server answers a TCP connect (local stores always do), else why
    not: MLflow's own client would retry for minutes before failing."""
    u = urlparse(uri)
    if u.scheme not in ("http", "https"):
        return None
    try:
        with socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout=timeout):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def log_run(run_dir: Path, uri: str | None = None, say: Callable[[str], None] = lambda _m: None) -> dict | None:
    """Log `run_dir` to MLflow; returns {"uri", "experiment_id", "run_id", "children"} or None
    (with one warning through `say`) when it could not."""
    uri = resolve_uri(uri)
    why = reachable(uri)
    if why is not None:
        say(f"warning: MLflow tracking server {uri} unreachable ({why}); this run is not tracked")
        return None
    try:
        # MLflow prints a "View run at" line per run on stdout, which carries our data (--json)
        with contextlib.redirect_stdout(_io.StringIO()):
            return _log(Path(run_dir), uri)
    except Exception as e:  # tracking must never fail the run
        say(f"warning: MLflow tracking to {uri} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "this run is not tracked")
        return None


def _log(run_dir: Path, uri: str) -> dict:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    manifest = io.read_json(run_dir / "manifest.json")
    name = EXPERIMENT.format(slug=(manifest.get("competition") or {}).get("slug", "digit-recognizer"))
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=None if urlparse(uri).scheme in ("http", "https")
        else Path("mlartifacts").resolve().as_uri())
    results = io.read_json(run_dir / "results.json")
    run_id = manifest.get("run_id", run_dir.name)
    for old in client.search_runs([exp_id], filter_string=f"tags.`harness.run_id` = '{run_id}'", max_results=1000):
        client.delete_run(old.info.run_id)  # a resumed or repeated logging replaces the earlier one
    now = int(time.time() * 1000)

    def params(d: dict[str, Any], prefix: str = "") -> list[Param]:
        return [Param(f"{prefix}{k}", str(v)[:500]) for k, v in sorted(d.items()) if v is not None]

    def metrics(d: dict[str, Any], step: int = 0) -> list[Metric]:
        return [Metric(k, float(v), now, step) for k, v in d.items() if isinstance(v, (int, float))
                and not isinstance(v, bool)]

    config = manifest.get("config") or {}
    sub = results.get("submission") or {}
    parent = client.create_run(exp_id, run_name=f"harness {run_id}", tags={
        "harness.run_id": run_id, "harness.role": "run", "harness.best": str(results.get("best")),
        "mlflow.source.git.commit": str(manifest.get("git_commit")), "command": " ".join(manifest.get("command", []))})
    pid = parent.info.run_id
    client.log_batch(pid, params=params({k: config.get(k) for k in (
        "folds", "seed", "models", "epochs", "limit", "quick", "tuned", "source", "ensemble", "tta",
        "pseudo_label", "n_train_rows")}), metrics=metrics({
            "duration_s": manifest.get("duration_s"), "submission_public": sub.get("public"),
            "submission_private": sub.get("private")}))
    for path in (sub.get("path"), _report(run_dir, manifest, run_id)):
        if path and Path(path).is_file():
            client.log_artifact(pid, str(path))
    children = {}
    for row in results.get("rows", []):
        model = row["model"]
        child = client.create_run(exp_id, run_name=model, tags={
            "mlflow.parentRunId": pid, "harness.run_id": run_id, "harness.role": "model", "harness.model": model,
            "harness.status": str(row.get("status"))})
        cid = child.info.run_id
        cv = _read(run_dir / model / "cv.json")
        folds = [Metric("fold_accuracy", float(f["accuracy"]), now, int(f["fold"])) for f in cv.get("folds", [])
                 if isinstance(f.get("accuracy"), (int, float))]
        client.log_batch(cid, params=params(cv.get("params") or {}), metrics=folds + metrics({
            "cv_accuracy": row.get("cv_accuracy"), "fold_mean": row.get("fold_mean"), "fold_std": row.get("fold_std"),
            "public": row.get("public_score"), "private": row.get("private_score"),
            "train_seconds": row.get("train_seconds"), "train_images_per_s": row.get("train_ips"),
            "p50_ms_batch1": row.get("p50_ms_b1"), "p99_ms_batch1": row.get("p99_ms_b1"),
            "throughput_ips": row.get("throughput_ips"), "onnx_bytes": row.get("size_bytes"),
            "int8_speedup_vs_fp32_batch1": row.get("speedup_vs_fp32")}),
            tags=[RunTag("best", str(bool(row.get("best"))))])
        from harness.core.names import INT8_SUFFIX as SUFFIX
        from harness.core.names import int8_base as base_of

        if model.endswith(SUFFIX):  # an INT8 variant's files live beside its FP32 model's
            files = [run_dir / base_of(model) / n for n in ("model.int8.onnx", "int8.json", "bench.int8.json")]
        else:
            files = [run_dir / model / n for n in ("model.onnx", "cv.json", "export.json", "bench.json",
                                                  "ensemble.json")]
        for path in files:
            if path.is_file():
                client.log_artifact(cid, str(path))
        client.set_terminated(cid)
        children[model] = cid
    client.set_terminated(pid)
    return {"uri": uri, "experiment_id": exp_id, "run_id": pid, "children": children}


def _read(path: Path) -> dict:
    try:
        return io.read_json(path)
    except (OSError, ValueError):
        return {}


def _report(run_dir: Path, manifest: dict, run_id: str) -> Path | None:
    reports = Path((manifest.get("config") or {}).get("reports_dir") or "reports")
    path = reports / f"{run_id}.html"
    return path if path.is_file() else None
