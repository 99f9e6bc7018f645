"""Kaggle notebooks: the competition's files mounted read-only are validated and used in place,
never written; runs, submissions and reports go to the working folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.core.config import load_settings
from tests.conftest import harness_cli

FILES = ("train.csv", "test.csv", "sample_submission.csv")


def _read_only_copy(src: Path, dst: Path) -> bool:
    """The three files in `dst`, read-only: a read-only tmpfs when we may mount (root: file modes do
    not stop root), else file modes. Returns whether a mount was made."""
    dst.mkdir(parents=True)
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(dst)], capture_output=True).returncode == 0
    for name in FILES:
        shutil.copy2(src / name, dst / name)
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(dst)], check=True)
    else:
        for name in FILES:
            (dst / name).chmod(0o444)
        dst.chmod(0o555)
    return mounted


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_the_mounted_competition_folder_is_found_only_when_nothing_else_is_configured(tmp_path: Path):
    mounted = tmp_path / "input" / "digit-recognizer"
    mounted.mkdir(parents=True)
    for name in FILES:
        (mounted / name).write_text("x")
    env = {"HARNESS_KAGGLE_INPUT": str(mounted)}
    assert load_settings(tmp_path, env).data_dir == mounted
    assert load_settings(tmp_path, {**env, "HARNESS_DATA_DIR": "mine"}).data_dir == Path("mine")
    (tmp_path / "data" / "digit-recognizer").mkdir(parents=True)
    (tmp_path / "data" / "digit-recognizer" / "train.csv").write_text("x")
    assert load_settings(tmp_path, env).data_dir == Path("data/digit-recognizer")  # the project's own wins
    (mounted / "test.csv").unlink()
    assert load_settings(tmp_path / "data", env).data_dir == Path("data/digit-recognizer")  # incomplete: not used


@pytest.mark.e2e
def test_read_only_data_is_used_in_place_and_never_written(project: Path, replica_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    mounted = project / "kaggle" / "input" / "digit-recognizer"
    was_mounted = _read_only_copy(replica_dir, mounted)
    try:
        before = _snapshot(mounted)
        monkeypatch.delenv("HARNESS_DATA_DIR")
        env = {"HARNESS_KAGGLE_INPUT": str(mounted)}
        working = project / "working"
        working.mkdir()
        proc = harness_cli("run", "--model", "ann_tiny", "--limit", "1000", "--folds", "2", "--epochs", "1",
                           "--no-bench", "--json", cwd=working, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout)
        run = Path(results["run_dir"])
        assert json.loads((working / run / "manifest.json").read_text())["config"]["data_dir"] == str(mounted)
        assert (working / results["submission"]["path"]).is_file()
        assert (working / "reports" / f"{run.name}.html").is_file()
        again = harness_cli("data", cwd=working, env=env, timeout=300)  # validate in place: kept
        assert again.returncode == 0, again.stderr
        assert _snapshot(mounted) == before, "something was written into the read-only data folder"
    finally:
        if was_mounted:
            subprocess.run(["umount", "-l", str(mounted)], capture_output=True)
