"""Batch norm through TensorFlow's fused kernel while a model trains.

    trainable = fused_for_training(model)   # a copy with the same weights, or `model` itself

Keras 3's `BatchNormalization` computes its moments and its normalisation as separate ops, in
float32 even under `mixed_bfloat16` (casts both ways): on one CPU thread that was more than half
of a `cnn_deep` training step under bf16 (550 -> 1,218 images/s with the layers removed) and about
a third under float32. TensorFlow's `FusedBatchNormV3` (what tf.keras used with `fused=True`) does
the same sums in one kernel, forward and backward: 1.8x that step under bf16, 1.4x under float32;
2.7x cnn_deep's images/s as `harness run` trains it (two one-thread bf16 processes), about 1.6x
a whole fold in a default run (per-epoch validation and predictions did not get faster;
`docs/SPEED_AUDIT.md` section 6).

Only training changes. The copy's layers are `FusedBatchNormalization`, a subclass whose `call`
takes the fused path when it trains (NHWC or [N,C] inputs, the last axis, plain settings) and
otherwise defers to Keras. Its variables are Keras's, in the same order, so the trained weights
go back into a model of plain Keras layers (`harness.train.cv.train_fold`), which is what is saved,
predicts and is exported: nothing downstream sees the subclass.

Numerics: the same batch statistics normalise the batch. The moving variance differs from Keras's
by Bessel's correction (n / (n - 1), n = batch x height x width: 1.008 at most in our models, on
the 1x1 map of cnn_deep's last conv), as it did in tf.keras's fused path.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def layer_class():
    """The `FusedBatchNormalization` class (built on first use: it needs TensorFlow)."""
    import keras
    import tensorflow as tf

    class FusedBatchNormalization(keras.layers.BatchNormalization):
        """`BatchNormalization` whose training step runs TensorFlow's fused kernel."""

        def _fusable(self, inputs, training, mask) -> bool:
            rank = len(inputs.shape)
            return (training is True and self.trainable and mask is None and not self.renorm
                    and self.scale and self.center and rank in (2, 4) and self.axis in (-1, rank - 1)
                    and not getattr(self, "synchronized", False))

        def call(self, inputs, training=None, mask=None):
            if not self._fusable(inputs, training, mask):
                return super().call(inputs, training=training, mask=mask)
            x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
                mean=tf.cast(self.moving_mean, tf.float32), variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
                exponential_avg_factor=1.0 - self.momentum)  # returns the updated moving statistics
            self.moving_mean.assign(tf.cast(mean, self.moving_mean.dtype))
            self.moving_variance.assign(tf.cast(variance, self.moving_variance.dtype))
            if len(inputs.shape) == 2:
                y = tf.reshape(y, tf.shape(inputs))
            return tf.cast(y, self.compute_dtype)

    return FusedBatchNormalization


def fused_for_training(model: Any) -> Any:
    """A copy of `model` (same weights) whose BatchNormalization layers train with the fused kernel;
    `model` itself when it has none, or when Keras cannot clone it (a subclassed model)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return model
    plain = keras.layers.BatchNormalization
    if not any(type(layer) is plain for layer in getattr(model, "layers", [])):
        return model
    cls = layer_class()

    def clone(layer):
        if type(layer) is plain:
            return cls.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception:  # a subclassed or exotic plugin model: trained as it is, only slower
        return model
    return copy
