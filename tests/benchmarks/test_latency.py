"""ONNX Runtime latency of the exported suite models, timed by pytest-benchmark.

Each case runs one thread at batch 1 and at a large batch; `extra_info` carries the model, batch,
threads, FLOPs per image, the floor (per-call overhead + FLOPs / peak) and the efficiency
(floor / median), plus p90/p99 with n, which pytest-benchmark itself does not gate on.
The hand-written reference graphs are timed too: they are the yardstick of test_gate.py.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("graph", ["exported", "reference"])
def test_onnxruntime_latency(benchmark, subjects, images, tools, suite_model, suite_batch, graph):
    from harness.bench import make_session

    from_conftest = subjects[suite_model]
    sess = (make_session(from_conftest.onnx_path, 1) if graph == "exported"
            else tools.reference_session(from_conftest.reference))
    feed = tools.feed(images, suite_batch)
    probs = sess.run(None, feed)[0]  # timing a graph that computes nonsense would mean nothing
    assert probs.shape == (suite_batch, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    rounds = 800 if suite_batch == 1 else 40
    benchmark.group = f"onnxruntime, 1 thread, batch {suite_batch}"
    benchmark.extra_info.update(model=suite_model, graph=graph, batch=suite_batch, threads=1,
                                flops_per_image=from_conftest.flops_per_image)
    benchmark.pedantic(sess.run, args=(None, feed), rounds=rounds, warmup_rounds=rounds // 10, iterations=1)
    stats = getattr(benchmark.stats, "stats", None)  # None under --benchmark-disable
    if stats is not None:
        floor = tools.floor_ms(from_conftest.flops_per_image, suite_batch, threads=1)
        benchmark.extra_info.update(
            floor_ms=round(floor["floor_ms"], 4), overhead_ms=round(floor["overhead_ms"], 4),
            peak_gflops_per_core=floor["peak"], efficiency=round(floor["floor_ms"] / (stats.median * 1e3), 3),
            **tools.percentiles(stats.data))
        # every round timed, and the floor below the median: a floor above it (efficiency > 1 by
        # more than the noise) would mean the FLOP count or the overhead model is wrong
        assert benchmark.extra_info["n"] == rounds
        assert 0 < benchmark.extra_info["efficiency"] <= 1.2, benchmark.extra_info

