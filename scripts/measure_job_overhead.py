"""What an executor adds to each job: the same small fold jobs (cnn_tiny, one epoch on a few
thousand replica rows) run through `--jobs 2`-style worker processes (or the tasks of a Ray started
for the script, `--executor ray`), and per job the worker's wall time beside the fold's own training
time. The difference is the executor's overhead inside the worker plus the job's fixed work
(building the model, the OOF and test predictions, writing the fold); the total wall time also
carries what happens outside it (a process's start, a task's scheduling).

    python scripts/measure_job_overhead.py [--executor local|ray] [--jobs 8] [--rows 4000] [--test-rows 2000]

Run it at two commits (e.g. in a `git worktree`) to compare executors side by side; it uses only
`harness.executors.make_executor`, `run_jobs` and `harness.train.jobs.FoldJob`, which both keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--jobs", type=int, default=8, help="fold jobs to run (default 8)")
    ap.add_argument("--slots", type=int, default=2, help="worker processes at once (default 2)")
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--data-dir", default="data/digit-recognizer")
    args = ap.parse_args()

    from harness.data.dataset import load
    from harness.executors import make_executor, run_jobs
    from harness.registry import get_model
    from harness.train.cv import make_folds, stratified_subset
    from harness.train.jobs import FoldJob, JobData

    ds = load(Path(args.data_dir))
    rows = stratified_subset(ds.y_train, args.rows, 0)
    k = args.jobs  # one fold per job: k folds of `rows`
    data = JobData(ds.x_train[rows], ds.y_train[rows], ds.x_test[:args.test_rows], make_folds(ds.y_train[rows], k, 0))
    done: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [FoldJob(run_dir=tmp, model="cnn_tiny", fold=f, k=k, params=get_model("cnn_tiny").params(),
                        seed=f, epochs=1) for f in range(k)]
        start = time.perf_counter()
        executor = make_executor(args.executor, jobs=args.slots, cpus_per_job=1)
        with executor.session(data, Path(tmp)) as ex:
            run_jobs(ex, jobs, lambda job, r: done.append(r))
        wall = time.perf_counter() - start
    over = [r["wall_s"] - r["seconds"] for r in done]
    out = {"executor": args.executor, "jobs": k, "slots": args.slots, "wall_s": round(wall, 2),
           "workers": len({r["pid"] for r in done}),
           "job_wall_s_median": round(statistics.median(r["wall_s"] for r in done), 2),
           "train_s_median": round(statistics.median(r["seconds"] for r in done), 2),
           "overhead_s_median": round(statistics.median(over), 2), "overhead_s_total": round(sum(over), 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
