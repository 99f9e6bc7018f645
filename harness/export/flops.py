"""FLOPs per image, counted from an ONNX graph after shape inference.

    from harness.export.flops import count_flops
    fc = count_flops("runs/<run>/cnn_small/model.onnx")   # FlopCount(total=..., by_op={...})

Only the multiply-accumulate ops are counted, each multiply-add as 2 FLOPs (the convention of
BENCHMARKING.md and of the roofline floor in harness.bench.latency):

    Conv:            2 * prod(kernel) * C_in/groups * C_out * prod(output spatial) * N
    ConvTranspose:   2 * prod(kernel) * C_in * C_out/groups * prod(input spatial) * N
    Gemm / MatMul:   2 * M * N * K (times the broadcast batch dims of MatMul)

Element-wise ops (bias, ReLU, pooling, softmax) are left out: they are memory-bound and a few
per cent of the work in these models. Quantised variants (QLinearConv, ConvInteger, QLinearMatMul,
MatMulInteger) and ONNX Runtime's fused ops are counted like their float forms.

Shapes come from `onnx.shape_inference` with the batch dimension fixed to 1; where inference
leaves a shape unknown (reshapes whose target is computed at run time) the graph is run once at
batch 1 by ONNX Runtime to read the shapes off, so the count never silently drops a layer.

Bytes, for the roofline floor of harness.bench.latency: `param_bytes`, every constant the graph holds (each
call reads them all), and `activation_bytes`, per image, the graph's input and every tensor a node
writes, each counted once (`bytes_per_call(batch)` adds them up). A tensor that ONNX Runtime fuses
away still counts, so it is an upper estimate of the traffic; it matters only where activations
rather than weights or FLOPs bound a call.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

_CONV = {"Conv", "QLinearConv", "ConvInteger", "FusedConv", "NhwcFusedConv"}
_CONV_T = {"ConvTranspose"}
_GEMM = {"Gemm", "FusedGemm"}
_MATMUL = {"MatMul", "QLinearMatMul", "MatMulInteger", "FusedMatMul"}
# The weight input of each op (QLinear* ops interleave scales and zero points).
_W_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3}
_X_INPUT = {"QLinearConv": 0, "QLinearMatMul": 0}
COUNTED_OPS = sorted(_CONV | _CONV_T | _GEMM | _MATMUL)


@dataclass
class FlopCount:
    """FLOPs for one image (batch 1): the total and the share of each op type and node."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    # (node name, op, flops, bytes of its constant weights): what one call must read besides data
    by_node: list[tuple[str, str, int, int]] = field(default_factory=list)
    param_bytes: int = 0        # every initializer of the graph
    activation_bytes: int = 0   # per image: the input and each tensor a node writes, once

    @property
    def weight_bytes(self) -> int:
        return sum(n[3] for n in self.by_node)

    def bytes_per_call(self, batch: int) -> int:
        """What one call at `batch` reads or writes at least once: constants plus activations."""
        return self.param_bytes + batch * self.activation_bytes

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_op": dict(self.by_op), "weight_bytes": self.weight_bytes,
                "param_bytes": self.param_bytes, "activation_bytes": self.activation_bytes}


def count_flops(model: Any, batch: int = 1) -> FlopCount:
    """FLOPs of one forward pass at `batch` (default 1, i.e. per image) of an ONNX model.

    `model` is a path, serialized bytes or an `onnx.ModelProto`; it is not modified.
    """
    proto = _load(model)
    shapes, types = _shapes(proto, batch)
    sizes = {i.name: math.prod(i.dims) * _ITEM_BYTES.get(i.data_type, 4) for i in proto.graph.initializer}
    fc = FlopCount(param_bytes=sum(sizes.values()),
                   activation_bytes=_activation_bytes(proto, shapes, types) // batch)
    for node in proto.graph.node:
        flops = _node_flops(node, shapes)
        if flops is None:
            continue
        fc.total += flops
        fc.by_op[node.op_type] = fc.by_op.get(node.op_type, 0) + flops
        fc.by_node.append((node.name or node.output[0], node.op_type, flops,
                           sum(sizes.get(i, 0) for i in node.input[1:])))
    return fc


def flops_per_image(model: Any) -> int:
    return count_flops(model, batch=1).total


# ----------------------------------------------------------------------------- internals

def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    return onnx.load(os.fspath(model))


def _fix_batch(proto, batch: int) -> None:
    """Set the first dimension of every graph input that is symbolic (the batch axis) to `batch`."""
    init_names = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in init_names or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch


def _shape_of(value_info) -> list[int] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return None if any(d is None for d in dims) else dims


def _shapes(proto, batch: int) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Static shape of every tensor the counted ops read or write, at the given batch, and the
    element type of every tensor shape inference could type (one inference for both)."""
    import onnx

    _fix_batch(proto, batch)
    shapes: dict[str, list[int]] = {i.name: list(i.dims) for i in proto.graph.initializer}
    types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            s = _shape_of(vi)
            if s is not None:
                shapes.setdefault(vi.name, s)
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
    except Exception:  # inference can choke on contrib ops; the probe below still works
        pass
    missing = [n for node in proto.graph.node if _counted(node)
               for n in _needed(node) if n and n not in shapes]
    if missing:
        shapes.update(_probe_shapes(proto, sorted(set(missing))))
    return shapes, types


def _activation_bytes(proto, shapes: dict[str, list[int]], types: dict[str, int]) -> int:
    """Bytes of the graph's inputs and node outputs, each once, at the batch `_shapes` fixed (1);
    tensors inference left without a shape or type are read off one run."""
    inits = {i.name for i in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in inits]
    names += [o for node in proto.graph.node for o in node.output if o]
    names = list(dict.fromkeys(names))
    missing = [n for n in names if n not in shapes or n not in types]
    probed = _probe_values(proto, missing) if missing else {}
    total = 0
    for n in names:
        if n in probed:
            total += probed[n].nbytes
        elif n in shapes:
            total += math.prod(shapes[n]) * _ITEM_BYTES.get(types[n], 4)
    return int(total)


def _counted(node) -> bool:
    return node.op_type in _CONV or node.op_type in _CONV_T or node.op_type in _GEMM \
        or node.op_type in _MATMUL


def _needed(node) -> list[str]:
    if node.op_type in _CONV:
        return [node.input[_W_INPUT.get(node.op_type, 1)], node.output[0]]
    if node.op_type in _CONV_T:
        return [node.input[0], node.input[1]]
    b = _W_INPUT.get(node.op_type, 1)
    return [node.input[_X_INPUT.get(node.op_type, 0)], node.input[b]]


def exposing_session(proto, names: Any):
    """An unoptimised 1-thread ONNX Runtime session whose outputs also include the tensors `names`
    (graph inputs excluded), so intermediate shapes and values can be read. Returns (session, outputs)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    present = {o.name for o in m.graph.output} | {i.name for i in m.graph.input}
    for n in dict.fromkeys(names):
        if n not in present:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, [o.name for o in sess.get_outputs()]


def _probe_shapes(proto, names: list[str]) -> dict[str, list[int]]:
    """Run the graph once (zeros at the fixed batch) with `names` exposed as outputs."""
    return {n: list(v.shape) for n, v in _probe_values(proto, names).items()}


def _probe_values(proto, names: list[str]) -> dict[str, Any]:
    """The arrays `names` hold in one run of the graph on zeros at its fixed batch."""
    import numpy as np

    sess, outs = exposing_session(proto, names)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, dtype=_NP_TYPES.get(i.type, "float32"))
    values = dict(zip(outs, sess.run(outs, feeds)))
    values.update(feeds)
    return {n: np.asarray(values[n]) for n in names if n in values}


_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}  # onnx.TensorProto element types
_NP_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(double)": "float64",
             "tensor(float16)": "float16"}


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_flops(node, shapes: dict[str, list[int]]) -> int | None:
    op = node.op_type
    if op in _CONV:
        w = shapes.get(node.input[_W_INPUT.get(op, 1)])
        y = shapes.get(node.output[0])
        if w is None or y is None:
            raise ValueError(f"cannot count FLOPs of {op} node {node.name!r}: unknown shape")
        # W is [C_out, C_in/groups, k...]; Y is [N, C_out, spatial...]
        return 2 * math.prod(w) * y[0] * math.prod(y[2:])
    if op in _CONV_T:
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
        if w is None or x is None:
            raise ValueError(f"cannot count FLOPs of {op} node {node.name!r}: unknown shape")
        # W is [C_in, C_out/groups, k...]; every input pixel scatters a full kernel
        return 2 * math.prod(w) * x[0] * math.prod(x[2:])
    if op in _GEMM:
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if a is None or b is None:
            raise ValueError(f"cannot count FLOPs of {op} node {node.name!r}: unknown shape")
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
        n = b[0] if _attr(node, "transB", 0) else b[1]
        return 2 * m * n * k
    if op in _MATMUL:
        a = shapes.get(node.input[_X_INPUT.get(op, 0)])
        b = shapes.get(node.input[_W_INPUT.get(op, 1)])
        if a is None or b is None:
            raise ValueError(f"cannot count FLOPs of {op} node {node.name!r}: unknown shape")
        a2 = [1] + a if len(a) == 1 else a  # numpy matmul semantics for 1-D operands
        b2 = b + [1] if len(b) == 1 else b
        m, k, n = a2[-2], a2[-1], b2[-1]
        batch_a, batch_b = a2[:-2], b2[:-2]
        width = max(len(batch_a), len(batch_b))
        batch_a = [1] * (width - len(batch_a)) + batch_a
        batch_b = [1] * (width - len(batch_b)) + batch_b
        batch = math.prod(max(p, q) for p, q in zip(batch_a, batch_b))
        return 2 * batch * m * n * k
    return None
