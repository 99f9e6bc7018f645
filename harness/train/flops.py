"""What a Keras model costs per image before any export: its forward FLOPs.

    keras_flops(spec.build(params, shape=(28, 28, 1), classes=10))   # 30_325_504 for cnn_deep

The convention of harness.export.flops (each multiply-add 2 FLOPs, Conv and Dense layers only), so
the counts agree with the exported graph's; cheap enough to rank jobs and estimate a model's
training cost from another's (harness.run.calibrate) before anything trains.
"""

from __future__ import annotations

import math
from typing import Any


def keras_flops(model: Any) -> int:
    """Forward FLOPs per image of a built Keras model, from its Conv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model (a plugin may build one): count its layers
            total += keras_flops(layer)
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        size = math.prod(kernel.shape)
        if type(layer).__name__.startswith("Conv"):
            size *= math.prod(layer.output.shape[1:-1])  # one kernel application per output pixel
        total += 2 * size
    return total
