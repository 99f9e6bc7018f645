"""FLOP counting from ONNX graphs, checked against hand-computed values (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.export.flops import count_flops, flops_per_image


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _w(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_small_conv_net_matches_hand_count():
    # [N,1,28,28] -conv 3x3x8 valid-> [N,8,26,26] -conv 3x3 8->16 pad 1 stride 2-> [N,16,13,13]
    # -grouped conv 1x1 16->16 groups 4-> [N,16,13,13]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["c2", "w3"], ["c3"], kernel_shape=[1, 1], group=4)]
    m = _model(nodes, [_vi("x", ["N", 1, 28, 28])], [_vi("c3", ["N", 16, 13, 13])],
               [_w("w1", 8, 1, 3, 3), _w("b1", 8), _w("w2", 16, 8, 3, 3), _w("w3", 16, 4, 1, 1)])
    conv1 = 2 * 3 * 3 * 1 * 8 * 26 * 26          # 97,344
    conv2 = 2 * 3 * 3 * 8 * 16 * 13 * 13         # 389,376
    conv3 = 2 * 1 * 1 * (16 // 4) * 16 * 13 * 13  # 21,632
    fc = count_flops(m)
    assert fc.total == conv1 + conv2 + conv3 == 508_352
    assert fc.by_op == {"Conv": 508_352}
    assert [f for _, _, f, _ in fc.by_node] == [conv1, conv2, conv3]
    assert [b for _, _, _, b in fc.by_node] == [4 * (72 + 8), 4 * 1152, 4 * 64]  # weights + bias, float32
    assert fc.weight_bytes == 4 * (80 + 1152 + 64)
    assert count_flops(m, batch=8).total == 8 * fc.total
    # bytes of the roofline: every constant, and per image the input and each node's output once
    assert fc.param_bytes == 4 * (72 + 8 + 1152 + 64)
    act = 4 * (28 * 28 + 2 * 8 * 26 * 26 + 2 * 16 * 13 * 13)  # x; c1 and r1; c2 and c3
    assert fc.activation_bytes == act == 68_032
    assert count_flops(m, batch=8).activation_bytes == act  # per image, whatever batch it is counted at
    assert fc.bytes_per_call(8) == fc.param_bytes + 8 * act


def test_activation_bytes_of_a_reshape_computed_at_run_time():
    # Reshape to a shape computed at run time (read off one run where inference leaves it unknown)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"), _w("w", 12, 3)]
    m = _model(nodes, [_vi("x", ["N", 3, 4])], [_vi("y", ["N", 3])], inits)
    fc = count_flops(m)
    assert fc.total == 2 * 12 * 3
    # x and flat (12 floats each), y (3 floats), the int64 shape tensors s (3), n (1), target (2)
    assert fc.activation_bytes == 4 * (12 + 12 + 3) + 8 * (3 + 1 + 2)


def test_dense_net_gemm_and_matmul_match_hand_count():
    # [N,784] -Gemm 784x32 (+bias)-> [N,32] -Gemm transB (W is [10,32])-> [N,10] -MatMul 10x5-> [N,5]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "w2"], ["h2"], transB=1),
             helper.make_node("MatMul", ["h2", "w3"], ["y"])]
    m = _model(nodes, [_vi("x", ["N", 784])], [_vi("y", ["N", 5])],
               [_w("w1", 784, 32), _w("b1", 32), _w("w2", 10, 32), _w("w3", 10, 5)])
    fc = count_flops(m)
    assert fc.total == 2 * 784 * 32 + 2 * 32 * 10 + 2 * 10 * 5 == 50_916
    assert fc.by_op == {"Gemm": 2 * 784 * 32 + 2 * 32 * 10, "MatMul": 100}
    assert flops_per_image(m.SerializeToString()) == 50_916


def test_batched_matmul_broadcasts():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    m = _model(nodes, [_vi("x", ["N", 4, 5, 6])], [_vi("y", ["N", 4, 5, 7])], [_w("w", 6, 7)])
    assert count_flops(m).total == 2 * 4 * 5 * 6 * 7


def test_shapes_computed_at_run_time_are_probed(tmp_path):
    """tf2onnx's Flatten: the Reshape target comes from Shape(); static inference cannot see it."""
    nodes = [helper.make_node("Cast", ["pixels"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Shape", ["xf"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["xf", "target"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"), _w("w", 784, 10)]
    m = _model(nodes, [_vi("pixels", ["batch", 28, 28, 1], TensorProto.UINT8)], [_vi("probs", ["batch", 10])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    assert count_flops(path).total == 2 * 784 * 10


def test_conv_transpose_and_uncounted_ops():
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["y"], ["z"])]
    m = _model(nodes, [_vi("x", ["N", 4, 7, 7])], [_vi("z", ["N", 2, 14, 14])], [_w("w", 4, 2, 2, 2)])
    assert count_flops(m).total == 2 * (4 * 2 * 2 * 2) * 7 * 7
    assert "Relu" not in count_flops(m).by_op


def test_model_is_not_modified():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    m = _model(nodes, [_vi("x", ["N", 3])], [_vi("y", ["N", 2])], [_w("w", 3, 2)])
    before = m.SerializeToString()
    count_flops(m, batch=4)
    assert m.SerializeToString() == before


@pytest.mark.parametrize("bad", ["missing.onnx"])
def test_missing_file_raises(tmp_path, bad):
    with pytest.raises(Exception):
        count_flops(tmp_path / bad)
