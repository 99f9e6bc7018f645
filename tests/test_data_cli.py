"""`harness data` from the command line: exit codes, stdout data, stderr messages, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
NPZ = str(FIXTURES / "mnist-small.npz")


def test_build_then_keep(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = str(tmp_path / "data")
    assert main(["data", "--source", "npz", "--path", NPZ, "--data-dir", d]) == 0
    out, err = capsys.readouterr()
    assert f"harness: created {d} in" in err and "(npz: npz mnist-small.npz; split seed 2012)" in err
    assert out.splitlines()[0].startswith(f"{d}/train.csv\t    60 rows\tsha256 ")
    assert ".solution/solution.csv" in out
    assert main(["data", "--data-dir", d]) == 0
    assert "already holds valid data (npz:" in capsys.readouterr().err


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "data"
    assert main(["data", "--source", "idx", "--path", str(FIXTURES / "mnist-small-idx"), "--data-dir", str(d),
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["source"], info["action"], info["rows"]["test"]) == ("idx", "created", 40)
    assert info["paths"]["train"] == str(d / "train.csv") and len(info["sha256"]["train"]) == 64
    assert info["solution"] == str(d / ".solution" / "solution.csv")


def test_other_source_without_force_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = str(tmp_path / "data")
    assert main(["data", "--source", "npz", "--path", NPZ, "--data-dir", d]) == 0
    capsys.readouterr()
    idx = str(FIXTURES / "mnist-small-idx")
    assert main(["data", "--source", "idx", "--path", idx, "--data-dir", d]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --force to replace them" in err
    assert main(["data", "--source", "idx", "--path", idx, "--data-dir", d, "--force"]) == 0
    assert f"harness: replaced {d}" in capsys.readouterr().err


def test_invalid_data_exits_3_naming_file_row_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "data"
    assert main(["data", "--source", "npz", "--path", NPZ, "--data-dir", str(d)]) == 0
    test = d / "test.csv"
    lines = test.read_text().split("\n")
    lines[7] = "1.5" + lines[7][1:]
    test.write_text("\n".join(lines))
    capsys.readouterr()
    assert main(["data", "--data-dir", str(d)]) == 3
    err = capsys.readouterr().err
    assert err == (f"harness: error: {test}: row 7 (line 8), column pixel0: pixel '1.5' is not an integer "
                   "(fix it, or replace the data with `harness data --force`)\n")


@pytest.mark.parametrize("argv, words", [
    (["--source", "ftp"], "invalid choice: 'ftp'"),
    (["--source", "kaggle", "--path", NPZ], "--path goes with --source npz, idx or replica"),
])
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], words: str) -> None:
    assert main(["data", "--data-dir", str(tmp_path), *argv]) == 2
    assert words in capsys.readouterr().err


def test_npz_path_missing_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "--source", "npz", "--data-dir", str(tmp_path)]) == 3
    assert "--source npz needs --path" in capsys.readouterr().err
