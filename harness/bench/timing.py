"""The timing primitives of the latency stage: ONNX Runtime sessions as the benchmark makes them,
timed calls, interleaved blocks, percentiles, and the two terms of the roofline floor (the
one-thread MatMul peak and a GEMV that streams a call's bytes). harness.bench.latency,
keras_baselines and gpu build on these; the latency gate (tests/benchmarks) times with them too.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

# The bandwidth probe streams at most this much: well past any last-level cache these machines
# have (16-32 MB here), where the rate stops changing with the size.
STREAM_MAX_BYTES = 256 * 2 ** 20
STREAM_ROWS = 1024
PERCENTILE_MIN_N = {50: 3, 90: 64, 99: 662}
INPUT_NAME, OUTPUT_NAME = "pixels", "probs"


@dataclass(frozen=True)
class TimingBudget:
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


DEFAULT_BUDGET = TimingBudget()
QUICK_BUDGET = TimingBudget(b1_iters=700, seconds=0.6, min_iters=3, warmup_iters=10, warmup_seconds=0.1,
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


def graph_io(model: str | os.PathLike | bytes) -> tuple[tuple[int, ...], int]:
    """An exported graph's image shape (H, W, C) and class count: its `pixels` and `probs` dims."""
    import onnx

    proto = (onnx.load_from_string(bytes(model)) if isinstance(model, (bytes, bytearray))
             else onnx.load(os.fspath(model), load_external_data=False))

    def dims(value_info: Any) -> list[int]:
        return [d.dim_value for d in value_info.type.tensor_type.shape.dim]

    return tuple(dims(proto.graph.input[0])[1:]), dims(proto.graph.output[0])[-1]


def trivial_model(shape: tuple[int, ...] = (28, 28, 1), classes: int = 10) -> bytes:
    """The per-call reference: `pixels` uint8 [N,*shape] -> `probs` float32 [N,classes], ~no compute."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    pixels = int(np.prod(shape))
    if classes > pixels:
        raise ValueError(f"the reference graph takes its {classes} outputs from {pixels} pixels")
    nodes = [helper.make_node("Reshape", [INPUT_NAME, "flat_shape"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["first10"]),
             helper.make_node("Cast", ["first10"], [OUTPUT_NAME], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.array([-1, pixels], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([classes], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "trivial",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", *shape])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])], inits)
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


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, calls: int | dict[str, int],
                q: float = 25) -> dict[str, float]:
    """Seconds per call of each fn (the q-th percentile of all its calls), timed in alternating
    blocks so that the machine's drift (other processes, clock changes) hits them all alike. The
    lower quartile by default, not the median: on a shared machine interference only ever adds
    time, and at large batches it hits a good share of the calls. `calls`: per block, or per fn."""
    samples: dict[str, list[np.ndarray]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            n = calls[k] if isinstance(calls, dict) else calls
            samples[k].append(time_calls(fns[k], iters=n, warmup_iters=2, warmup_seconds=0))
    return {k: float(np.percentile(np.concatenate(v), q)) for k, v in samples.items()}


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
    rng = np.random.default_rng(0)
    return _matmul_peak("MatMul", rng.standard_normal((n, n), dtype=np.float32),
                        rng.standard_normal((n, n), dtype=np.float32), threads, repeats)


def measure_peak_gops_int8(threads: int = 1, n: int = 1024, repeats: int = 7) -> float:
    """Best GOPS (2 ops per multiply-add) of an n^3 uint8 x int8 MatMulInteger in ONNX Runtime:
    the INT8 counterpart of `measure_peak_gflops` (VNNI/AMX kernels where the CPU has them)."""
    rng = np.random.default_rng(0)
    return _matmul_peak("MatMulInteger", rng.integers(0, 256, (n, n), dtype=np.uint8),
                        rng.integers(-128, 128, (n, n), dtype=np.int8), threads, repeats)


def _matmul_peak(op: str, a: np.ndarray, w: np.ndarray, threads: int, repeats: int) -> float:
    """Best 2*n^3 / seconds of `op`(a, w) over `repeats` timed calls, in G(FL)OP/s."""
    samples = time_calls(matmul_call(op, a, w, threads), iters=repeats, warmup_iters=2, warmup_seconds=0)
    return round(2 * a.shape[0] ** 3 / float(samples.min()) / 1e9, 1)


def matmul_call(op: str, a: np.ndarray, w: np.ndarray, threads: int = 1) -> Callable[[], Any]:
    """One call of ONNX Runtime's `op` (MatMul, MatMulInteger) of `a` by the constant `w`."""
    from onnx import TensorProto, helper, numpy_helper

    out = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node(op, ["a", "w"], ["y"])], op.lower(),
                              [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))],
                              [helper.make_tensor_value_info("y", out, [a.shape[0], w.shape[1]])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = make_session(model.SerializeToString(), threads)
    return lambda: sess.run(None, {"a": a})


def stream_call(nbytes: int, threads: int = 1) -> tuple[Callable[[], Any], int]:
    """(one call of ONNX Runtime's GEMV, a [1, 1024] vector times a constant [1024, n] FP32 matrix
    of about `nbytes` (at most STREAM_MAX_BYTES), the bytes of that matrix). At batch 1 every weight
    is read once for two FLOPs, so its time is the rate at which this machine streams that many
    bytes through the kernel a dense layer uses, with the caches a graph of that size sees."""
    cols = max(1, min(int(nbytes), STREAM_MAX_BYTES) // (4 * STREAM_ROWS))
    w = np.random.default_rng(0).standard_normal((STREAM_ROWS, cols), dtype=np.float32)
    return matmul_call("MatMul", np.ones((1, STREAM_ROWS), np.float32), w, threads), int(w.nbytes)


def roofline(overhead_s: float, flops: float, peak_flops_s: float, nbytes: float, stream_s: float,
             stream_bytes: float) -> dict[str, Any]:
    """The floor of one call: overhead + max(FLOPs / peak, bytes / bandwidth), in seconds, with the
    bandwidth from a stream of `stream_bytes` that took `stream_s` per call (its own overhead, the
    same per-call cost as `overhead_s`, taken off). Returns floor_s, compute_s, memory_s,
    bandwidth_gbs and bound ("compute" or "memory")."""
    compute = flops / peak_flops_s
    moving = stream_s - overhead_s  # <= 0: a stream too small to time apart from the call itself
    bandwidth = stream_bytes / moving if moving > 0 else None
    memory = nbytes / bandwidth if bandwidth else 0.0
    return {"floor_s": overhead_s + max(compute, memory), "compute_s": compute, "memory_s": memory,
            "bandwidth_gbs": bandwidth / 1e9 if bandwidth else None,
            "bound": "memory" if memory > compute else "compute"}


def _r(v: Any) -> float:
    return round(float(v), 4)


def replace_budget(budget: TimingBudget, **changes: Any) -> TimingBudget:
    return replace(budget, **{k: v for k, v in changes.items() if v is not None})
