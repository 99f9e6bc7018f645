"""`harness bench`: ONNX Runtime latency of exported models, against the floor and Keras baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli._common import add_json, print_json, say
from harness.core.config import Settings
from harness.core.errors import RunError, UsageError
from harness.results import leaderboard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark exported models with ONNX Runtime",
                       description="Latency percentiles (p50/p90/p99 with n), throughput, cold start, size, "
                       "FLOPs and efficiency against a roofline floor (per-call overhead + max(FLOPs / peak, bytes / "
                       "bandwidth), both measured in the run) of each model.onnx, "
                       "with keras.Model.predict and tf.function baselines on the same images. With --run, "
                       "results go to runs/<run>/<model>/bench.json and the leaderboard.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  harness bench --run 20260101-120000\n"
                       "  harness bench --run latest --model cnn_small --batch 1 --threads 1\n"
                       "  harness bench runs/R/cnn_small/model.onnx --peak-gflops measure --json")
    p.add_argument("files", nargs="*", metavar="FILE.onnx", help="ONNX files to benchmark (instead of --run)")
    p.add_argument("--run", metavar="RUN", help="run id or folder (default, without FILEs: the latest run)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="with --run: only this model (repeatable; default: every exported model)")
    p.add_argument("--batch", default="1,64,1024", metavar="B,B,...", help="batch sizes (default 1,64,1024)")
    p.add_argument("--threads", default="1,2", metavar="T,T,...",
                   help="ONNX Runtime intra-op thread counts (default 1,2)")
    p.add_argument("--peak-gflops", metavar="GFLOPS|measure",
                   help="a fixed FP32 peak per core for the floor (default 'measure': ONNX Runtime's one-thread "
                   "MatMul measured in the same run; an INT8 graph always uses the MatMulInteger measured alike)")
    p.add_argument("--no-baselines", action="store_true", help="skip keras.Model.predict / tf.function")
    p.add_argument("--baseline-threads", type=int, default=1, metavar="T",
                   help="TensorFlow threads for the baselines, compared with ONNX Runtime at the same count "
                   "(default 1)")
    p.add_argument("--quick", action="store_true", help="a shorter measurement (batch 1 keeps n >= 662)")
    p.add_argument("--iters", type=int, metavar="N", help="calls at batch 1 (default 1000; p99 needs >= 662)")
    p.add_argument("--seconds", type=float, metavar="S", help="time per larger batch size (default 1.5)")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness import bench

    batches = _ints(args.batch, "--batch")
    threads = _ints(args.threads, "--threads")
    if args.iters is not None and args.iters < 1 or args.seconds is not None and args.seconds <= 0:
        raise UsageError("harness bench: --iters and --seconds must be positive")
    if args.peak_gflops is not None and args.peak_gflops.lower() != "measure":
        bench.positive_float(args.peak_gflops, "--peak-gflops")
    budget = bench.replace_budget(bench.QUICK_BUDGET if args.quick else bench.DEFAULT_BUDGET,
                                  b1_iters=args.iters, seconds=args.seconds)
    if args.files and (args.run or args.model):
        raise UsageError("harness bench: give ONNX files or --run [--model], not both")

    records = []
    if args.files:
        for f in args.files:
            path = Path(f)
            if not path.is_file():
                raise UsageError(f"harness bench: no such file: {f}")
            say(f"benchmarking {path}")
            rec = bench.bench_onnx(path, batches=batches, threads=threads, peak_gflops=args.peak_gflops,
                                   budget=budget, progress=say)
            records.append({"model": path.stem if path.stem != "model" else path.parent.name, **rec})
    else:
        from harness.core.runs import resolve_run

        run_dir = resolve_run(settings.runs_dir, None if args.run in (None, "latest") else args.run)
        for name in _models(run_dir, args.model):
            from harness.core.names import onnx_path

            say(f"{name}: benchmarking {onnx_path(run_dir, name)}")
            records.append(bench.bench_model(
                run_dir, name, batches=batches, threads=threads, baselines=not args.no_baselines,
                peak_gflops=args.peak_gflops, baseline_threads=args.baseline_threads, budget=budget,
                quick=args.quick, progress=say))
        leaderboard.refresh(run_dir)

    if args.json:
        print_json(records)
    else:
        print("\n\n".join(render(r) for r in records))
    return 0


def render(rec: dict) -> str:
    """A human-readable block for one bench record."""
    s = rec["summary"]
    peak = rec.get("peak", {})
    int8 = rec.get("precision") == "int8"
    unit, kernel = ("GOPS", "MatMulInteger") if int8 else ("GFLOP/s", "MatMul")
    lines = [f"{rec.get('model', '?')}  {rec['file']}  {rec['size_bytes'] / 1e6:.2f} MB  "
             f"{rec['flops_per_image'] / 1e6:.2f} MFLOP/image  peak {peak.get('gflops_per_core', 0):g} "
             f"{unit}/core ({peak.get('source', '?').split(':')[0]}; {kernel} measured "
             f"{peak.get('matmul_gflops_1_thread', 0):g})",
             f"{'threads':>7} {'batch':>6} {'n':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
             f"{'images/s':>10} {'floor ms':>9} {'bound':>7} {'GB/s':>6} {'eff':>5} {unit:>8}"]
    for r in rec["latency"]:
        bw = r.get("bandwidth_gbs")
        lines.append(f"{r['threads']:>7} {r['batch']:>6} {r['n']:>6} {_ms(r['p50_ms'])} {_ms(r['p90_ms'])} "
                     f"{_ms(r['p99_ms'])} {_num(r['throughput_ips']):>10} {_ms(r['floor_ms'])} "
                     f"{r.get('bound') or '-':>7} {f'{bw:.0f}' if bw else '-':>6} {r['efficiency']:>5.2f} "
                     f"{r['gflops']:>8.1f}")
    lines.append("floor = per-call overhead + max(FLOPs / peak, bytes / bandwidth), bytes = constants + "
                 "activations, bandwidth = a GEMV of those bytes timed in the run; bound = the larger term; "
                 "eff = floor / p50")
    c = rec["cold_start"]
    lines.append(f"cold start: {c['total_ms']:.1f} ms (session {c['session_ms']:.1f} ms + first run "
                 f"{c['first_run_ms']:.2f} ms; median of {c['n']}, 1 thread)")
    vs = (rec.get("vs_fp32") or {}).get("batches") or {}
    if vs:
        lines.append("against the FP32 graph (1 thread, timed interleaved; p50): " + ", ".join(
            f"batch {b}: {v['reference_p50_ms']:.4g} -> {v['p50_ms']:.4g} ms, {v['speedup']:.2f}x"
            for b, v in sorted(vs.items(), key=lambda kv: int(kv[0]))))
    base = rec.get("baselines")
    if base:
        if base.get("note"):
            lines.append(f"baselines: {base['note']}")
        else:
            t = base.get("threads")
            speed = rec.get("speedup", {})
            lines.append(f"baselines (TensorFlow and ONNX Runtime on {t} thread(s), timed interleaved; p50):")
            for b in base.get("batches", []):
                ort_ms = ((speed.get("onnxruntime") or {}).get(str(b)) or {}).get("p50_ms")
                parts = [f"ONNX Runtime {_ms(ort_ms).strip()} ms"]
                for name, label, key in (("tf_function", "tf.function", "vs_tf_function"),
                                         ("keras_predict", "Model.predict", "vs_predict")):
                    st = (base.get(name) or {}).get(str(b)) or {}
                    ratio = speed.get(f"{key}_{'b1' if b == 1 else 'bmax'}")
                    if st.get("p50_ms") is not None:
                        parts.append(f"{label} {_ms(st['p50_ms']).strip()} ms (n={st['n']}"
                                     + (f", ONNX Runtime {ratio:g}x faster)" if ratio else ")"))
                lines.append(f"  batch {b}: " + ", ".join(parts))
    lines.append(f"summary: p50 b1 {_ms(s['p50_ms_b1']).strip()} ms, p99 b1 {_ms(s['p99_ms_b1']).strip()} ms "
                 f"(n={s['n_b1']}, {s['threads']} thread), {_num(s['throughput_ips'])} images/s at batch "
                 f"{s['max_batch']} ({s['throughput_threads']} threads), efficiency b1 "
                 f"{s['efficiency_b1'] if s['efficiency_b1'] is not None else '-'}"
                 + (f" ({s['bound_b1']}-bound)" if s.get("bound_b1") else ""))
    return "\n".join(lines)


def _ms(v) -> str:
    return f"{'-':>9}" if v is None else f"{v:>9.3f}" if v < 100 else f"{v:>9.1f}"


def _num(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"harness bench: {flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"harness bench: {flag} takes positive integers, got {text!r}")
    return values


def _models(run_dir: Path, names: list[str] | None) -> list[str]:
    from harness.core.names import int8_name as variant

    exported = sorted([p.parent.name for p in run_dir.glob("*/model.onnx")]
                      + [variant(p.parent.name) for p in run_dir.glob("*/model.int8.onnx")])
    if not names:
        if not exported:
            raise RunError(f"run {run_dir.name} has no exported model; run `harness export --run {run_dir.name}`")
        return exported
    missing = [n for n in names if n not in exported]
    if missing:
        raise RunError(f"run {run_dir.name} has no model.onnx for {', '.join(missing)} "
                       f"(exported: {', '.join(exported) or 'none'})")
    return list(dict.fromkeys(names))
