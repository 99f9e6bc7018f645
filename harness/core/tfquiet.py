"""Import TensorFlow without its C++ start-up chatter on stderr.

TF 2.21 logs through absl before `TF_CPP_MIN_LOG_LEVEL` applies ("All log messages before
absl::InitializeLog()...", "oneDNN custom operations are on..."), straight to file descriptor 2.
We point fd 2 at a temp file while TF initialises, then replay every line that is not that
known noise, so real warnings and errors still reach the user.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|I0000 |W0000 |.*oneDNN custom operations)")
_done = False
_threads: int | None = None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send fd 2 to a temp file for the block, then replay the lines that are not TF's C++ noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _NOISE.match(line):
                    print(line, file=sys.stderr)


def threads() -> int | None:
    """The intra-op threads this process gave TensorFlow (None: TF's default, one per core)."""
    return _threads


def import_tensorflow(n_threads: int | None = None) -> None:
    """Import tensorflow + keras once, quietly, and run one op (which logs once more).

    `n_threads` (a job given k CPUs) sets TF's intra-op pool to k and its inter-op pool to 1; it
    must come before TF's first op, so only the first call's value counts."""
    global _done, _threads
    if _done:
        return
    _done = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    already = "tensorflow" in sys.modules
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow as tf

        if n_threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(n_threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
                _threads = n_threads
            except RuntimeError:  # TF already ran an op in this process: its pools are fixed
                pass
        if not already:
            tf.constant(1.0) + 1.0  # the first op logs the oneDNN notice
