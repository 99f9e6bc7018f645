"""Atomic file writes: write to a temp file in the same folder, fsync, then rename.

An interrupted process therefore never leaves a half-written artefact under its final name;
readers only ever see complete files or none. A killed writer can leave its temp file
(`.<name>.<random>.tmp`); `clean_temp` removes those once no writer can be alive (the run's lock
is held). A full disk is one clear error naming the file, not a traceback.

Failpoint, for tests of the above: with HARNESS_FAILPOINT=<end of a file name>, the process kills itself
(SIGKILL) after writing that file's temp copy and before the rename, as a power cut would.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, else delete it.

    `suffix` keeps an extension for writers that insist on one (Keras wants `.keras`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give final files the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        if os.environ.get("HARNESS_FAILPOINT") and path.name.endswith(os.environ["HARNESS_FAILPOINT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(tmp_path, path)
    except BaseException as e:
        full = _disk_full(e, path.parent)  # before the unlink frees the partial file's space
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if full:
            from harness.core.errors import RunError

            raise RunError(f"no space left on the device while writing {path}; nothing was corrupted: free "
                           "some space and run the same command again to resume") from e
        raise


def _disk_full(e: BaseException, folder: Path) -> bool:
    """ENOSPC/EDQUOT, also when a library wrapped it (Keras, zipfile) or reported a short write
    without an errno (numpy: "N requested and M written") on a filesystem with no room left."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, OSError):
        with contextlib.suppress(OSError):
            st = os.statvfs(folder)
            return st.f_bavail * st.f_frsize < LOW_SPACE
    return False


LOW_SPACE = 64 << 10  # bytes: a failed write on a filesystem this full failed for want of space


TEMP_GLOB = ".*.tmp*"


def clean_temp(folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Remove the temp files killed writers left under `folder` (recursively; those named
    `.<prefix>...` only, when given). Call only while no writer can be alive."""
    gone = []
    for p in Path(folder).rglob(f".{prefix}*.tmp*" if prefix else TEMP_GLOB):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return Path(path)


def _json_default(o: Any) -> Any:
    # numpy scalars/arrays and Paths appear in results; make them plain JSON.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256, read in 1 MB blocks (a 130 MB CSV is never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    """Now, in UTC, ISO 8601 to the second: '2026-12-06T16:13:15+00:00'."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
