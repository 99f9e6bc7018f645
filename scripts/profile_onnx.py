"""Where an ONNX graph's time goes: ONNX Runtime's own per-node profile, one thread, after the
graph optimisations a benchmark runs with (ORT_ENABLE_ALL), summed per operator and per node.

    python scripts/profile_onnx.py runs/RUN/cnn_small/model.int8.onnx [--batch 1024] [--calls 5] [--top 12]

Inputs are random uint8 pixels [batch,28,28,1] (the harness's `pixels` contract). The profiler adds
its own cost per node, so read shares, not absolute latencies (those are `harness bench`'s).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile


def profile(path: str, batch: int, calls: int) -> tuple[collections.Counter, dict[str, tuple[str, str]], int]:
    """({(op, node): microseconds summed over calls}, {node: (input shapes, output shapes)}, calls)."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    x = np.random.default_rng(0).integers(0, 256, (batch, 28, 28, 1), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="harness-profile-") as tmp:
        so.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x})  # the first call: profiled, but left out below
        for _ in range(calls):
            sess.run(None, {name: x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    warm_end = runs[0][1] if runs else -1  # the first call (allocations) is left out
    per_node: collections.Counter = collections.Counter()
    shapes: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] <= warm_end:
            continue
        node = e["name"][: -len("_kernel_time")]
        per_node[(e["args"]["op_name"], node)] += e["dur"]
        shapes[node] = (str(e["args"].get("input_type_shape", "")), str(e["args"].get("output_type_shape", "")))
    return per_node, shapes, calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    per_node, shapes, n = profile(args.model, args.batch, args.calls)
    total = sum(per_node.values())
    per_op: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for (op, _), us in per_node.items():
        per_op[op] += us
        count[op] += 1
    print(f"{args.model}: batch {args.batch}, one thread, {total / n / 1000:.2f} ms of kernels per call")
    print(f"{'operator':<22} {'ms/call':>9} {'share':>6} {'nodes':>5}")
    for op, us in per_op.most_common():
        print(f"{op:<22} {us / n / 1000:>9.3f} {100 * us / total:>5.1f}% {count[op]:>5}")
    print(f"\nslowest {args.top} nodes:")
    for (op, node), us in per_node.most_common(args.top):
        print(f"{us / n / 1000:>9.3f} ms  {op:<14} {node[:48]:<48} in {shapes[node][0][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
