"""Submissions: validation (exit 6, one line per defect), writing, Kaggle-style scoring, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.core.errors import SubmissionError
from harness.data.dataset import ensure_data, solution_path
from harness.kaggle.submission import (
    Solution,
    read_solution,
    score_labels,
    score_submission,
    validate_submission,
    write_submission,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _write(path: Path, rows: list[str], header: str = "ImageId,Label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _rows(n: int = 5) -> list[str]:
    return [f"{i},{i % 10}" for i in range(1, n + 1)]


def _invalid(path: Path, n_rows: int | None = 5) -> str:
    with pytest.raises(SubmissionError) as e:
        validate_submission(path, n_rows=n_rows)
    assert e.value.exit_code == 6 and "\n" not in str(e.value)
    return str(e.value)


# --- validate_submission ----------------------------------------------------------------------

def test_valid_submission_any_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", list(reversed(_rows())))
    ids, labels = validate_submission(path, n_rows=5)
    assert ids.tolist() == [5, 4, 3, 2, 1] and labels.tolist() == [5, 4, 3, 2, 1]
    assert len(validate_submission(path).image_ids) == 5


def test_wrong_header(tmp_path: Path) -> None:
    assert "header: column 2 is 'label', expected 'Label'" in _invalid(_write(tmp_path / "s.csv", _rows(), "ImageId,label"))


def test_wrong_row_count(tmp_path: Path) -> None:
    assert "4 rows, expected 5 (one per test image)" in _invalid(_write(tmp_path / "s.csv", _rows(4)))


def test_duplicate_image_id(tmp_path: Path) -> None:
    rows = _rows()
    rows[3] = "2,7"
    assert "row 4 (line 5), column ImageId: 2 appears twice (rows 2 and 4)" in _invalid(_write(tmp_path / "s.csv", rows))


def test_image_id_out_of_range(tmp_path: Path) -> None:
    rows = _rows()
    rows[4] = "6,1"
    assert "row 5 (line 6), column ImageId: 6 outside 1..5" in _invalid(_write(tmp_path / "s.csv", rows))
    rows[4] = "0,1"
    assert "column ImageId: ImageId 0 outside 1..999999999" in _invalid(_write(tmp_path / "s.csv", rows))


@pytest.mark.parametrize("label, words", [("10", "label 10 outside 0..9"), ("3.0", "label '3.0' is not an integer"),
                                          ("", "label is missing"), ("-1", "label -1 outside 0..9")])
def test_bad_label(tmp_path: Path, label: str, words: str) -> None:
    rows = _rows()
    rows[1] = f"2,{label}"
    assert f"row 2 (line 3), column Label: {words}" in _invalid(_write(tmp_path / "s.csv", rows))


def test_empty_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("")
    assert "file is empty" in _invalid(tmp_path / "s.csv")
    assert "file not found" in _invalid(tmp_path / "nope.csv")


# --- write_submission -------------------------------------------------------------------------

def test_write_submission_roundtrip(tmp_path: Path) -> None:
    path = write_submission(tmp_path / "sub" / "s.csv", np.arange(1, 6), np.array([3, 1, 4, 1, 5]))
    assert path.read_text() == "ImageId,Label\n1,3\n2,1\n3,4\n4,1\n5,5\n"
    assert validate_submission(path, 5).labels.tolist() == [3, 1, 4, 1, 5]


@pytest.mark.parametrize("ids, labels, words", [
    ([1, 2, 3], [0, 1, 10], "label 10 for ImageId 3 outside 0..9"),
    ([1, 2, 2], [0, 1, 2], "2 appears twice"),
    ([1, 2, 3], [0.0, 1.0, 2.0], "labels must be integers"),
    ([1, 2], [0, 1, 2], "two equal-length 1-D arrays"),
])
def test_write_submission_refuses_bad_predictions(tmp_path: Path, ids, labels, words) -> None:
    with pytest.raises(SubmissionError, match=words.replace("(", r"\(")):
        write_submission(tmp_path / "s.csv", np.array(ids), np.array(labels))
    assert not list(tmp_path.iterdir())


# --- scoring ----------------------------------------------------------------------------------

def test_score_matches_by_image_id_like_kaggle(tmp_path: Path) -> None:
    sol = Solution(np.arange(1, 9), np.array([0, 1, 2, 3, 4, 5, 6, 7]),
                   np.array([True, True, False, False, False, False, False, False]))
    # Rows shuffled; wrong on ImageId 1 (public) and ImageIds 7, 8 (private).
    path = _write(tmp_path / "s.csv", ["8,0", "2,1", "1,9", "3,2", "4,3", "5,4", "6,5", "7,0"])
    s = score_submission(path, sol)
    assert (s.public, s.private, s.overall) == (0.5, 4 / 6, 5 / 8)
    assert (s.n_public, s.n_private, s.n_total, s.correct) == (2, 6, 8, 5)


def test_score_labels_in_memory() -> None:
    sol = Solution(np.arange(1, 5), np.array([1, 2, 3, 4]), np.array([True, False, False, False]))
    s = score_labels(np.array([4, 3, 2, 1]), np.array([4, 0, 2, 0]), sol)
    assert (s.public, s.private, s.overall, s.correct) == (0.0, 2 / 3, 0.5, 2)
    with pytest.raises(SubmissionError, match="predictions for 3 images, the solution has 4"):
        score_labels(np.arange(1, 4), np.zeros(3, int), sol)


def test_score_checks_rows_against_the_solution(tmp_path: Path) -> None:
    ensure_data(tmp_path / "d", "npz", path=FIXTURES / "mnist-small.npz")
    with pytest.raises(SubmissionError, match="5 rows, expected 40"):
        score_submission(_write(tmp_path / "s.csv", _rows()), solution_path(tmp_path / "d"))


def test_perfect_submission_scores_one(tmp_path: Path) -> None:
    ensure_data(tmp_path / "d", "npz", path=FIXTURES / "mnist-small.npz")
    sol = read_solution(solution_path(tmp_path / "d"))
    s = score_submission(write_submission(tmp_path / "s.csv", sol.image_ids, sol.labels), sol)
    assert (s.public, s.private, s.overall, s.n_public) == (1.0, 1.0, 1.0, 10)


# --- the CLI ----------------------------------------------------------------------------------

@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    ensure_data(tmp_path / "data", "npz", path=FIXTURES / "mnist-small.npz")
    return tmp_path / "data"


def test_cli_scores_with_the_solution(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sol = read_solution(solution_path(small_data))
    path = write_submission(tmp_path / "s.csv", sol.image_ids, sol.labels)
    assert main(["score", str(path), "--data-dir", str(small_data)]) == 0
    out, err = capsys.readouterr()
    assert "public    1.00000      10 rows" in out and "private   1.00000      30 rows" in out
    assert "is a valid submission (40 rows)" in err
    assert main(["score", str(path), "--data-dir", str(small_data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] and result["score"]["overall"] == 1.0 and result["rows"] == 40


def test_cli_without_solution_says_so(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    solution_path(small_data).unlink()
    assert main(["score", str(small_data / "sample_submission.csv"), "--data-dir", str(small_data)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no score: the data did not come from the offline replica" in err
    assert main(["score", str(small_data / "sample_submission.csv"), "--data-dir", str(tmp_path / "none"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] is None


def test_cli_invalid_submission_exits_6_with_one_line(small_data: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", [f"{i},0" for i in range(1, 41)][:-1] + ["40,x"])
    done = subprocess.run([sys.executable, "-m", "harness", "score", str(path), "--data-dir", str(small_data)],
                          capture_output=True, text=True)
    assert done.returncode == 6 and done.stdout == ""
    assert done.stderr == f"harness: error: {path}: row 40 (line 41), column Label: label 'x' is not an integer\n"


def test_cli_row_count_comes_from_the_data(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    solution_path(small_data).unlink()
    assert main(["score", str(_write(tmp_path / "s.csv", _rows())), "--data-dir", str(small_data)]) == 6
    assert "5 rows, expected 40" in capsys.readouterr().err
