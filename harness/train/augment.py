"""Training-time augmentation: a random affine map per image (rotation, zoom, shift), optionally
with an elastic distortion (Simard et al. 2003), as one stateless-seeded resampling per image so
that deterministic mode reproduces it exactly.

    fn = augment_fn(strength=1.0, seed=7, elastic=2.0)   # used in a tf.data map
    x_aug, y = fn(step, x, y)                            # x: float32 [N,28,28,1]

Without `elastic` the resampling is TensorFlow's ImageProjectiveTransformV3 (bilinear, zero fill),
as it always was. With it, the affine map's source coordinates are displaced by a smooth random
field and sampled by `bilinear_sample`, which is the same bilinear sampler written with gathers
(equal to the TensorFlow op at zero displacement: tests/test_augment.py), batched: Keras's
`RandomElasticTransform` loops over images in Python (../shared/ACCURACY.md). No built-in recipe
uses the field: it cost accuracy at their epoch budgets (docs/SPEED_AUDIT.md, section 7).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from harness.core.errors import RunError

SIZE = 28
# The displacement field: uniform noise on GRID x GRID control points, upsampled bicubically, so
# its correlation length is about 28/GRID ~ 7 px, the scale of Simard's Gaussian (sigma 4 px).
GRID = 4


def affine_transforms(u: Any, strength: float) -> Any:
    """[N,8] projective transforms (output -> input coordinates) from uniform noise u [N,4] in
    [-1, 1]: rotation 12 deg, zoom 12 %, shift 12 % of the side at strength 1, about the centre."""
    import tensorflow as tf

    max_rot = math.radians(12.0) * strength
    max_zoom = 0.12 * strength
    max_shift = SIZE * 0.12 * strength
    theta, zoom = u[:, 0] * max_rot, 1.0 + u[:, 1] * max_zoom
    tx, ty = u[:, 2] * max_shift, u[:, 3] * max_shift
    c, si = tf.cos(theta) / zoom, tf.sin(theta) / zoom
    cx = cy = (SIZE - 1) / 2
    a0, a1 = c, -si
    b0, b1 = si, c
    a2 = cx - a0 * cx - a1 * cy - tx
    b2 = cy - b0 * cx - b1 * cy - ty
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def bilinear_sample(x: Any, src_x: Any, src_y: Any) -> Any:
    """Sample images x [N,H,W,1] at source coordinates [N,H,W] (pixel indices), bilinear, zero
    outside: the rule of ImageProjectiveTransformV3 with fill_mode CONSTANT, fill_value 0."""
    import tensorflow as tf

    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    # Zero borders (one pixel before, two after) and coordinates clamped to [-1, size]: a corner
    # outside the image lands on a zero, and nothing past -1 or size can see a pixel anyway.
    hp, wp = h + 3, w + 3
    padded = tf.reshape(tf.pad(x[..., 0], [[0, 0], [1, 2], [1, 2]]), [-1])
    src_x = tf.clip_by_value(src_x, -1.0, float(w))
    src_y = tf.clip_by_value(src_y, -1.0, float(h))
    x0, y0 = tf.floor(src_x), tf.floor(src_y)
    wx, wy = src_x - x0, src_y - y0
    base = tf.reshape(tf.range(n) * hp * wp, [-1, 1, 1])
    i00 = base + (tf.cast(y0, tf.int32) + 1) * wp + tf.cast(x0, tf.int32) + 1
    c = tf.gather(padded, tf.stack([i00, i00 + 1, i00 + wp, i00 + wp + 1], axis=-1))  # [N,H,W,4]
    top = c[..., 0] + wx * (c[..., 1] - c[..., 0])
    bottom = c[..., 2] + wx * (c[..., 3] - c[..., 2])
    return (top + wy * (bottom - top))[..., None]


def _resize_matrix() -> Any:
    """[SIZE, GRID]: bicubic resizing (tf.image.resize) as a matrix; resizing is linear and
    separable, so M @ noise @ M^T is the resize, at a fraction of its cost in a tf.data map."""
    import tensorflow as tf

    eye = tf.reshape(tf.eye(GRID), [1, GRID, 1, GRID])  # GRID one-hot columns as channels
    return tf.reshape(tf.image.resize(eye, (SIZE, 1), method="bicubic"), [SIZE, GRID])


def displacement(n: Any, seed: Any, amplitude: float) -> tuple[Any, Any]:
    """A smooth random displacement field (dx, dy), each [N,28,28], at most `amplitude` pixels:
    uniform noise on the control points, resized bicubically (which overshoots +-1 by up to ~1/3:
    clipped)."""
    import tensorflow as tf

    noise = tf.random.stateless_uniform((n, 2, GRID, GRID), seed=seed, minval=-1.0, maxval=1.0)
    m = _resize_matrix()
    field = tf.einsum("yi,ncij,xj->ncyx", m, noise, m)
    field = tf.clip_by_value(field, -1.0, 1.0) * amplitude
    return field[:, 0], field[:, 1]


def augment_fn(strength: float, seed: int, elastic: float = 0.0) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The map function (step, x, y) -> (x', y) of one training run; `step` seeds the batch."""
    import tensorflow as tf

    if elastic < 0:
        raise RunError(f"elastic must be >= 0 pixels, got {elastic}")
    grid_y, grid_x = [tf.cast(g, tf.float32) for g in tf.meshgrid(tf.range(SIZE), tf.range(SIZE), indexing="ij")]

    def augment(step, x, y):
        n = tf.shape(x)[0]
        s = tf.stack([tf.cast(seed, tf.int64), step])
        u = tf.random.stateless_uniform((n, 4), seed=s, minval=-1.0, maxval=1.0)
        transforms = affine_transforms(u, strength)
        if not elastic:
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x, transforms=transforms, output_shape=tf.constant([SIZE, SIZE]),
                fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
            return x, y
        t = [tf.reshape(transforms[:, i], [-1, 1, 1]) for i in range(6)]
        dx, dy = displacement(n, s + tf.constant([0, 1 << 40], tf.int64), elastic)
        src_x = t[0] * grid_x + t[1] * grid_y + t[2] + dx
        src_y = t[3] * grid_x + t[4] * grid_y + t[5] + dy
        return bilinear_sample(x, src_x, src_y), y

    return augment
