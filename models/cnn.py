"""Convolutional networks.

- `cnn_small`: the seed notebook's CNN (two conv blocks), done well: batch norm, dropout,
  augmentation, a cosine schedule. Dense 128, not 256: the 1600x256 matrix (1.6 MB) does not fit
  the 1 MB L2 cache and cost a third of batch-1 latency for -0.04 points of accuracy (docs/MEASUREMENTS.md).
- `cnn_deep`: the design behind the best known Kaggle results on this competition (Chris Deotte's
  "25 million images" kernel): stacked 3x3 convs, a strided 5x5 conv instead of pooling, batch norm
  and 40 % dropout after each block, random affine augmentation. Its widths are his (32-64-128);
  what a 2-core budget cuts is the training: 5 fold models of 30 epochs, where he votes 15 models
  of 45 (docs/MEASUREMENTS.md).

Input float32 [N,H,W,C] raw pixels 0..255 (rescaled inside), output softmax [N,K]: any
competition's shape (Digit Recognizer's 28x28x1 and 10 classes by default) down to the smallest
images each architecture's downsampling allows (`cnn_small` 10x10, `cnn_deep` 13x13).
"""

from __future__ import annotations

import math

from harness.core.errors import ModelError
from harness.registry import register_model

DIGITS = (28, 28, 1)


def _too_small(what: str, shape: tuple[int, int, int], least: int) -> None:
    if min(shape[:2]) < least:
        raise ModelError(f"{what} need images of at least {least}x{least} pixels, got {shape[0]}x{shape[1]}")


def _conv_bn(x, filters: int, kernel: int, strides: int = 1, padding: str = "valid"):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)  # fast-settling stats: short runs work too
    return layers.ReLU()(x)


def _small(width: int, dense: int, dropout: float, shape: tuple[int, int, int] = DIGITS, classes: int = 10):
    import keras
    from keras import layers

    _too_small("its two conv-pool blocks", shape, 10)  # two conv3-pool blocks leave (s - 2) // 2 - 2 >= 2 pixels to pool
    inputs = keras.Input(shape, name="pixels")
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (width, width * 2):  # two conv blocks: conv-bn-relu-pool (~5 MFLOP/image)
        x = _conv_bn(x, filters, 3)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout / 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)  # fast-settling stats: short runs work too
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs)


def _deep(width: int, dropout: float, shape: tuple[int, int, int] = DIGITS, classes: int = 10):
    import keras
    from keras import layers

    _too_small("its two strided conv blocks", shape, 13)  # each block: two valid 3x3 convs (-4), then /2; the second needs 5
    inputs = keras.Input(shape, name="pixels")
    x = layers.Rescaling(1 / 255)(inputs)
    size = list(shape[:2])
    for filters in (width, width * 2):  # 28 -> 24 -> 12 ; 12 -> 8 -> 4
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 5, strides=2, padding="same")  # learned downsampling
        x = layers.Dropout(dropout)(x)
        size = [math.ceil((s - 4) / 2) for s in size]
    x = _conv_bn(x, width * 4, tuple(size))  # what is left (4x4 for 28x28) -> 1x1
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs)


@register_model(
    "cnn_small", family="cnn",
    description="the seed CNN done well: conv32-pool, conv64-pool, dense 128, batch norm, augmentation",
    # 5 epochs (was 15): a diverse, cheap ensemble member inside the default run's 30 minutes.
    # bfloat16: 1.26x images/s once batch norm is fused (before, 0.99x; docs/SPEED_AUDIT.md)
    recipe=dict(epochs=5, quick_epochs=2, batch_size=128, learning_rate=3e-3, augment=0.6,
                label_smoothing=0.05, precision="bfloat16"),
    search_space={
        "width": ("int", 16, 48, 8),
        "dense": ("int", 64, 256, 64),
        "dropout": ("float", 0.1, 0.5),
        "learning_rate": ("log", 5e-4, 1e-2),
        "augment": ("float", 0.0, 1.0),
    },
)
def cnn_small(width: int = 32, dense: int = 128, dropout: float = 0.4, *, input_shape=DIGITS, classes: int = 10):
    return _small(width, dense, dropout, tuple(input_shape), classes)


@register_model(
    "cnn_deep", family="cnn",
    description="Deotte-style CNN: 3x3-3x3-5x5/2 blocks, batch norm, 40% dropout, affine augmentation",
    # bfloat16: 1.22-1.25x images/s, accuracy within seed noise (docs/SPEED_AUDIT.md)
    # 30 epochs (was 14, and 24 before that): the fused batch norm made a step 2.7x faster
    # (harness.train.batchnorm); the time went back into epochs (docs/MEASUREMENTS.md)
    recipe=dict(epochs=30, quick_epochs=7, batch_size=128, learning_rate=3e-3, augment=1.0,
                label_smoothing=0.05, precision="bfloat16"),
    # a second bag took the default ensemble from 146 to 139 OOF errors (72 -> 70 private, seed 7);
    # two cnn_small bags more bought 6 OOF errors and no private one (docs/MEASUREMENTS.md)
    bag_gain=7.0,
    search_space={
        "width": ("int", 16, 48, 8),
        "dropout": ("float", 0.2, 0.5),
        "learning_rate": ("log", 5e-4, 1e-2),
        "augment": ("float", 0.3, 1.0),
    },
)
def cnn_deep(width: int = 32, dropout: float = 0.4, *, input_shape=DIGITS, classes: int = 10):
    return _deep(width, dropout, tuple(input_shape), classes)


@register_model("cnn_tiny", family="cnn", description="tiny two-block CNN for tests",
                recipe=dict(epochs=2, quick_epochs=1, batch_size=128, learning_rate=3e-3, augment=0.5),
                search_space={"width": ("int", 4, 8, 4), "learning_rate": ("log", 1e-3, 1e-2)},
                tiny=True)
def cnn_tiny(width: int = 4, dense: int = 16, dropout: float = 0.1, *, input_shape=DIGITS, classes: int = 10):
    return _small(width, dense, dropout, tuple(input_shape), classes)


@register_model("cnn_deep_tiny", family="cnn", description="tiny Deotte-style CNN for tests",
                recipe=dict(epochs=2, quick_epochs=1, batch_size=128, learning_rate=3e-3, augment=1.0),
                tiny=True)
def cnn_deep_tiny(width: int = 4, dropout: float = 0.2, *, input_shape=DIGITS, classes: int = 10):
    return _deep(width, dropout, tuple(input_shape), classes)
