#!/usr/bin/env python3
"""INT8 against FP32 for a finished run's shipped graphs, timed side by side.

    python scripts/measure_int8.py [RUN] [--batches 1,1024] [--threads 1] [--rounds 10] [--seconds 4]

For each model with a `model.int8.onnx` (harness.quantize), both graphs are timed in alternating
blocks in one process (so a busy machine slows both alike): p50 per batch size, the INT8-over-FP32
speed-up, and the accuracy figures of its int8.json (FP32 vs INT8 OOF errors, test agreement).
Prints one markdown table; nothing in the run is changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import io  # noqa: E402
from harness.bench import make_session, time_calls  # noqa: E402
from harness.runs import resolve_run, run_models  # noqa: E402


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
        sessions = {"fp32": make_session(run_dir / model / "model.onnx", args.threads),
                    "int8": make_session(int8, args.threads)}
        cells = []
        for b in batches:
            xb = x[:b]
            samples: dict[str, list[np.ndarray]] = {k: [] for k in sessions}
            for r in range(args.rounds):
                for k, s in sessions.items():
                    samples[k].append(time_calls(lambda s=s: s.run(None, {"pixels": xb}), iters=10 ** 6,
                                                 seconds=args.seconds / args.rounds, min_iters=2,
                                                 warmup_iters=10 if r == 0 else 0, warmup_seconds=0))
            p50 = {k: float(np.median(np.concatenate(v))) * 1e3 for k, v in samples.items()}
            cells += [f"{p50['fp32']:.3f}", f"{p50['int8']:.3f}", f"{p50['fp32'] / p50['int8']:.2f}x"]
        doc = io.read_json(run_dir / model / "int8.json") if (run_dir / model / "int8.json").is_file() else {}
        acc = (f"{doc.get('fp32_oof_errors')} -> {doc.get('int8_oof_errors')}"
               if doc.get("int8_oof_errors") is not None else "-")
        agree = f"{100 * doc['test_agreement']:.2f} %" if doc.get("test_agreement") is not None else "-"
        print(f"| {model} | " + " | ".join(cells) + f" | {acc} | {agree} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
