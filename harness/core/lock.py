"""One writer per run folder and per tuning study: an advisory lock held for a whole command.

    with hold(run_dir / LOCK_NAME, what=f"run {run_dir.name}", hint="pass --new to start another run"):
        ...   # only this process (and the workers it starts) writes run_dir

The lock is `fcntl.flock` on an open file, so the kernel releases it when its process ends, however
it ends (kill -9 included): a lock left by a dead process is simply taken by the next command, with
no staleness rule to get wrong. The file names its holder (pid, host, command, start time) so that
a second command can say who it is waiting for. Workers that a holder starts (spawned processes,
Ray tasks) write under their driver's lock; they never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from harness.core.errors import BusyError

LOCK_NAME = ".lock"


def holder(path: Path) -> dict:
    """What the lock file says about its holder ({} when unreadable or empty)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another process"
    command = " ".join(info.get("command") or [])[:120]
    return (f"pid {info.get('pid')} on {info.get('host')}" + (f" ({command})" if command else "")
            + (f" since {info['since']}" if info.get("since") else ""))


@contextlib.contextmanager
def hold(path: Path, what: str, hint: str = "", wait: float = 0.0) -> Iterator[None]:
    """Hold the lock at `path` for the block; if another live process holds it (for up to `wait`
    seconds), raise BusyError naming that process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"{what} is being worked on by {describe(holder(path))}; "
                                    f"wait for it to finish{', or ' + hint if hint else ''}") from None
                time.sleep(0.2)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": ["harness", *sys.argv[1:]],
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # an unlocked, empty file: nobody holds it
    finally:
        os.close(fd)  # releases the flock
