"""The leaderboard: one row per model from the run's artefacts, ranked, best marked.

`build_results(run_dir)` reads each model's cv.json / export.json / bench.json and writes
results.json; `render(results, fmt)` prints it as text, json, csv or markdown (DVC `exp show` and
AutoGluon `leaderboard()` style: numbers right-aligned, best row marked, missing values as `-`,
the accuracy-vs-latency Pareto front marked).

The best model is chosen by CV (out-of-fold) accuracy, ties broken by faster batch-1 latency;
never by test labels. INT8 variants (`cnn_deep@int8`, harness.export.quantize) are rows of their own,
ranked by their own OOF accuracy; one that loses more than 0.05 points against its FP32 graph is
marked and never chosen. With a latency budget (`LatencyBudget`: p50 in ms at a batch size, one thread)
the best is the most accurate model that fits it, and every row says whether it fits.
"""

from __future__ import annotations

import csv
import io as _io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import io
from harness.core.errors import RunError
from harness.core.runs import run_models

ROW_KEYS = ["rank", "model", "family", "precision", "status", "cv_accuracy", "fold_mean", "fold_std", "params",
            "train_seconds", "train_ips", "public_score", "private_score", "p50_ms_b1", "p99_ms_b1",
            "throughput_ips", "size_bytes", "efficiency_b1", "bound_b1", "speedup_vs_fp32", "p50_ms_budget", "fits",
            "best", "pareto", "members"]
KEEP = object()  # build_results: keep the budget results.json already has


@dataclass(frozen=True)
class LatencyBudget:
    """Choose the most accurate model whose p50 at `batch` (one thread) is at most `max_latency_ms`."""

    max_latency_ms: float
    batch: int = 1
    threads: int = 1


def _read(path: Path) -> dict[str, Any] | None:
    return io.read_json(path) if path.is_file() else None


def model_row(run_dir: Path, model: str) -> dict[str, Any]:
    """One leaderboard row from a model's artefacts (missing stages leave None)."""
    cv = _read(run_dir / model / "cv.json") or {}
    export = _read(run_dir / model / "export.json") or {}
    bench = (_read(run_dir / model / "bench.json") or {}).get("summary", {})
    scores = _read(run_dir / model / "score.json") or {}
    status = "ok"
    if export and not export.get("ok", True):
        status = f"export failed: {export.get('error', 'parity gate')}"
    elif not export:
        status = "not exported"
    row = {k: None for k in ROW_KEYS}
    row.update(model=model, family=cv.get("family"), status=status, cv_accuracy=cv.get("oof_accuracy"),
               fold_mean=cv.get("fold_mean"), fold_std=cv.get("fold_std"), params=cv.get("n_params"),
               train_seconds=cv.get("train_seconds"), train_ips=cv.get("train_ips"),
               public_score=scores.get("public"), private_score=scores.get("private"),
               p50_ms_b1=bench.get("p50_ms_b1"), p99_ms_b1=bench.get("p99_ms_b1"),
               throughput_ips=bench.get("throughput_ips"), size_bytes=bench.get("size_bytes"),
               efficiency_b1=bench.get("efficiency_b1"), bound_b1=bench.get("bound_b1"), best=False, pareto=False)
    mix = (_read(run_dir / model / "ensemble.json") or {}).get("members")
    if mix:  # the run's ensemble (harness.train.ensemble): its members and weights
        row["members"] = " + ".join(f"{w:.2f} {m}" for m, w in mix.items())
    row["precision"] = "fp32"
    row["_latency"] = _p50_by_batch(_read(run_dir / model / "bench.json"))
    return row


def int8_row(run_dir: Path, model: str, fp32: dict[str, Any]) -> dict[str, Any] | None:
    """The row of `model`'s INT8 variant (harness.export.quantize), or None when it has none."""
    from harness.core.names import artefact
    from harness.core.names import int8_name as variant

    doc = _read(run_dir / model / "int8.json")
    if doc is None:
        return None
    name = variant(model)
    full = _read(artefact(run_dir, name, "bench")) or {}
    bench = full.get("summary", {})
    scores = _read(artefact(run_dir, name, "score")) or {}
    row = {k: None for k in ROW_KEYS}
    status = doc.get("status") or "ok"
    if doc.get("ok") and not (run_dir / model / "model.int8.onnx").is_file():
        status = "int8 graph missing"
    row.update(model=name, family=fp32.get("family"), precision="int8", status=status,
               cv_accuracy=doc.get("int8_oof_accuracy"), fold_mean=doc.get("fold_mean"), fold_std=doc.get("fold_std"),
               params=fp32.get("params"), public_score=scores.get("public"), private_score=scores.get("private"),
               p50_ms_b1=bench.get("p50_ms_b1"), p99_ms_b1=bench.get("p99_ms_b1"),
               throughput_ips=bench.get("throughput_ips"), size_bytes=bench.get("size_bytes") or doc.get("size_bytes"),
               efficiency_b1=bench.get("efficiency_b1"), bound_b1=bench.get("bound_b1"),
               speedup_vs_fp32=bench.get("speedup_vs_fp32_b1"),
               members=fp32.get("members"), best=False, pareto=False, _latency=_p50_by_batch(full))
    return row


def _p50_by_batch(bench: dict[str, Any] | None, threads: int = 1) -> dict[int, float]:
    """{batch: p50 ms} at `threads` from a bench record's latency table."""
    return {int(r["batch"]): r["p50_ms"] for r in (bench or {}).get("latency", [])
            if r.get("threads") == threads and r.get("p50_ms") is not None}


def rank(rows: list[dict[str, Any]], budget: LatencyBudget | None = None) -> list[dict[str, Any]]:
    """Sort by CV accuracy (desc), then batch-1 p50 (asc); mark best (among exportable, and within
    the latency budget if there is one) and the Pareto front."""
    inf = float("inf")
    rows = sorted(rows, key=lambda r: (-(r["cv_accuracy"] or 0.0), r["p50_ms_b1"] or inf, r["model"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        latency = r.pop("_latency", None) or {}
        if budget is not None:
            r["p50_ms_budget"] = latency.get(budget.batch)
            r["fits"] = None if r["p50_ms_budget"] is None else bool(r["p50_ms_budget"] <= budget.max_latency_ms)
    eligible = [r for r in rows if r["status"] == "ok"]  # the submission needs its ONNX file
    if budget is not None:
        eligible = [r for r in eligible if r["fits"]]
    if eligible:
        eligible[0]["best"] = True
    # Pareto front of (higher accuracy, lower latency): no other row is at least as good in both
    # and strictly better in one.
    timed = [r for r in rows if r["cv_accuracy"] is not None and r["p50_ms_b1"] is not None]
    for r in timed:
        r["pareto"] = not any(
            o is not r and o["cv_accuracy"] >= r["cv_accuracy"] and o["p50_ms_b1"] <= r["p50_ms_b1"]
            and (o["cv_accuracy"] > r["cv_accuracy"] or o["p50_ms_b1"] < r["p50_ms_b1"]) for o in timed)
    return rows


def _competition(run_dir: Path) -> Any:
    """The run's competition (its class names), as its manifest recorded it."""
    from harness.core.competition import of_manifest

    return of_manifest(_read(run_dir / "manifest.json") or {})


def build_results(run_dir: Path, y: np.ndarray | None = None, extra: dict[str, Any] | None = None,
                  budget: LatencyBudget | None | object = KEEP) -> dict:
    """Assemble, rank and write results.json; keeps `submission`/`upload` already recorded, and the
    latency budget unless one (or None) is given."""
    models = run_models(run_dir)
    if not models:
        raise RunError(f"run {run_dir.name} has no trained model yet")
    previous = _read(run_dir / "results.json") or {}
    if budget is KEEP:
        budget = LatencyBudget(**previous["budget"]) if previous.get("budget") else None
    rows = []
    for m in models:
        rows.append(model_row(run_dir, m))
        variant = int8_row(run_dir, m, rows[-1])
        if variant is not None:
            rows.append(variant)
    rows = rank(rows, budget)
    results = {
        "run_id": run_dir.name,
        "best": next((r["model"] for r in rows if r["best"]), None),
        "budget": asdict(budget) if budget is not None else None,
        "rows": rows,
        "baseline": previous.get("baseline") or {},
        "submission": previous.get("submission"),
        "upload": previous.get("upload"),
    }
    comp = _competition(run_dir)
    results["competition"] = {"slug": comp.slug, "classes": list(comp.classes)}
    if y is not None:  # majority-class baseline, for scale
        counts = np.bincount(y)
        results["baseline"] = {"name": f"majority class, {comp.classes[int(counts.argmax())]}",
                               "label": int(counts.argmax()), "cv_accuracy": float(counts.max() / counts.sum())}
    results.update(extra or {})
    io.write_json(run_dir / "results.json", results)
    return results


def no_fit_message(results: dict[str, Any], budget: LatencyBudget) -> str:
    """Why no model was chosen under `budget`: the fastest usable model and its p50."""
    timed = [r for r in results["rows"] if r["status"] == "ok" and r.get("p50_ms_budget") is not None]
    where = f"at batch {budget.batch} ({budget.threads} thread)"
    if not timed:
        return (f"no model has a benchmark {where} to check against --max-latency-ms "
                f"{budget.max_latency_ms:g}; run without --no-bench")
    fastest = min(timed, key=lambda r: r["p50_ms_budget"])
    return (f"no model fits --max-latency-ms {budget.max_latency_ms:g} {where}: the fastest is "
            f"{fastest['model']} at {fastest['p50_ms_budget']:.3f} ms p50; raise the budget and run the same "
            f"command again (it resumes: only the choice is redone)")


def refresh(run_dir: Path) -> dict[str, Any] | None:
    """Rebuild results.json after a stage re-ran alone (`harness export`/`bench`); None when the
    run has no trained model yet, so there is nothing to rank."""
    if not run_models(run_dir):
        return None
    return build_results(run_dir)


def load_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    if not path.is_file():
        return build_results(run_dir)
    return io.read_json(path)


# ----------------------------------------------------------------------------- rendering

COLUMNS = [  # (key, header, formatter)
    ("rank", "#", lambda v: f"{v}"),
    ("model", "model", str),
    ("cv_accuracy", "cv acc %", lambda v: f"{100 * v:.3f}"),
    ("fold_mean", "fold mean %", lambda v: f"{100 * v:.3f}"),
    ("fold_std", "± std", lambda v: f"{100 * v:.3f}"),
    ("public_score", "public %", lambda v: f"{100 * v:.3f}"),
    ("private_score", "private %", lambda v: f"{100 * v:.3f}"),
    ("params", "params", lambda v: f"{v:,}"),
    ("train_seconds", "train s", lambda v: f"{v:.0f}"),
    ("train_ips", "train img/s", lambda v: f"{v:,.0f}"),
    ("p50_ms_b1", "p50 ms", lambda v: f"{v:.3f}"),
    ("p99_ms_b1", "p99 ms", lambda v: f"{v:.3f}"),
    ("throughput_ips", "img/s", lambda v: f"{v:,.0f}"),
    ("size_bytes", "size KB", lambda v: f"{v / 1024:,.0f}"),
    ("efficiency_b1", "eff %", lambda v: f"{100 * v:.0f}"),
    ("bound_b1", "bound", str),
    ("speedup_vs_fp32", "vs fp32", lambda v: f"{v:.2f}x"),
    ("status", "status", str),
]
BUDGET_COLUMNS = [("p50_ms_budget", "p50 ms @budget", lambda v: f"{v:.3f}"),
                  ("fits", "fits", lambda v: "yes" if v else "no")]


def _columns(results: dict[str, Any]) -> list[tuple]:
    """COLUMNS, with the budget's two before `status` when the results have a latency budget."""
    return COLUMNS[:-1] + BUDGET_COLUMNS + COLUMNS[-1:] if results.get("budget") else COLUMNS


def _cells(row: dict[str, Any], columns: list[tuple] = COLUMNS) -> list[str]:
    cells = []
    for key, _, fmt in columns:
        value = row.get(key)
        cell = "-" if value is None else fmt(value)
        if key == "model":
            cell = ("* " if row.get("best") else "  ") + cell + (" ^" if row.get("pareto") else "")
        cells.append(cell)
    return cells


def render(results: dict[str, Any], fmt: str = "text") -> str:
    rows = results["rows"]
    if fmt == "json":
        return json.dumps(results, indent=2, default=io._json_default)
    if fmt == "csv":
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=ROW_KEYS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in ROW_KEYS} for r in rows)
        return buf.getvalue()
    columns = _columns(results)
    headers = [h for _, h, _ in columns]
    table = [_cells(r, columns) for r in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join(":---" if k in ("model", "status") else "---:" for k, _, _ in columns) + "|"]
        lines += ["| " + " | ".join(c.strip() for c in cells) + " |" for cells in table]
        lines += ["", *(f"`{r['model']}` = {r['members']} (weights chosen on out-of-fold predictions)"
                        for r in rows if r.get("members"))] if any(r.get("members") for r in rows) else []
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(headers)]
    left = {"model", "status"}
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if k in left else c.rjust(w)
                         for (k, _, _), c, w in zip(columns, cells, widths)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])] + [line(c) for c in table]
    out += [f"{r['model']} = {r['members']} (weights chosen on out-of-fold predictions)"
            for r in rows if r.get("members")]
    base = results.get("baseline") or {}
    budget = results.get("budget")
    chosen = (f"by CV accuracy, p50 <= {budget['max_latency_ms']:g} ms at batch {budget['batch']}"
              if budget else "by CV accuracy")
    foot = f"run {results['run_id']}  * best ({chosen})  ^ accuracy/latency Pareto front"
    if base.get("cv_accuracy") is not None:
        foot += f"  baseline ({base['name']}): {100 * base['cv_accuracy']:.2f} %"
    return "\n".join(out + ["", foot]) + "\n"
