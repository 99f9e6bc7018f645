"""Side by side on this machine, one after another: the same `harness run --all --quick --time-limit none` with
`--jobs 1`, `--jobs 2` and `--executor ray` on a local two-node Ray cluster (a head with no CPUs and
two 1-CPU worker nodes, all on 127.0.0.1), then a study run one trial at a time and two at a time.

    python scripts/measure_executors.py [--out DIR] [--skip-tune] [--tune-trials 4]

Prints one table (wall time of each command, per-job wall and worker time, the overhead each
executor adds per job) and writes it as JSON to DIR/executors.json. Each run starts in a fresh
folder of DIR and reuses the data folder (HARNESS_DATA_DIR, default data/digit-recognizer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _harness(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *args, "--json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"harness {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def _run(label: str, extra: list[str], base: Path, env: dict[str, str]) -> dict:
    cwd = base / label.replace(" ", "_")
    cwd.mkdir(parents=True)
    print(f"... {label}: harness run --all --quick --time-limit none {' '.join(extra)}", file=sys.stderr, flush=True)
    # the fixed quick recipes (--time-limit none): every executor trains the same jobs
    wall, results = _harness(["run", "--all", "--quick", "--time-limit", "none", "--new", *extra], cwd, env)
    manifest = json.loads((cwd / results["run_dir"] / "manifest.json").read_text())
    jobs = [j for s in manifest["sessions"] for j in s.get("jobs", [])]
    over = [j["wall_s"] - j["worker_s"] for j in jobs]
    rows = {r["model"]: r for r in results["rows"]}
    return {"label": label, "args": extra, "wall_s": round(wall, 1), "jobs": len(jobs),
            "job_wall_s": round(statistics.median(j["wall_s"] for j in jobs), 2),
            "job_worker_s": round(statistics.median(j["worker_s"] for j in jobs), 2),
            "job_train_s": round(statistics.median(j["train_s"] for j in jobs), 2),
            "train_s_by_model": {m: round(statistics.median(j["train_s"] for j in jobs if j["job"].split(" fold ")[0] == m), 2)
                                 for m in sorted({j["job"].split(" fold ")[0] for j in jobs})},
            "overhead_s": round(statistics.median(over), 3),
            "overhead_pct": round(100 * statistics.median(o / j["worker_s"] for o, j in zip(over, jobs)), 2),
            "nodes": sorted({str(j.get("node")) for j in jobs}),
            "best": results["best"], "private": (results.get("submission") or {}).get("private"),
            "cv": {m: r["cv_accuracy"] for m, r in rows.items()}}


def _tune(label: str, extra: list[str], base: Path, env: dict[str, str], trials: int) -> dict:
    cwd = base / label.replace(" ", "_")
    cwd.mkdir(parents=True)
    args = ["tune", "cnn_small", "--trials", str(trials), "--pruner", "none", *extra]
    print(f"... {label}: harness {' '.join(args)}", file=sys.stderr, flush=True)
    wall, doc = _harness(args, cwd, env)
    return {"label": label, "args": extra, "wall_s": round(wall, 1), "trials": trials,
            "trial_s": round(statistics.median(t["duration_s"] for t in doc["trials"]), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temp folder)")
    ap.add_argument("--skip-tune", action="store_true")
    ap.add_argument("--tune-trials", type=int, default=6)
    ap.add_argument("--tune-args", default="--limit 8000 --epochs 3",
                    help="the study's budget flags (default: --limit 8000 --epochs 3)")
    ap.add_argument("--runs", default="jobs 1,jobs 2,ray 2 nodes", help="which runs (comma-separated labels)")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="harness-executors-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "HARNESS_DATA_DIR": str(Path(os.environ.get("HARNESS_DATA_DIR", "data/digit-recognizer")).resolve())}
    os.environ.update({k: env[k] for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE")})
    from ray.cluster_utils import Cluster

    wanted = args.runs.split(",")
    runs = [_run(label, extra, base, env) for label, extra in (("jobs 1", ["--jobs", "1"]), ("jobs 2", ["--jobs", "2"]))
            if label in wanted]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 200 * 2**20,
                                                            "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=200 * 2**20)
        cluster.wait_for_nodes(timeout=60)
        if "ray 2 nodes" in wanted:
            runs.append(_run("ray 2 nodes", ["--executor", "ray", "--ray-address", cluster.address], base, env))
        tunes = [] if args.skip_tune else [
            _tune("tune jobs 1", args.tune_args.split(), base, env, args.tune_trials),
            _tune("tune jobs 2", [*args.tune_args.split(), "--jobs", "2"], base, env, args.tune_trials),
        ]
    finally:
        cluster.shutdown()

    print(f"{'command':<14} {'wall s':>7} {'vs jobs 1':>9} {'jobs':>4} {'job wall s':>10} {'worker s':>8} "
          f"{'train s':>7} {'overhead s':>10} {'overhead %':>10}  best (private %)")
    for r in runs:
        print(f"{r['label']:<14} {r['wall_s']:>7.1f} {runs[0]['wall_s'] / r['wall_s']:>8.2f}x {r['jobs']:>4} "
              f"{r['job_wall_s']:>10.2f} {r['job_worker_s']:>8.2f} {r['job_train_s']:>7.2f} {r['overhead_s']:>10.3f} "
              f"{r['overhead_pct']:>9.2f}%  {r['best']} ({100 * (r['private'] or 0):.3f})")
    for r in runs:
        print(f"{r['label']:<14} median fold training s: " +
              ", ".join(f"{m} {s}" for m, s in r["train_s_by_model"].items()))
    if runs and runs[0]["label"] != "jobs 1":
        print("(the 'vs' column compares with the first run shown)")
    for t in tunes:
        print(f"{t['label']:<14} {t['wall_s']:>7.1f} {tunes[0]['wall_s'] / t['wall_s']:>8.2f}x  "
              f"{t['trials']} trials, median trial {t['trial_s']} s")
    out = base / "executors.json"
    out.write_text(json.dumps({"runs": runs, "tune": tunes, "cpu_count": os.cpu_count()}, indent=2))
    print(f"(wrote {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
