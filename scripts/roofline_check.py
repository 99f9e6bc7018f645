"""Each shipped graph against its FLOPs-only floor and its roofline floor, side by side.

    python scripts/roofline_check.py                 # ann, cnn_small, cnn_deep at batch 1 and 256
    python scripts/roofline_check.py --hog           # the same with a streaming copy on another core
    python scripts/roofline_check.py --models ann --batches 1 --json

The graphs are the ones `harness run` ships (the registry's models with default parameters, 5 fold
models with random weights, exported by harness.export.convert), built as the latency gate builds them
(tests/benchmarks/conftest.py). Per model and batch, one thread: the graph, the trivial graph
(overhead), the one-thread 1024^3 MatMul (peak) and a GEMV streaming the graph's bytes
(bandwidth), timed in alternating blocks (harness.bench.interleaved, lower quartiles). Printed:
both efficiencies, the bound, the peak and the bandwidth.

`--hog` runs a second process that copies 256 MB arrays back and forth for the whole measurement:
it takes memory bandwidth and last-level cache from the graph, as a machine with less of both
would. A floor that means the same across machines of a class should give the same efficiency
with and without it; the FLOPs-only floor does not for the memory-bound `ann` at batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HOG = ("import numpy as np\na = np.ones(64 * 2 ** 20, np.float32); b = np.ones_like(a)\n"
       "print('ready', flush=True)\nwhile True: np.copyto(b, a); np.copyto(a, b)\n")


def build(run_dir: Path, models: list[str], images: np.ndarray, folds: int = 5) -> dict[str, Path]:
    """Each model's fold-ensemble graph as a default run ships it (random weights)."""
    import keras

    from harness.export.convert import export_model
    from harness.registry import get_model

    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    out = {}
    for name in models:
        spec = get_model(name)
        for f in range(folds):
            keras.utils.set_random_seed(f)
            (run_dir / name / f"fold_{f}").mkdir(parents=True)
            spec.build(spec.params()).save(run_dir / name / f"fold_{f}" / "model.keras")
        out[name] = Path(export_model(run_dir, name, images, {"cv_accuracy": None}).path)
    return out


def measure(path: Path, batch: int, images: np.ndarray) -> dict:
    from harness.bench import interleaved, make_session, matmul_call, roofline, stream_call, trivial_model
    from harness.export.flops import count_flops

    fc = count_flops(path)
    sess, trivial = make_session(path, 1), make_session(trivial_model(), 1)
    x = {"pixels": np.ascontiguousarray(np.resize(images, (batch, 28, 28, 1)))}
    rng = np.random.default_rng(0)
    peak = matmul_call("MatMul", *(rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2)))
    nbytes = fc.bytes_per_call(batch)
    stream, stream_bytes = stream_call(nbytes, 1)
    rounds, calls = (10, {"graph": 40, "trivial": 50, "peak": 2, "stream": 20}) if batch == 1 else \
        (6, {"graph": 2, "trivial": 20, "peak": 2, "stream": 2})
    t = interleaved({"graph": lambda: sess.run(None, x), "trivial": lambda: trivial.run(None, x),
                     "peak": peak, "stream": stream}, rounds=rounds, calls=calls)
    peak_flops = 2 * 1024 ** 3 / t["peak"]
    roof = roofline(t["trivial"], batch * fc.total, peak_flops, nbytes, t["stream"], stream_bytes)
    flop_floor = t["trivial"] + batch * fc.total / peak_flops
    return {"batch": batch, "graph_ms": round(t["graph"] * 1e3, 4), "bytes": nbytes, "bound": roof["bound"],
            "peak_gflops": round(peak_flops / 1e9, 1), "bandwidth_gbs": round(roof["bandwidth_gbs"] or 0, 1),
            "efficiency_flops": round(flop_floor / t["graph"], 3),
            "roofline_efficiency": round(roof["floor_s"] / t["graph"], 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="ann,cnn_small,cnn_deep")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--hog", action="store_true", help="a streaming copy in another process throughout")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = ap.parse_args(argv)
    from harness.core.device import machine

    images = np.random.default_rng(0).integers(0, 256, size=(1000, 28, 28, 1)).astype(np.uint8)
    images[np.random.default_rng(1).random(images.shape) < 0.75] = 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = build(Path(tmp) / "run", args.models.split(","), images)
        hog = subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True) if args.hog else None
        try:
            if hog and hog.stdout.readline().strip() != "ready":  # its arrays are built: it streams from now on
                raise SystemExit("roofline_check: the --hog process did not start")
            for name, path in graphs.items():
                for b in (int(v) for v in args.batches.split(",")):
                    rows.append({"model": name, **measure(path, b, images)})
                    if not args.json:
                        r = rows[-1]
                        print(f"{name:<10} b{b:<4} {r['graph_ms']:9.3f} ms  {r['bound']:<7}  peak {r['peak_gflops']:6.1f} "
                              f"GFLOP/s  {r['bytes'] / 1e6:7.1f} MB at {r['bandwidth_gbs']:5.1f} GB/s  efficiency: "
                              f"FLOPs-only {r['efficiency_flops']:.3f}, roofline {r['roofline_efficiency']:.3f}",
                              flush=True)
        finally:
            if hog:
                hog.kill()
    if args.json:
        print(json.dumps({"machine": machine(), "hog": args.hog, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
