"""harness.kaggle.api and harness.kaggle.client in process, without the client: credentials lookup, redaction, error mapping,
the history file, and the `harness submissions` table. Nothing here touches the network."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from harness.cli.submissions import render_table
from harness.core import errors
from harness.kaggle import api as kaggle
from harness.kaggle import client as kaggle_client

pytestmark = [pytest.mark.kaggle]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Kaggle variables, and an empty fake HOME (returned)."""
    import os

    for key in list(os.environ):
        if key.startswith("KAGGLE_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


def test_has_credentials_finds_each_of_the_clients_places(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    already = "kaggle" in sys.modules
    assert not kaggle.has_credentials()
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    assert not kaggle.has_credentials()  # a user without a key is not enough
    monkeypatch.setenv("KAGGLE_KEY", "k" * 32)
    assert kaggle.has_credentials()
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok")
    assert kaggle.has_credentials()
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    (env / ".kaggle").mkdir()
    (env / ".kaggle" / "access_token").write_text("tok\n")
    assert kaggle.has_credentials()
    (env / ".kaggle" / "access_token").write_text("  \n")  # empty: the client ignores it
    assert not kaggle.has_credentials()
    (env / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "me", "key": "abc"}))
    assert kaggle.has_credentials()
    (env / ".kaggle" / "kaggle.json").write_text("{not json")
    assert not kaggle.has_credentials()
    (env / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "me"}))
    monkeypatch.setenv("KAGGLE_KEY", "abc")  # file and environment combine, as in the client
    assert kaggle.has_credentials()
    monkeypatch.delenv("KAGGLE_KEY")
    other = env / "cfg"
    other.mkdir()
    (other / "kaggle.json").write_text(json.dumps({"username": "me", "key": "abc"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(other))
    assert kaggle.has_credentials()
    assert ("kaggle" in sys.modules) == already  # cheap: never imports the client


def test_xdg_config_dir_is_used_when_there_is_no_dot_kaggle(env: Path) -> None:
    (env / ".config" / "kaggle").mkdir(parents=True)
    (env / ".config" / "kaggle" / "kaggle.json").write_text(json.dumps({"username": "me", "key": "abc"}))
    assert kaggle.has_credentials()


def test_redact_hides_keys_tokens_and_basic_auth(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    monkeypatch.setenv("KAGGLE_KEY", "secretkey123")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_tok456")
    basic = base64.b64encode(b"me:secretkey123").decode()
    text = kaggle_client._redact(f"key=secretkey123 token=KGAT_tok456 Authorization: Basic {basic}")
    assert "secretkey123" not in text and "KGAT_tok456" not in text and basic not in text


def _http_error(status: int, body: dict | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body or {}).encode()
    response.headers["Content-Type"] = "application/json"
    return requests.HTTPError(f"{status} Client Error", response=response)


@pytest.mark.parametrize("error,action,expected", [
    (_http_error(401), "submitting", errors.KaggleAuthError),
    (_http_error(403, {"code": 403, "message": "You must accept this competition's rules"}), "submitting",
     errors.KaggleRulesNotAccepted),
    (_http_error(403, {"code": 403, "message": "Permission 'competitions.get' was denied"}), "downloading",
     errors.KaggleNotFound),
    (_http_error(404), "downloading", errors.KaggleNotFound),
    (_http_error(400, {"code": 400, "message": "bad"}), "submitting to x", errors.KaggleLimitReached),
    (_http_error(400, {"code": 400, "message": "bad page token"}), "listing submissions", errors.KaggleError),
    (_http_error(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}), "x", errors.KaggleLimitReached),
    (_http_error(500), "x", errors.KaggleServerError),
    (_http_error(503), "x", errors.KaggleServerError),
    (requests.ConnectionError("refused"), "x", errors.KaggleNetworkError),
    (requests.ReadTimeout("slow"), "x", errors.KaggleNetworkError),
    (ValueError("odd"), "x", errors.KaggleError),
])
def test_errors_map_to_distinct_exit_codes(env: Path, error: Exception, action: str, expected: type) -> None:
    mapped = kaggle_client._translate(error, action)
    assert type(mapped) is expected
    assert "\n" not in str(mapped)


def test_exit_codes_are_distinct_and_documented() -> None:
    classes = [errors.KaggleCredentialsMissing, errors.KaggleAuthError, errors.KaggleRulesNotAccepted,
               errors.KaggleNotFound, errors.KaggleLimitReached, errors.KaggleServerError,
               errors.KaggleNetworkError, errors.KaggleUploadFailed]
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes) and all(c in errors.EXIT_CODES for c in codes)


def _result(**kw) -> kaggle.SubmitResult:
    base = dict(id="a1", time="2024-05-01T12:00:00Z", file="s.csv", file_name="s.csv", sha256="0" * 64,
                bytes=10, message="m")
    return kaggle.SubmitResult(**(base | kw))


def test_history_appends_replaces_by_id_and_keeps_unreadable_lines(env: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "submissions" / "history.jsonl"
    kaggle._record(path, _result(status="unknown"))
    with path.open("a") as f:
        f.write("{truncated by hand\n")
    kaggle._record(path, _result(id="b2", status="dry-run"))
    monkeypatch.setenv("KAGGLE_KEY", "hunter2hunter2")
    kaggle._record(path, _result(status="PENDING", ref=7, error="echo hunter2hunter2"))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[1] == "{truncated by hand"
    recs = kaggle.read_history(path)
    assert [(r["id"], r["status"], r["ref"]) for r in recs] == [("a1", "PENDING", 7), ("b2", "dry-run", None)]
    assert "hunter2" not in path.read_text()


def test_unknown_attempt_matches_the_first_unclaimed_submission_after_it() -> None:
    def sub(ref: int, minutes: int, name: str = "s.csv", desc: str = "m") -> SimpleNamespace:
        return SimpleNamespace(ref=ref, file_name=name, description=desc,
                               date=dt.datetime(2024, 5, 1, 12, 0) + dt.timedelta(minutes=minutes))
    rec = {"time": "2024-05-01T12:00:00Z", "file_name": "s.csv", "message": "m"}
    remote = [sub(1, -60), sub(2, 1, desc="other"), sub(3, 1, name="x.csv"), sub(4, 2), sub(5, 3)]
    assert kaggle._match(rec, remote, claimed=set()).ref == 4
    assert kaggle._match(rec, remote, claimed={4}).ref == 5
    assert kaggle._match(rec, remote, claimed={4, 5}) is None


def test_submissions_table_aligns_and_marks_missing() -> None:
    recs = [_result(status="COMPLETE", ref=123, public_score=0.98765, model="cnn", run="r1").to_dict(),
            _result(id="b", status="failed", message="x" * 60).to_dict()]
    table = render_table(recs).splitlines()
    assert table[0].split() == ["time", "status", "score", "ref", "model", "run", "file", "message"]
    assert "0.98765" in table[1] and "2024-05-01 12:00" in table[1]
    assert " - " in table[2] and "…" in table[2]
