"""`harness submit` / `harness submissions` end to end: a `harness` subprocess running the real
`kaggle` client against the stand-in server (tests/kaggle_server.py) on 127.0.0.1.

Nothing here can reach the real Kaggle host: HOME and the config dirs are temporary, no real
credential is in the environment, the client is pointed at localhost through the stand-in as
HTTP proxy, and https (the real host) is proxied to the stand-in too, which refuses CONNECT.
The error matrix runs in process (faster) in test_submit_errors.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import pytest
from kaggle_server import (  # noqa: F401  (fixtures)
    SOLUTION,
    USERNAME,
    StandIn,
    empty_home,
    history,
    home,
    project,
    run_subprocess,
    standin,
    submission_csv,
)

pytestmark = [pytest.mark.kaggle, pytest.mark.e2e]

UPLOAD_CALLS = ("StartSubmissionUpload", "PUT", "CreateSubmission")


def harness(standin: StandIn, home: Path, project: Path, *argv: str, **env: str):
    return run_subprocess(standin, home, project, ["-m", "harness", *argv], **env)


def test_submit_waits_for_score_and_uploads_validated_bytes_once(standin, home, project):
    data = (project / "sub.csv").read_bytes()
    p = harness(standin, home, project, "submit", "sub.csv", "-m", "first try", "--wait", "10")
    assert p.returncode == 0, p.stderr
    assert "COMPLETE" in p.stdout and "public score 0.99" in p.stdout
    assert [standin.count(e) for e in UPLOAD_CALLS] == [1, 1, 1]
    assert list(standin.uploads.values()) == [data]
    put = next(r for r in standin.requests if r.endpoint == "PUT")
    assert put.authorization is None and put.host == "upload.localhost"  # no credentials to storage
    (sub,) = standin.submissions
    assert sub["description"] == "first try" and sub["fileName"] == "sub.csv"
    (rec,) = history(project)
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["bytes"] == len(data)
    assert (rec["status"], rec["ref"], rec["message"], rec["error"]) == ("COMPLETE", sub["ref"], "first try", None)
    assert rec["public_score"] == pytest.approx(float(sub["publicScore"]))


def test_submit_run_uses_its_file_model_and_default_message(standin, home, project):
    run = project / "runs" / "20240501-120000"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    (run / "results.json").write_text(json.dumps({"run_id": run.name, "best": "cnn_small"}))
    (project / "submissions").mkdir()
    (project / "submissions" / f"{run.name}.csv").write_bytes(submission_csv(SOLUTION))
    p = harness(standin, home, project, "submit", "--run", run.name, "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["status"], out["run"], out["model"]) == ("PENDING", run.name, "cnn_small")
    assert standin.submissions[0]["description"] == f"harness run {run.name}: cnn_small"
    assert standin.submissions[0]["fileName"] == f"{run.name}.csv"
    # Without arguments: the latest run, the same file.
    p = harness(standin, home, project, "submit", "--dry-run", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["file"].endswith(f"submissions/{run.name}.csv")


def test_no_credentials(standin, empty_home, project):
    p = harness(standin, empty_home, project, "submit", "sub.csv")
    assert p.returncode == 10
    assert "KAGGLE_API_TOKEN" in p.stderr and p.stderr.count("harness: error") == 1
    assert standin.requests == []
    assert history(project)[-1]["status"] == "failed"


def test_rejected_key_exits_11_and_never_leaks(standin, tmp_path, project):
    h = tmp_path / "badhome"
    (h / ".kaggle").mkdir(parents=True)
    secret = "wrong-secret-value-42"
    (h / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": secret}))
    # VERBOSE would make the client print request headers (Authorization among them).
    p = harness(standin, h, project, "submit", "sub.csv", VERBOSE="1")
    assert p.returncode == 11, p.stderr
    assert "rejected" in p.stderr
    blob = p.stdout + p.stderr + (project / "submissions" / "history.jsonl").read_text()
    for leak in (secret, base64.b64encode(f"{USERNAME}:{secret}".encode()).decode()):
        assert leak not in blob
    assert standin.count("StartSubmissionUpload") == 0


def test_hang_times_out(standin, home, project):
    standin.fail("CreateSubmission", hang=True)
    start = time.monotonic()
    # 2 s: the four calls before it must still answer in time on a loaded machine.
    p = harness(standin, home, project, "submit", "sub.csv", HARNESS_KAGGLE_TIMEOUT="2")
    assert time.monotonic() - start < 15
    assert p.returncode == 16
    assert "timed out" in p.stderr
    assert standin.count("CreateSubmission") == 1
    assert history(project)[-1]["status"] == "unknown"


def test_dropped_connection_after_create_then_refresh_finds_it(standin, home, project):
    standin.fail("CreateSubmission", drop=True, after=True)
    p = harness(standin, home, project, "submit", "sub.csv", "-m", "lost answer")
    assert p.returncode == 16, p.stderr
    assert "may have been created" in p.stderr
    assert standin.count("CreateSubmission") == 1 and len(standin.submissions) == 1
    (rec,) = history(project)
    assert rec["status"] == "unknown" and rec["ref"] is None
    p = harness(standin, home, project, "submissions", "--refresh", "--json")
    assert p.returncode == 0, p.stderr
    (rec,) = json.loads(p.stdout)
    assert rec["ref"] == standin.submissions[0]["ref"] and rec["status"] in ("PENDING", "COMPLETE")
    assert standin.count("CreateSubmission") == 1


def test_resubmitting_after_an_unanswered_upload_does_not_duplicate(standin, home, project):
    standin.fail("CreateSubmission", drop=True, after=True, times=1)
    assert harness(standin, home, project, "submit", "sub.csv").returncode == 16
    p = harness(standin, home, project, "submit", "sub.csv", "--json")
    assert p.returncode == 0, p.stderr
    assert "not uploading the same file again" in p.stderr
    assert json.loads(p.stdout)["ref"] == standin.submissions[0]["ref"]
    assert standin.count("CreateSubmission") == 1 and standin.count("PUT") == 1
    assert len(history(project)) == 1
