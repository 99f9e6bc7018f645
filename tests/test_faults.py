"""Resume under faults, with real processes: a kill -9 in the middle of an atomic write at every
stage (training, export, benchmark, report), a full disk, and --resume with other options."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import harness_cli

pytestmark = pytest.mark.integration

QUICK = ["run", "--model", "ann_tiny", "--quick", "--limit", "1000", "--json"]


def _temps(*folders: Path) -> list[Path]:
    return [p for d in folders if d.is_dir() for p in d.rglob(".*.tmp*")]


def _all_complete(run: Path) -> None:
    """Every artefact under its final name reads back whole."""
    for p in run.rglob("*.json"):
        json.loads(p.read_text())
    for p in run.rglob("*.npy"):
        np.load(p)


@pytest.mark.e2e
def test_kill_mid_write_at_every_stage_then_resume(project: Path):
    runs, subs, reports = project / "runs", project / "submissions", project / "reports"
    kept: dict[str, int] = {}  # artefacts finished by an earlier session: never rewritten after
    for failpoint, stage, half, finished in (
            ("oof.npy", "training", "ann_tiny/fold_0/oof.npy", []),
            ("model.onnx", "export", "ann_tiny/model.onnx", ["ann_tiny/fold_0/model.keras",
                                                             "ann_tiny/fold_1/model.keras", "ann_tiny/cv.json"]),
            ("bench.json", "benchmark", "ann_tiny/bench.json", ["ann_tiny/model.onnx", "ann_tiny/export.json"]),
            (".html", "report", None, ["ann_tiny/bench.json"])):
        killed = harness_cli(*QUICK, cwd=project, env={"HARNESS_FAILPOINT": failpoint}, timeout=600)
        assert killed.returncode == -9, f"{stage}: not killed at {failpoint}\n{killed.stderr}"
        run = next(runs.glob("*/manifest.json")).parent
        assert len(list(runs.glob("*/manifest.json"))) == 1, f"{stage}: the rerun started a new run"
        assert _temps(run, subs, reports), f"{stage}: the kill left no temp file to clean"
        if half:
            assert not (run / half).exists(), f"{stage}: a half-written {half} is visible"
        _all_complete(run)
        for name, mtime in kept.items():
            assert (run / name).stat().st_mtime_ns == mtime, f"{stage}: {name} was rewritten"
        kept.update({name: (run / name).stat().st_mtime_ns for name in finished})
    done = harness_cli(*QUICK, cwd=project, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming run {run.name}" in done.stderr and "temp file(s) a killed writer left" in done.stderr
    assert not _temps(run, subs, reports)
    for name, mtime in kept.items():
        assert (run / name).stat().st_mtime_ns == mtime, f"{name} was rewritten by the last resume"
    results = json.loads(done.stdout)
    assert Path(results["submission"]["path"]).is_file() and (reports / f"{run.name}.html").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 5 and manifest["finished"]


def _mount_tmpfs(where: Path, size: str) -> str | None:
    """None once a tmpfs of `size` is mounted at `where`; else why not (mount's own words)."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


@pytest.mark.e2e
@pytest.mark.privileged
def test_full_disk_is_one_clear_error_and_the_rerun_resumes(project: Path):
    disk = project / "small-disk"
    refused = _mount_tmpfs(disk, "3m")
    if refused:
        pytest.skip(f"privileged: mounting a 3 MB tmpfs needs root (CAP_SYS_ADMIN), and here: {refused}; "
                    ".ci/run runs as root and lists this skip at its end if it happens there")
    try:
        args = ["run", "--model", "ann_tiny", "--limit", "1000", "--folds", "2", "--epochs", "1",
                "--no-bench", "--no-report", "--json"]
        env = {"HARNESS_RUNS_DIR": str(disk / "runs")}
        full = harness_cli(*args, cwd=project, env=env, timeout=600)
        assert full.returncode == 5, full.stderr
        errors = [x for x in full.stderr.splitlines() if x.startswith("harness: error:")]
        assert len(errors) == 1 and "no space left on the device while writing " + str(disk) in errors[0]
        assert "Traceback" not in full.stderr
        run = next((disk / "runs").glob("*/manifest.json")).parent
        _all_complete(run)
        assert not _temps(run)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = harness_cli(*args, cwd=project, env=env, timeout=600)
        assert again.returncode == 0, again.stderr
        assert f"resuming run {run.name}" in again.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.e2e
def test_resume_with_other_options_is_a_clear_error(project: Path):
    args = ["run", "--model", "ann_tiny", "--limit", "600", "--folds", "2", "--epochs", "1", "--no-bench",
            "--no-report", "--json"]
    first = harness_cli(*args, cwd=project, timeout=600)
    assert first.returncode == 0, first.stderr
    run = Path(json.loads(first.stdout)["run_dir"]).name
    for changed in (["--epochs", "2"], ["--folds", "3"], ["--limit", "700"], ["--seed", "7"]):
        flags = args + changed  # the later flag wins
        other = harness_cli(*flags, "--resume", run, cwd=project, timeout=120)
        assert other.returncode == 5, other.stderr
        line = [x for x in other.stderr.splitlines() if x.startswith("harness: error:")]
        assert line == [f"harness: error: run {run} was started with other options or data; repeat its "
                        f"command (see its manifest.json) or start a new run"], other.stderr
    missing = harness_cli(*args, "--resume", "19990101-000000", cwd=project, timeout=120)
    assert missing.returncode == 5 and "19990101-000000" in missing.stderr
