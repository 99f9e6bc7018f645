#!/usr/bin/env python3
"""INT8 against FP32 for a finished run's shipped graphs, timed side by side.

    python scripts/measure_int8.py [RUN] [--batches 1,1024] [--threads 1] [--rounds 10] [--seconds 4]

For each model with a `model.int8.onnx` (harness.export.quantize), both graphs are timed in alternating
blocks in one process (`harness.bench.latency.versus`, as the run's INT8 benchmark does: a busy machine
slows both alike): p50 per batch size, the INT8-over-FP32 speed-up, and the accuracy figures of
its int8.json (FP32 vs INT8 OOF errors, test agreement).
Prints one markdown table; nothing in the run is changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.bench import versus  # noqa: E402
from harness.core import io  # noqa: E402
from harness.core.runs import resolve_run, run_models  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="run id or path (default: the latest in runs/)")
    ap.add_argument("--batches", default="1,1024")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks per batch size")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per graph and batch size")
    args = ap.parse_args()
    run_dir = resolve_run(Path("runs"), args.run)
    batches = [int(b) for b in args.batches.split(",")]
    x = np.random.default_rng(0).integers(0, 256, size=(max(batches), 28, 28, 1), dtype=np.uint8)
    head = "| model | " + " | ".join(f"FP32 p50 b{b} ms | INT8 p50 b{b} ms | speed-up b{b}" for b in batches)
    print(f"run {run_dir.name}, {args.threads} thread(s), {args.rounds} alternating rounds\n")
    print(head + " | OOF errors FP32 -> INT8 | test agreement |")
    print("|" + "---|" * (1 + 3 * len(batches) + 2))
    for model in run_models(run_dir):
        int8 = run_dir / model / "model.int8.onnx"
        if not int8.is_file():
            continue
        vs = versus(run_dir / model / "model.onnx", int8, x, batches, args.seconds, threads=args.threads,
                    rounds=args.rounds)["batches"]
        cells = []
        for b in batches:
            v = vs[str(b)]
            cells += [f"{v['reference_p50_ms']:.3f}", f"{v['p50_ms']:.3f}", f"{v['speedup']:.2f}x"]
        doc = io.read_json(run_dir / model / "int8.json") if (run_dir / model / "int8.json").is_file() else {}
        acc = (f"{doc.get('fp32_oof_errors')} -> {doc.get('int8_oof_errors')}"
               if doc.get("int8_oof_errors") is not None else "-")
        agree = f"{100 * doc['test_agreement']:.2f} %" if doc.get("test_agreement") is not None else "-"
        print(f"| {model} | " + " | ".join(cells) + f" | {acc} | {agree} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
