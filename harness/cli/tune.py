"""`harness tune`: search a model's declared hyperparameter space with Optuna, resumably."""

from __future__ import annotations

import argparse
import sys

from harness.cli._common import add_data_dir, add_executor, add_json, data_settings, executor_kwargs, print_json, say
from harness.core.config import Settings
from harness.core.errors import UsageError
from harness.train.augment import POLICIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="tune a model's hyperparameters (Optuna, cross-validated, resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Search the hyperparameter space the model's plugin declares (`harness models "
        "--json` shows it). Each trial is scored by cross-validated accuracy on the stratified folds "
        "`harness run` uses with the same --folds/--seed/--limit, training only the first --folds-used "
        "of them; hopeless trials are pruned from the first fold's per-epoch validation accuracy. The "
        "study lives in runs/tune/MODEL.db: the same command again resumes it, and several processes "
        "may share it. The best parameters go to runs/tuned/MODEL.json, used by `harness run --tuned`.",
        epilog="examples:\n"
        "  harness tune cnn_small --trials 30 --limit 8000 --epochs 6\n"
        "  harness tune ann --only learning_rate,dropout --fix batch_size=512 --timeout 1800\n"
        "  harness run --model cnn_small --tuned")
    p.add_argument("model", help="a registered model name (see `harness models`)")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="finished trials the study should reach, counting earlier runs (default 20)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="start no new trial after SECONDS (a running trial finishes)")
    p.add_argument("--folds", type=int, metavar="K", help="stratified folds, as `harness run --folds` (default 5)")
    p.add_argument("--folds-used", type=int, default=2, metavar="M",
                   help="folds trained per trial, the first M of the K (default 2; M=K is a full CV)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="a stratified subset of N rows, as `harness run --limit` (faster trials)")
    p.add_argument("--epochs", type=int, metavar="E",
                   help="epochs per trial (default: the model's); a budget knob, not saved as a tuned value")
    p.add_argument("--seed", type=int, help="seed for folds, subset, sampler and training (default 42)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="hold a parameter at a value (repeatable); it is saved with the tuned parameters")
    p.add_argument("--only", action="append", metavar="NAME[,NAME]",
                   help="tune only these parameters of the declared space (repeatable)")
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"],
                   help="how to stop hopeless trials early (default median)")
    p.add_argument("--study", metavar="NAME", help="study name in runs/tune/MODEL.db (default: the model name)")
    p.add_argument("--fresh", action="store_true", help="delete the stored study of that name and start over")
    p.add_argument("--source", default="auto", choices=["auto", "kaggle", "replica"],
                   help="where to get the data if it is missing (default auto)")
    p.add_argument("--augment", choices=POLICIES, metavar="POLICY",
                   help=f"augmentation policy of every trial ({', '.join(POLICIES)}; default: the one the "
                        "competition's spec pins, else the one the newest finished run on this data chose, else digits)")
    add_executor(p, "trials")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.registry import get_model
    from harness.tune.space import parse_assignments
    from harness.tune.study import TuneOptions, tune

    for flag, low in (("trials", 1), ("folds", 2), ("folds_used", 1), ("limit", 1), ("epochs", 1)):
        value = getattr(args, flag)
        if value is not None and value < low:
            raise UsageError(f"harness tune: --{flag.replace('_', '-')} must be at least {low}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("harness tune: --timeout must be positive")
    executor = executor_kwargs(args)
    settings = data_settings(settings, args)
    spec = get_model(args.model)
    opts = TuneOptions(**executor, model=spec.name, trials=args.trials, timeout=args.timeout, folds=args.folds,
                       folds_used=args.folds_used, limit=args.limit, epochs=args.epochs, seed=args.seed,
                       fix=parse_assignments(spec, args.fix), only=args.only, pruner=args.pruner,
                       study=args.study, fresh=args.fresh, source=args.source, augment=args.augment)
    doc = tune(settings, opts, say=say)
    if args.json:
        print_json(doc)
        return 0
    counts = doc["n_trials"]
    if doc["best_trial"] is None:
        print(f"{spec.name}: no trial completed yet ({counts['pruned']} pruned, {counts['fail']} failed)")
        return 0
    base = doc["baseline"]
    print(f"{spec.name}: best CV accuracy {doc['best_value']:.4f} (trial #{doc['best_trial']}; "
          f"{counts['complete']} complete, {counts['pruned']} pruned)"
          + (f"; defaults scored {base['value']:.4f}" if base else ""))
    for name, value in doc["params"].items():
        print(f"  {name} = {value:.4g}" if isinstance(value, float) else f"  {name} = {value}")
    if doc["importances"]:
        print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in doc["importances"].items()))
    say(f"saved {doc['path']}; use it with: harness run --model {spec.name} --tuned")
    sys.stdout.flush()
    return 0
