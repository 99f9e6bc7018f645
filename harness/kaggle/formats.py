"""The competition's CSV formats: exact headers, fast validating reader, fast writer.

All files the harness reads or writes are integer tables (Digit Recognizer's `label,pixel0..pixel783`
and `ImageId,Label`; another competition's per its spec: `schemas(competition)`).
`read_table(path, schema)` parses and validates one in a single vectorised pass and returns a
numpy array, or raises one clear line naming file, row and column. `write_table` is its inverse.

Why not pandas: `read_csv` on train.csv takes seconds, accepts NaN/floats silently, and cannot say
*which* cell is wrong; `to_csv` is slower still. Here a strict numpy fast path handles well-formed
chunks of rows; only a chunk that fails it is re-read line by line to name the first defect.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.competition import DIGIT_RECOGNIZER, Competition
from harness.core.errors import DataError, HarnessError
from harness.core.io import atomic_path, sha256_bytes, sha256_file  # noqa: F401  (the data stage's names for them)

N_PIXELS = 784
_CHUNK_ROWS = 1024          # rows per vectorised step: bounds memory (~25 MB of int64 temporaries)
_INT = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class Schema:
    """One CSV layout: column names and the inclusive range each column's integers must lie in."""

    kind: str
    columns: tuple[str, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    what: tuple[str, ...]   # noun used in messages: "pixel", "label", "ImageId"

    @property
    def dtype(self) -> type:
        return np.uint8 if min(self.lo) >= 0 and max(self.hi) <= 255 else np.int64

    @property
    def max_digits(self) -> int:
        return len(str(max(self.hi)))


MAX_ID = 999_999_999  # ids are checked against the test rows by the caller; here only "a sane int"


def schemas(comp: Competition) -> dict[str, Schema]:
    """The competition's three tables: train (label, pixels), test ([id,] pixels), submission (id, label)."""
    pixels = comp.pixel_columns
    n, top = len(pixels), max(comp.label_values)
    test_id = (comp.test_id_column,) if comp.test_id_column else ()
    return {
        "train": Schema("train", (comp.label_column,) + pixels, (0,) * (n + 1), (top,) + (255,) * n,
                        ("label",) + ("pixel",) * n),
        "test": Schema("test", test_id + pixels, (0,) * (len(test_id) + n), (MAX_ID,) * len(test_id) + (255,) * n,
                       ("id",) * len(test_id) + ("pixel",) * n),
        # generated ids start at id_start (Digit Recognizer's 1); ids from test.csv may be any
        "sample_submission": Schema("submission", comp.submission_header,
                                    (0 if comp.test_id_column else comp.id_start, 0), (MAX_ID, top),
                                    (comp.id_column, "label")),
    }


_DIGITS = schemas(DIGIT_RECOGNIZER)
TRAIN, TEST, SUBMISSION = _DIGITS["train"], _DIGITS["test"], _DIGITS["sample_submission"]


def read_table(path: str | os.PathLike, schema: Schema, *, error: type[HarnessError] = DataError,
               data: bytes | None = None) -> np.ndarray:
    """Parse and validate `path` against `schema`; return an int array [rows, columns].

    `data` may hold the file's bytes already (the caller hashed them). Raises `error` with one line
    `FILE: row R (line L), column C: ...` for the first defect in file order.
    """
    name = str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise error(f"{name}: file not found") from None
        except OSError as e:
            raise error(f"{name}: cannot read ({e.strerror})") from None
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM from spreadsheet tools
    if b"\r" in data:  # Windows line ends: normalise once (a copy) rather than slow every row
        data = data.replace(b"\r\n", b"\n")
    truncated = not data.endswith(b"\n")
    if truncated:
        data += b"\n"  # a copy, but only for files that lack the final newline
    if data.isspace() or len(data) <= start + 1:  # isspace stops at the first real byte
        raise error(f"{name}: file is empty")
    # Work on one zero-copy view of the bytes: 130 MB of CSV should not be copied three times.
    buf = np.frombuffer(data, dtype=np.uint8)
    cut = data.find(b"\n", start)
    _check_header(name, data[start:cut], schema, error)
    stop = len(data)
    while stop > cut + 1 and data[stop - 2] == 10:  # drop trailing blank lines, keep one newline
        stop -= 1
    buf = buf[cut + 1:stop]
    if len(buf) <= 1:
        raise error(f"{name}: has a header but no data rows (empty or truncated file)")
    ends = np.flatnonzero(buf == 10)            # one newline per row, by construction
    n_rows, ncols = len(ends), len(schema.columns)
    out = np.empty((n_rows, ncols), dtype=schema.dtype)
    lo, hi = np.array(schema.lo), np.array(schema.hi)
    for r0 in range(0, n_rows, _CHUNK_ROWS):
        r1 = min(r0 + _CHUNK_ROWS, n_rows)
        start = 0 if r0 == 0 else int(ends[r0 - 1]) + 1
        chunk = buf[start:int(ends[r1 - 1]) + 1]
        values = _fast(chunk, r1 - r0, ncols, schema.max_digits)
        if values is None:  # something irregular: find and name it
            values = _slow(name, chunk, r0, schema, error, truncated and r1 == n_rows)
        bad = (values < lo) | (values > hi)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            _fail(error, name, r0 + i, schema.columns[j],
                  f"{schema.what[j]} {values[i, j]} outside {lo[j]}..{hi[j]}")
        out[r0:r1] = values
    return out


def _check_header(name: str, header: bytes, schema: Schema, error: type[HarnessError]) -> None:
    got = [c.strip().strip('"') for c in header.decode("utf-8", errors="replace").split(",")]
    want = list(schema.columns)
    if got == want:
        return
    where = f"{name}: header"
    if schema.kind == "test" and "label" in got:
        raise error(f"{where}: test.csv must not have a 'label' column (is this train.csv?)")
    seen: dict[str, int] = {}
    for k, col in enumerate(got, 1):
        if col in seen:
            raise error(f"{where}: column '{col}' appears twice (columns {seen[col]} and {k})")
        seen[col] = k
    if len(got) != len(want):
        hint = " (saved with a pandas index? write it with index=False)" if got[0] in ("", "Unnamed: 0") else ""
        layout = ",".join(want) if len(want) <= 3 else f"{want[0]},{want[1]}..{want[-1]}"
        raise error(f"{where}: {len(got)} columns, expected {len(want)} ({layout}){hint}")
    k = next(k for k, (g, w) in enumerate(zip(got, want)) if g != w)
    raise error(f"{where}: column {k + 1} is '{got[k]}', expected '{want[k]}'")


def _fast(chunk: np.ndarray, n: int, ncols: int, max_digits: int) -> np.ndarray | None:
    """Strictly formatted rows (digits, commas, one newline per row) -> int64 [n, ncols]; else None."""
    is_sep = (chunk == 44) | (chunk == 10)
    digit = chunk - np.uint8(48)                # wraps below '0', so one compare tests 0..9
    if not np.all(is_sep | (digit < 10)):
        return None
    seps = np.flatnonzero(is_sep)
    if len(seps) != n * ncols or not np.all(chunk[seps[ncols - 1::ncols]] == 10):
        return None
    prev = np.empty_like(seps)
    prev[0], prev[1:] = -1, seps[:-1]
    length = seps - prev - 1
    if length.min() < 1 or length.max() > max_digits:
        return None  # empty field, or too many digits to be in range: let _slow say which
    values = digit[seps - 1].astype(np.int64)
    scale = 1
    for k in range(1, max_digits):
        # Gather the k-th digit from the right for every field, zeroed where the field is shorter
        # (full gathers beat boolean-masked ones; clipped indices only ever land on masked cells).
        scale *= 10
        kth = digit.take(seps - 1 - k, mode="clip")
        values += np.where(length > k, kth, 0).astype(np.int64) * scale
    return values.reshape(n, ncols)


def _slow(name: str, chunk: np.ndarray, r0: int, schema: Schema, error: type[HarnessError],
          last_is_truncated: bool) -> np.ndarray:
    """Line-by-line check of a chunk the fast path refused: raise on the first defect, else parse."""
    lines = chunk.tobytes().decode("utf-8", errors="replace").split("\n")[:-1]
    ncols = len(schema.columns)
    out = np.empty((len(lines), ncols), dtype=np.int64)
    for i, line in enumerate(lines):
        fields = line.split(",")
        hint = " (file truncated?)" if last_is_truncated and i == len(lines) - 1 else ""
        if len(fields) != ncols:
            _fail(error, name, r0 + i, None,
                  ("empty line" if line == "" else f"{len(fields)} columns, expected {ncols}") + hint)
        for j, field in enumerate(fields):
            if not _INT.fullmatch(field):
                _fail(error, name, r0 + i, schema.columns[j], _describe(field, schema.what[j]) + hint)
            value = int(field)
            if not schema.lo[j] <= value <= schema.hi[j]:
                _fail(error, name, r0 + i, schema.columns[j],
                      f"{schema.what[j]} {value} outside {schema.lo[j]}..{schema.hi[j]}{hint}")
            out[i, j] = value
    return out


def _describe(field: str, what: str) -> str:
    text = field.strip().lower()
    if text in ("", "nan", "na", "n/a", "null", "none"):
        return f"{what} is missing (NaN/empty: {field!r})"
    try:
        float(text)
    except ValueError:
        return f"{what} {field!r} is not an integer"
    return f"{what} {field!r} is not an integer" + (" (NaN)" if "nan" in text else "")


def _fail(error: type[HarnessError], name: str, row0: int, column: str | None, what: str) -> None:
    # Rows count from 1 after the header, so row R is on line R+1 of the file.
    col = f", column {column}" if column else ""
    raise error(f"{name}: row {row0 + 1} (line {row0 + 2}){col}: {what}")


def write_table(path: str | os.PathLike, columns: tuple[str, ...] | list[str],
                table: np.ndarray) -> Path:
    """Write non-negative integers [rows, len(columns)] as a CSV, atomically, fast (vectorised)."""
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != len(columns):
        raise ValueError(f"table shape {table.shape} does not match {len(columns)} columns")
    if table.size and table.min() < 0:
        raise ValueError("write_table writes non-negative integers only")
    max_digits = len(str(int(table.max()))) if table.size else 1
    with atomic_path(path, suffix=Path(path).suffix) as tmp, open(tmp, "wb") as f:
        f.write((",".join(columns) + "\n").encode())
        for r0 in range(0, len(table), _CHUNK_ROWS):
            f.write(_format(table[r0:r0 + _CHUNK_ROWS], max_digits))
    return Path(path)


def _format(rows: np.ndarray, max_digits: int) -> bytes:
    """Rows of ints -> CSV bytes: place each digit at its computed offset (no per-cell Python).

    Digit k (from the right) of every cell is written at `end - 1 - k`, highest k first, without
    masking out cells shorter than k+1: such a write lands on an earlier cell's separator or on a
    lower digit, and both are written afterwards (separators last), so every stray byte is
    overwritten. `pad` leading bytes absorb the strays of the first cell.
    """
    v = rows.astype(np.int64).ravel()
    length = np.ones_like(v)
    for k in range(1, max_digits):
        length += v >= 10 ** k
    pad = max_digits
    end = np.cumsum(length + 1) - 1 + pad          # index of each cell's separator
    out = np.empty(int(end[-1]) + 1, dtype=np.uint8)
    digits = [v]
    for _ in range(1, max_digits):
        digits.append(digits[-1] // 10)
    for k in range(max_digits - 1, -1, -1):
        out[end - 1 - k] = 48 + digits[k] % 10
    sep = np.full(v.shape, 44, dtype=np.uint8)
    sep[rows.shape[1] - 1::rows.shape[1]] = 10
    out[end] = sep
    return out[pad:].tobytes()
