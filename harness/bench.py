"""Latency of an exported model in ONNX Runtime, against its roofline floor and Keras baselines.

    record = bench_model(run_dir, "cnn_small")             # writes runs/<run>/cnn_small/bench.json
    record = bench_onnx("model.onnx", batches=(1, 64))      # the ONNX Runtime part alone, no write

What is measured, in one process and one run (BENCHMARKING.md explains why each matters):

- ONNX Runtime, CPU provider, graph optimisation ALL, `intra_op_num_threads` = each of `threads`
  (inter-op 1, sequential): per batch size, a warm-up, then timed back-to-back `run()` calls.
  Percentiles are reported only when n supports them (p50: n >= 3; p90: n >= 64 and p99: n >= 662,
  MLPerf's minimums); batch 1 gets >= 1,000 calls by default. Throughput = batch / p50.
- Cold start apart: session creation + first run, on a fresh session (median of 3).
- Per-call overhead: the same timing on a trivial graph with the same input and output.
- FLOPs per image from the ONNX graph (harness.flops). Floor = overhead + batch * FLOPs / peak,
  peak = `peak_gflops` per core times the threads; efficiency = floor / p50. Beside it, a
  roofline that also charges each layer for reading its weights (max of compute and weight bytes
  / bandwidth, layer by layer): at batch 1 a dense layer is memory-bound, which the floor ignores.
- Baselines on the same images: `keras.Model.predict` of the fold ensemble and the `tf.function`
  that was converted to ONNX (harness.export.ensemble_function), at batch 1 and the largest batch.
  They run in a child process whose TensorFlow uses exactly `baseline_threads` intra-op threads
  (TensorFlow fixes its thread pools at first use, and `harness run` has used it to train), and
  the speed-ups compare them with ONNX Runtime at the same thread count.

The default peak, 280 GFLOP/s per core (FP32), is this project's measured figure for its 2-core
AMD EPYC (Zen 5, family 0x1A): full-width AVX-512, two 512-bit FMA pipes = 64 FLOP/cycle at
~4.4 GHz, and ONNX Runtime's own single-thread MatMul (1024^3) reaches 273-281 GFLOP/s there
(`measure_peak_gflops()`). Override it with `peak_gflops=` (`--peak-gflops N`) on other machines,
or pass "measure" to use the MatMul figure measured in the same run (it is always recorded).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from harness import io
from harness.errors import RunError, UsageError
from harness.runs import model_dir

DEFAULT_BATCHES = (1, 64, 1024)
DEFAULT_THREADS = (1, 2)
DEFAULT_PEAK_GFLOPS_PER_CORE = 280.0
PEAK_SOURCE = ("documented: AMD EPYC Zen 5 core, 2x512-bit FMA = 64 FP32 FLOP/cycle at ~4.4 GHz; "
               "ONNX Runtime 1-thread MatMul 1024^3 measured 273-281 GFLOP/s")
# The floor above counts FLOPs only. A dense layer at batch 1 is a matrix-vector product that must
# read all its weights on every call: memory-bound. The roofline column adds that cost per layer,
# max(FLOPs / peak, weight bytes / bandwidth), with this per-core bandwidth: weights that do not
# stay in the 1 MB L2 stream from L3; ONNX Runtime's 1-thread GEMV of a 1600x256 float32 matrix
# (1.64 MB) took 16-19 us here, 86-100 GB/s.
DEFAULT_BANDWIDTH_GBS_PER_CORE = 100.0
PERCENTILE_MIN_N = {50: 3, 90: 64, 99: 662}
INPUT_NAME, OUTPUT_NAME = "pixels", "probs"


@dataclass(frozen=True)
class Budget:
    """How long to measure. Batch 1 gets `b1_iters` calls (>= 662 keeps p99 valid); larger
    batches run for `seconds` but at least `min_iters` calls."""

    b1_iters: int = 1000
    seconds: float = 1.5
    min_iters: int = 5
    warmup_iters: int = 20
    warmup_seconds: float = 0.2
    baseline_seconds: float = 2.0
    cold_repeats: int = 3
    predict_min_b1: int = 10       # Model.predict calls at batch 1 (each builds a dataset: ~30 ms)
    function_min_b1: int = 100     # tf.function calls at batch 1


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(b1_iters=700, seconds=0.6, min_iters=3, warmup_iters=10, warmup_seconds=0.1,
                      baseline_seconds=0.8, cold_repeats=2)


# ----------------------------------------------------------------------------- sessions and timing

def make_session(model: str | os.PathLike | bytes, threads: int = 1):
    """An ONNX Runtime CPU session as the benchmark uses it: optimisation ALL, `threads` intra-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = model if isinstance(model, (bytes, bytearray)) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def trivial_model() -> bytes:
    """The per-call reference: `pixels` uint8 [N,28,28,1] -> `probs` float32 [N,10], ~no compute."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Reshape", [INPUT_NAME, "flat_shape"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["first10"]),
             helper.make_node("Cast", ["first10"], [OUTPUT_NAME], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([10], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "trivial",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", 28, 28, 1])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="harness")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def time_calls(fn: Callable[[], Any], *, iters: int, seconds: float | None = None, min_iters: int = 1,
               warmup_iters: int = 10, warmup_seconds: float = 0.1) -> np.ndarray:
    """Seconds per call of `fn`, after a warm-up of `warmup_iters` calls (cut short once
    `warmup_seconds` have passed, after one call; 0 means none); stops at `iters` calls, or after
    `seconds` once `min_iters` calls are done. The garbage collector is paused while timing."""
    t_end = time.perf_counter() + warmup_seconds
    for _ in range(max(0, warmup_iters)):
        fn()
        if time.perf_counter() > t_end:
            break
    samples = np.empty(iters, dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int((seconds if seconds is not None else 1e9) * 1e9)
    n = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while n < iters:
            t0 = clock()
            fn()
            t1 = clock()
            samples[n] = t1 - t0
            n += 1
            if n >= min_iters and t1 > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples[:n] / 1e9


def stats(samples_s: np.ndarray, batch: int, keep_samples: bool = False) -> dict[str, Any]:
    """n, p50/p90/p99 (null where n is too small for them), mean, min, throughput, in ms."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    n = int(len(ms))
    out: dict[str, Any] = {"batch": int(batch), "n": n}
    for q, need in PERCENTILE_MIN_N.items():
        out[f"p{q}_ms"] = _r(np.percentile(ms, q)) if n >= need else None
    out["mean_ms"] = _r(ms.mean()) if n else None
    out["min_ms"] = _r(ms.min()) if n else None
    p50 = np.percentile(ms, 50) if n else None
    out["throughput_ips"] = round(float(batch / (p50 / 1e3)), 1) if p50 else None
    if keep_samples:
        out["samples_ms"] = [round(float(v), 4) for v in ms]
    return out


def measure_peak_gflops(threads: int = 1, n: int = 1024, repeats: int = 7) -> float:
    """Best GFLOP/s of an n^3 FP32 MatMul in ONNX Runtime on `threads` threads: an achievable
    peak (a lower bound of the hardware's), per the whole thread count."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "peak",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = make_session(model.SerializeToString(), threads)
    a = rng.standard_normal((n, n), dtype=np.float32)
    samples = time_calls(lambda: sess.run(None, {"a": a}), iters=repeats, warmup_iters=2, warmup_seconds=0)
    return round(2 * n ** 3 / float(samples.min()) / 1e9, 1)


# ----------------------------------------------------------------------------- ONNX Runtime part

def bench_onnx(path: str | os.PathLike, *, batches: Iterable[int] = DEFAULT_BATCHES,
               threads: Iterable[int] = DEFAULT_THREADS, peak_gflops: float | str | None = None,
               budget: Budget = DEFAULT_BUDGET, x: np.ndarray | None = None,
               progress: Callable[[str], None] | None = None,
               bandwidth_gbs: float | None = None, label: str | None = None) -> dict[str, Any]:
    """Measure one ONNX file; returns the bench record without `baselines` (nothing written)."""
    import onnxruntime as ort

    from harness.flops import count_flops

    path = Path(path)
    if not path.is_file():
        raise RunError(f"no ONNX file at {path}")
    batches, threads = _check_grid(batches, threads)
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    images = _inputs(x, max(batches))

    flops = count_flops(path)
    matmul_gflops = measure_peak_gflops(1)
    if peak_gflops in (None, ""):
        peak, source = DEFAULT_PEAK_GFLOPS_PER_CORE, PEAK_SOURCE
    elif str(peak_gflops).lower() == "measure":
        peak, source = matmul_gflops, "measured in this run: ONNX Runtime 1-thread MatMul 1024^3"
    else:
        peak, source = _positive_float(peak_gflops, "--peak-gflops"), "given (--peak-gflops)"

    bandwidth = _positive_float(bandwidth_gbs, "bandwidth") if bandwidth_gbs else DEFAULT_BANDWIDTH_GBS_PER_CORE

    label = label or path.name
    say(f"{label}: cold start")
    cold = _cold_start(path, images[:1], budget.cold_repeats)
    trivial = trivial_model()
    cores = os.cpu_count() or 1
    rows, overhead = [], []
    for t in threads:
        sess, ref = make_session(path, t), make_session(trivial, t)
        for b in batches:
            xb = images[:b]
            say(f"{label}: {t} thread{'s' if t > 1 else ''}, batch {b}")
            ref_s = time_calls(lambda: ref.run(None, {INPUT_NAME: xb}), iters=300, seconds=0.3, min_iters=30,
                               warmup_iters=20, warmup_seconds=0.02)
            over_ms = float(np.median(ref_s) * 1e3)
            overhead.append({"threads": t, "batch": b, "n": len(ref_s), "p50_ms": _r(over_ms)})
            iters = budget.b1_iters if b == 1 else 10 ** 6
            min_iters = PERCENTILE_MIN_N[99] if b == 1 else budget.min_iters
            samples = time_calls(lambda: sess.run(None, {INPUT_NAME: xb}), iters=max(iters, min_iters),
                                 seconds=budget.seconds if b > 1 else 30.0, min_iters=min_iters,
                                 warmup_iters=budget.warmup_iters, warmup_seconds=budget.warmup_seconds)
            row = {"threads": t, **stats(samples, b, keep_samples=(b == 1))}
            cores_used = min(t, cores)
            floor_ms = over_ms + b * flops.total / (peak * 1e9 * cores_used) * 1e3
            roofline_ms = over_ms + 1e3 * sum(max(b * f / (peak * 1e9), w / (bandwidth * 1e9))
                                              for _, _, f, w in flops.by_node) / cores_used
            p50 = float(np.percentile(samples, 50)) * 1e3
            row.update(floor_ms=_r(floor_ms), overhead_ms=_r(over_ms), efficiency=round(floor_ms / p50, 3),
                       roofline_ms=_r(roofline_ms), efficiency_roofline=round(roofline_ms / p50, 3),
                       gflops=round(b * flops.total / (p50 / 1e3) / 1e9, 1))
            rows.append(row)
        del sess, ref

    record = {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "onnxruntime": ort.__version__,
        "provider": "CPUExecutionProvider",
        "graph_optimization": "ORT_ENABLE_ALL",
        "machine": _machine(),
        "flops_per_image": flops.total,
        "flops_by_op": flops.by_op,
        "peak": {"gflops_per_core": peak, "source": source, "matmul_gflops_1_thread": matmul_gflops},
        "peak_gflops": peak,
        "weight_bytes": flops.weight_bytes,
        "bandwidth": {"gbs_per_core": bandwidth,
                      "source": "given" if bandwidth_gbs else "documented: 1-thread GEMV of a 1.64 MB matrix"},
        "cold_start": cold,
        "overhead": overhead,
        "latency": rows,
        "settings": {"batches": list(batches), "threads": list(threads), "budget": budget.__dict__,
                     "timing": "back-to-back InferenceSession.run() calls after a warm-up; GC paused",
                     "inputs": "caller's images" if x is not None else
                     "uniform random uint8 images (seed 0); FP32 latency does not depend on pixel values"},
    }
    record["summary"] = summary(record)
    record["seconds"] = round(time.perf_counter() - t_start, 1)
    return record


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard's keys (docs/ARCHITECTURE.md) from a bench record."""
    rows = record["latency"]
    t1 = min(r["threads"] for r in rows)
    b1 = next((r for r in rows if r["batch"] == 1 and r["threads"] == t1), None)
    bmax = max(r["batch"] for r in rows)
    # the best thread count at the largest batch (on a busy machine more threads can be slower)
    big = max((r for r in rows if r["batch"] == bmax), key=lambda r: r["throughput_ips"] or 0)
    out = {
        "p50_ms_b1": b1["p50_ms"] if b1 else None,
        "p99_ms_b1": b1["p99_ms"] if b1 else None,
        "n_b1": b1["n"] if b1 else None,
        "throughput_ips": big["throughput_ips"],
        "max_batch": bmax,
        "size_bytes": record["size_bytes"],
        "flops_per_image": record["flops_per_image"],
        "efficiency_b1": b1["efficiency"] if b1 else None,
        "threads": t1,
        "throughput_threads": big["threads"],
        "floor_ms_b1": b1["floor_ms"] if b1 else None,
        "roofline_ms_b1": b1["roofline_ms"] if b1 else None,
        "efficiency_roofline_b1": b1["efficiency_roofline"] if b1 else None,
        "cold_start_ms": record["cold_start"]["total_ms"],
    }
    speed = record.get("speedup") or {}
    for key in ("vs_tf_function_b1", "vs_predict_b1", "vs_tf_function_bmax", "vs_predict_bmax"):
        if speed.get(key) is not None:
            out[f"speedup_{key}"] = speed[key]
    return out


# ----------------------------------------------------------------------------- the whole model

def bench_model(run_dir: Path, model: str, batches: Iterable[int] = DEFAULT_BATCHES,
                threads: Iterable[int] = DEFAULT_THREADS, baselines: bool = True, *, quick: bool = False,
                peak_gflops: float | str | None = None, baseline_threads: int = 1,
                budget: Budget | None = None, x: np.ndarray | None = None, write: bool = True,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark `run_dir/<model>/model.onnx` (+ Keras baselines); write bench.json; return it.

    `quick` uses a shorter budget (batch 1 keeps >= 662 calls, so p99 stays valid).
    """
    run_dir = Path(run_dir)
    path = model_dir(run_dir, model) / "model.onnx"
    if not path.is_file():
        raise RunError(f"{model}: no model.onnx in {model_dir(run_dir, model)}; export it first "
                       f"(`harness export --run {run_dir.name} --model {model}`)")
    t_start = time.perf_counter()
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    batches, threads = _check_grid(batches, threads)
    if baselines and baseline_threads not in threads:
        threads = tuple(sorted(set(threads) | {baseline_threads}))
    images = _inputs(x, max(batches))
    record = {"model": model, "run_id": run_dir.name,
              **bench_onnx(path, batches=batches, threads=threads, peak_gflops=peak_gflops, budget=budget,
                           x=x, progress=progress, label=model)}
    if baselines:
        if progress:
            progress(f"{model}: Keras baselines (predict, tf.function), {baseline_threads} thread(s)")
        base = keras_baselines(run_dir, model, images, sorted({1, max(batches)}), threads=baseline_threads,
                               budget=budget)
        interleaved = base.pop("onnxruntime", None)  # kept apart: `baselines` lists only the baselines
        record["baselines"] = base
        record["speedup"] = _speedups(record["latency"], base, interleaved)
    record["summary"] = summary(record)
    record["quick"] = quick
    record["seconds_total"] = round(time.perf_counter() - t_start, 1)
    if write:
        io.write_json(model_dir(run_dir, model) / "bench.json", record)
    return record


def keras_baselines(run_dir: Path, model: str, images: np.ndarray, batches: list[int], threads: int = 1,
                    budget: Budget = DEFAULT_BUDGET, timeout: float = 900) -> dict[str, Any]:
    """`Model.predict` and the `tf.function` of the fold ensemble, with model.onnx in ONNX Runtime,
    timed in a child process whose TensorFlow and ONNX Runtime both use `threads` intra-op threads.
    The three are timed in alternating blocks (`ROUNDS` rounds per batch size), so that a busy
    machine slows them alike and the speed-ups stay fair. Never raises: a failure becomes a `note`."""
    out: dict[str, Any] = {"threads": threads, "batches": batches}
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as td:
        x_path, out_path = Path(td) / "x.npy", Path(td) / "out.json"
        np.save(x_path, images[:max(batches)])
        job = {"run_dir": str(run_dir), "model": model, "x": str(x_path), "out": str(out_path),
               "batches": batches, "threads": threads, "seconds": budget.baseline_seconds,
               "min_b1": [budget.predict_min_b1, budget.function_min_b1]}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
               "CUDA_VISIBLE_DEVICES": "-1", "PYTHONWARNINGS": "ignore"}
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.bench", "--keras-baselines", json.dumps(job)],
                                  env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not out_path.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                out["note"] = f"baselines failed (exit {proc.returncode}): {tail[0]}"
                return out
            out.update(io.read_json(out_path))
        except subprocess.TimeoutExpired:
            out["note"] = f"baselines timed out after {timeout:.0f} s"
    return out


ROUNDS = {"b1": 10, "large": 5}  # alternating blocks per batch size (a large-batch call can take seconds)


def _keras_baselines_worker(job: dict[str, Any]) -> None:
    """Child process: fix TF's threads before anything runs, then time predict, the tf.function
    and ONNX Runtime in alternating blocks."""
    import tensorflow as tf

    threads = int(job["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from harness.export import ensemble_function, load_members, model_tta

    run_dir, model = Path(job["run_dir"]), job["model"]
    models, weights = load_members(run_dir, model)
    tta = model_tta(run_dir, model)
    if len(models) == 1:
        ensemble = models[0]
    elif weights is None:
        inp = keras.Input((28, 28, 1))
        ensemble = keras.Model(inp, keras.layers.Average()([m(inp) for m in models]))
    else:  # the run's weighted ensemble (harness.ensemble)
        inp = keras.Input((28, 28, 1))
        ensemble = keras.Model(inp, keras.layers.Add()([keras.layers.Rescaling(w)(m(inp))
                                                         for m, w in zip(models, weights)]))
    fn = ensemble_function(models, weights, tta)
    sess = make_session(model_dir(run_dir, model) / "model.onnx", threads)
    images = np.load(job["x"])
    predict_min, function_min = job.get("min_b1", (10, 100))
    result: dict[str, Any] = {"keras_predict": {}, "tf_function": {}, "onnxruntime": {},
                              "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                              "tensorflow": tf.__version__, "keras": keras.__version__,
                              "timing": f"alternating blocks: {ROUNDS['b1']} rounds at batch 1, "
                                        f"{ROUNDS['large']} at larger batches"}
    for b in job["batches"]:
        rounds = ROUNDS["b1" if b == 1 else "large"]
        per_round = float(job["seconds"]) / rounds
        xb = np.ascontiguousarray(images[:b])
        xf = xb.astype(np.float32)
        calls = {  # (callable, minimum calls in all, warm-up calls)
            "keras_predict": (lambda: ensemble.predict(xf, batch_size=b, verbose=0),
                              predict_min if b == 1 else 3, 3 if b == 1 else 1),
            "tf_function": (lambda: fn(xb)["probs"].numpy(), function_min if b == 1 else 3, 10 if b == 1 else 1),
            "onnxruntime": (lambda: sess.run(None, {INPUT_NAME: xb}), function_min if b == 1 else 3,
                            10 if b == 1 else 1),
        }
        samples: dict[str, list[np.ndarray]] = {k: [] for k in calls}
        for r in range(rounds):
            for name, (call, min_total, warm) in calls.items():
                # warm-up (first round only): predict() builds its loop, the tf.function traces
                samples[name].append(time_calls(call, iters=10 ** 6, seconds=per_round,
                                                min_iters=-(-min_total // rounds), warmup_iters=warm if r == 0 else 0,
                                                warmup_seconds=0))
        for name in calls:
            result[name][str(b)] = stats(np.concatenate(samples[name]), b)
    io.write_json(job["out"], result)


def _speedups(rows: list[dict[str, Any]], base: dict[str, Any],
              interleaved: dict[str, Any] | None) -> dict[str, Any]:
    """The baselines' p50 over ONNX Runtime's p50, both timed interleaved in the baseline process
    (same threads), at batch 1 and the largest batch."""
    t = base.get("threads", 1)
    ort_stats = interleaved or {}
    out: dict[str, Any] = {"threads": t, "onnxruntime": ort_stats,
                           "measured": "ONNX Runtime timed interleaved with the baselines, same process"
                           if ort_stats else "ONNX Runtime from the latency table"}
    for key, name in (("vs_predict", "keras_predict"), ("vs_tf_function", "tf_function")):
        for b in base.get("batches", []):
            ref = (base.get(name) or {}).get(str(b)) or {}
            mine = ort_stats.get(str(b)) or next((r for r in rows if r["threads"] == t and r["batch"] == b), None)
            label = "b1" if b == 1 else "bmax"
            if ref.get("p50_ms") and mine and mine.get("p50_ms"):
                out[f"{key}_{label}"] = round(ref["p50_ms"] / mine["p50_ms"], 2)
                # the report reads these per baseline: p50 at batch 1 and the speed-up ratio
                if b == 1:
                    base[name].update(p50_ms_b1=ref["p50_ms"], p99_ms_b1=ref.get("p99_ms"),
                                      ratio=out[f"{key}_{label}"])
                else:
                    base[name].update(throughput_ips=ref.get("throughput_ips"))
    return out


# ----------------------------------------------------------------------------- helpers

def _cold_start(path: Path, x1: np.ndarray, repeats: int) -> dict[str, Any]:
    """Session creation + first run on fresh sessions (1 thread); medians of `repeats`."""
    sess_ms, first_ms = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        sess = make_session(path, 1)
        t1 = time.perf_counter()
        sess.run(None, {INPUT_NAME: x1})
        t2 = time.perf_counter()
        sess_ms.append((t1 - t0) * 1e3)
        first_ms.append((t2 - t1) * 1e3)
        del sess
    return {"session_ms": _r(np.median(sess_ms)), "first_run_ms": _r(np.median(first_ms)),
            "total_ms": _r(np.median(np.add(sess_ms, first_ms))), "n": len(sess_ms), "threads": 1,
            "first_total_ms": _r(sess_ms[0] + first_ms[0])}


def _inputs(x: np.ndarray | None, n: int) -> np.ndarray:
    if x is None:
        return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
    from harness.export import _as_pixels

    x = _as_pixels(x)
    if len(x) < n:
        x = np.concatenate([x] * (-(-n // len(x))))[:n]  # repeat the given images up to the largest batch
    return np.ascontiguousarray(x[:n])


def _check_grid(batches: Iterable[int], threads: Iterable[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    b = tuple(sorted({int(v) for v in batches}))
    t = tuple(sorted({int(v) for v in threads}))
    if not b or b[0] < 1:
        raise UsageError(f"batch sizes must be positive integers, got {list(batches)}")
    if not t or t[0] < 1:
        raise UsageError(f"thread counts must be positive integers, got {list(threads)}")
    return b, t


def _positive_float(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of GFLOP/s or 'measure', got {value!r}") from None
    if not v > 0:
        raise UsageError(f"{what} must be positive, got {value!r}")
    return v


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        family = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cpu family")), None)
    except OSError:
        family = None
    return {"cpu": cpu, "cpu_family": family, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def _r(v: Any) -> float:
    return round(float(v), 4)


def replace_budget(budget: Budget, **changes: Any) -> Budget:
    return replace(budget, **{k: v for k, v in changes.items() if v is not None})


if __name__ == "__main__":  # the child process of keras_baselines()
    if len(sys.argv) == 3 and sys.argv[1] == "--keras-baselines":
        _keras_baselines_worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m harness.bench --keras-baselines JOB_JSON (internal)")
