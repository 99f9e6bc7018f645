"""What a run costs on this machine, measured before it trains: the planner's input.

    record = calibrate(specs, params, x, y, executor_options, cache_dir, say)   # probed once, cached
    costs = costs_of(record, rows=42_000, k=5, after=After(bench=True, int8=True))  # harness.run.planner.Costs

Each model trains a probe (harness.train.jobs.ProbeJob: 2 epochs on 3,072 rows, timed epoch by
epoch, then predictions) as jobs on the executor the run will use, one copy per slot side by
side, model after model, so the figures come from the run's own layout: its precision, threads
per job, worker processes or Ray slots, and a machine as busy as training makes it. A fold job
then costs

    job_s   = a fit's fixed seconds + (validation rows + test rows) x seconds per predicted image
    epoch_s = training rows of a fold x seconds per training image in the steady state
              + its per-epoch validation rows x seconds per predicted image

and each slot's first job waits for its worker's warm-up (TensorFlow's import), unless the
probe's workers were kept warm for the training (`calibrate(keep_warm=True)`).

The figures are cached per machine, versions, layout and model parameters
(`<cache>/calibration.json`), so the next run with the same setup skips the probe. The stages
after training (export, INT8, benchmarks, ensemble, report) are not probed: their shares start
as estimates. Finished planned runs then replace the probe's figures and the estimates with what
they took (`observe`, `observe_after`): the median of the latest `RECENT` runs of the setup, so
that one run slowed by something else on the machine does not set the next plan alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io
from harness.registry import ModelSpec
from harness.run.planner import Costs
from harness.train.jobs import CURVE_VAL_ROWS

PROBE_ROWS = 3072
PROBE_VERSION = 4             # part of the cache key: figures of another probe are measured again
TEST_ROWS = 28_000            # Digit Recognizer's test.csv: every fold job predicts it (others: theirs)
# Estimates, not probed, in seconds, from the stage times of default runs on an AMX Xeon and a Zen 5
# (docs/MEASUREMENTS.md): a model row's export with its parity gate, its benchmark, its INT8 variant
# (quantised, predicted, benchmarked); the run's own work (data, ensemble, submission) and report.
# A finished planned run replaces them with what its setup took (observe_after).
EXPORT_S, BENCH_S, INT8_S = 8.0, 25.0, 35.0
RUN_S, REPORT_S = 20.0, 15.0
START_S = 5.0                # of RUN_S, before training: the data, the run folder and its folds
SHORT_BENCH = 0.3            # a short benchmark (one thread, fewer repeats) against the full one
RECENT = 3                   # observed figures: the median of this many latest runs of a setup
# A model not probed yet is taken to train at this share of what its FLOPs at the fastest probed
# model's seconds per FLOP say: its probe is skipped only when even that is too dear. Seconds per
# FLOP differ by model: `ann`'s are 1.06x `cnn_deep`'s on the emulated AVX2 machine, 1.38x on a
# Zen 5, 1.83x on an AMX Xeon (docs/SPEED_AUDIT.md), so at 0.4 the estimate stays under the truth.
HOPE = 0.4


@dataclass(frozen=True)
class After:
    """Which stages run after training: the benchmark (short: one thread), INT8 variants, the report."""
    bench: bool = True
    int8: bool = True
    short_bench: bool = False
    report: bool = True

    @property
    def key(self) -> str:
        return f"bench={int(self.bench)}{'s' * self.short_bench},int8={int(self.int8)},report={int(self.report)}"

    def leaner(self, keep_bench: bool = False) -> list["After"]:
        """This, then without INT8, then with a short benchmark, then (unless `keep_bench`) none:
        the order a tight budget gives them up."""
        out = [self]
        if self.int8:
            out.append(replace(out[-1], int8=False))
        if self.bench and not self.short_bench:
            out.append(replace(out[-1], short_bench=True))
        if self.bench and not keep_bench:
            out.append(replace(out[-1], bench=False))
        return out

    def covers(self, other: "After") -> bool:
        """Whether these stages do all of `other`'s work (a full benchmark covers a short one)."""
        bench = not other.bench or (self.bench and (other.short_bench or not self.short_bench))
        return bench and self.int8 >= other.int8 and self.report >= other.report

    def richer(self) -> list["After"]:
        """Every other set of stages that does all of this one's work."""
        every = (After(*flags) for flags in itertools.product((False, True), repeat=4))
        return [a for a in every if a != self and a.covers(self)]


def after_training(after: After, record: dict[str, Any] | None = None, spent_s: float = 0.0) -> tuple[float, float]:
    """(seconds per model row after training, the run's own seconds) of these stages: what the last
    planned runs of this calibration's setup (machine, models, layout) took with them, else the
    estimates, but no more than richer stages this setup took (a 5-minute run's last resort, no
    benchmark, held back an estimated 35 s of the run's own where short benchmarks had taken 28).
    `spent_s`: the run's own seconds spent already (those before training), left out."""
    observed = (record or {}).get("after", {})
    if after.key in observed:
        per_row, run_s = observed[after.key]["per_row_s"], observed[after.key]["run_s"]
    else:
        bench = (BENCH_S * (SHORT_BENCH if after.short_bench else 1.0)) if after.bench else 0.0
        richer = [observed[level.key] for level in after.richer() if level.key in observed]
        per_row = min([EXPORT_S + bench + (INT8_S if after.int8 else 0.0), *(s["per_row_s"] for s in richer)])
        run_s = min([RUN_S + (REPORT_S if after.report else 0.0), *(s["run_s"] for s in richer)])
    return per_row, max(run_s - spent_s, 0.0)


def _recent(seen: dict[str, Any] | None, figures: dict[str, float], digits: int | None = None) -> dict[str, Any]:
    """`figures` added to the latest runs `seen` holds (at most RECENT), and each figure as the
    median of those runs: one perturbed run moves the median of three by nothing."""
    seen = seen or {}
    # an entry written before runs were kept counts as one run
    before = seen.get("runs") or ([{k: seen[k] for k in figures if k in seen}] if seen else [])
    runs = [*before, figures][-RECENT:]
    med = {k: float(np.median([r[k] for r in runs if k in r])) for k in figures}
    return {**{k: (round(v, digits) if digits is not None else v) for k, v in med.items()},
            "runs": runs, "observed": io.utc_now()}


def before_training(after: After, record: dict[str, Any] | None = None) -> float:
    """Of the run's own seconds (`after_training`'s second figure), those spent before training
    (the data, the run folder and its folds): what the last planned runs of this setup took, else
    the estimate. The keeper's deadline does not hold them back: they are spent when it starts."""
    run_s = after_training(after, record)[1]
    seen = (record or {}).get("after", {}).get(after.key) or {}
    return min(float(seen.get("start_s", START_S)), run_s)


def observe_after(cache_dir: Path, key: str, after: After, per_row_s: float, run_s: float,
                  start_s: float | None = None) -> None:
    """Record what a planned run's stages after training took (per model row, and the run's own,
    `start_s` of them before training) under the calibration `key`, for the next plan of the same
    setup with the same stages."""
    path = Path(cache_dir) / "calibration.json"
    cache = io.read_json(path) if path.is_file() else {}
    if key not in cache:
        return
    seen = cache[key].setdefault("after", {})
    figures = {"per_row_s": round(per_row_s, 1), "run_s": round(run_s, 1),
               **({"start_s": round(start_s, 1)} if start_s is not None else {})}
    seen[after.key] = _recent(seen.get(after.key), figures, 1)
    io.write_json(path, cache)


def cache_key(specs: list[ModelSpec], params: dict[str, dict[str, Any]], layout: dict[str, Any],
              images: tuple[int, ...] = (28, 28, 1, 10)) -> str:
    """What the figures depend on: the CPU model and class, the engines' versions, the layout,
    each model's parameters and the images (height, width, channels, classes)."""
    import importlib.metadata as md

    from harness.core.device import cpu_class, machine_key

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    key = {"probe": PROBE_VERSION, "machine": machine_key(), "class": cpu_class(), "layout": layout,
           "versions": {p: version(p) for p in ("tensorflow", "tensorflow-cpu", "keras")},
           "models": {s.name: params[s.name] for s in specs},
           # Digit Recognizer's keys predate other shapes: they stay what they were
           **({"images": list(images)} if tuple(images) != (28, 28, 1, 10) else {})}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def calibrate(specs: list[ModelSpec], params: dict[str, dict[str, Any]], x: np.ndarray, y: np.ndarray,
              executor: dict[str, Any], cache_dir: Path, say: Callable[[str], None] = lambda _m: None,
              seed: int = 0, classes: int = 10, keep_warm: bool = False,
              worth: Callable[[str, float, float, dict[str, Any], int], bool] | None = None) -> dict[str, Any]:
    """The probe's record of `specs` at `params` in this layout (its figures, seconds, slots, and
    whether it came from the cache); `costs_of` turns it into a run's costs. `keep_warm`: the
    probe's worker processes stay for the training that follows (harness.executors.warm_slots).

    `worth(model, seconds per training image, seconds calibrating so far, the probed models'
    figures, slots)`: whether a model not probed yet could still be planned beside the probed ones
    if it trained that fast (an optimistic estimate from its FLOPs and the fastest probed model's
    seconds per FLOP); a model it declines is not probed and
    is missing from the record's `probes`. The first model is always probed, the others cheapest
    (fewest FLOPs) first; a later calibration of the same setup probes the missing ones it affords."""
    from harness.executors import make_executor, run_jobs
    from harness.train.cv import make_folds
    from harness.train.jobs import JobData, ProbeJob

    layout = {k_: executor.get(k_) for k_ in ("executor", "jobs", "cpus_per_job")}
    key = cache_key(specs, params, layout, (*x.shape[1:], classes))
    path = Path(cache_dir) / "calibration.json"
    cache = io.read_json(path) if path.is_file() else {}
    record = cache.get(key) or {}
    probes: dict[str, Any] = dict(record.get("probes", {}))
    flops: dict[str, int] = dict(record.get("flops", {}))
    todo = [s.name for s in specs if s.name not in probes]
    slots = int(record.get("slots") or 1)
    if record and not any(_worth(m, probes, flops, worth, 0.0, slots) for m in todo):
        return {**record, "cached": True, "key": key}
    say(f"calibrating on this machine: {', '.join(todo)} (2 epochs on {PROBE_ROWS} rows, one copy per slot)")
    rows = min(len(y), 2 * PROBE_ROWS)
    data = JobData(x=x[:rows], y=y[:rows], x_test=x[:1], folds=make_folds(y[:rows], 4, seed), classes=classes)
    copies: dict[str, list[dict[str, Any]]] = {}
    declined: list[str] = []
    start = time.perf_counter()
    runner = make_executor(executor.get("executor", "local"), jobs=executor.get("jobs"),
                           cpus_per_job=executor.get("cpus_per_job"), address=executor.get("ray_address"),
                           timeout=executor.get("ray_timeout", 30.0))
    with runner.session(data, keep_warm=keep_warm):  # the probes write nothing a node must share
        slots = runner.slots
        while todo:
            # the first model as listed, then the cheapest first: the dear ones may not be worth it
            name = todo[0] if not probes else min(todo, key=lambda m: (flops.get(m, 0), todo.index(m)))
            todo.remove(name)
            if not _worth(name, probes, flops, worth, time.perf_counter() - start, slots):
                declined.append(name)
                continue
            count = ({s.name: params[s.name] for s in specs} if not flops and len(specs) > 1 else None)
            # one copy per slot, each model's copies started together: each probe sees a machine as
            # busy as training makes it (two cnn_deep folds side by side train ~30 % slower than one
            # beside `ann`; a copy left alone on a machine whose slots share a core read cnn_small
            # twice as fast as its folds then trained)
            jobs = [ProbeJob(model=name, params=params[name], rows=PROBE_ROWS, seed=seed, copy=c,
                             count=count if c == 0 else None) for c in range(slots)]
            copies[name] = []
            run_jobs(runner, jobs, lambda job, result: copies[job.model].append(result))
            flops.update(next((p["flops"] for p in copies[name] if "flops" in p), {}))
            # the slowest copy: a plan is kept when its slowest slot keeps it
            probes[name] = max(copies[name], key=lambda p: p["train_s_per_image"])
    seconds = round(time.perf_counter() - start, 1)
    # a worker's first job imports TensorFlow: once per slot, the start of a run's training
    warmup = max([p.get("import_s", 0.0) for runs in copies.values() for p in runs] + [record.get("warmup_s", 0.0)])
    if declined:
        say(f"calibration: not probed, too dear for this time limit: {', '.join(declined)}")
    record = {**record, "probes": probes, "seconds": round(record.get("seconds", 0.0) + seconds, 1),
              "layout": layout, "slots": slots, "warmup_s": round(warmup, 1), "measured": io.utc_now(),
              **({"flops": flops} if flops else {})}
    cache = io.read_json(path) if path.is_file() else {}
    cache[key] = record
    io.write_json(path, cache)
    return {**record, "seconds": seconds, "cached": False, "key": key}


def _worth(model: str, probes: dict[str, Any], flops: dict[str, int],
           worth: Callable[[str, float, float, dict[str, Any], int], bool] | None, elapsed: float,
           slots: int) -> bool:
    """Whether to probe `model`: always without `worth`, with nothing probed or no FLOPs to go by;
    else `worth` at HOPE x its FLOPs x the fastest seconds per FLOP of the probed models."""
    if worth is None or not probes or not flops.get(model):
        return True
    rate = min((p["train_s_per_image"] / flops[m] for m, p in probes.items() if flops.get(m)), default=None)
    return rate is None or worth(model, HOPE * rate * flops[model], elapsed, probes, slots)


def costs_of(record: dict[str, Any], rows: int, k: int, after: After, test_rows: int = TEST_ROWS,
             warm: bool = False) -> Costs:
    """A run's costs from a calibration record: `rows` training rows in `k` folds, with the
    stages `after` training; `warm`: every slot's worker has TensorFlow imported already."""
    n_val = rows / k
    n_train = rows - n_val
    # What a finished run of this setup observed beats the probe (the probe's few thousand rows
    # sit in caches a fold's tens of thousands do not): harness.run.pipeline records it (`observe`).
    observed = record.get("observed", {})
    figures = {m: {**p, **observed.get(m, {})} for m, p in record["probes"].items()}
    per_row, run_s = after_training(after, record)
    # a fold's epoch: its rows at the probe's steady speed, and its validation pass of up to
    # CURVE_VAL_ROWS (the probe's epoch validated 512); a run's observed speed has both already
    val = min(n_val, CURVE_VAL_ROWS)
    return Costs(
        epoch_s={m: n_train * p["train_s_per_image"] + (0.0 if m in observed else val * p["predict_s_per_image"])
                 for m, p in figures.items()},
        job_s={m: p["job_fixed_s"] if "job_fixed_s" in p else
               p["fit_fixed_s"] + (n_val + test_rows) * p["predict_s_per_image"] for m, p in figures.items()},
        after_s={m: per_row for m in figures}, run_s=run_s, start_s=before_training(after, record),
        warmup_s=0.0 if warm else float(record.get("warmup_s", 0.0)))


def observe(cache_dir: Path, key: str, model: str, train_s_per_image: float, job_fixed_s: float) -> None:
    """Record what a run's folds of `model` took (seconds per training image over whole folds, and
    a job's seconds beyond its fit) under the calibration `key`: the next plan of the same setup
    uses the median of the latest runs instead of the probe's figures."""
    path = Path(cache_dir) / "calibration.json"
    cache = io.read_json(path) if path.is_file() else {}
    if key not in cache:
        return
    seen = cache[key].setdefault("observed", {})
    seen[model] = _recent(seen.get(model), {"train_s_per_image": train_s_per_image, "job_fixed_s": job_fixed_s})
    io.write_json(path, cache)
