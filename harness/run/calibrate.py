"""What a run costs on this machine, measured before it trains: the planner's input.

    costs = calibrate(specs, params, x, y, k, executor_options, cache_dir, say)   # harness.run.planner.Costs

Each model trains a probe (harness.train.jobs.ProbeJob: 3 epochs on 6,144 rows, timed epoch by
epoch, then predictions) as jobs on the executor the run will use, one copy per slot side by
side, model after model, so the figures come from the run's own layout: its precision, threads
per job, worker processes or Ray slots, and a machine as busy as training makes it. A fold job
then costs

    job_s   = a fit's fixed seconds + (validation rows + test rows) x seconds per predicted image
    epoch_s = training rows of a fold x seconds per training image in the steady state

The figures are cached per machine, versions, layout and model parameters
(`<cache>/calibration.json`), so the next run with the same setup skips the probe. The stages
after training (export, INT8, benchmarks) are not probed: their shares are estimates scaled by
measured stage times (`after_training`), named as such in the plan.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io
from harness.registry import ModelSpec
from harness.run.planner import Costs

PROBE_ROWS = 6144
PROBE_VERSION = 3             # part of the cache key: figures of another probe are measured again
TEST_ROWS = 28_000            # Digit Recognizer's test.csv: every fold job predicts it
# Estimates, not probed, in seconds, from the default run's stage times on the AMX Xeon of
# docs/MEASUREMENTS.md: a model row's export with its parity gate, its benchmark, its INT8 variant
# (quantised, predicted, benchmarked); the run's own work (data, ensemble, submission) and report.
EXPORT_S, BENCH_S, INT8_S = 10.0, 30.0, 35.0
RUN_S, REPORT_S = 60.0, 30.0


def after_training(bench: bool, int8: bool, report: bool) -> tuple[float, float]:
    """(seconds per model row after training, the run's own seconds) for these stages."""
    return EXPORT_S + (BENCH_S if bench else 0.0) + (INT8_S if int8 else 0.0), RUN_S + (REPORT_S if report else 0.0)


def cache_key(specs: list[ModelSpec], params: dict[str, dict[str, Any]], layout: dict[str, Any]) -> str:
    """What the figures depend on: the CPU model and class, the engines' versions, the layout and
    each model's parameters."""
    import importlib.metadata as md

    from harness.core.device import cpu_class, machine_key

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    key = {"probe": PROBE_VERSION, "machine": machine_key(), "class": cpu_class(), "layout": layout,
           "versions": {p: version(p) for p in ("tensorflow", "tensorflow-cpu", "keras")},
           "models": {s.name: params[s.name] for s in specs}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def calibrate(specs: list[ModelSpec], params: dict[str, dict[str, Any]], x: np.ndarray, y: np.ndarray, k: int,
              executor: dict[str, Any], cache_dir: Path, say: Callable[[str], None] = lambda _m: None,
              seed: int = 0, stages: tuple[float, float] = after_training(True, True, True)
              ) -> tuple[Costs, dict[str, Any]]:
    """The costs of `specs` at `params` for a run of `len(y)` rows in `k` folds, and the probe's
    record (its figures, seconds, and whether it came from the cache)."""
    from harness.executors import make_executor, run_jobs
    from harness.train.cv import make_folds
    from harness.train.jobs import JobData, ProbeJob

    layout = {k_: executor.get(k_) for k_ in ("executor", "jobs", "cpus_per_job")}
    key = cache_key(specs, params, layout)
    path = Path(cache_dir) / "calibration.json"
    cache = io.read_json(path) if path.is_file() else {}
    record = cache.get(key)
    if record is None:
        names = [s.name for s in specs]
        say(f"calibrating on this machine: {', '.join(names)} (3 epochs on {PROBE_ROWS} rows, one copy per slot)")
        rows = min(len(y), 2 * PROBE_ROWS)
        data = JobData(x=x[:rows], y=y[:rows], x_test=x[:1], folds=make_folds(y[:rows], 4, seed))
        copies: dict[str, list[dict[str, Any]]] = {s.name: [] for s in specs}
        start = time.perf_counter()
        runner = make_executor(executor.get("executor", "local"), jobs=executor.get("jobs"),
                               cpus_per_job=executor.get("cpus_per_job"), address=executor.get("ray_address"),
                               timeout=executor.get("ray_timeout", 30.0))
        with runner.session(data):  # the probes write nothing a node must share
            slots = runner.slots
            # one copy per slot, model after model: each probe sees a machine as busy as training
            # makes it (two cnn_deep folds side by side train ~30 % slower than one beside `ann`)
            jobs = [ProbeJob(model=s.name, params=params[s.name], rows=PROBE_ROWS, seed=seed, copy=c)
                    for s in specs for c in range(slots)]
            run_jobs(runner, jobs, lambda job, result: copies[job.model].append(result))
        # the slowest copy of each: a plan is kept when its slowest slot keeps it
        probes = {m: max(runs, key=lambda p: p["train_s_per_image"]) for m, runs in copies.items()}
        record = {"probes": probes, "seconds": round(time.perf_counter() - start, 1), "layout": layout,
                  "slots": slots, "measured": io.utc_now()}
        cache[key] = record
        io.write_json(path, cache)
    else:
        record = {**record, "cached": True}
    n_val = len(y) / k
    n_train = len(y) - n_val
    # What a finished run of this setup observed beats the probe (the probe's few thousand rows
    # sit in caches a fold's tens of thousands do not): harness.run.pipeline records it (`observe`).
    figures = {m: {**p, **record.get("observed", {}).get(m, {})} for m, p in record["probes"].items()}
    costs = Costs(
        # the steady epoch's seconds per image carry its per-epoch work (validation, the input
        # pipeline's start): scaled up to a fold's rows it is an upper estimate, as a budget wants
        epoch_s={m: n_train * p["train_s_per_image"] for m, p in figures.items()},
        job_s={m: p["job_fixed_s"] if "job_fixed_s" in p else
               p["fit_fixed_s"] + (n_val + TEST_ROWS) * p["predict_s_per_image"] for m, p in figures.items()},
        after_s={m: stages[0] for m in figures}, run_s=stages[1])
    return costs, {**record, "key": key}


def observe(cache_dir: Path, key: str, model: str, train_s_per_image: float, job_fixed_s: float) -> None:
    """Record what a run's folds of `model` took (seconds per training image over whole folds, and
    a job's seconds beyond its fit) under the calibration `key`: the next plan of the same setup
    uses them instead of the probe's."""
    path = Path(cache_dir) / "calibration.json"
    cache = io.read_json(path) if path.is_file() else {}
    if key not in cache:
        return
    cache[key].setdefault("observed", {})[model] = {"train_s_per_image": train_s_per_image,
                                                    "job_fixed_s": job_fixed_s, "observed": io.utc_now()}
    io.write_json(path, cache)
