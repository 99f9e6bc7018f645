"""`harness export`: (re-)export a finished run's fold ensembles to ONNX, behind the parity gate."""

from __future__ import annotations

import argparse

from harness.cli._common import add_data_dir, add_json, data_settings, print_json, say
from harness.core.config import Settings
from harness.core.errors import DataError, RunError
from harness.results import leaderboard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's fold ensembles to ONNX (with the parity gate)",
                       description="Convert each model's fold ensemble to runs/<run>/<model>/model.onnx "
                       "(input `pixels` uint8 [batch,28,28,1], output `probs` = mean of the fold softmaxes) "
                       "and check it against Keras on real images: max |p_onnx - p_keras| <= 1e-4 and the "
                       "same argmax on every image. A model that fails is reported and the others go on; "
                       "the exit code is then 5.")
    p.add_argument("--run", metavar="RUN", help="run id or folder (default: the latest run)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="export only this model (repeatable; default: every trained model of the run)")
    p.add_argument("--parity-images", type=int, default=1000, metavar="N",
                   help="test.csv images for the parity gate (default 1000, the minimum)")
    p.add_argument("--no-simplify", action="store_true",
                   help="keep tf2onnx's graph as converted (skip the exact clean-ups)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx: static INT8 (QDQ), each fold calibrated on its own "
                   "training rows, gated on out-of-fold accuracy (int8.json)")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.core.runs import resolve_run
    from harness.export import convert as export

    settings = data_settings(settings, args)
    run_dir = resolve_run(settings.runs_dir, args.run)
    models = _select(run_dir, args.model)
    parity_x = _parity_images(settings, max(args.parity_images, 1), _competition(run_dir))

    results, failed = [], []
    for name in models:
        say(f"{name}: exporting {len(export.fold_model_paths(run_dir, name))} fold model(s) to ONNX")
        try:
            r = export.export_model(run_dir, name, parity_x, {"run_id": run_dir.name},
                                    min_parity=min(args.parity_images, export.MIN_PARITY_IMAGES),
                                    simplify_graph=not args.no_simplify)
            results.append(r.as_dict())
            say(f"{name}: parity gate passed (max |diff| {r.max_abs_diff:.2g}, {r.n_parity} images) -> {r.path}")
        except export.ParityError as e:
            failed.append(name)
            results.append(_read_export(run_dir, name))
            say(f"harness: error: {e}")
    int8 = _int8(run_dir, [r["model"] for r in results if r.get("ok")], settings) if args.int8 else []
    leaderboard.refresh(run_dir)

    if args.json:
        print_json({"run_id": run_dir.name, "exports": results, **({"int8": int8} if args.int8 else {})})
    else:
        print(f"{'model':<16} {'status':<7} {'max |diff|':>10} {'argmax diff':>11} {'size':>9}  file")
        for r in results:
            size = f"{r['size_bytes'] / 1e6:.2f} MB" if r.get("size_bytes") else "-"
            diff = f"{r['max_abs_diff']:.2g}" if r.get("max_abs_diff") is not None else "-"
            print(f"{r['model']:<16} {'ok' if r.get('ok') else 'FAILED':<7} {diff:>10} "
                  f"{r.get('argmax_mismatches', '-'):>11} {size:>9}  {r.get('path') or r.get('error', '')}")
        for d in int8:
            print(f"{d['model']:<16} {'ok' if d.get('ok') else 'MARKED':<7} {d.get('status', '')}")
    if failed:
        raise RunError(f"export failed the parity gate for {', '.join(failed)} (the other models were exported)")
    return 0


def _int8(run_dir, models: list[str], settings: Settings) -> list[dict]:
    """INT8 variants of the exported models (harness.export.quantize; plain models before the ensemble,
    which is built from its members' INT8 folds)."""
    import numpy as np

    from harness.core import io
    from harness.data import dataset as data
    from harness.export import quantize

    ds = data.load(settings.data_dir, _competition(run_dir))
    index, folds = np.load(run_dir / "train_index.npy"), np.load(run_dir / "folds.npy")
    seed = io.read_json(run_dir / "manifest.json").get("config", {}).get("seed", settings.seed)
    ordered = sorted(models, key=lambda m: (run_dir / m / "ensemble.json").is_file())
    return [quantize.ensure(run_dir, m, ds.x_train[index], ds.y_train[index], folds, ds.x_test, int(seed),
                            progress=say) for m in ordered]


def _select(run_dir, names: list[str] | None) -> list[str]:
    from harness.export.convert import fold_model_paths

    # models whose cross-validation finished (cv.json is written after the last fold), and the
    # run's ensemble (its graph is built from its members' fold models)
    trained = sorted(p.name for p in run_dir.iterdir()
                     if p.is_dir() and (p / "cv.json").is_file()
                     and (fold_model_paths(run_dir, p.name) or (p / "ensemble.json").is_file()))
    if not names:
        if not trained:
            raise RunError(f"run {run_dir.name} has no finished model (cv.json and fold models) to export")
        return trained
    unknown = [n for n in names if n not in trained]
    if unknown:
        raise RunError(f"run {run_dir.name} has no fold models for {', '.join(unknown)} "
                       f"(it has: {', '.join(trained) or 'none'})")
    return list(dict.fromkeys(names))


def _competition(run_dir):
    """The competition the run recorded (its images' shape and classes)."""
    from harness.core import io
    from harness.core.competition import of_manifest

    return of_manifest(io.read_json(run_dir / "manifest.json"))


def _parity_images(settings: Settings, n: int, comp):
    """`n` evenly spaced test.csv images: real images, and the very images the submission predicts."""
    import numpy as np

    from harness.data import dataset as data

    try:
        ds = data.load(settings.data_dir, comp)
    except FileNotFoundError as e:
        raise DataError(f"the parity gate needs the competition data: {e}") from None
    x = ds.x_test
    idx = np.linspace(0, len(x) - 1, num=min(n, len(x))).astype(int)
    return x[idx]


def _read_export(run_dir, name: str) -> dict:
    from harness.core import io

    path = run_dir / name / "export.json"
    return io.read_json(path) if path.is_file() else {"model": name, "ok": False}
