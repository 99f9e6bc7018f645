"""The command line as a user meets it: help, version, exit codes, and the README's promises."""

from __future__ import annotations

import re
import subprocess

import pytest

from harness import __version__
from harness.cli import COMMANDS, build_parser, main
from harness.core.errors import EXIT_CODES
from tests.conftest import ROOT, harness_cli


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"harness {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "run" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: harness " + command in capsys.readouterr().out


def test_every_listed_command_exists():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_usage_errors_are_one_line_exit_2(tmp_path):
    for args in (["run"], ["run", "--all", "--folds", "1"], ["nope"], ["run", "--all", "--bogus"]):
        proc = harness_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("harness: error:")
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, needle", [
    (["--max-latency-ms", "0"], "--max-latency-ms must be a positive number"),
    (["--max-latency-ms", "-1"], "--max-latency-ms must be a positive number"),
    (["--max-latency-ms", "nan"], "--max-latency-ms must be a positive number"),
    (["--max-latency-ms", "fast"], "invalid float value"),
    (["--max-latency-ms", "1", "--latency-batch", "0"], "--latency-batch must be between 1 and 65536"),
    (["--latency-batch", "64"], "--latency-batch needs --max-latency-ms"),
    (["--max-latency-ms", "1", "--no-bench"], "--max-latency-ms needs the benchmark"),
    (["--baselines", "--no-bench"], "--baselines needs the benchmark"),
])
def test_latency_budget_flags_are_usage_errors(tmp_path, args, needle):
    proc = harness_cli("run", "--all", *args, cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_model_exit_4(tmp_path):
    proc = harness_cli("run", "--model", "cnn_smal", cwd=tmp_path, env={"HARNESS_DATA_DIR": str(tmp_path / "d")})
    assert proc.returncode == 4
    assert "unknown model 'cnn_smal'; did you mean 'cnn_small'?" in proc.stderr


def test_missing_run_exit_5(tmp_path):
    proc = harness_cli("leaderboard", cwd=tmp_path)
    assert proc.returncode == 5 and "no runs in runs/" in proc.stderr
    proc = harness_cli("leaderboard", "--run", "nope", cwd=tmp_path)
    assert proc.returncode == 5 and "run 'nope' not found" in proc.stderr


def test_readme_documents_every_exit_code_and_command():
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.M))
    assert {int(k): v for k, v in table.items()} == EXIT_CODES
    for command in COMMANDS:
        assert f"harness {command}" in readme, f"README does not document `harness {command}`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme and "awk '/<!-- test-command -->/" in ci
    extracted = subprocess.run(["awk", "/<!-- test-command -->/{getline; getline; print; exit}", "README.md"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
    venv = "python3 -m venv .venv && . .venv/bin/activate && "  # PEP 668 systems refuse a bare pip
    assert extracted == venv + 'pip install -e ".[test]" && python -m pytest'
    quickstart = subprocess.run(["awk", "/<!-- quickstart -->/{getline; getline; print; exit}", "README.md"],
                                cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert quickstart == venv + "pip install -e \".[cpu]\" && harness run --all"
    assert "<!-- quickstart -->" in (ROOT / "scripts" / "newcomer.sh").read_text()  # it times this line
