"""Time a whole `harness run` from a fresh folder and print one table: wall time beside the machine's
reference probe, and per model (ensemble included) the OOF/public/private accuracy with error
counts, training time and, for the ensemble, its members and weights.

    python scripts/measure_run.py [-- RUN FLAGS...]        # e.g. -- --all --jobs 2
    python scripts/measure_run.py --table runs/RUN         # the table of a finished run only
    python scripts/measure_run.py --slow-after 120 -- --all --time-limit 10m   # a machine slowed partway

`--slow-after S` starts, S seconds into the run, one busy loop per core (`--slow-procs N`) at the
run's own priority, stopped when the run ends: from then on the run's workers share every core
with as many busy processes, so it trains at about half the speed it calibrated. It measures
whether the run keeps its time limit on a machine that slows down (the keeper re-plans).

The reference probe (scripts/speed_audit.py --probe: the cnn_deep recipe in float32, one epoch on
8,192 fixed rows) runs right before the run, so wall times compare across machines of this kind.
Needs the answers for public/private (the replica's hidden solution, HARNESS_DATA_DIR, default
data/digit-recognizer; another competition: HARNESS_COMPETITION=spec.toml and its data folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def table(run_dir: Path, wall_s: float | None = None, probe: float | None = None) -> str:
    results = json.loads((run_dir / "results.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    n = manifest["config"]["n_train_rows"]
    lines = [f"run {run_dir.name}: {' '.join(manifest['command'])}",
             f"wall {wall_s:.0f} s ({wall_s / 60:.1f} min)" if wall_s else f"duration_s {manifest.get('duration_s')}",
             f"reference probe: {probe:,.0f} images/s" if probe else "reference probe: not measured",
             "",
             f"{'model':<15} {'CV (OOF) %':>11} {'errors':>7} {'public %':>9} {'errors':>7} {'private %':>10} "
             f"{'errors':>7} {'train s':>8}  members"]
    for r in results["rows"]:
        score = {}
        base, _, variant = r["model"].partition("@")  # `m@int8`: m/score.int8.json (harness.export.quantize)
        path = run_dir / base / (f"score.{variant}.json" if variant else "score.json")
        if path.is_file():
            score = json.loads(path.read_text())
        cv = r["cv_accuracy"] or 0.0
        pub, priv = score.get("public"), score.get("private")
        n_pub, n_priv = score.get("n_public") or 7000, score.get("n_private") or 21000
        lines.append(f"{('*' if r['best'] else ' ') + r['model']:<15} {100 * cv:>11.3f} {round((1 - cv) * n):>7} "
                     f"{100 * (pub or 0):>9.3f} {round((1 - (pub or 0)) * n_pub):>7} "
                     f"{100 * (priv or 0):>10.3f} {round((1 - (priv or 0)) * n_priv):>7} "
                     f"{(r['train_seconds'] or 0):>8.0f}  {r.get('members') or ''}")
    budget = manifest.get("budget")
    if budget:  # a time-limited run: the limit, what the plan predicted, what it used, its re-plans
        plan, used = budget["plan"], manifest.get("duration_s") or 0.0
        epochs = ", ".join(f"{m} {e}" + (f" x {plan['bags'][m]}" if plan["bags"].get(m, 1) > 1 else "")
                           for m, e in plan["epochs"].items())
        lines.insert(3, f"time limit {budget['limit_s']:.0f} s: {plan['k']} folds, epochs {epochs}, predicted "
                        f"{plan['predicted_s']:.0f} s, used {used:.0f} s ({used / budget['limit_s']:.3f} of the limit); "
                        f"stages {json.dumps(manifest.get('stages_s', {}))}; re-plans: "
                        + (json.dumps(budget.get("events")) if budget.get("events") else "none"))
    sub = results.get("submission") or {}
    if sub.get("private") is not None:
        lines.append(f"submission ({sub['model']}): private {100 * sub['private']:.3f} % "
                     f"({round((1 - sub['private']) * sub['n_private'])} errors of {sub['n_private']})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, metavar="RUN_DIR", help="print the table of a finished run and exit")
    ap.add_argument("--out", type=Path, help="working folder (default: a new temp folder)")
    ap.add_argument("--slow-after", type=float, metavar="S", help="start busy loops S seconds into the run")
    ap.add_argument("--slow-procs", type=int, default=os.cpu_count() or 1, help="busy loops (default: one per core)")
    ap.add_argument("flags", nargs="*", help="harness run flags (default: --all)")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    default_dir = "data/digit-recognizer"
    if env.get("HARNESS_COMPETITION"):  # another competition: its spec and data folder, found from the temp folder
        from harness.core.competition import resolve_competition

        spec = env["HARNESS_COMPETITION"]
        if Path(spec).exists():
            env["HARNESS_COMPETITION"] = spec = str(Path(spec).resolve())
        default_dir = f"data/{resolve_competition(spec).slug}"
    env["HARNESS_DATA_DIR"] = str(Path(os.environ.get("HARNESS_DATA_DIR", default_dir)).resolve())
    # The data first (built from the replica when missing), so the probe has its rows. The probe
    # always trains on Digit Recognizer's replica (another competition's run is measured beside it).
    subprocess.run([sys.executable, "-m", "harness", "data"], env=env, check=True, stdout=subprocess.DEVNULL)
    digits = {k: v for k, v in env.items() if k not in ("HARNESS_COMPETITION", "HARNESS_DATA_DIR")}
    if not env.get("HARNESS_COMPETITION"):
        digits["HARNESS_DATA_DIR"] = env["HARNESS_DATA_DIR"]
    else:
        subprocess.run([sys.executable, "-m", "harness", "data"], env=digits, check=True, stdout=subprocess.DEVNULL)
    probe = subprocess.run([sys.executable, str(HERE / "speed_audit.py"), "--probe"], env=digits, capture_output=True,
                           text=True, timeout=900)
    ips = json.loads(probe.stdout.strip().splitlines()[-1])["images_per_s"] if probe.returncode == 0 else None
    cwd = args.out or Path(tempfile.mkdtemp(prefix="harness-run-"))
    cwd.mkdir(parents=True, exist_ok=True)
    hogs: list[subprocess.Popen] = []
    timer = None
    if args.slow_after is not None:
        def slow_down() -> None:
            hogs.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.slow_procs))
            print(f"... {args.slow_procs} busy loop(s) started {args.slow_after:g} s into the run", file=sys.stderr)

        timer = threading.Timer(args.slow_after, slow_down)
    start = time.perf_counter()
    try:
        if timer:
            timer.start()
        proc = subprocess.run([sys.executable, "-m", "harness", "run", *(args.flags or ["--all"]), "--new", "--json"],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
    finally:
        if timer:
            timer.cancel()
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)
    if proc.returncode != 0:
        sys.exit(f"harness run failed ({proc.returncode})")
    print(table(cwd / json.loads(proc.stdout)["run_dir"], wall, ips))
    if args.slow_after is not None:
        print(f"slowed: {args.slow_procs} busy loop(s) from {args.slow_after:g} s" if hogs else
              "slowed: no (the run ended before the busy loops were due)")


if __name__ == "__main__":
    main()
