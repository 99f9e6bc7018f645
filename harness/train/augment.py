"""Training-time augmentation: a random affine map per image (rotation, zoom, shift), optionally
with an elastic distortion (Simard et al. 2003) or a mirror image (left-right flip), as one
stateless-seeded resampling per image so that deterministic mode reproduces it exactly.

    fn = augment_fn(strength=1.0, seed=7, elastic=2.0)   # used in a tf.data map
    x_aug, y = fn(step, x, y)                            # x: float32 [N,H,W,C] (28x28x1 by default)

Which of them a competition's data wants is its augmentation policy (`POLICIES`, `apply_policy`):
`digits` (the recipes as written: strokes rotate and shift but never mirror), `objects` (half the
affine strength, mirror images: clothing, objects), `none`. A spec may pin one; otherwise the run
chooses among them on OOF accuracy (harness.run.policy).

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

SIZE = 28  # Digit Recognizer's side; other competitions pass their own `size`
POLICIES = ("digits", "objects", "none")
# The displacement field: uniform noise on GRID x GRID control points, upsampled bicubically, so
# its correlation length is about 28/GRID ~ 7 px, the scale of Simard's Gaussian (sigma 4 px).
GRID = 4


def apply_policy(params: dict[str, Any], policy: str) -> dict[str, Any]:
    """A model's parameters under an augmentation policy (a copy; `digits` leaves them as they are)."""
    if policy not in POLICIES:
        raise RunError(f"unknown augmentation policy {policy!r} (known: {', '.join(POLICIES)})")
    if policy == "objects":
        return {**params, "augment": float(params.get("augment", 0.0)) / 2, "elastic": 0.0, "flip": True}
    if policy == "none":
        return {**params, "augment": 0.0, "elastic": 0.0, "flip": False}
    return dict(params)


def affine_transforms(u: Any, strength: float, size: tuple[int, int] = (SIZE, SIZE)) -> Any:
    """[N,8] projective transforms (output -> input coordinates) from uniform noise u [N,4] in
    [-1, 1]: rotation 12 deg, zoom 12 %, shift 12 % of the side at strength 1, about the centre."""
    import tensorflow as tf

    h, w = size
    max_rot = math.radians(12.0) * strength
    max_zoom = 0.12 * strength
    theta, zoom = u[:, 0] * max_rot, 1.0 + u[:, 1] * max_zoom
    tx, ty = u[:, 2] * w * 0.12 * strength, u[:, 3] * h * 0.12 * strength
    c, si = tf.cos(theta) / zoom, tf.sin(theta) / zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
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


def _resize_matrix(side: int = SIZE) -> Any:
    """[side, GRID]: bicubic resizing (tf.image.resize) as a matrix; resizing is linear and
    separable, so M @ noise @ M^T is the resize, at a fraction of its cost in a tf.data map."""
    import tensorflow as tf

    eye = tf.reshape(tf.eye(GRID), [1, GRID, 1, GRID])  # GRID one-hot columns as channels
    return tf.reshape(tf.image.resize(eye, (side, 1), method="bicubic"), [side, GRID])


def displacement(n: Any, seed: Any, amplitude: float, size: tuple[int, int] = (SIZE, SIZE)) -> tuple[Any, Any]:
    """A smooth random displacement field (dx, dy), each [N,H,W], at most `amplitude` pixels:
    uniform noise on the control points, resized bicubically (which overshoots +-1 by up to ~1/3:
    clipped)."""
    import tensorflow as tf

    noise = tf.random.stateless_uniform((n, 2, GRID, GRID), seed=seed, minval=-1.0, maxval=1.0)
    field = tf.einsum("yi,ncij,xj->ncyx", _resize_matrix(size[0]), noise, _resize_matrix(size[1]))
    field = tf.clip_by_value(field, -1.0, 1.0) * amplitude
    return field[:, 0], field[:, 1]


def augment_fn(strength: float, seed: int, elastic: float = 0.0, *, size: tuple[int, int] = (SIZE, SIZE),
               flip: bool = False) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """The map function (step, x, y) -> (x', y) of one training run; `step` seeds the batch.
    `size` is the images' (height, width); `flip` mirrors half the images left to right."""
    import tensorflow as tf

    if elastic < 0:
        raise RunError(f"elastic must be >= 0 pixels, got {elastic}")
    h, w = (int(v) for v in size)
    grid_y, grid_x = [tf.cast(g, tf.float32) for g in tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")]

    def mirror(s, x):
        if not flip:
            return x
        coin = tf.random.stateless_uniform((tf.shape(x)[0], 1, 1, 1), seed=s + tf.constant([0, 1 << 41], tf.int64))
        return tf.where(coin < 0.5, tf.reverse(x, axis=[2]), x)

    def augment(step, x, y):
        n = tf.shape(x)[0]
        s = tf.stack([tf.cast(seed, tf.int64), step])
        if not strength and not elastic:
            return mirror(s, x), y
        u = tf.random.stateless_uniform((n, 4), seed=s, minval=-1.0, maxval=1.0)
        transforms = affine_transforms(u, strength, (h, w))
        if not elastic:
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x, transforms=transforms, output_shape=tf.constant([h, w]),
                fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
            return mirror(s, x), y
        if x.shape[-1] != 1:
            raise RunError("the elastic distortion samples one channel; use it on grayscale images only")
        t = [tf.reshape(transforms[:, i], [-1, 1, 1]) for i in range(6)]
        dx, dy = displacement(n, s + tf.constant([0, 1 << 40], tf.int64), elastic, (h, w))
        src_x = t[0] * grid_x + t[1] * grid_y + t[2] + dx
        src_y = t[3] * grid_x + t[4] * grid_y + t[5] + dy
        return mirror(s, bilinear_sample(x, src_x, src_y)), y

    return augment
