"""Training augmentation: the gather-based bilinear sampler equals TensorFlow's projective
transform, and the elastic distortion is smooth, bounded, seeded and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from harness.train.cv import configure_threads

configure_threads()

import tensorflow as tf  # noqa: E402

from harness.core.errors import RunError  # noqa: E402
from harness.train.augment import GRID, _resize_matrix, affine_transforms, augment_fn, bilinear_sample, displacement  # noqa: E402


def _images(n: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.float32)
    x[:, 4:24, 6:22] = rng.uniform(0, 255, (n, 20, 16, 1))  # content well inside, and up to the edges
    x[:, :, 0] = rng.uniform(0, 255, (n, 28, 1))
    return x


def test_bilinear_sample_equals_tensorflow_projective_transform():
    x = tf.constant(_images())
    u = tf.random.stateless_uniform((16, 4), seed=[3, 4], minval=-1.0, maxval=1.0)
    t = affine_transforms(u, strength=2.0)  # large maps: corners fall outside the image too
    want = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=t, output_shape=tf.constant([28, 28]), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    gy, gx = [tf.cast(g, tf.float32) for g in tf.meshgrid(tf.range(28), tf.range(28), indexing="ij")]
    c = [tf.reshape(t[:, i], [-1, 1, 1]) for i in range(6)]
    got = bilinear_sample(x, c[0] * gx + c[1] * gy + c[2], c[3] * gx + c[4] * gy + c[5])
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-3)  # pixel values 0..255
    assert float(tf.reduce_max(want)) > 0 and float(tf.reduce_min(want)) == 0.0


def test_identity_sampling_returns_the_image():
    x = tf.constant(_images(4))
    gy, gx = [tf.cast(g, tf.float32) for g in tf.meshgrid(tf.range(28), tf.range(28), indexing="ij")]
    got = bilinear_sample(x, tf.broadcast_to(gx, (4, 28, 28)), tf.broadcast_to(gy, (4, 28, 28)))
    np.testing.assert_array_equal(got.numpy(), x.numpy())


def test_resize_matrix_is_tensorflows_bicubic_resize():
    noise = tf.random.stateless_uniform((3, GRID, GRID, 1), seed=[5, 6], minval=-1.0, maxval=1.0)
    want = tf.image.resize(noise, (28, 28), method="bicubic")[..., 0]
    m = _resize_matrix()
    got = tf.einsum("yi,nij,xj->nyx", m, noise[..., 0], m)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_sampling_far_outside_the_image_reads_zero():
    x = tf.constant(_images(2)) + 1.0  # no zero pixels inside
    for sx, sy in ((-1.0, 5.0), (-7.3, 5.0), (28.0, 3.0), (40.5, 3.2), (5.0, -1.0), (5.0, 28.0), (5.0, 99.9)):
        got = bilinear_sample(x, tf.fill((2, 28, 28), sx), tf.fill((2, 28, 28), sy))
        assert float(tf.reduce_max(got)) == 0.0, (sx, sy)
    inside = bilinear_sample(x, tf.fill((2, 28, 28), 27.0), tf.fill((2, 28, 28), 0.0))
    np.testing.assert_array_equal(inside.numpy()[:, 0, 0, 0], x.numpy()[:, 0, 27, 0])


def test_displacement_field_is_smooth_bounded_and_seeded():
    dx, dy = displacement(tf.constant(8), tf.constant([1, 2], tf.int64), 2.0)
    dx2, _ = displacement(tf.constant(8), tf.constant([1, 2], tf.int64), 2.0)
    other, _ = displacement(tf.constant(8), tf.constant([1, 3], tf.int64), 2.0)
    assert dx.shape == dy.shape == (8, 28, 28)
    np.testing.assert_array_equal(dx.numpy(), dx2.numpy())
    assert not np.allclose(dx.numpy(), other.numpy())
    assert float(tf.reduce_max(tf.abs(dx))) <= 2.0
    assert float(tf.math.reduce_std(dx)) > 0.3
    # smooth: neighbouring pixels move alike (a control point every 28/GRID pixels)
    step = np.abs(np.diff(dx.numpy(), axis=2)).max()
    assert step < 2.0 * 2 / (28 / GRID) * 1.5


def test_elastic_augmentation_is_reproducible_and_differs_from_affine_alone():
    x = tf.constant(_images(8))
    y = tf.zeros(8, tf.int32)
    step = tf.constant(5, tf.int64)
    plain, _ = augment_fn(0.5, seed=7)(step, x, y)
    elastic, _ = augment_fn(0.5, seed=7, elastic=2.0)(step, x, y)
    again, _ = augment_fn(0.5, seed=7, elastic=2.0)(step, x, y)
    np.testing.assert_array_equal(elastic.numpy(), again.numpy())
    diff = np.abs(elastic.numpy() - plain.numpy())
    assert diff.mean() > 1.0  # the field moves pixels...
    # ...but the image keeps its ink: total intensity within 25 % of the affine one
    ratio = elastic.numpy().sum(axis=(1, 2, 3)) / plain.numpy().sum(axis=(1, 2, 3))
    assert np.all((ratio > 0.75) & (ratio < 1.25))
    # elastic alone (no affine strength) still distorts
    only, _ = augment_fn(0.0, seed=7, elastic=2.0)(step, x, y)
    assert np.abs(only.numpy() - x.numpy()).mean() > 1.0


def test_negative_elastic_is_an_error():
    with pytest.raises(RunError, match="elastic"):
        augment_fn(1.0, seed=1, elastic=-1.0)


def test_train_dataset_applies_elastic_without_affine():
    from harness.train.cv import _train_dataset

    x = _images(32).astype(np.uint8)
    y = np.arange(32) % 10
    params = {"batch_size": 32, "augment": 0.0, "elastic": 2.0}
    xb, yb = next(iter(_train_dataset(x, y, params, seed=1, epochs=1)))
    plain, _ = next(iter(_train_dataset(x, y, {**params, "elastic": 0.0}, seed=1, epochs=1)))
    assert xb.shape == (32, 28, 28, 1)
    assert np.abs(xb.numpy() - plain.numpy()).mean() > 1.0
    np.testing.assert_array_equal(np.sort(yb.numpy()), np.sort(y))


def test_flips_mirror_about_half_the_images_and_only_left_to_right():
    x = tf.constant(_images(64))
    fn = augment_fn(0.0, seed=5, flip=True, size=(28, 28))
    out = fn(tf.constant(3, tf.int64), x, None)[0].numpy()
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x.numpy())])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x.numpy())])
    assert np.all(mirrored | kept) and 16 <= mirrored.sum() <= 48  # each image as it was, or mirrored
    again = fn(tf.constant(3, tf.int64), x, None)[0].numpy()
    assert np.array_equal(out, again)  # seeded by (seed, step)


def test_augmentation_follows_the_image_size_and_channels():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (8, 16, 20, 3)).astype(np.float32))
    out = augment_fn(1.0, seed=1, size=(16, 20), flip=True)(tf.constant(0, tf.int64), x, None)[0]
    assert out.shape == (8, 16, 20, 3)
    with pytest.raises(RunError, match="grayscale"):
        augment_fn(1.0, seed=1, elastic=2.0, size=(16, 20))(tf.constant(0, tf.int64), x, None)


def test_policies():
    from harness.train.augment import POLICIES, apply_policy

    recipe = {"augment": 0.6, "elastic": 0.0, "epochs": 5}
    assert POLICIES == ("digits", "objects", "none")
    assert apply_policy(recipe, "digits") == recipe
    assert apply_policy(recipe, "objects") == {**recipe, "augment": 0.3, "flip": True}
    assert apply_policy(recipe, "none") == {**recipe, "augment": 0.0, "flip": False}
    with pytest.raises(RunError, match="unknown augmentation policy"):
        apply_policy(recipe, "mirror")
