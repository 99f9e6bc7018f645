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
- A roofline floor per row: overhead + max(batch * FLOPs / peak, bytes / bandwidth), bytes = the
  graph's constants plus its activations at that batch (harness.export.flops), bandwidth = the rate at
  which ONNX Runtime's one-thread GEMV streams that many bytes (`stream_call`), timed in the same
  call. Efficiency = floor / p50, and `bound` says which term set the floor: at batch 1 the 5-fold
  `ann` graph reads 48 MB of weights per call (memory), the CNNs are bound by their FLOPs
  (compute). The FLOPs-only floor stays beside it (`flop_floor_ms`, `efficiency_flops`).
- Baselines on the same images: `keras.Model.predict` of the fold ensemble and the `tf.function`
  that was converted to ONNX (harness.export.convert.ensemble_function), at batch 1 and the largest batch.
  They run in a child process whose TensorFlow uses exactly `baseline_threads` intra-op threads
  (TensorFlow fixes its thread pools at first use, and `harness run` has used it to train), and
  the speed-ups compare them with ONNX Runtime at the same thread count.

The peak is measured in the same call, on the same machine: ONNX Runtime's one-thread 1024^3
MatMul (FP32), or for an INT8 graph its uint8 x int8 MatMulInteger (`measure_peak_gops_int8`), so
an efficiency means the same on every machine (these Xeons measured 157-205 GFLOP/s FP32 and
~1,640 GOPS INT8, AMX). `peak_gflops=` (`--peak-gflops N`) gives a fixed FP32 figure instead;
DEFAULT_PEAK_GFLOPS_PER_CORE (280, the AMD Zen 5 these notes first described) is kept only as a
documented reference for the CI gate's fixed-peak variant.

Why the bandwidth is measured at the graph's own byte count and not once past the last-level
cache: what a call streams partly stays in a large L3 between calls. On an AVX-512 Zen 5 (32 MB
L3) the 48 MB `ann` graph read its weights at 46 GB/s, the GEMV at 268 MB only at 31 GB/s, so a
floor from the DRAM rate lay 1.5x above the measured time; a GEMV of the same bytes sees the same
caches as the graph on any machine, and so the efficiency compares across machines of a class.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from harness.bench.timing import (
    DEFAULT_BUDGET,
    INPUT_NAME,
    PERCENTILE_MIN_N,
    QUICK_BUDGET,
    TimingBudget,
    _r,
    graph_io,
    make_session,
    measure_peak_gflops,
    measure_peak_gops_int8,
    roofline,
    stats,
    stream_call,
    time_calls,
    trivial_model,
)
from harness.core import io
from harness.core.device import machine
from harness.core.errors import RunError, UsageError
from harness.core.runs import model_dir

DEFAULT_BATCHES = (1, 64, 1024)
DEFAULT_THREADS = (1, 2)
DEFAULT_PEAK_GFLOPS_PER_CORE = 280.0
PEAK_SOURCE = ("documented: AMD EPYC Zen 5 core, 2x512-bit FMA = 64 FP32 FLOP/cycle at ~4.4 GHz; "
               "ONNX Runtime 1-thread MatMul 1024^3 measured 273-281 GFLOP/s")

# ----------------------------------------------------------------------------- ONNX Runtime part

def bench_onnx(path: str | os.PathLike, *, batches: Iterable[int] = DEFAULT_BATCHES,
               threads: Iterable[int] = DEFAULT_THREADS, peak_gflops: float | str | None = None,
               budget: TimingBudget = DEFAULT_BUDGET, x: np.ndarray | None = None,
               progress: Callable[[str], None] | None = None, label: str | None = None,
               precision: str = "fp32") -> dict[str, Any]:
    """Measure one ONNX file; returns the bench record without `baselines` (nothing written).

    The floor's peak is the one-thread MatMul measured in this call (FP32 MatMul, or for
    `precision="int8"` a uint8 x int8 MatMulInteger) unless `peak_gflops` gives a number; its
    bandwidth is a GEMV of the row's bytes, timed in this call at the row's thread count."""
    import onnxruntime as ort

    from harness.export.flops import count_flops

    path = Path(path)
    if not path.is_file():
        raise RunError(f"no ONNX file at {path}")
    batches, threads = _check_grid(batches, threads)
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    shape, classes = graph_io(path)
    images = _inputs(x, max(batches), shape)

    flops = count_flops(path)
    int8 = precision == "int8"
    matmul_gflops = measure_peak_gops_int8(1) if int8 else measure_peak_gflops(1)
    if peak_gflops in (None, "") or str(peak_gflops).lower() == "measure":
        peak, source = matmul_gflops, ("measured in this run: ONNX Runtime 1-thread MatMulInteger (uint8 x int8) "
                                       "1024^3, GOPS" if int8 else
                                       "measured in this run: ONNX Runtime 1-thread MatMul 1024^3")
    elif int8:
        raise UsageError("--peak-gflops is an FP32 figure; an INT8 graph's floor uses the INT8 peak measured in the run")
    else:
        peak, source = positive_float(peak_gflops, "--peak-gflops"), "given (--peak-gflops)"

    label = label or path.name
    say(f"{label}: cold start")
    cold = _cold_start(path, images[:1], budget.cold_repeats)
    trivial = trivial_model(shape, classes)
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
            nbytes = flops.bytes_per_call(b)
            stream, stream_bytes = stream_call(nbytes, t)
            stream_s = time_calls(stream, iters=300, seconds=0.3, min_iters=10, warmup_iters=3, warmup_seconds=0.02)
            del stream
            iters = budget.b1_iters if b == 1 else 10 ** 6
            min_iters = PERCENTILE_MIN_N[99] if b == 1 else budget.min_iters
            samples = time_calls(lambda: sess.run(None, {INPUT_NAME: xb}), iters=max(iters, min_iters),
                                 seconds=budget.seconds if b > 1 else 30.0, min_iters=min_iters,
                                 warmup_iters=budget.warmup_iters, warmup_seconds=budget.warmup_seconds)
            row = {"threads": t, **stats(samples, b, keep_samples=(b == 1))}
            cores_used = min(t, cores)
            roof = roofline(over_ms / 1e3, b * flops.total, peak * 1e9 * cores_used, nbytes,
                            float(np.median(stream_s)), stream_bytes)
            flop_floor_ms = over_ms + roof["compute_s"] * 1e3
            p50 = float(np.percentile(samples, 50)) * 1e3
            row.update(floor_ms=_r(roof["floor_s"] * 1e3), overhead_ms=_r(over_ms),
                       efficiency=round(roof["floor_s"] * 1e3 / p50, 3), bound=roof["bound"],
                       compute_ms=_r(roof["compute_s"] * 1e3), memory_ms=_r(roof["memory_s"] * 1e3),
                       bytes=nbytes, bandwidth_gbs=_r(roof["bandwidth_gbs"]) if roof["bandwidth_gbs"] else None,
                       flop_floor_ms=_r(flop_floor_ms), efficiency_flops=round(flop_floor_ms / p50, 3),
                       gflops=round(b * flops.total / (p50 / 1e3) / 1e9, 1))
            rows.append(row)
        del sess, ref

    record = {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "onnxruntime": ort.__version__,
        "provider": "CPUExecutionProvider",
        "graph_optimization": "ORT_ENABLE_ALL",
        "machine": machine(),
        "flops_per_image": flops.total,
        "flops_by_op": flops.by_op,
        "precision": precision,
        "peak": {"gflops_per_core": peak, "source": source, "matmul_gflops_1_thread": matmul_gflops,
                 "unit": "GOPS (int8)" if int8 else "GFLOP/s (fp32)"},
        "peak_gflops": peak,
        "weight_bytes": flops.weight_bytes,
        "param_bytes": flops.param_bytes,
        "activation_bytes_per_image": flops.activation_bytes,
        "bandwidth": {"source": "measured in this run, per row: ONNX Runtime GEMV ([1, 1024] x [1024, n] FP32) "
                                "streaming the row's bytes (at most 256 MiB), at the row's threads, less the "
                                "per-call overhead",
                      "floor": "overhead + max(batch x FLOPs / peak, bytes / bandwidth)"},
        "cold_start": cold,
        "overhead": overhead,
        "latency": rows,
        "settings": {"batches": list(batches), "threads": list(threads), "budget": budget.__dict__,
                     "timing": "back-to-back InferenceSession.run() calls after a warm-up; GC paused",
                     "inputs": "caller's images" if x is not None else
                     "uniform random uint8 images (seed 0); FP32 latency does not depend on pixel values"},
    }
    if not int8:  # beside the CPU rows, the GPU's where this ONNX Runtime has CUDA (onnxruntime-gpu)
        from harness.core.device import cuda_provider

        if cuda_provider():
            from harness.bench.gpu import bench_cuda

            say(f"{label}: CUDA execution provider")
            record["cuda"] = bench_cuda(path, images, batches, budget)
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
        "bound_b1": b1.get("bound") if b1 else None,
        "efficiency_flops_b1": b1.get("efficiency_flops") if b1 else None,
        "cold_start_ms": record["cold_start"]["total_ms"],
    }
    speed = record.get("speedup") or {}
    for key in ("vs_tf_function_b1", "vs_predict_b1", "vs_tf_function_bmax", "vs_predict_bmax"):
        if speed.get(key) is not None:
            out[f"speedup_{key}"] = speed[key]
    fp32 = (record.get("vs_fp32") or {}).get("batches") or {}
    if fp32:  # an INT8 graph: its speed-up over the FP32 graph, timed interleaved
        out["speedup_vs_fp32_b1"] = (fp32.get("1") or {}).get("speedup")
        out["speedup_vs_fp32_bmax"] = fp32[str(max(int(b) for b in fp32))]["speedup"]
    out["precision"] = record.get("precision", "fp32")
    cuda = {r["batch"]: r for r in (record.get("cuda") or {}).get("latency", [])}
    if cuda:  # the GPU's figures beside the CPU's (harness[gpu] on a machine with an NVIDIA GPU)
        out["cuda_p50_ms_b1"] = (cuda.get(1) or {}).get("p50_ms")
        out["cuda_throughput_ips"] = cuda[max(cuda)]["throughput_ips"]
    return out


# ----------------------------------------------------------------------------- the whole model

def bench_model(run_dir: Path, model: str, batches: Iterable[int] = DEFAULT_BATCHES,
                threads: Iterable[int] = DEFAULT_THREADS, baselines: bool = True, *, quick: bool = False,
                peak_gflops: float | str | None = None, baseline_threads: int = 1,
                budget: TimingBudget | None = None, x: np.ndarray | None = None, write: bool = True,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark a leaderboard model's ONNX file and write its bench JSON; return the record.

    `model` is a model (`run_dir/<model>/model.onnx` + Keras baselines -> bench.json) or its INT8
    variant (`<model>@int8`: model.int8.onnx, no Keras baselines, efficiency against the INT8 peak,
    and its speed-up over the FP32 graph timed interleaved with it -> bench.int8.json).
    `quick` uses a shorter budget (batch 1 keeps >= 662 calls, so p99 stays valid).
    """
    from harness.core.names import INT8_SUFFIX as SUFFIX
    from harness.core.names import artefact, onnx_path
    from harness.core.names import int8_base as base_of

    run_dir = Path(run_dir)
    int8 = model.endswith(SUFFIX)
    path = onnx_path(run_dir, model)
    if not path.is_file():
        raise RunError(f"{model}: no {path.name} in {model_dir(run_dir, base_of(model))}; export it first "
                       f"(`harness export --run {run_dir.name} --model {base_of(model)}"
                       + (" --int8`)" if int8 else "`)"))
    t_start = time.perf_counter()
    budget = budget or (QUICK_BUDGET if quick else DEFAULT_BUDGET)
    batches, threads = _check_grid(batches, threads)
    baselines = baselines and not int8
    if baselines and baseline_threads not in threads:
        threads = tuple(sorted(set(threads) | {baseline_threads}))
    images = _inputs(x, max(batches), graph_io(path)[0])
    record = {"model": model, "run_id": run_dir.name,
              **bench_onnx(path, batches=batches, threads=threads, peak_gflops=peak_gflops, budget=budget,
                           x=x, progress=progress, label=model, precision="int8" if int8 else "fp32")}
    if baselines:
        from harness.bench.keras_baselines import keras_baselines, speedups

        if progress:
            progress(f"{model}: Keras baselines (predict, tf.function), {baseline_threads} thread(s)")
        base = keras_baselines(run_dir, model, images, sorted({1, max(batches)}), threads=baseline_threads,
                               budget=budget)
        interleaved = base.pop("onnxruntime", None)  # kept apart: `baselines` lists only the baselines
        record["baselines"] = base
        record["speedup"] = speedups(record["latency"], base, interleaved)
    if int8:
        fp32 = onnx_path(run_dir, base_of(model))
        if progress:
            progress(f"{model}: against the FP32 graph, interleaved, 1 thread")
        record["vs_fp32"] = versus(fp32, path, images, sorted({1, max(batches)}), budget.baseline_seconds)
    record["summary"] = summary(record)
    record["quick"] = quick
    record["seconds_total"] = round(time.perf_counter() - t_start, 1)
    if write:
        io.write_json(artefact(run_dir, model, "bench"), record)
    return record


def versus(reference: Path, candidate: Path, images: np.ndarray, batches: list[int], seconds: float,
           threads: int = 1, rounds: int = 6) -> dict[str, Any]:
    """p50 of two ONNX files timed in alternating blocks (a busy machine slows both alike) and
    reference p50 / candidate p50 per batch size: the INT8-over-FP32 speed-up."""
    sessions = {"reference": make_session(reference, threads), "candidate": make_session(candidate, threads)}
    out: dict[str, Any] = {"reference": str(reference), "threads": threads, "rounds": rounds, "batches": {}}
    for b in batches:
        xb = np.ascontiguousarray(images[:b])
        samples: dict[str, list[np.ndarray]] = {k: [] for k in sessions}
        for r in range(rounds):
            for k, sess in sessions.items():
                samples[k].append(time_calls(lambda sess=sess: sess.run(None, {INPUT_NAME: xb}), iters=10 ** 6,
                                             seconds=seconds / rounds, min_iters=20 if b == 1 else 1,
                                             warmup_iters=10 if r == 0 else 0, warmup_seconds=0))
        p50 = {k: float(np.median(np.concatenate(v))) * 1e3 for k, v in samples.items()}
        out["batches"][str(b)] = {"reference_p50_ms": _r(p50["reference"]), "p50_ms": _r(p50["candidate"]),
                                  "n": int(sum(len(v) for v in samples["candidate"])),
                                  "speedup": round(p50["reference"] / p50["candidate"], 2)}
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


def _inputs(x: np.ndarray | None, n: int, shape: tuple[int, ...] = (28, 28, 1)) -> np.ndarray:
    if x is None:
        return np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    from harness.export.convert import _as_pixels

    x = _as_pixels(x, shape)
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


def positive_float(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of GFLOP/s or 'measure', got {value!r}") from None
    if not v > 0:
        raise UsageError(f"{what} must be positive, got {value!r}")
    return v
