"""The fused batch norm used while training (harness.train.batchnorm): the same layer maths as Keras's,
the same weights in and out, and nothing of it in what is saved."""

from __future__ import annotations

import numpy as np
import pytest

from harness.train.batchnorm import fused_for_training, layer_class


def _pair(shape, policy="float32", momentum=0.9, seed=0):
    """A Keras BatchNormalization and a fused one with the same (non-trivial) weights."""
    import keras

    rng = np.random.default_rng(seed)
    c = shape[-1]
    weights = [rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 0.5, c), rng.uniform(0.5, 2, c)]
    layers = []
    for cls in (keras.layers.BatchNormalization, layer_class()):
        layer = cls(momentum=momentum, dtype=policy)
        layer.build(shape)
        layer.set_weights([w.astype(np.float32) for w in weights])
        layers.append(layer)
    return layers


@pytest.mark.parametrize("shape", [(32, 6, 5, 8), (64, 12)])
def test_training_step_matches_keras(shape):
    import tensorflow as tf

    keras_bn, fused_bn = _pair(shape)
    x = tf.constant(np.random.default_rng(1).normal(2, 3, shape).astype(np.float32))
    out, grads = [], []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.cos(x))  # a loss whose gradient is not trivially zero
        out.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
    assert np.allclose(out[0], out[1], atol=1e-4)
    for a, b in zip(*grads):
        assert np.allclose(a, b, rtol=1e-3, atol=1e-3)
    n = int(np.prod(shape[:-1]))
    assert np.allclose(keras_bn.moving_mean.numpy(), fused_bn.moving_mean.numpy(), atol=1e-5)
    # The fused kernel updates the moving variance with the unbiased batch variance (x n/(n-1)).
    batch_var = x.numpy().reshape(-1, shape[-1]).var(0)
    expected = keras_bn.moving_variance.numpy() + 0.1 * batch_var * (n / (n - 1) - 1)
    assert np.allclose(fused_bn.moving_variance.numpy(), expected, rtol=1e-4)


def test_bfloat16_and_inference_follow_keras():
    import tensorflow as tf

    keras_bn, fused_bn = _pair((16, 4, 4, 8), policy="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(2).normal(0, 1, (16, 4, 4, 8)).astype(np.float32))
    # Inference (and anything the fused kernel does not cover) is Keras's own code path.
    assert np.array_equal(keras_bn(x, training=False).numpy(), fused_bn(x, training=False).numpy())
    a, b = keras_bn(x, training=True), fused_bn(x, training=True)
    assert a.dtype == b.dtype == tf.bfloat16
    assert np.allclose(a.numpy().astype(np.float32), b.numpy().astype(np.float32), atol=0.05)
    assert fused_bn.moving_mean.dtype == "float32"


def test_model_copy_has_fused_layers_and_the_same_weights():
    import keras

    from harness.registry import get_model

    model = get_model("cnn_tiny").build()
    copy = fused_for_training(model)
    assert copy is not model
    kinds = [type(layer).__name__ for layer in copy.layers]
    assert kinds.count("FusedBatchNormalization") == 3 and "BatchNormalization" not in kinds
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), copy.get_weights()))

    # Nothing to fuse, or a model Keras cannot clone: the model itself, trained as before.
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert fused_for_training(plain) is plain

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(x)

    sub = Sub()
    sub(np.zeros((2, 3), np.float32))
    assert fused_for_training(sub) is sub
