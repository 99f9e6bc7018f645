"""`harness submit` against every failure the stand-in can play, run in process for speed (the
real `kaggle` client, the stand-in on 127.0.0.1, the same isolation as test_submit.py)."""

from __future__ import annotations

import base64
import json
import socket

import pytest
from kaggle_server import (  # noqa: F401  (fixtures)
    RULES_MESSAGE,
    SOLUTION,
    TOKEN,
    USERNAME,
    cli,
    empty_home,
    history,
    home,
    isolate,
    project,
    standin,
    submission_csv,
)

pytestmark = [pytest.mark.kaggle]

UPLOAD_CALLS = ("StartSubmissionUpload", "PUT", "CreateSubmission")


def test_invalid_file_is_never_uploaded(cli, standin, home, project):
    good = submission_csv(SOLUTION).decode()
    (project / "bad.csv").write_text(good.replace("\n1,", "\n1,1", 1))  # label 10..19: out of range
    p = cli(home, project, "submit", "bad.csv")
    assert p.returncode == 6, p.stderr
    assert "Label" in p.stderr
    # Kaggle scores 28,000 rows: a shorter file (ids 1..N, fine for a local score) is refused too.
    (project / "short.csv").write_text("".join(good.splitlines(keepends=True)[:-1]))
    p = cli(home, project, "submit", "short.csv")
    assert p.returncode == 6 and "28,000" in p.stderr, p.stderr
    assert standin.requests == []
    assert [(r["status"], r["exit_code"]) for r in history(project)] == [("invalid", 6)] * 2


def test_dry_run_checks_everything_but_uploads_nothing(cli, standin, home, project):
    p = cli(home, project, "submit", "sub.csv", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("dry-run")
    assert standin.endpoints() == ["ListCompetitions", "GetSubmissionLimits"]
    assert history(project)[0]["status"] == "dry-run"


def test_access_token_is_introspected_and_used(cli, standin, empty_home, project):
    p = cli(empty_home, project, "submit", "sub.csv", "--dry-run", KAGGLE_API_TOKEN=TOKEN)
    assert p.returncode == 0, p.stderr
    assert "IntrospectToken" in standin.endpoints()
    (call,) = [r for r in standin.requests if r.endpoint == "ListCompetitions"]
    assert call.authorization == f"Bearer {TOKEN}"


def test_rejected_token_exits_11_and_never_leaks(cli, standin, empty_home, project):
    secret = "KGAT_wrong_token_value_42"
    p = cli(empty_home, project, "submit", "sub.csv", KAGGLE_API_TOKEN=secret)
    assert p.returncode == 11, p.stderr
    assert "token" in p.stderr and secret not in p.stdout + p.stderr
    assert secret not in (project / "submissions" / "history.jsonl").read_text()


def test_rejected_key_exits_11(cli, standin, tmp_path, project):
    h = tmp_path / "badhome"
    (h / ".kaggle").mkdir(parents=True)
    (h / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": "nope-nope"}))
    p = cli(h, project, "submit", "sub.csv")
    assert p.returncode == 11
    assert "nope-nope" not in p.stderr and base64.b64encode(f"{USERNAME}:nope-nope".encode()).decode() not in p.stderr


def test_rules_not_accepted_is_caught_before_upload(cli, standin, home, project):
    standin.entered = False
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 12
    assert "https://www.kaggle.com/competitions/digit-recognizer/rules" in p.stderr
    assert all(standin.count(e) == 0 for e in UPLOAD_CALLS)


def test_rules_403_from_create_submission(cli, standin, home, project):
    standin.fail("CreateSubmission", 403, RULES_MESSAGE)
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 12
    assert "accept" in p.stderr
    assert standin.count("CreateSubmission") == 1
    assert history(project)[-1]["status"] == "failed"


def test_competition_not_found(cli, standin, home, project):
    standin.fail("ListCompetitions", 404, "Competition not found")
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 13, p.stderr


def test_daily_limit_seen_before_upload(cli, standin, home, project):
    standin.num_today = standin.max_daily
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 14
    assert "limit" in p.stderr and "00:00 UTC" in p.stderr
    assert all(standin.count(e) == 0 for e in UPLOAD_CALLS)


@pytest.mark.parametrize("status,shape", [(400, "code"), (429, "error")])
def test_limit_answer_at_create_is_not_retried(cli, standin, home, project, status, shape):
    standin.fail("CreateSubmission", status, "Your team has used its daily Submission allowance", shape=shape)
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 14, p.stderr
    assert standin.count("CreateSubmission") == 1
    assert history(project)[-1]["status"] == "failed"


def test_server_error(cli, standin, home, project):
    standin.fail("ListCompetitions", 500)
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 15
    assert "server error (500)" in p.stderr


def test_server_error_at_create_is_unknown_never_retried(cli, standin, home, project):
    standin.fail("CreateSubmission", 502)
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 15
    assert "harness submissions --refresh" in p.stderr
    assert standin.count("CreateSubmission") == 1
    assert history(project)[-1]["status"] == "unknown"


def test_failed_put_is_detected(cli, standin, home, project):
    standin.fail("PUT", 500, "storage broke")
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 17
    assert "Could not submit to competition" in p.stderr
    assert standin.count("CreateSubmission") == 0
    assert history(project)[-1]["status"] == "failed"


def test_dropped_connection_before_upload(cli, standin, home, project):
    standin.fail("StartSubmissionUpload", drop=True)
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 16
    assert "may have been created" not in p.stderr  # nothing was created: it is safe to retry
    assert history(project)[-1]["status"] == "failed"


def test_network_unreachable(cli, standin, home, project):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    p = cli(home, project, "submit", "sub.csv", HTTP_PROXY=dead, http_proxy=dead)
    assert p.returncode == 16
    assert "cannot reach Kaggle" in p.stderr


def test_scoring_error_is_reported(cli, standin, home, project):
    standin.score_error = "Evaluation failed: ImageId 7 duplicated"
    p = cli(home, project, "submit", "sub.csv", "--wait", "10")
    assert p.returncode == 17
    assert "ImageId 7 duplicated" in p.stdout and "ImageId 7 duplicated" in p.stderr
    rec = history(project)[-1]
    assert rec["status"] == "ERROR" and "ImageId 7" in rec["error"]


def test_wait_timeout_leaves_pending_then_refresh_completes(cli, standin, home, project):
    standin.pending_polls = 10_000
    p = cli(home, project, "submit", "sub.csv", "--wait", "0.3")
    assert p.returncode == 0, p.stderr
    assert "PENDING" in p.stdout and "--refresh" in p.stderr
    standin.pending_polls = 0
    p = cli(home, project, "submissions", "--refresh")
    assert p.returncode == 0, p.stderr
    assert "COMPLETE" in p.stdout and "0.99" in p.stdout
    assert history(project)[-1]["status"] == "COMPLETE"


def test_resubmitting_after_an_unanswered_upload_that_never_arrived(cli, standin, home, project):
    standin.fail("CreateSubmission", drop=True, times=1)  # dropped before Kaggle did anything
    assert cli(home, project, "submit", "sub.csv").returncode == 16
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 17 and "avoid a duplicate" in p.stderr  # too early to tell: refuse
    path = project / "submissions" / "history.jsonl"
    recs = history(project)
    recs[0]["time"] = "2000-01-01T00:00:00Z"  # long ago: Kaggle's list settles it
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    p = cli(home, project, "submit", "sub.csv")
    assert p.returncode == 0, p.stderr
    assert standin.count("CreateSubmission") == 2 and len(standin.submissions) == 1
    assert [r["status"] for r in history(project)] == ["failed", "failed", "PENDING"]


def test_submissions_without_history(cli, standin, home, project):
    p = cli(home, project, "submissions")
    assert p.returncode == 0 and p.stdout == ""
    assert "no submissions" in p.stderr
    assert json.loads(cli(home, project, "submissions", "--json").stdout) == []
    assert standin.requests == []


def test_usage_errors(cli, standin, home, project):
    assert cli(home, project, "submit", "sub.csv", "--wait", "-1").returncode == 2
    assert cli(home, project, "submit", "sub.csv", "--run", "x").returncode == 2
    p = cli(home, project, "submit")  # no file, no runs
    assert p.returncode == 5 and "no runs" in p.stderr
