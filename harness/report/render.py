"""Render a run folder into one self-contained HTML page.

    from harness.report import render_report
    render_report(Path("runs/20250101-120000"), Path("reports/20250101-120000.html"))

The page works offline: figures are inlined as data: URIs, the stylesheet and the small script
are inlined, and a Content-Security-Policy forbids every fetch. All text comes from the run's
files and plugins, so the template is rendered by jinja2 with autoescaping on; nothing here
builds HTML by hand. Each section degrades to a short note when its inputs are missing.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.core import io
from harness.report.bench_view import bench_view
from harness.report.budget_view import budget_view
from harness.report.collect import ModelData, RunData, load_run
from harness.report.fmt import FILTERS, as_float, pick
from harness.report.tuning_view import tuning_view

N_MISTAKES = 16


def render_report(run_dir: Path, output: Path, data_dir: Path | None = None, *,
                  dataset: Any = None) -> Path:
    """Write the report of `run_dir` to `output` (atomically) and return `output`.

    `data_dir` overrides the data folder recorded in the run's manifest; `dataset` (an object
    with x_train, y_train, x_test) skips loading altogether (tests, callers that hold it).
    """
    run = load_run(Path(run_dir), data_dir, dataset)
    html = render_html(run)
    return io.write_text(Path(output), html)


def render_html(run: RunData) -> str:
    env = _environment()
    return env.get_template("report.html").render(**build_context(run))


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,  # every string from a plugin, flag or file is escaped
        undefined=jinja2.StrictUndefined,  # a typo in the template is a bug, not a blank
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


# --- context ------------------------------------------------------------------------------------


def _row_value(m: ModelData, key: str) -> Any:
    """A leaderboard column for `m`, from results.json, else from its cv/bench artefacts."""
    if m.row.get(key) is not None:
        return m.row[key]
    cv, summary = m.cv or {}, (m.bench or {}).get("summary") or {}
    fallback = {"cv_accuracy": cv.get("oof_accuracy"), "family": cv.get("family"),
                "params": cv.get("n_params")}
    if key in fallback:
        return fallback[key]
    return cv.get(key, summary.get(key))


def _pareto(points: list[dict[str, Any]]) -> set[str]:
    """Models no other model beats on both accuracy (higher) and latency (lower)."""
    front = set()
    for p in points:
        if not any(q["accuracy"] >= p["accuracy"] and q["latency_ms"] <= p["latency_ms"]
                   and (q["accuracy"] > p["accuracy"] or q["latency_ms"] < p["latency_ms"])
                   for q in points):
            front.add(p["model"])
    return front


def _baseline(run: RunData) -> dict[str, Any] | None:
    b = run.results.get("baseline")
    if isinstance(b, dict):
        acc = as_float(b.get("accuracy", b.get("cv_accuracy")))
        if acc is not None:
            return {"name": str(b.get("model") or b.get("name") or "majority class"),
                    "accuracy": acc, "predicts": b.get("label", b.get("predicts"))}
    y = run.y_true
    if y is None or not len(y):
        return None
    counts = np.bincount(y)
    return {"name": "majority class", "accuracy": float(counts.max() / counts.sum()),
            "predicts": int(counts.argmax())}


def _leaderboard(run: RunData) -> dict[str, Any]:
    cols = ("rank", "family", "status", "cv_accuracy", "fold_mean", "fold_std", "public_score",
            "private_score", "p50_ms_b1", "p99_ms_b1", "throughput_ips", "size_bytes",
            "efficiency_b1", "bound_b1", "params", "train_seconds", "train_ips", "best", "pareto")
    rows = []
    for m in run.models:
        r = {"model": m.name, **{c: _row_value(m, c) for c in cols}}
        r["status"] = r["status"] or ("ok" if m.cv else "incomplete")
        rows.append(r)
    points = [{"model": r["model"], "accuracy": as_float(r["cv_accuracy"]),
               "latency_ms": as_float(r["p50_ms_b1"])} for r in rows]
    points = [p for p in points if p["accuracy"] is not None and p["latency_ms"]]
    if not any(r["pareto"] is not None for r in rows):
        front = _pareto(points)
        for r in rows:
            r["pareto"] = r["model"] in front
    best = run.results.get("best")
    if best is None and rows:
        ranked = [r for r in rows if as_float(r["cv_accuracy"]) is not None]
        best = max(ranked, key=lambda r: as_float(r["cv_accuracy"]))["model"] if ranked else None
    for r in rows:
        r["best"] = r["model"] == best
        p = next((p for p in points if p["model"] == r["model"]), None)
        if p:
            p.update(pareto=bool(r["pareto"]), best=r["best"])
    baseline = _baseline(run)
    figure = None
    if points or baseline:
        from harness.report import figures

        figure = figures.accuracy_vs_latency(points, baseline and baseline["accuracy"])
    return {"rows": rows, "baseline": baseline, "figure": figure, "best": best,
            "unplotted": [r["model"] for r in rows if r["model"] not in {p["model"] for p in points}]}


def _test_predictions(run: RunData, best: str | None) -> np.ndarray | None:
    ds = run.dataset
    for m in run.models:
        if m.name == best and m.test is not None and ds is not None and len(m.test) == len(ds.x_test):
            return m.test.argmax(axis=1)
    return None


def _data_section(run: RunData, y_test: np.ndarray | None, best: str | None) -> dict[str, Any]:
    ds = run.dataset
    if ds is None:
        return {"available": False}
    from harness.report import figures

    x_train = np.asarray(ds.x_train)
    y_train = np.asarray(ds.y_train)
    names = _names(run)
    x_test = np.asarray(ds.x_test) if getattr(ds, "x_test", None) is not None else None
    n_used = len(run.train_index) if run.train_index is not None else len(y_train)
    return {
        "available": True,
        "n_train": len(x_train), "n_test": 0 if x_test is None else len(x_test), "n_used": n_used,
        "test_labels_from": best if y_test is not None else None,
        "counts": figures.class_counts(y_train, y_test, names),
        "intensity": figures.intensity_histograms(x_train, y_train, x_test, y_test, names),
        "samples": figures.sample_digits(x_train, y_train, x_test, y_test, names=names),
        "means": figures.mean_digits(x_train, y_train, x_test, y_test, names),
    }


def _competition_title(run: RunData) -> str:
    from harness.core.competition import of_manifest

    comp = of_manifest(run.manifest)
    return comp.title or comp.slug


def _names(run: RunData) -> list[str]:
    """The run's class names (its competition's; Digit Recognizer's digits for older runs)."""
    from harness.core.competition import of_manifest

    return list(of_manifest(run.manifest).classes)


def _per_class(cm: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for c in range(len(cm)):
        tp = cm[c, c]
        support, predicted = cm[c].sum(), cm[:, c].sum()
        p = tp / predicted if predicted else None
        r = tp / support if support else None
        f1 = 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)
        out.append({"cls": names[c], "precision": p, "recall": r, "f1": f1, "support": int(support)})
    return out


def _mistakes(oof: np.ndarray, y: np.ndarray, x: np.ndarray | None, names: list[str]) -> list[dict[str, Any]]:
    from harness.report import figures

    pred = oof.argmax(axis=1)
    conf = oof.max(axis=1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:N_MISTAKES]
    return [{"true": names[y[i]], "pred": names[pred[i]], "p": float(conf[i]),
             "p_true": float(oof[i, y[i]]), "row": int(i),
             "img": figures.digit_png(x[i]) if x is not None else None} for i in order]


def _where(fold: dict[str, Any]) -> str | None:
    """Where a fold ran, in a few words: 'ray: host node 0a1b2c, pid 12, 1 thread'."""
    if not fold.get("executor"):
        return None  # trained before folds recorded it
    text = f"{fold['executor']}: {fold.get('host') or '?'}"
    if fold.get("node"):
        text += f" node {str(fold['node'])[:6]}"
    text += f", pid {fold.get('pid')}"
    threads = fold.get("threads")
    text += f", {threads} thread{'s' if threads != 1 else ''}" if threads else ", default threads"
    return text + (f", {fold['device']}" if fold.get("device") else "")


def _executor(man: dict[str, Any]) -> dict[str, Any] | None:
    """The executor section of the manifest, flattened for a key/value table."""
    ex = man.get("executor")
    if not isinstance(ex, dict):
        return None
    out = {k: ex.get(k) for k in ("name", "address", "ray", "jobs", "cpus_per_job") if ex.get(k) is not None}
    res = ex.get("resources") if isinstance(ex.get("resources"), dict) else {}
    out.update({f"cluster {k}": v for k, v in res.items()})
    for i, node in enumerate(ex.get("nodes") or []):
        if isinstance(node, dict):
            out[f"node {i + 1}"] = ", ".join(f"{k} {v}" for k, v in node.items() if v is not None)
    return out


def _pseudo_note(run: RunData, name: str) -> str | None:
    """How a `+pl` model was made (harness.train.pseudo), from runs/<run>/pseudo/labels.json."""
    from harness.core import io
    from harness.train import pseudo

    path = run.run_dir / "pseudo" / "labels.json"
    if not name.endswith(pseudo.SUFFIX) or not path.is_file():
        return None
    try:
        doc = io.read_json(path)
        rows = [int(f["rows"]) for f in doc["folds"]]
        teachers = " + ".join(f"{float(w):.2f} {t}" for t, w in doc["teachers"].items())
        return (f"Pseudo-labelling (--pseudo-label {doc['threshold']:g}, opt-in): each fold model of "
                f"{pseudo.base(name)} was fine-tuned on its training rows plus {min(rows):,}-{max(rows):,} test rows "
                f"labelled with confidence >= {doc['threshold']:g} by round one's models of the same fold "
                f"({teachers}), which never saw that fold's validation rows: the OOF accuracy stays honest.")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _model_section(run: RunData, m: ModelData, lb_row: dict[str, Any]) -> dict[str, Any]:
    from harness.report import figures

    cv = m.cv if isinstance(m.cv, dict) else {}
    out: dict[str, Any] = {
        "name": m.name, "row": lb_row, "cv": pick(cv, "train_seconds", "train_ips"),
        "status": lb_row["status"], "error": m.row.get("error") or cv.get("error"),
        "description": cv.get("description") or m.row.get("description"),
        "params": cv.get("params") if isinstance(cv.get("params"), dict) else {},
        "folds": [{**pick(f, "fold", "accuracy", "n_train", "n_val", "epochs", "seconds", "images_per_s",
                           "executor", "host", "node", "pid", "threads", "device"), "where": _where(f)}
                  for f in cv.get("folds") or [] if isinstance(f, dict)],
        "curves": figures.learning_curves(m.histories) if m.histories else None,
        "export": pick(m.export, "ok", "error", "max_abs_diff", "tolerance", "n_parity",
                        "argmax_mismatches", "size_bytes", "opset", "folds")
        if isinstance(m.export, dict) else None,
        "confusion": None, "per_class": [], "mistakes": [], "note": None,
        "tuning": tuning_view(run, m, lb_row),
        "untuned_note": None, "pseudo_note": _pseudo_note(run, m.name),
    }
    config = run.manifest.get("config") if isinstance(run.manifest.get("config"), dict) else {}
    if config.get("tuned") is True and m.tuned_source is None and m.name in (
            run.manifest.get("param_sources") or {}):
        out["untuned_note"] = (f"asked for tuned parameters (--tuned), but none were saved by "
                               f"`harness tune {m.name}`: trained with the model's defaults")
    y = run.y_true
    names = _names(run)
    if m.oof is None:
        out["note"] = "no out-of-fold predictions (oof.npy) in this run"
    elif y is None:
        out["note"] = "labels unavailable (data not loaded): no confusion matrix or mistakes"
    elif len(y) != len(m.oof) or m.oof.ndim != 2 or m.oof.shape[1] != len(names):
        out["note"] = f"oof.npy has shape {m.oof.shape}, labels {len(y)}, {len(names)} classes: not aligned"
    else:
        pred = m.oof.argmax(axis=1)
        k = len(names)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        out["confusion"] = figures.confusion_matrix(cm, names)
        out["per_class"] = _per_class(cm, names)
        out["oof_accuracy"] = float((pred == y).mean())
        x = None
        if run.dataset is not None:
            x_train = np.asarray(run.dataset.x_train)
            x = x_train[run.train_index] if run.train_index is not None else x_train
        out["mistakes"] = _mistakes(m.oof, y, x, names)
    return out


def _latency_section(run: RunData) -> dict[str, Any]:
    from harness.report import time_figures

    models = []
    for m in run.models:
        v = bench_view(m.bench)
        models.append({"name": m.name, "bench": v})
    benched = [x for x in models if x["bench"]]
    dist = [{"model": x["name"], "samples_ms": x["bench"]["samples_b1"],
             "percentiles": x["bench"]["percentiles_b1"]}
            for x in benched if x["bench"]["samples_b1"] or x["bench"]["percentiles_b1"]]
    tput = [{"model": x["name"], "points": [(e["batch"], e["threads"] or 1, e["ips"])
                                           for e in x["bench"]["entries"] if e["batch"]]}
            for x in benched]
    tput = [t for t in tput if len(t["points"]) > 1]
    return {
        "models": models,
        "benched": benched,
        "missing": [x["name"] for x in models if not x["bench"]],
        "distribution": time_figures.latency_distribution(dist) if dist else None,
        "throughput": time_figures.throughput_by_batch(tput) if tput else None,
    }


# A JSON list of scalars, as json.dumps(indent=2) spreads it over lines; shown on one line.
_SCALAR = r'(?:"(?:[^"\\\n]|\\.)*"|-?[\d.eE+-]+|true|false|null)'
_SCALAR_LIST = re.compile(rf"\[\s*{_SCALAR}(?:,\s*{_SCALAR})*\s*\]")


def _reproduction(run: RunData) -> dict[str, Any]:
    man = run.manifest
    argv = man.get("command")
    if isinstance(argv, list) and argv:
        head = Path(str(argv[0])).name
        command = shlex.join(["harness" if head in ("harness", "__main__.py") else str(argv[0]),
                              *map(str, argv[1:])])
    else:
        command = str(argv) if argv else None
    config = man.get("config") if isinstance(man.get("config"), dict) else {}
    resolved: dict[str, Any] = {"run_id": run.run_id, "command": argv, "config": config}
    for key in ("params", "param_sources"):  # per-model parameters, when the run recorded them
        if isinstance(man.get(key), dict):
            resolved[key] = man[key]
    config_json = _SCALAR_LIST.sub(lambda m: json.dumps(json.loads(m.group(0))),
                                   json.dumps(resolved, indent=2, default=str))
    return {
        "command": command,
        "config": config,
        "config_json": config_json,
        "config_href": "data:application/json;base64,"
        + base64.b64encode(config_json.encode("utf-8")).decode("ascii"),
        "versions": man.get("versions") if isinstance(man.get("versions"), dict) else {},
        "hardware": man.get("hardware") if isinstance(man.get("hardware"), dict) else {},
        "executor": _executor(man),
        "data": man.get("data") if isinstance(man.get("data"), dict) else {},
        "git_commit": man.get("git_commit"),
        "started": man.get("started"), "finished": man.get("finished"),
        "duration_s": man.get("duration_s"),
        "run_dir": str(run.run_dir),
    }


def _summary(run: RunData, lb: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, Any]:
    best = next((r for r in lb["rows"] if r["best"]), None)
    raw_sub = run.results.get("submission") if isinstance(run.results.get("submission"), dict) else {}
    sub = pick(raw_sub, "path", "sha256", "model", "public_score", "private_score")
    for key in ("public", "private"):  # a Score dict merged in has bare public/private keys
        if sub[f"{key}_score"] is None:
            sub[f"{key}_score"] = raw_sub.get(key)
    upload = run.results.get("upload")
    upload = pick(upload, "status", "ref", "public_score", "private_score", "error") \
        if isinstance(upload, dict) else None
    bm = next((m for m in models if best and m["name"] == best["model"]), None)
    return {
        "best": best,
        "n_folds": len(bm["folds"]) if bm else None,
        "submission": sub,
        "public_score": sub["public_score"] if sub["public_score"] is not None
        else best and best.get("public_score"),
        "private_score": sub["private_score"] if sub["private_score"] is not None
        else best and best.get("private_score"),
        "upload": upload,
        "n_models": len(run.models),
        "n_failed": sum(1 for r in lb["rows"] if r["status"] not in ("ok", None)),
    }


def build_context(run: RunData) -> dict[str, Any]:
    lb = _leaderboard(run)
    by_name = {r["model"]: r for r in lb["rows"]}
    models = [_model_section(run, m, by_name[m.name]) for m in run.models]
    y_test = _test_predictions(run, lb["best"])
    return {
        "run_id": run.run_id,
        "competition": _competition_title(run),
        "version": __version__,
        "notes": run.notes,
        "summary": _summary(run, lb, models),
        "data": _data_section(run, y_test, lb["best"]),
        "augmentation": run.manifest.get("augmentation"),
        "leaderboard": lb,
        "models": models,
        "latency": _latency_section(run),
        "budget": budget_view(run),
        "repro": _reproduction(run),
        "duration_s": run.manifest.get("duration_s"),
    }
