"""The CSV reader/writer and one test per data defect: each is one line naming file, row, column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import DataError, SubmissionError
from harness.data.dataset import check_data, ensure_data
from harness.kaggle import formats as validate
from harness.kaggle.formats import SUBMISSION, TEST, TRAIN, read_table, write_table

FIXTURES = Path(__file__).parent / "fixtures"


def _train_table(n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 784)) * (rng.random((n, 784)) < 0.3)
    return np.column_stack([rng.integers(0, 10, n), pixels]).astype(np.uint8)


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    return write_table(tmp_path / "train.csv", TRAIN.columns, _train_table())


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")


def _set_cell(path: Path, row: int, col: int, value: str) -> None:
    """Replace data row `row` (1-based), column index `col` (0-based) with `value` verbatim."""
    lines = _lines(path)
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    path.write_text("\n".join(lines))


def _error(path: Path, schema=TRAIN, error=DataError) -> str:
    with pytest.raises(error) as e:
        read_table(path, schema, error=error)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# --- reading and writing ----------------------------------------------------------------------

def test_roundtrip_is_exact(train_csv: Path) -> None:
    table = read_table(train_csv, TRAIN)
    assert table.dtype == np.uint8 and table.shape == (5, 785)
    np.testing.assert_array_equal(table, _train_table())


def test_writer_matches_python_formatting(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n, c, digits = rng.integers(1, 5), rng.integers(1, 5), rng.integers(1, 7)
        t = np.where(rng.random((n, c)) < 0.5, rng.integers(0, 10, (n, c)), rng.integers(0, 10 ** digits, (n, c)))
        cols = [f"c{i}" for i in range(c)]
        path = write_table(tmp_path / "t.csv", cols, t)
        want = ",".join(cols) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in t)
        assert path.read_text() == want


def test_submission_ids_above_three_digits_parse(tmp_path: Path) -> None:
    ids = np.arange(1, 28_001)
    path = write_table(tmp_path / "s.csv", SUBMISSION.columns, np.column_stack([ids, ids % 10]))
    table = read_table(path, SUBMISSION)
    np.testing.assert_array_equal(table[:, 0], ids)


def test_crlf_bom_and_missing_final_newline_are_accepted(train_csv: Path) -> None:
    text = train_csv.read_text().rstrip("\n").replace("\n", "\r\n")
    train_csv.write_bytes(b"\xef\xbb\xbf" + text.encode())
    np.testing.assert_array_equal(read_table(train_csv, TRAIN), _train_table())


def test_error_row_is_right_across_chunks(train_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "_CHUNK_ROWS", 2)  # row 5 is in the third chunk
    _set_cell(train_csv, 5, 10, "300")
    assert "row 5 (line 6), column pixel9: pixel 300 outside 0..255" in _error(train_csv)


# --- one test per defect ----------------------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("")
    assert _error(tmp_path / "train.csv").endswith("file is empty")


def test_header_only(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(",".join(TRAIN.columns) + "\n")
    assert "no data rows" in _error(tmp_path / "train.csv")


def test_truncated_file(train_csv: Path) -> None:
    data = train_csv.read_bytes()
    train_csv.write_bytes(data[: len(data) - 700])  # cut inside the last row
    assert "row 5 (line 6):" in (msg := _error(train_csv)) and "truncated" in msg


def test_wrong_header(train_csv: Path) -> None:
    train_csv.write_text(train_csv.read_text().replace("pixel3,", "pixel3x,", 1))
    assert "header: column 5 is 'pixel3x', expected 'pixel3'" in _error(train_csv)


def test_duplicated_header(train_csv: Path) -> None:
    train_csv.write_text(train_csv.read_text().replace("pixel4,", "pixel3,", 1))
    assert "column 'pixel3' appears twice (columns 5 and 6)" in _error(train_csv)


def test_wrong_header_column_count(train_csv: Path) -> None:
    train_csv.write_text(train_csv.read_text().replace(",pixel783\n", "\n", 1))
    assert "header: 784 columns, expected 785" in _error(train_csv)


def test_wrong_row_column_count(train_csv: Path) -> None:
    lines = _lines(train_csv)
    lines[3] += ",0"
    train_csv.write_text("\n".join(lines))
    assert "row 3 (line 4): 786 columns, expected 785" in _error(train_csv)


@pytest.mark.parametrize("value, words", [("1.5", "'1.5' is not an integer"), ("abc", "'abc' is not an integer"),
                                          ("2e3", "'2e3' is not an integer")])
def test_non_integer_pixel(train_csv: Path, value: str, words: str) -> None:
    _set_cell(train_csv, 2, 100, value)
    assert f"row 2 (line 3), column pixel99: pixel {words}" in _error(train_csv)


@pytest.mark.parametrize("value", ["", "NaN", "nan"])
def test_nan_pixel(train_csv: Path, value: str) -> None:
    _set_cell(train_csv, 4, 1, value)
    assert "row 4 (line 5), column pixel0: pixel is missing (NaN/empty" in _error(train_csv)


@pytest.mark.parametrize("value", ["256", "-1", "1000000"])
def test_pixel_out_of_range(train_csv: Path, value: str) -> None:
    _set_cell(train_csv, 1, 784, value)
    assert f"row 1 (line 2), column pixel783: pixel {value} outside 0..255" in _error(train_csv)


def test_label_out_of_range(train_csv: Path) -> None:
    _set_cell(train_csv, 3, 0, "10")
    assert "row 3 (line 4), column label: label 10 outside 0..9" in _error(train_csv)


def test_label_column_in_test_csv(tmp_path: Path) -> None:
    path = write_table(tmp_path / "test.csv", TRAIN.columns, _train_table())
    assert "must not have a 'label' column" in _error(path, TEST)


def test_error_class_is_the_callers(train_csv: Path) -> None:
    _set_cell(train_csv, 1, 1, "x")
    _error(train_csv, TRAIN, SubmissionError)


# --- cross-file checks on a whole data folder -------------------------------------------------

@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    ensure_data(data_dir, "npz", path=FIXTURES / "mnist-small.npz")
    return data_dir


def test_rows_disagree_with_sample_submission(small_data: Path) -> None:
    sample = small_data / "sample_submission.csv"
    sample.write_text("\n".join(_lines(sample)[:-2]) + "\n")  # drop the last row
    with pytest.raises(DataError, match=r"test.csv: 40 rows, but sample_submission.csv has 39"):
        check_data(small_data)


def test_sample_submission_ids_must_run_in_order(small_data: Path) -> None:
    sample = small_data / "sample_submission.csv"
    sample.write_text(sample.read_text().replace("\n3,0\n", "\n7,0\n"))
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column ImageId: 7, expected 3"):
        check_data(small_data)


def test_invalid_existing_data_is_an_error_not_overwritten(small_data: Path) -> None:
    before = (small_data / "train.csv").read_bytes()
    _set_cell(small_data / "train.csv", 2, 5, "-7")
    broken = (small_data / "train.csv").read_bytes()
    with pytest.raises(DataError, match=r"pixel -7 outside 0\.\.255 \(fix it, or replace .* --force"):
        ensure_data(small_data)
    assert (small_data / "train.csv").read_bytes() == broken != before
