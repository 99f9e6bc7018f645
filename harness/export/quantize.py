"""Static INT8 variants of the exported models, gated on out-of-fold accuracy.

    doc = quantize_model(run_dir, "cnn_deep", x, y, folds, x_test)   # -> <model>/int8.json

Per fold k, the fold model alone is converted to ONNX (harness.export.convert: the same clean-ups) and
quantised with `onnxruntime.quantization.quantize_static`: QDQ format, uint8 activations, int8
weights (per channel), MinMax ranges from `CALIB_ROWS` images drawn (seeded) from fold k's own
training rows. That graph then predicts fold k's validation rows, which neither its training nor
its calibration saw: the INT8 out-of-fold predictions (`<model>/int8/oof.npy`). The shipped graph
`<model>/model.int8.onnx` is exactly those K graphs merged behind the one `pixels` input, with the
same mean (or, for the run's ensemble, the same weights) as the FP32 file: the accuracy measured
is the accuracy of the graphs that ship. `int8.json` has FP32 vs INT8 OOF accuracy, the argmax
agreement with FP32 on the test images, and `ok`: an INT8 model that loses more than
`MAX_OOF_DROP` OOF accuracy is marked on the leaderboard and never chosen. A model the quantiser
cannot handle is marked with the reason; the others go on.

Two graph edits after the quantiser, both exact: the input's float copy is quantised with scale 1
and zero point 0 (a tensor override; after harness.export.convert folds the 1/255 rescale into the first
weights the input holds whole numbers 0..255), so that Quantize(Cast(pixels)) is the uint8 pixels
themselves and both nodes go; and the softmax stays FP32 (a uint8 softmax would round the
probabilities to 1/256 and tie the argmax).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io, names
from harness.core.runs import model_dir

# The INT8 rows' names and files (harness.core.names), as this stage calls them.
SUFFIX, variant, base_of = names.INT8_SUFFIX, names.int8_name, names.int8_base
onnx_path, predictions, artefact = names.onnx_path, names.predictions, names.artefact

CALIB_ROWS = 512
MAX_OOF_DROP = 0.0005  # 0.05 points of OOF accuracy
# Everything the quantiser can keep in INT8 except the softmax (see the module docstring).
OP_TYPES = ["Conv", "MatMul", "Gemm", "Relu", "Clip", "MaxPool", "AveragePool", "Reshape", "Transpose",
            "Flatten", "Squeeze", "Unsqueeze", "Add", "Mul", "Concat", "Pad", "Slice", "Split"]
SETTINGS = {"format": "QDQ", "activations": "uint8 (asymmetric)", "weights": "int8 (symmetric, per channel)",
            "calibration": f"MinMax on {CALIB_ROWS} images of each fold's own training rows (seed + fold)",
            "fp32_ops": "Softmax", "input": "uint8 pixels fed to the first quantised op as they are (scale 1)"}


# ----------------------------------------------------------------------------- one fold

def quantize_graph(fp32, calib: np.ndarray, input_name: str = "pixels"):
    """An FP32 `onnx.ModelProto` -> its static INT8 QDQ `ModelProto`, calibrated on `calib`
    (uint8 [N,H,W,C]). Raises whatever the quantiser raises for an unsupported graph."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{input_name: calib[i:i + 128]} for i in range(0, len(calib), 128)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="harness-int8-") as td:
        src, pre, out = Path(td) / "fp32.onnx", Path(td) / "pre.onnx", Path(td) / "int8.onnx"
        fp32 = _cast_after_shape_ops(fp32, input_name)
        onnx.save(fp32, src)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        overrides = {t: [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}] for t in _input_casts(onnx.load(pre), input_name)}
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=OP_TYPES,
                        extra_options={"TensorQuantOverrides": overrides})
        q = onnx.load(out)
    _feed_pixels(q, input_name)
    return q


SHAPE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")


def _cast_after_shape_ops(proto, input_name: str):
    """Cast(pixels) -> Reshape/Transpose... becomes Reshape/Transpose...(pixels) -> Cast (exact: they
    only move elements), so the quantiser sees the Cast's output right where it quantises it."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    while True:
        cast = next((n for n in g.node if n.op_type == "Cast" and n.input[0] == input_name), None)
        users = [n for n in g.node if cast is not None and cast.output[0] in n.input]
        if cast is None or len(users) != 1 or users[0].op_type not in SHAPE_OPS \
                or users[0].input[0] != cast.output[0] or any(o.name == cast.output[0] for o in g.output):
            return m
        op = users[0]
        moved = f"{op.output[0]}__uint8"
        op.input[0], cast.input[0] = input_name, moved
        cast.output[0], op.output[0] = op.output[0], moved
        nodes = [n for n in g.node if n is not op]
        nodes.insert(nodes.index(cast), op)
        del g.node[:]
        g.node.extend(nodes)


def _input_casts(proto, input_name: str) -> dict[str, str]:
    """{float output: uint8 input} of each Cast whose input is `pixels`, directly or through shape
    ops only: whole numbers 0..255 once the rescale is in the weights."""
    producer = {o: n for n in proto.graph.node for o in n.output}

    def from_pixels(name: str) -> bool:
        while name != input_name:
            n = producer.get(name)
            if n is None or n.op_type not in SHAPE_OPS:
                return False
            name = n.input[0]
        return True

    return {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "Cast" and from_pixels(n.input[0])}


def _feed_pixels(proto, input_name: str) -> int:
    """QuantizeLinear(Cast(u), scale 1, zero point 0 as uint8) is the uint8 tensor u: use it directly."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    casts = _input_casts(proto, input_name)
    count = 0
    for n in list(g.node):
        if n.op_type != "QuantizeLinear" or n.input[0] not in casts or len(n.input) < 3:
            continue
        scale, zp = inits.get(n.input[1]), inits.get(n.input[2])
        if scale is None or zp is None:
            continue
        s, z = numpy_helper.to_array(scale), numpy_helper.to_array(zp)
        if s.size != 1 or float(s) != 1.0 or z.dtype != np.uint8 or int(z) != 0:
            continue
        for c in g.node:
            for i, name in enumerate(c.input):
                if name == n.output[0]:
                    c.input[i] = casts[n.input[0]]
        count += 1
    if count:
        from harness.export.onnx_graph import prune

        prune(proto)
    return count


# ----------------------------------------------------------------------------- the shipped graph

def merge(graphs: list[Any], weights: list[float], input_name: str = "pixels", output_name: str = "probs"):
    """K graphs `pixels -> probs` -> one graph computing sum_k w_k * probs_k (one shared input)."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    opsets: dict[str, int] = {}
    outs = []
    for k, g in enumerate(graphs):
        for o in g.opset_import:
            opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
        ren = lambda name, k=k: name if name in ("", input_name) else f"f{k}/{name}"  # noqa: E731
        for i in g.graph.initializer:
            t = onnx.TensorProto()
            t.CopyFrom(i)
            t.name = ren(i.name)
            inits.append(t)
        for n in g.graph.node:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.name = ren(n.name or n.output[0])
            m.input[:] = [ren(x) for x in n.input]
            m.output[:] = [ren(x) for x in n.output]
            nodes.append(m)
        outs.append(ren(g.graph.output[0].name))
    weighted = []
    for k, (o, w) in enumerate(zip(outs, weights)):
        inits.append(numpy_helper.from_array(np.array(w, np.float32), f"w{k}"))
        nodes.append(helper.make_node("Mul", [o, f"w{k}"], [f"{o}_w"], name=f"weight_{k}"))
        weighted.append(f"{o}_w")
    nodes.append(helper.make_node("Sum", weighted, [output_name], name="ensemble_sum")
                 if len(weighted) > 1 else helper.make_node("Identity", weighted, [output_name]))
    first = graphs[0].graph
    graph = helper.make_graph(nodes, "harness_int8", list(first.input), list(first.output), inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = graphs[0].ir_version
    return model


# ----------------------------------------------------------------------------- a model

def quantize_folds(run_dir: Path, model: str, x: np.ndarray, folds: np.ndarray, seed: int) -> tuple[list[Path], np.ndarray]:
    """Quantise each fold model of `model` (a plain model, not the ensemble): writes
    `<model>/int8/fold_<k>.onnx` and `<model>/int8/oof.npy` (INT8 out-of-fold probabilities)."""
    import onnx

    from harness.export.convert import convert, load_fold_models, model_tta, predict_onnx, simplify

    out = model_dir(run_dir, model) / "int8"
    models = load_fold_models(run_dir, model)
    tta = model_tta(run_dir, model)
    paths, oof = [], np.zeros((len(x), int(models[0].output_shape[-1])), np.float32)
    for k, m in enumerate(models):
        path = out / f"fold_{k}.onnx"
        if not path.is_file():
            fp32, _ = simplify(convert([m], tta=tta))
            train = np.flatnonzero(folds != k)
            rng = np.random.default_rng(seed + k)
            calib = x[np.sort(rng.choice(train, size=min(CALIB_ROWS, len(train)), replace=False))]
            q = quantize_graph(fp32, calib)
            with io.atomic_path(path, suffix=".onnx") as tmp:
                onnx.save(q, tmp)
        val = np.flatnonzero(folds == k)
        oof[val] = predict_onnx(path, x[val])
        paths.append(path)
    io.write_npy(predictions(run_dir, variant(model), "oof"), oof)
    return paths, oof


def quantize_model(run_dir: Path, model: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray,
                   x_test: np.ndarray, seed: int = 0, *, max_drop: float = MAX_OOF_DROP,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`model.int8.onnx` + `int8.json` for one exported model (the ensemble's from its members'
    INT8 folds). Never raises for a model the quantiser cannot handle: int8.json says why.
    int8.json records the sha256 of the FP32 file it came from (see `ensure`)."""
    import onnx

    from harness.export.convert import add_metadata, predict_onnx
    from harness.train.ensemble import members

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    d = model_dir(run_dir, model)
    doc: dict[str, Any] = {"model": variant(model), "base": model, "settings": SETTINGS, "max_drop": max_drop,
                           "fp32_sha256": io.sha256_file(d / "model.onnx")}
    try:
        mix = members(run_dir, model)
        if mix is None:
            paths, oof = quantize_folds(run_dir, model, x, folds, seed)
            weights = [1.0 / len(paths)] * len(paths)
        else:  # the run's ensemble: its members' INT8 folds, weighted as in the FP32 graph
            paths, weights, oof = [], [], 0.0
            for member, w in mix.items():
                member_oof = predictions(run_dir, variant(member), "oof")
                member_paths = sorted(member_oof.parent.glob("fold_*.onnx"), key=lambda p: int(p.stem.split("_")[1]))
                if not member_paths or not member_oof.is_file():
                    raise RuntimeError(f"member {member} has no INT8 folds")
                paths += member_paths
                weights += [w / len(member_paths)] * len(member_paths)
                oof += w * np.load(member_oof)
            oof = np.asarray(oof, dtype=np.float32)
            io.write_npy(predictions(run_dir, variant(model), "oof"), oof)
        merged = merge([onnx.load(p) for p in paths], weights)
        add_metadata(merged, {**_fp32_metadata(d / "model.onnx"), "model": variant(model), "precision": "int8 (QDQ: uint8 activations, "
                              "int8 weights)", "calibration": SETTINGS["calibration"]})
        onnx.checker.check_model(merged)
        target = d / "model.int8.onnx"
        with io.atomic_path(target, suffix=".onnx") as tmp:
            onnx.save(merged, tmp)
    except Exception as e:  # an operator the quantiser does not support, or anything else: marked, never fatal
        (d / "model.int8.onnx").unlink(missing_ok=True)
        doc.update(ok=False, status=f"int8 failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}",
                   seconds=round(time.perf_counter() - t0, 2))
        io.write_json(d / "int8.json", doc)
        say(f"{model}: INT8 quantisation failed ({doc['status']}); the others go on")
        return doc

    fp32_oof = np.load(d / "oof.npy")
    acc32, acc8 = float((fp32_oof.argmax(1) == y).mean()), float((oof.argmax(1) == y).mean())
    test8 = predict_onnx(target, x_test)
    io.write_npy(predictions(run_dir, variant(model), "test"), test8)
    test32 = np.load(d / "test.npy")  # the FP32 graph's, to 1e-4 (its parity gate)
    from harness.train.cv import oof_fold_stats

    fold_acc, fold_mean, fold_std = oof_fold_stats(oof, y, folds)
    drop = acc32 - acc8
    ok = drop <= max_drop + 1e-12
    doc.update(
        ok=ok, status="ok" if ok else f"int8 loses {100 * drop:.3f} points OOF (limit {100 * max_drop:.2f})",
        fp32_oof_accuracy=acc32, int8_oof_accuracy=acc8, drop_points=round(100 * drop, 4),
        fp32_oof_errors=int((fp32_oof.argmax(1) != y).sum()), int8_oof_errors=int((oof.argmax(1) != y).sum()),
        fold_accuracy=fold_acc, fold_mean=fold_mean, fold_std=fold_std,
        test_agreement=float((test8.argmax(1) == test32.argmax(1)).mean()),
        test_disagreements=int((test8.argmax(1) != test32.argmax(1)).sum()), n_test=int(len(x_test)),
        graphs=len(paths), size_bytes=target.stat().st_size, fp32_size_bytes=(d / "model.onnx").stat().st_size,
        seconds=round(time.perf_counter() - t0, 2))
    io.write_json(d / "int8.json", doc)
    say(f"{model}: INT8 OOF {100 * acc8:.3f} % vs FP32 {100 * acc32:.3f} % "
        f"({doc['int8_oof_errors']} vs {doc['fp32_oof_errors']} errors), test argmax agreement "
        f"{100 * doc['test_agreement']:.2f} %" + ("" if ok else " - marked, never chosen"))
    return doc


def ensure(run_dir: Path, model: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray, x_test: np.ndarray,
           seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """int8.json for `model`, quantising again only when its FP32 graph changed since (resume)."""
    d = model_dir(run_dir, model)
    if (d / "int8.json").is_file():
        doc = io.read_json(d / "int8.json")
        # kept: made from this FP32 file, and either marked or with its graph still there
        if doc.get("fp32_sha256") == io.sha256_file(d / "model.onnx") and doc.get("ok") is not None \
                and (not doc["ok"] or (d / "model.int8.onnx").is_file()):
            return doc
        remove(run_dir, model)
    if progress:
        progress(f"{model}: quantising to INT8 (calibration on each fold's own training rows)")
    return quantize_model(run_dir, model, x, y, folds, x_test, seed, progress=progress)


def remove(run_dir: Path, model: str) -> None:
    """Drop a model's INT8 artefacts (its FP32 export changed, or --no-int8)."""
    import shutil

    d = model_dir(run_dir, model)
    for name in ("model.int8.onnx", "int8.json", "bench.int8.json", "score.int8.json"):
        (d / name).unlink(missing_ok=True)
    shutil.rmtree(d / "int8", ignore_errors=True)


def _fp32_metadata(path: Path) -> dict[str, str]:
    from harness.export.convert import onnx_metadata

    try:
        return onnx_metadata(path)
    except Exception:  # the FP32 file's metadata is a nicety here
        return {}
