"""Exact clean-ups of a tf2onnx graph (harness.export.convert applies them; the parity gate re-checks).

    simplified, applied = simplify(proto)     # a copy; {pass name: rewrites}

tf2onnx computes `Flatten`'s target shape at run time (7 tiny ops per fold), keeps the NCHW->NHWC
transpose before it, and leaves the 1/255 rescale and the dense layers' batch-norm scale as separate
multiplies. Each pass folds one of those into constants or weights; `prune` drops what no output
needs (harness.export.quantize uses it after its own edits).
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

INPUT_NAME = "pixels"


def simplify(proto) -> tuple[Any, dict[str, int]]:
    """Exact clean-ups of a tf2onnx graph; returns (a simplified copy, {pass: rewrites})."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    applied = {}
    for name, fn in (("static_flatten", _static_reshapes), ("transpose_into_dense", _fold_transpose_into_matmul),
                     ("input_scale_into_weights", _fold_input_scale), ("scale_into_dense", _fold_mul_after_matmul),
                     ("zero_add", _drop_zero_adds)):
        applied[name] = fn(m)
        prune(m)
    return m, {k: v for k, v in applied.items() if v}


def _consumers(graph) -> dict[str, list[Any]]:
    out = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def _inits(graph) -> dict[str, Any]:
    return {i.name: i for i in graph.initializer}


def _rename_input(graph, old: str, new: str) -> None:
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new


def prune(m) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    g = m.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(g.node):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)


def _probe(m, names: list[str], batches=(1, 3)) -> dict[int, dict[str, np.ndarray]]:
    """Run the graph on zeros at each batch size with `names` exposed as extra outputs."""
    from harness.export.flops import exposing_session

    sess, outs = exposing_session(m, names)
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim][1:]
    return {b: dict(zip(outs, sess.run(outs, {INPUT_NAME: np.zeros((b, *shape), np.uint8)})))
            for b in batches}


def _static_reshapes(m) -> int:
    """A Reshape whose target is computed from Shape() at run time, but is always [batch, k...],
    gets the constant target [-1, k...]; the shape arithmetic then dies (tf2onnx's Flatten)."""
    from onnx import numpy_helper

    g = m.graph
    inits = _inits(g)
    reshapes = [n for n in g.node if n.op_type == "Reshape" and n.input[1] not in inits]
    if not reshapes:
        return 0
    vals = _probe(m, [t for n in reshapes for t in (n.input[1], n.output[0])])
    count = 0
    for n in reshapes:
        if any(n.output[0] not in vals[b] or n.input[1] not in vals[b] for b in vals):
            continue
        outs = {b: list(vals[b][n.output[0]].shape) for b in vals}
        targets = {b: vals[b][n.input[1]].tolist() for b in vals}
        if not all(len(o) >= 2 and o[0] == b and len(targets[b]) == len(o) for b, o in outs.items()):
            continue
        if len({tuple(o[1:]) for o in outs.values()}) != 1:
            continue
        name = f"{n.name or n.output[0]}__static_shape"
        g.initializer.append(numpy_helper.from_array(np.array([-1] + outs[1][1:], np.int64), name))
        n.input[1] = name
        count += 1
    return count


def _fold_transpose_into_matmul(m) -> int:
    """Transpose(perm[0]=0) -> Reshape[-1,K] -> MatMul(W): permute W's rows instead."""
    from onnx import helper, numpy_helper

    g = m.graph
    inits, cons = _inits(g), _consumers(g)
    count, shapes = 0, None
    for t in list(g.node):
        if t.op_type != "Transpose":
            continue
        perm = [int(p) for a in t.attribute if a.name == "perm" for p in helper.get_attribute_value(a)]
        if not perm or perm[0] != 0 or len(cons[t.output[0]]) != 1:
            continue
        r = cons[t.output[0]][0]
        if r.op_type != "Reshape" or r.input[0] != t.output[0] or r.input[1] not in inits:
            continue
        target = numpy_helper.to_array(inits[r.input[1]]).tolist()
        if len(target) != 2 or target[0] not in (-1, 0):
            continue
        mms = cons[r.output[0]]
        if not mms or any(mm.op_type != "MatMul" or mm.input[0] != r.output[0] or mm.input[1] not in inits
                          or len(cons[mm.input[1]]) != 1 for mm in mms):
            continue
        if any(o.name == r.output[0] for o in g.output):
            continue
        if shapes is None:
            shapes = _probe(m, [n.input[0] for n in g.node if n.op_type == "Transpose"], batches=(1,))[1]
        if t.input[0] not in shapes:
            continue
        xdims = list(shapes[t.input[0]].shape)
        tdims = [xdims[p] for p in perm]
        inv = np.argsort(perm)
        for mm in mms:
            w = numpy_helper.to_array(inits[mm.input[1]])
            if w.ndim != 2 or w.shape[0] != int(np.prod(tdims[1:])):
                break
        else:
            for mm in mms:
                w = numpy_helper.to_array(inits[mm.input[1]])
                axes = [int(inv[j]) - 1 for j in range(1, len(perm))] + [len(perm) - 1]
                w2 = w.reshape(tdims[1:] + [w.shape[1]]).transpose(axes).reshape(w.shape)
                inits[mm.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w2), mm.input[1]))
            r.input[0] = t.input[0]
            count += 1
    return count


def _fold_input_scale(m) -> int:
    """Cast(pixels) -> Mul(scalar s) [-> Add(0)] -> Reshape/Transpose... -> Conv/MatMul(W):
    use W*s and drop the multiply (exact: padding zeros stay zero)."""
    from onnx import numpy_helper

    g = m.graph
    inits, cons = _inits(g), _consumers(g)
    producer = {o: n for n in g.node for o in n.output}
    count = 0
    for mul in list(g.node):
        if mul.op_type != "Mul" or mul.input[1] not in inits:
            continue
        src = producer.get(mul.input[0])
        if src is None or src.op_type != "Cast" or src.input[0] != INPUT_NAME:
            continue
        s = numpy_helper.to_array(inits[mul.input[1]])
        if s.size != 1:
            continue
        out = mul.output[0]
        nxt = cons[out]
        if len(nxt) == 1 and nxt[0].op_type == "Add" and nxt[0].input[0] == out and nxt[0].input[1] in inits \
                and not numpy_helper.to_array(inits[nxt[0].input[1]]).any() \
                and numpy_helper.to_array(inits[nxt[0].input[1]]).size == 1:
            out = nxt[0].output[0]
        frontier, targets, ok = [out], [], True
        while frontier and ok:
            name = frontier.pop()
            if any(o.name == name for o in g.output):
                ok = False
            for c in cons[name]:
                if c.op_type in ("Reshape", "Transpose", "Flatten") and c.input[0] == name:
                    frontier.append(c.output[0])
                elif c.op_type in ("Conv", "MatMul") and c.input[0] == name and c.input[1] in inits \
                        and len(cons[c.input[1]]) == 1:
                    targets.append(c)
                else:
                    ok = False
        if not ok or not targets:
            continue
        for c in targets:
            w = numpy_helper.to_array(inits[c.input[1]])
            inits[c.input[1]].CopyFrom(numpy_helper.from_array((w * s.reshape(())).astype(w.dtype), c.input[1]))
        _rename_input(g, out, mul.input[0])
        count += 1
    return count


def _fold_mul_after_matmul(m) -> int:
    """MatMul(x, W) -> Mul(s), s a constant per output column (a dense layer's batch norm): W*s."""
    from onnx import numpy_helper

    g = m.graph
    inits, cons = _inits(g), _consumers(g)
    outputs = {o.name for o in g.output}
    count = 0
    for mm in list(g.node):
        if mm.op_type != "MatMul" or mm.input[1] not in inits or len(cons[mm.input[1]]) != 1:
            continue
        nxt = cons[mm.output[0]]
        if len(nxt) != 1 or nxt[0].op_type != "Mul" or mm.output[0] in outputs:
            continue
        mul = nxt[0]
        other = mul.input[1] if mul.input[0] == mm.output[0] else mul.input[0]
        if other not in inits or len(cons[other]) != 1 or mul.output[0] in outputs:
            continue
        w = numpy_helper.to_array(inits[mm.input[1]])
        s = numpy_helper.to_array(inits[other])
        if w.ndim != 2 or s.ndim > 1 or s.size not in (1, w.shape[1]):
            continue
        inits[mm.input[1]].CopyFrom(numpy_helper.from_array((w * s.reshape(1, -1)).astype(w.dtype), mm.input[1]))
        _rename_input(g, mul.output[0], mm.output[0])
        count += 1
    return count


def _drop_zero_adds(m) -> int:
    """Add(x, 0) with a one-element zero constant (Rescaling's offset): x."""
    from onnx import numpy_helper

    g = m.graph
    inits = _inits(g)
    outputs = {o.name for o in g.output}
    count = 0
    for n in list(g.node):
        if n.op_type != "Add" or n.input[1] not in inits or n.output[0] in outputs:
            continue
        c = numpy_helper.to_array(inits[n.input[1]])
        if c.size == 1 and c.ndim <= 1 and not c.any() and c.dtype == np.float32:
            _rename_input(g, n.output[0], n.input[0])
            count += 1
    return count
