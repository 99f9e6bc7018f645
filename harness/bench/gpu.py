"""The GPU rows of a benchmark: ONNX Runtime's CUDA execution provider (harness[gpu]), timed like
the CPU rows of harness.bench.latency and recorded beside them as bench.json's `cuda`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from harness.bench.timing import INPUT_NAME, PERCENTILE_MIN_N, TimingBudget, stats, time_calls


def bench_cuda(path: Path, images: np.ndarray, batches: Iterable[int], budget: TimingBudget) -> dict[str, Any]:
    """Latency per batch size on ONNX Runtime's CUDA execution provider (inputs copied from the host
    on every call, as a caller's would be). Never raises: a provider that cannot start is a note."""
    import onnxruntime as ort

    from harness.core.device import nvidia_gpus

    out: dict[str, Any] = {"provider": "CUDAExecutionProvider", "device": (nvidia_gpus() or ["?"])[0],
                           "timing": "host numpy in, host numpy out, back-to-back run() calls"}
    try:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if sess.get_providers()[0] != "CUDAExecutionProvider":
            return {**out, "note": f"the session fell back to {sess.get_providers()[0]}"}
        rows = []
        for b in batches:
            xb = images[:b]
            samples = time_calls(lambda: sess.run(None, {INPUT_NAME: xb}), iters=max(budget.b1_iters, 662)
                                 if b == 1 else 10 ** 6, seconds=budget.seconds if b > 1 else 30.0,
                                 min_iters=PERCENTILE_MIN_N[99] if b == 1 else budget.min_iters,
                                 warmup_iters=max(20, budget.warmup_iters), warmup_seconds=1.0)
            rows.append(stats(samples, b))
        out["latency"] = rows
    except Exception as e:  # a broken CUDA install must not cost the CPU figures
        out["note"] = f"CUDA provider failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return out
