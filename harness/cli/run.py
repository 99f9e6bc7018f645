"""`harness run`: data, k-fold CV, export, benchmark, leaderboard, submission, report, [upload]."""

from __future__ import annotations

import argparse
import sys

from harness.cli._common import add_data_dir, add_executor, add_json, data_settings, executor_kwargs, print_json
from harness.core.config import Settings
from harness.core.errors import UsageError

DEFAULT_LIMIT, QUICK_LIMIT = "30m", "5m"          # `harness run`'s time limit, and --quick's
DEFAULT_LIMIT_S, QUICK_LIMIT_S = 1800.0, 300.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train, evaluate, export, benchmark and submit models",
                       description="Run the whole pipeline for the selected models. Running the same "
                       "command again resumes an interrupted run (finished folds are kept).")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--all", action="store_true", help="every registered model (tiny test variants excluded)")
    sel.add_argument("--model", action="append", metavar="NAME",
                     help="a model name or wildcard (repeatable), e.g. --model cnn_small --model 'ann*'")
    p.add_argument("--folds", type=int, help="number of stratified folds (default 5; 2 with --quick)")
    p.add_argument("--epochs", type=int, help="override every model's epochs")
    p.add_argument("--seed", type=int, help="seed for folds, subsets and training (default 42)")
    p.add_argument("--limit", type=int, metavar="N", help="train on a stratified subset of N rows (smoke runs)")
    p.add_argument("--quick", action="store_true",
                   help="a run of a few minutes: 2 folds, each model's quick_epochs, short benchmark")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic TensorFlow ops: same seed + data give the same CV accuracy")
    p.add_argument("--tuned", action="store_true", help="use parameters saved by `harness tune` (runs/tuned/)")
    p.add_argument("--resume", metavar="RUN", help="resume this run id (default: the matching unfinished run)")
    p.add_argument("--new", action="store_true", help="always start a new run, never resume")
    p.add_argument("--source", default="auto", choices=["auto", "kaggle", "replica"],
                   help="where to get the data if it is missing (default auto)")
    p.add_argument("--no-bench", action="store_true", help="skip the latency benchmark")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--tta", type=int, default=1, metavar="N",
                   help="test-time augmentation: average each model over N shifted views (1-9; default 1 = off); "
                   "the exported graph computes the same views")
    p.add_argument("--bags", type=int, default=1, metavar="N",
                   help="train each model N times with other seeds on the same folds (1-50; default 1): "
                   "rows `<model>~2`..`<model>~N` that the ensemble picks among on OOF; N times the training")
    p.add_argument("--pseudo-label", nargs="?", type=float, const=0.9, metavar="CONFIDENCE",  # pseudo.DEFAULT_THRESHOLD
                   help="opt-in: also fine-tune each model on the test rows its fold's round-one models label "
                   "with at least CONFIDENCE (default 0.9), as new `<model>+pl` rows (off by default)")
    p.add_argument("--no-ensemble", action="store_true",
                   help="no ensemble row (default: a greedy OOF-chosen weighted ensemble of the models)")
    p.add_argument("--baselines", action="store_true",
                   help="also time keras.Model.predict and a tf.function of each model beside ONNX Runtime "
                   "(off by default: ~6 %% of a default run; `harness bench --run RUN` adds them later)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="static INT8 variants: each exported model gets a `<model>@int8` row, gated on OOF "
                   "accuracy (default: on where the CPU has INT8 dot products, VNNI or AMX; off with --quick "
                   "and on AVX2-only CPUs, where INT8 CNNs are no faster than FP32)")
    p.add_argument("--max-latency-ms", type=float, metavar="MS",
                   help="choose the most accurate model (FP32, INT8 or ensemble) whose p50 at --latency-batch "
                   "(one thread) is at most MS; none fitting is an error naming the fastest")
    p.add_argument("--latency-batch", type=int, default=1, metavar="B",
                   help="batch size of the latency budget (default 1; benchmarked if it is not already)")
    p.add_argument("--track", default="none", metavar="none|mlflow",
                   help="log the finished run to MLflow (pip install 'harness[mlflow]'): one run per harness "
                   "run, one child per model; never fails the run")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--time-limit", metavar="DURATION",
                   help="fit the run to this much time on this machine: 90s, 10m, 1.5h, or none (the fixed "
                   f"recipes, reproducible). Default {DEFAULT_LIMIT} ({QUICK_LIMIT} with --quick; none with --epochs, "
                   "--bags, --tta or --pseudo-label), also from HARNESS_TIME_LIMIT or [tool.harness] time_limit. "
                   "A short calibration measures each model here (cached), then a plan sets every model's epochs "
                   "(with the learning-rate schedule sized to them) and, with time to spare, bags; the run "
                   "re-plans as it goes to end within the limit")
    p.add_argument("--plan", action="store_true",
                   help="calibrate and print the plan of the time limit and its predicted time; train nothing")
    p.add_argument("--replay", metavar="RUN",
                   help="train exactly the plan an earlier time-limited run trained (its models, bags, epochs, "
                   "folds, seed and rows), with no time limit: the same OOF predictions on the same CPU class")
    p.add_argument("--submit", action="store_true", help="upload the best model's submission to Kaggle")
    p.add_argument("--message", help="submission message (with --submit)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="with --submit: poll Kaggle up to SECONDS for the score")
    add_executor(p, "fold jobs (one model x fold each)", auto=True)
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.results import leaderboard
    from harness.run.pipeline import RunOptions
    from harness.run.pipeline import run as run_pipeline

    if args.replay:
        given = [flag for flag, used in (("--all", args.all), ("--model", args.model), ("--folds", args.folds),
                                         ("--epochs", args.epochs), ("--seed", args.seed), ("--limit", args.limit),
                                         ("--bags", args.bags != 1), ("--time-limit", args.time_limit),
                                         ("--quick", args.quick), ("--plan", args.plan), ("--resume", args.resume))
                 if used]
        if given:
            raise UsageError(f"--replay takes the models, folds, seed, rows and epochs from its run: drop {given[0]}")
    elif not args.all and not args.model:
        raise UsageError("harness run: choose models with --all or --model NAME (see `harness models`)")
    for flag in ("folds", "epochs", "limit"):
        value = getattr(args, flag)
        if value is not None and value < (2 if flag == "folds" else 1):
            raise UsageError(f"harness run: --{flag} must be at least {2 if flag == 'folds' else 1}")
    from harness.train.tta import check as check_tta

    check_tta(args.tta)
    from harness.train.bags import check as check_bags

    check_bags(args.bags)
    from harness.results.track import check as check_track

    check_track(args.track)
    if args.tracking_uri and args.track != "mlflow":
        raise UsageError("--tracking-uri needs --track mlflow")
    if args.pseudo_label is not None:
        from harness.train.pseudo import check as check_pseudo

        check_pseudo(args.pseudo_label)
    if args.max_latency_ms is not None and not (args.max_latency_ms > 0 and args.max_latency_ms < float("inf")):
        raise UsageError(f"--max-latency-ms must be a positive number of milliseconds, got {args.max_latency_ms:g}")
    if args.latency_batch < 1 or args.latency_batch > 65536:
        raise UsageError(f"--latency-batch must be between 1 and 65536, got {args.latency_batch}")
    if args.latency_batch != 1 and args.max_latency_ms is None:
        raise UsageError("--latency-batch needs --max-latency-ms")
    if args.max_latency_ms is not None and args.no_bench:
        raise UsageError("--max-latency-ms needs the benchmark; drop --no-bench")
    if args.baselines and args.no_bench:
        raise UsageError("--baselines needs the benchmark; drop --no-bench")
    time_limit = _time_limit(args, settings)
    if args.plan and time_limit is None:
        raise UsageError("--plan needs a time limit (the plan of what fits in it); this run has none")
    executor = executor_kwargs(args)
    settings = data_settings(settings, args)
    opts = RunOptions(**executor, models=args.model or [], all_models=args.all, folds=args.folds, epochs=args.epochs,
                      seed=args.seed, limit=args.limit, quick=args.quick, deterministic=args.deterministic,
                      tuned=args.tuned, resume=args.resume, new=args.new, source=args.source,
                      bench=not args.no_bench, baselines=args.baselines, report=not args.no_report,
                      ensemble=not args.no_ensemble, tta=args.tta, bags=args.bags,
                      pseudo_label=args.pseudo_label, track=args.track, tracking_uri=args.tracking_uri,
                      int8=_int8_default(args.quick) if args.int8 is None else args.int8, max_latency_ms=args.max_latency_ms, latency_batch=args.latency_batch,
                      submit=args.submit, time_limit=time_limit, plan_only=args.plan, replay=args.replay,
                      message=args.message, wait=args.wait, command=["harness", *sys.argv[1:]])
    results = run_pipeline(opts, settings)
    if args.plan:
        if args.json:
            print_json(results["plan"])
        else:
            sys.stdout.write(_render_plan(results["plan"]))
        return 0
    if args.json:
        print_json(results)
    else:
        sys.stdout.write(leaderboard.render(results, "text"))
    return 0


def _time_limit(args: argparse.Namespace, settings: Settings) -> float | None:
    """--time-limit, else HARNESS_TIME_LIMIT / [tool.harness] time_limit, else 30 minutes (5 with
    --quick). A fixed recipe (--epochs, --bags, --tta, --pseudo-label) or --replay has none unless
    one is given, and one given with it is an error: the two would fight over the epochs."""
    from harness.run.planner import parse_time_limit

    fixed = [flag for flag, used in (("--epochs", args.epochs is not None), ("--bags", args.bags != 1),
                                     ("--tta", args.tta > 1), ("--pseudo-label", args.pseudo_label is not None),
                                     ("--replay", bool(args.replay)))
             if used]
    if args.time_limit is not None:
        limit = parse_time_limit(args.time_limit)
        if limit is not None and fixed:
            what = {"--epochs": "fixes every model's epochs", "--bags": "sets the bags",
                    "--replay": "trains an earlier run's plan"}.get(fixed[0], "is not in a time-limited plan yet "
                                                                              "(its cost is not measured)")
            raise UsageError(f"{fixed[0]} {what}, --time-limit plans the run: use one or the other "
                             f"(--time-limit none keeps the fixed recipes)")
        return limit
    configured = parse_time_limit(settings.time_limit) if settings.time_limit is not None else (
        QUICK_LIMIT_S if args.quick else DEFAULT_LIMIT_S)
    return None if fixed else configured


def _int8_default(quick: bool) -> bool:
    """INT8 variants by default only where they pay: not under --quick (their stage costs ~2 min of a
    30-minute run), and not on a CPU without VNNI/AMX, where the INT8 CNNs measured 0.86-1.2x their
    FP32 graphs on an AVX2-only EPYC (docs/MEASUREMENTS.md). Says so on stderr when the CPU is the reason."""
    if quick:
        return False
    from harness.core.device import cpu_class, int8_fast

    if not int8_fast():
        print(f"harness: no INT8 variants by default on this CPU ({cpu_class()}: no VNNI or AMX, INT8 is no "
              f"faster than FP32 here); --int8 adds them anyway", file=sys.stderr)
        return False
    return True


def _render_plan(budget: dict) -> str:
    """The plan as a table: each model's epochs, bags, and a job's predicted seconds."""
    from harness.core.progress import fmt_seconds

    plan, costs = budget["plan"], budget.get("costs") or {}
    # the plan's run_s: the calibration so far and the run's own seconds, `start_s` of them before training
    own, start = float(costs.get("run_s", 0.0)), float(costs.get("start_s", 0.0))
    lines = [f"time limit {fmt_seconds(budget['limit_s'])}: {plan['k']} folds on {plan['slots']} slot(s), "
             f"predicted {fmt_seconds(plan['predicted_s'])} (before training {fmt_seconds(plan['run_s'] - own + start)}, "
             f"training {fmt_seconds(plan['training_s'])}, after training {fmt_seconds(plan['after_s'] + own - start)})",
             f"{'model':<16} {'epochs':>6} {'bags':>4} {'job s':>8}"]
    lines += [f"{j['model']:<16} {j['epochs']:>6} {j['bags']:>4} {j['job_s']:>8.1f}" for j in plan["jobs"]]
    lines.append("every model at its full recipe" if plan["full_recipes"] else
                 "epochs cut from the recipes to fit (each model's learning-rate schedule is sized to its epochs)")
    if budget.get("given_up"):
        lines.append("planned without " + " and ".join(budget["given_up"]) + " (they would cost epochs)")
    if budget.get("left_out"):
        lines.append("left out " + ", ".join(budget["left_out"]) + " (their fewest epochs do not fit this limit "
                     "here; --plan with a longer one shows what it buys)")
    if plan.get("standby"):
        lines.append("stand-by: " + ", ".join(f"{n} x {b} more bag(s)" for n, b in plan["standby"].items())
                     + ", trained only if the jobs run fast enough to end them in time")
    return "\n".join(lines) + "\n"
