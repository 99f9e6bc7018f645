"""Benchmark ONE fold model of a finished run the way its latency targets are stated
(one fold model, 1 thread, batch 1 and 1024, Keras baselines in the same process run).

    python scripts/bench_one_fold.py [--run RUN] [--model cnn_small] [--fold 0]

It copies runs/RUN/MODEL/fold_K/model.keras into a one-fold run folder (runs/RUN-1fold-MODEL),
exports it (with the parity gate) and runs `harness bench` on it, then prints the summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from harness.core.config import load_settings
from harness.core.runs import resolve_run

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--run")
p.add_argument("--model", default="cnn_small")
p.add_argument("--fold", type=int, default=0)
args = p.parse_args()

settings = load_settings()
src = resolve_run(settings.runs_dir, args.run)
dst = settings.runs_dir / f"{src.name}-1fold-{args.model}"
shutil.rmtree(dst, ignore_errors=True)
(dst / args.model / "fold_0").mkdir(parents=True)
shutil.copy(src / args.model / f"fold_{args.fold}" / "model.keras", dst / args.model / "fold_0" / "model.keras")
cv = json.loads((src / args.model / "cv.json").read_text())
(dst / args.model / "cv.json").write_text(json.dumps({**cv, "folds": cv["folds"][args.fold:args.fold + 1]}))
manifest = json.loads((src / "manifest.json").read_text())
(dst / "manifest.json").write_text(json.dumps({**manifest, "run_id": dst.name, "finished": None}))
for cmd in (["export", "--run", str(dst)], ["bench", "--run", str(dst), "--threads", "1", "--batch", "1,1024"]):
    subprocess.run([sys.executable, "-m", "harness", *cmd], check=True, stdout=subprocess.DEVNULL)
summary = json.loads((dst / args.model / "bench.json").read_text())["summary"]
print(json.dumps({k: summary.get(k) for k in (
    "p50_ms_b1", "p99_ms_b1", "n_b1", "floor_ms_b1", "efficiency_b1", "roofline_ms_b1",
    "speedup_vs_tf_function_b1", "speedup_vs_predict_b1", "speedup_vs_tf_function_bmax",
    "throughput_ips", "flops_per_image", "size_bytes")}, indent=1))
