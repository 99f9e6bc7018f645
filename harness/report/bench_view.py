"""Normalise a model's bench.json (harness.bench.latency) into what the latency section shows.

Only `summary` has fixed keys (docs/ARCHITECTURE.md). The rest is read leniently: the per-batch,
per-thread rows are any list of entries carrying a batch size, with percentile keys such as
`p50_ms`; anything absent stays None and prints as '-'. So the report keeps working when
harness.bench.latency adds a column, and an old or partial bench.json still renders.
"""

from __future__ import annotations

import re
from typing import Any

# The fixed keys of bench.json's summary (docs/ARCHITECTURE.md), plus throughput_threads.
SUMMARY_KEYS = ("p50_ms_b1", "p99_ms_b1", "n_b1", "throughput_ips", "max_batch", "size_bytes",
                "flops_per_image", "efficiency_b1", "bound_b1", "threads", "throughput_threads")
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)(?:_ms)?$")
_BASELINE_NAMES = {"keras_predict": "keras Model.predict", "tf_function": "tf.function"}


def _f(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def _first(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _entry_list(bench: dict[str, Any]) -> list[dict[str, Any]]:
    for key in ("latency", "entries", "grid", "results", "measurements"):
        v = bench.get(key)
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            if any(_first(e, "batch", "batch_size") is not None for e in v):
                return v
    return []


def entry(e: dict[str, Any]) -> dict[str, Any]:
    """One (threads, batch) measurement: percentiles (only those present), mean, images/s."""
    pcts = {}
    for k, v in e.items():
        m = _PCT.match(k)
        if m and _f(v) is not None:
            pcts[f"p{m.group(1)}"] = _f(v)
    pcts = dict(sorted(pcts.items(), key=lambda kv: float(kv[0][1:])))
    batch = _f(_first(e, "batch", "batch_size"))
    ips = _f(_first(e, "throughput_ips", "images_per_s"))
    if ips is None and pcts.get("p50") and batch:
        ips = batch / (pcts["p50"] / 1000)
    samples = _first(e, "samples_ms", "times_ms")
    threads = _f(_first(e, "threads", "intra_op_threads"))
    return {
        "batch": int(batch) if batch is not None else None,
        "threads": int(threads) if threads else None,
        "n": e.get("n"),
        "percentiles": pcts,
        "mean_ms": _f(e.get("mean_ms")),
        "ips": ips,
        "floor_ms": _f(e.get("floor_ms")),
        "efficiency": _f(e.get("efficiency")),
        "bound": e.get("bound") if e.get("bound") in ("compute", "memory") else None,
        "bandwidth_gbs": _f(e.get("bandwidth_gbs")),
        "gflops": _f(e.get("gflops")),
        "samples_ms": samples if isinstance(samples, list) and samples else None,
    }


def _baselines(bench: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Keras predict / tf.function rows with ONNX Runtime's speed-up over each, compared at the
    baselines' thread count: p50 at batch 1, and throughput at the largest batch."""
    raw = bench.get("baselines")
    if not isinstance(raw, dict):
        return {"rows": [], "note": None, "threads": None, "bmax": None, "versions": {}}
    threads = raw.get("threads")
    speed = bench.get("speedup") if isinstance(bench.get("speedup"), dict) else {}
    batches = [int(b) for b in raw.get("batches") or [] if _f(b)]
    bmax = max(batches) if batches else None

    def onnx(batch: int | None) -> dict[str, Any] | None:
        return next((e for e in entries if batch is not None and e["batch"] == batch
                     and (threads is None or e["threads"] in (threads, None))), None)

    rows = []
    for name, b in raw.items():
        if not isinstance(b, dict):
            continue  # threads, batches, versions, note: facts about the baselines, not one
        by_batch = {str(k): v for k, v in b.items() if isinstance(v, dict)}
        big = by_batch.get(str(bmax), {}) if bmax and bmax > 1 else {}
        p50 = _f(b.get("p50_ms_b1")) or _f(by_batch.get("1", {}).get("p50_ms"))
        o1, obig = onnx(1), onnx(bmax if bmax and bmax > 1 else None)
        o50 = o1["percentiles"].get("p50") if o1 else None
        ratio = _f(b.get("ratio"))
        if ratio is None and p50 and o50:
            ratio = p50 / o50
        ips = _f(b.get("throughput_ips")) or _f(big.get("throughput_ips"))
        short = {"keras_predict": "predict"}.get(name, name)
        ratio_big = _f(speed.get(f"vs_{short}_bmax"))
        if ratio_big is None and ips and obig and obig["ips"]:
            ratio_big = obig["ips"] / ips
        rows.append({"name": _BASELINE_NAMES.get(name, str(name)), "p50_ms": p50,
                     "onnx_p50_ms": o50, "ratio": ratio, "ips": ips,
                     "onnx_ips": obig["ips"] if obig else None, "ratio_big": ratio_big,
                     "note": b.get("note") or b.get("error")})
    return {"rows": rows, "note": raw.get("note"), "threads": threads,
            "bmax": bmax if bmax and bmax > 1 else None,
            "versions": {k: raw[k] for k in ("tensorflow", "keras") if raw.get(k)}}


def _extras(bench: dict[str, Any], summary: dict[str, Any],
            b1: dict[str, Any] | None) -> dict[str, str]:
    """The context a reader needs to trust the figures: floor terms, cold start, runtime."""
    out: dict[str, str] = {}
    floor = _f(summary.get("floor_ms_b1")) or (b1 or {}).get("floor_ms")
    if floor is not None:
        bound = summary.get("bound_b1") or (b1 or {}).get("bound")
        out["floor at batch 1"] = f"{floor:.4g} ms" + (f" ({bound}-bound)" if bound else "")
    over = bench.get("overhead")
    if isinstance(over, list):
        o = next((x for x in over if isinstance(x, dict) and x.get("batch") == 1), None)
        if o and _f(o.get("p50_ms")) is not None:
            out["per-call overhead (trivial graph)"] = f"{_f(o['p50_ms']):.4g} ms"
    peak = bench.get("peak") if isinstance(bench.get("peak"), dict) else {}
    pk = _f(peak.get("gflops_per_core")) or _f(bench.get("peak_gflops"))
    int8 = bench.get("precision") == "int8"
    unit = "GOPS (INT8)" if int8 else "GFLOP/s"
    if pk is not None:
        out["peak"] = f"{pk:g} {unit} per core"
    if _f(peak.get("matmul_gflops_1_thread")) is not None:
        out["MatMulInteger measured" if int8 else "MatMul measured"] = \
            f"{_f(peak['matmul_gflops_1_thread']):g} {unit} (1 thread)"
    vs = (bench.get("vs_fp32") or {}).get("batches") if isinstance(bench.get("vs_fp32"), dict) else None
    if isinstance(vs, dict) and vs:  # an INT8 graph against its FP32 graph, timed interleaved
        out["INT8 over FP32 (interleaved, 1 thread)"] = ", ".join(
            f"{_f(v.get('speedup')):.2f}x at batch {b} ({_f(v.get('reference_p50_ms')):.4g} -> {_f(v.get('p50_ms')):.4g} ms)"
            for b, v in sorted(vs.items(), key=lambda kv: int(kv[0])) if isinstance(v, dict) and _f(v.get("speedup")))
    cold = bench.get("cold_start") if isinstance(bench.get("cold_start"), dict) else {}
    total = _f(cold.get("total_ms")) or _f(summary.get("cold_start_ms"))
    if total is not None:
        parts = [f"{_f(cold[k]):.4g} ms {label}" for k, label in
                 (("session_ms", "session"), ("first_run_ms", "first run")) if _f(cold.get(k))]
        out["cold start"] = f"{total:.4g} ms" + (f" ({' + '.join(parts)})" if parts else "")
    if bench.get("onnxruntime"):
        out["runtime"] = f"onnxruntime {bench['onnxruntime']}, {bench.get('provider') or 'CPU'}"
    if bench.get("quick"):
        out["budget"] = "quick"
    return out


def bench_view(bench: dict[str, Any] | None) -> dict[str, Any] | None:
    """Everything the latency section needs from one bench.json, or None when absent."""
    if not isinstance(bench, dict):
        return None
    raw = bench.get("summary") if isinstance(bench.get("summary"), dict) else {}
    summary = {k: raw.get(k) for k in SUMMARY_KEYS}
    entries = [entry(e) for e in _entry_list(bench)]
    entries.sort(key=lambda e: (e["threads"] or 0, e["batch"] or 0))
    b1 = [e for e in entries if e["batch"] == 1]
    b1_one = next((e for e in b1 if e["threads"] in (summary["threads"], 1, None)), b1[0] if b1 else None)
    p50 = _f(summary["p50_ms_b1"]) or (b1_one["percentiles"].get("p50") if b1_one else None)
    p99 = _f(summary["p99_ms_b1"]) or (b1_one["percentiles"].get("p99") if b1_one else None)
    return {
        "summary": summary,
        "p50_ms_b1": p50,
        "p99_ms_b1": p99,
        "entries": entries,
        "pct_keys": sorted({k for e in entries for k in e["percentiles"]}, key=lambda k: float(k[1:])),
        "has_floor": any(e["floor_ms"] is not None for e in entries),
        "has_bound": any(e["bound"] for e in entries),
        "samples_b1": b1_one["samples_ms"] if b1_one else None,
        "percentiles_b1": b1_one["percentiles"] if b1_one else
        {k: v for k, v in (("p50", p50), ("p99", p99)) if v},
        "baselines": _baselines(bench, entries),
        "extras": _extras(bench, raw, b1_one),
    }
