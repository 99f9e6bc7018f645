"""Does fusing a fold ensemble into one graph make it faster? K fold models of one linear-chain
architecture (random weights, non-trivial batch-norm statistics) become one graph: the first conv
or dense layer with every fold's filters side by side, later convs grouped (groups=K), dense
layers batched ([K,N,D] x [K,D,O]). Parity with the graph `harness.export.convert` ships, then both timed
on one thread, alternating, at batch 1 and 256.

    python scripts/measure_fused_ensemble.py cnn_small cnn_deep ann

Measured on an AVX2 EPYC (family 23): parity 3e-8, 64 -> 19 nodes (cnn_small), but 0.82-1.02x the shipped
graph's speed: ONNX Runtime runs a grouped conv as a loop over groups, and per-node overhead is
not what bounds these graphs. Not adopted.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.core.tfquiet import import_tensorflow

import_tensorflow(1)
import keras
import onnx
import tensorflow as tf
import tf2onnx

import models  # noqa: registers
from harness.bench import make_session
from harness.export.convert import convert, simplify
from harness.registry import get_model


def fused_function(ms):
    K = len(ms)
    layers_ = [[l for l in m.layers if not isinstance(l, keras.layers.InputLayer)] for m in ms]
    steps = []
    for group in zip(*layers_):
        l0 = group[0]
        if isinstance(l0, keras.layers.Rescaling):
            steps.append(("scale", float(l0.scale), float(l0.offset)))
        elif isinstance(l0, keras.layers.Conv2D):
            W = np.concatenate([l.get_weights()[0] for l in group], axis=-1)
            b = np.concatenate([l.get_weights()[1] for l in group]) if l0.use_bias else None
            steps.append(("conv", W, b, l0.strides, l0.padding.upper()))
        elif isinstance(l0, keras.layers.BatchNormalization):
            g, be, mu, var = (np.concatenate(v) for v in zip(*[l.get_weights() for l in group]))
            s = g / np.sqrt(var + l0.epsilon)
            steps.append(("affine", s.astype(np.float32), (be - mu * s).astype(np.float32)))
        elif isinstance(l0, keras.layers.ReLU):
            steps.append(("relu",))
        elif isinstance(l0, keras.layers.MaxPooling2D):
            steps.append(("pool", l0.pool_size, l0.strides))
        elif isinstance(l0, keras.layers.Dropout):
            pass
        elif isinstance(l0, keras.layers.Flatten):
            steps.append(("flatten",))
        elif isinstance(l0, keras.layers.Dense):
            Ws = np.stack([l.get_weights()[0] for l in group])
            bs = np.stack([l.get_weights()[1] for l in group]) if l0.use_bias else None
            steps.append(("dense", Ws, bs, l0.activation is keras.activations.softmax))
        else:
            raise TypeError(type(l0))

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8, name="pixels")])
    def fused(pixels):
        x = tf.cast(pixels, tf.float32)
        mode = "shared"  # shared (one input for all) | grouped (NHWC, K*C channels) | batched [K,N,D]
        for st in steps:
            kind = st[0]
            if kind == "scale":
                x = x * st[1] + st[2]
            elif kind == "conv":
                x = tf.nn.conv2d(x, st[1], strides=st[3], padding=st[4])
                if st[2] is not None:
                    x = x + st[2]
                mode = "grouped"
            elif kind == "affine":
                x = x * st[1] + st[2] if mode != "batched" else x * st[1].reshape(K, 1, -1) + st[2].reshape(K, 1, -1)
            elif kind == "relu":
                x = tf.nn.relu(x)
            elif kind == "pool":
                x = tf.nn.max_pool2d(x, st[1], st[2], "VALID")
            elif kind == "flatten":
                if mode == "grouped":
                    h, w, c = x.shape[1], x.shape[2], x.shape[3]
                    x = tf.reshape(x, [-1, h, w, K, c // K])
                    x = tf.transpose(x, [3, 0, 1, 2, 4])
                    x = tf.reshape(x, [K, -1, h * w * (c // K)])
                    mode = "batched"
                else:
                    x = tf.reshape(x, [-1, 784])
            elif kind == "dense":
                Ws, bs, soft = st[1], st[2], st[3]
                if mode == "shared":
                    W = np.concatenate(list(Ws), axis=1)
                    x = tf.matmul(x, W)
                    x = tf.transpose(tf.reshape(x, [-1, K, Ws.shape[2]]), [1, 0, 2])
                    if bs is not None:
                        x = x + bs[:, None, :]
                    mode = "batched"
                else:
                    x = tf.matmul(x, Ws)
                    if bs is not None:
                        x = x + bs[:, None, :]
                if soft:
                    x = tf.nn.softmax(x, axis=-1)
        return {"probs": tf.reduce_mean(x, axis=0)}
    return fused


def build(name, K=5, seed=0):
    spec = get_model(name)
    out = []
    for k in range(K):
        keras.utils.set_random_seed(seed + k)
        m = spec.build(spec.params())
        rng = np.random.default_rng(k)
        for l in m.layers:  # non-trivial BN statistics
            if isinstance(l, keras.layers.BatchNormalization):
                g, b, mu, var = l.get_weights()
                l.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("f"), rng.normal(0, .1, b.shape).astype("f"),
                               rng.normal(0, .1, mu.shape).astype("f"), rng.uniform(0.5, 2, var.shape).astype("f")])
        out.append(m)
    return out


def timeit(sess, feed, rounds=15, calls=None):
    ts = []
    for _ in range(rounds):
        t = time.perf_counter(); [sess.run(None, feed) for _ in range(calls)]; ts.append((time.perf_counter() - t) / calls)
    return float(np.median(ts))


if __name__ == "__main__":
    x = np.random.default_rng(0).integers(0, 256, (256, 28, 28, 1), dtype=np.uint8)
    for name in sys.argv[1:]:
        ms = build(name)
        base = simplify(convert(ms))[0]
        fn = fused_function(ms)
        fused, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
        fused = simplify(fused)[0]
        a, b = make_session(base.SerializeToString(), 1), make_session(fused.SerializeToString(), 1)
        pa, pb = a.run(None, {"pixels": x})[0], b.run(None, {"pixels": x})[0]
        print(name, "max diff", float(np.abs(pa - pb).max()), "nodes", len(base.graph.node), len(fused.graph.node))
        for bs, calls in ((1, 200), (256, 3)):
            feed = {"pixels": x[:bs]}
            ra, rb = [], []
            for r in range(6):
                ra.append(timeit(a, feed, 3, calls)); rb.append(timeit(b, feed, 3, calls))
            print(f"  b{bs}: per-fold graph {np.median(ra)*1e3:.3f} ms, fused {np.median(rb)*1e3:.3f} ms, "
                  f"speed-up {np.median(ra)/np.median(rb):.2f}x")
