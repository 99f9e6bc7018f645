"""Submitting to Kaggle and keeping the history of attempts (the client itself: harness.kaggle.client).

    has_credentials()                 cheap check, no network, no `kaggle` import
    download_competition(dest)        competition zip -> train.csv, test.csv, sample_submission.csv
    submit_file(path, message=..., history_path=...) -> SubmitResult
    read_history(path), refresh_history(path)

- A failed upload is not raised by the client: it returns "Could not submit to competition".
- CreateSubmission is never retried: if its outcome is unknown (timeout, dropped connection,
  5xx) the attempt is recorded as `unknown` and `refresh_history` later finds it on Kaggle.

History (`submissions/history.jsonl`): one JSON object per attempt, rewritten in place (under a
lock, atomically) when its status changes. Lowercase statuses are local (`invalid`, `dry-run`,
`failed`: nothing created on Kaggle; `unknown`: may have been created), uppercase ones are
Kaggle's own (`PENDING`, `COMPLETE`, `ERROR`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.core.errors import (
    HarnessError,
    KaggleAuthError,
    KaggleError,
    KaggleLimitReached,
    KaggleNetworkError,
    KaggleNotFound,
    KaggleRulesNotAccepted,
    KaggleServerError,
    KaggleUploadFailed,
    SubmissionError,
)
from harness.core.io import utc_now, write_text
from harness.kaggle.client import (  # noqa: F401  (re-exported: this module's API too)
    COMPETITION,
    Progress,
    _api,
    _Net,
    _network,
    _redact,
    _timeout,
    download_competition,
    has_credentials,
)

TEST_ROWS = {"digit-recognizer": 28000}  # rows Kaggle scores: a wrong count would waste a daily submission
HISTORY_NAME = "history.jsonl"
UPLOAD_FAILED = "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE


# ----------------------------------------------------------------------------- submit

@dataclass
class SubmitResult:
    """One submission attempt; also its line in history.jsonl."""

    id: str
    time: str
    file: str
    file_name: str
    sha256: str
    bytes: int
    message: str
    model: str | None = None
    run: str | None = None
    competition: str = COMPETITION
    status: str = "unknown"
    ref: int | None = None
    public_score: float | None = None
    private_score: float | None = None
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def history_file(submissions_dir: Path) -> Path:
    return Path(submissions_dir) / HISTORY_NAME


def _score(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def submit_file(path: Path, *, message: str, run_id: str | None = None, model: str | None = None,
                wait: float = 0, dry_run: bool = False, history_path: Path,
                competition: str = COMPETITION, n_rows: int | None = None, spec: Any = None,
                progress: Progress | None = None) -> SubmitResult:
    """Validate `path`, check rules and limits, upload once, optionally wait for the score.

    Returns the attempt (status PENDING, COMPLETE, ERROR or dry-run); raises SubmissionError for a
    bad file and a KaggleError subclass for anything Kaggle-side. Every attempt, failed or not,
    is recorded in `history_path`. The bytes validated are the bytes uploaded (a private copy).
    `n_rows` (default: Kaggle's 28,000 for digit-recognizer) is the row count the file must have;
    `spec` (harness.core.competition.Competition) its format, when it is not Digit Recognizer's.
    """
    say = progress or (lambda _m: None)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SubmissionError(f"cannot read submission {path}: {e.strerror or e}") from None
    now = utc_now().replace("+00:00", "Z")
    result = SubmitResult(id=uuid.uuid4().hex[:12], time=now, file=str(path), file_name=path.name,
                          sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), message=message,
                          model=model, run=run_id, competition=competition)
    with tempfile.TemporaryDirectory(prefix="harness-submit-") as tmp:
        # A private snapshot: the file cannot change between validation and upload.
        snapshot = Path(tmp) / path.name
        snapshot.write_bytes(data)
        with contextlib.suppress(OSError):
            shutil.copystat(path, snapshot)
        try:
            earlier = _submit(snapshot, result, wait=wait, dry_run=dry_run, n_rows=n_rows,
                              history_path=history_path, say=say, spec=spec)
        except HarnessError as e:
            result.error, result.exit_code = str(e), e.exit_code
            if result.status in ("unknown", "PENDING") and result.ref is None and not _created_maybe(e):
                result.status = "failed"
            _record(history_path, result)
            raise
    return earlier or result


def _created_maybe(e: HarnessError) -> bool:
    return bool(getattr(e, "maybe_created", False))


def _submit(snapshot: Path, result: SubmitResult, *, wait: float, dry_run: bool, n_rows: int | None,
            history_path: Path, say: Progress, spec: Any = None) -> SubmitResult | None:
    """The steps of `submit_file`, filling `result`; returns an earlier attempt that already
    delivered these bytes, if any (then nothing is uploaded)."""
    from harness.kaggle.submission import validate_submission

    result.status = "invalid"
    say(f"validating {result.file} ({result.bytes} bytes, sha256 {result.sha256[:12]})")
    form = {"competition": spec} if spec is not None else {}
    validate_submission(snapshot, n_rows=n_rows if n_rows is not None else TEST_ROWS.get(result.competition), **form)
    result.status = "failed"
    comp = result.competition
    with _network(f"checking {comp} on Kaggle"):
        api = _api()
        _check_rules(api, comp)
        _check_limits(api, comp, say)
    if dry_run:
        result.status = "dry-run"
        say("dry run: the file is valid, the rules are accepted and a submission is allowed; nothing uploaded")
        _record(history_path, result)
        return None
    earlier = _earlier_unknown(history_path, result, say)
    if earlier is not None:
        if wait > 0 and earlier.status == "PENDING":
            _wait(api, earlier, wait, say)
            _record(history_path, earlier)
        return earlier
    # Recorded before the upload so that a crash mid-upload still leaves a trace to refresh.
    result.status, result.error = "unknown", "upload started; outcome not recorded"
    _record(history_path, result)
    say(f"uploading {result.file_name} to {comp} ...")
    net = None
    try:
        with _network(f"submitting to {comp}") as net:
            response = api.competition_submit(str(snapshot), result.message, comp, quiet=True)
    except KaggleError as e:
        if net is not None and net.last == "CreateSubmission" and not isinstance(
                e, (KaggleAuthError, KaggleRulesNotAccepted, KaggleNotFound, KaggleLimitReached)):
            # No answer, or a 5xx: the submission may exist. Never retry; refresh will find it.
            said = str(e).replace("; try again later", "").replace(" and try again", "")
            e = type(e)(f"{said}; the submission may have been created: check with `harness submissions "
                        "--refresh` before submitting again", exit_code=e.exit_code)
            e.maybe_created = True  # type: ignore[attr-defined]
            raise e from None
        raise
    if getattr(response, "message", "") == UPLOAD_FAILED:  # the client's silent failure
        raise KaggleUploadFailed(f"the upload to Kaggle failed ({UPLOAD_FAILED}{_upload_detail(net)}); "
                                 "nothing was submitted, try again")
    if not getattr(response, "ref", 0):
        e = KaggleUploadFailed(_redact(f"Kaggle answered without a submission ref ({response.message or 'no message'}); "
                                       "check with `harness submissions --refresh` before submitting again"))
        e.maybe_created = True  # type: ignore[attr-defined]
        raise e
    result.ref, result.status, result.error = int(response.ref), "PENDING", None
    _record(history_path, result)
    say(f"submitted: ref {result.ref} ({response.message or 'PENDING'})")
    if wait > 0:
        _wait(api, result, wait, say)
        _record(history_path, result)
    return None


def _earlier_unknown(history_path: Path, result: SubmitResult, say: Progress) -> SubmitResult | None:
    """Guard against a duplicate: the same bytes were sent before and got no answer.

    Asks Kaggle (refresh). If that attempt did arrive, it is returned and nothing is uploaded; if
    its fate is still open, refuses; if it is known to have failed, returns None (go ahead).
    """
    same = {r["id"] for r in read_history(history_path) if r.get("status") == "unknown"
            and r.get("sha256") == result.sha256 and r.get("competition") == result.competition}
    if not same:
        return None
    say("an earlier upload of this file got no answer; asking Kaggle whether it arrived")
    for rec in refresh_history(history_path, competition=result.competition, progress=say):
        if rec.get("id") not in same:
            continue
        if rec.get("ref"):
            say(f"it did: ref {rec['ref']} ({rec['status']}); not uploading the same file again")
            fields = {f.name for f in dataclasses.fields(SubmitResult)}
            return SubmitResult(**{k: v for k, v in rec.items() if k in fields})
        if rec.get("status") == "unknown":
            raise KaggleUploadFailed(
                f"an upload of this same file at {rec.get('time')} got no answer and Kaggle does not list it "
                "yet; to avoid a duplicate, run `harness submissions --refresh` in a few minutes and retry")
    return None


def _upload_detail(net: _Net) -> str:
    """Why the PUT failed, from what the client printed (it prints, not raises, upload errors)."""
    printed = net.output.getvalue()
    if "timed out" in printed.lower():
        return f": the upload timed out after {_timeout():g}s"
    if "Connection" in printed or "Max retries" in printed:
        return ": the connection to the upload server failed"
    return ": the upload server refused the file" if "PUT" in net.calls else ""


def _check_rules(api: Any, competition: str) -> None:
    found = api.competitions_list(search=competition)
    for comp in getattr(found, "competitions", None) or []:
        if str(comp.ref).rstrip("/").rsplit("/", 1)[-1] == competition:
            if not comp.user_has_entered:
                raise KaggleRulesNotAccepted(
                    f"you have not accepted the rules of {competition!r}: accept them at "
                    f"https://www.kaggle.com/competitions/{competition}/rules (signed in), then run again")
            return
    raise KaggleNotFound(f"competition {competition!r} not found on Kaggle")


def _check_limits(api: Any, competition: str, say: Progress) -> None:
    import requests

    try:
        limits = api.competition_get_submission_limits(competition)
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code in (404, 501):
            say("note: Kaggle did not report submission limits; going on")  # older servers lack it
            return
        raise
    if limits.num_allowed_now > 0:
        say(f"submissions today: {limits.num_today}; allowed now: {limits.num_allowed_now}")
        return
    what = "total" if limits.limited_by_total else "daily"
    raise KaggleLimitReached(f"the {what} submission limit of {competition!r} is reached ({limits.num_today} "
                             "today); nothing uploaded" + ("" if limits.limited_by_total else
                                                          ": try again after it resets at 00:00 UTC"))


def _poll_interval() -> float:
    try:
        return max(0.01, float(os.environ.get("HARNESS_KAGGLE_POLL", "2")))
    except ValueError:
        return 2.0


def _get_submission(api: Any, ref: int) -> Any:
    """One GetSubmission call, straight through the SDK (the client's own wrapper retries for minutes)."""
    from kagglesdk.competitions.types.competition_api_service import ApiGetSubmissionRequest

    request = ApiGetSubmissionRequest()
    request.ref = int(ref)
    with api.build_kaggle_client() as client:
        return client.competitions.competition_api_client.get_submission(request)


def _get_submission_or_none(api: Any, ref: int) -> Any:
    import requests

    try:
        return _get_submission(api, ref)
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code == 404:
            return None  # not readable (yet): leave the record as it is
        raise


def _apply(result: SubmitResult | dict, sub: Any) -> None:
    """Copy Kaggle's view of a submission onto a result or a history record."""
    fields = {"ref": int(sub.ref) or None, "status": getattr(sub.status, "name", str(sub.status)),
              "public_score": _score(sub.public_score), "private_score": _score(sub.private_score),
              "error": (sub.error_description or "").strip() or None}
    for key, value in fields.items():
        if isinstance(result, dict):
            result[key] = value
        else:
            setattr(result, key, value)


def _wait(api: Any, result: SubmitResult, wait: float, say: Progress) -> None:
    """Poll until COMPLETE or ERROR or `wait` seconds, with backoff; transient errors are retried."""
    deadline = time.monotonic() + wait
    interval = _poll_interval()
    while True:
        try:
            with _network(f"polling submission {result.ref}"):
                sub = _get_submission_or_none(api, result.ref)  # None: a fresh one may not be readable yet
            if sub is not None:
                _apply(result, sub)
            if result.status in ("COMPLETE", "ERROR"):
                say(f"submission {result.ref}: {result.status}")
                return
        except (KaggleServerError, KaggleNetworkError, KaggleLimitReached) as e:
            say(f"polling: {e}; retrying")  # reads are safe to repeat
        left = deadline - time.monotonic()
        if left <= 0:
            say(f"submission {result.ref} still {result.status} after {wait:g}s; "
                "check later with `harness submissions --refresh`")
            return
        time.sleep(min(interval, left))
        interval = min(interval * 1.5, 30.0)


# ----------------------------------------------------------------------------- history

@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the rewrite is still atomic
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _parse_lines(path: Path) -> list[dict | str]:
    """Records in file order; a line that is not a JSON object is kept verbatim (never lost)."""
    if not path.is_file():
        return []
    out: list[dict | str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        out.append(rec if isinstance(rec, dict) else line)
    return out


def _write_lines(path: Path, lines: list[dict | str]) -> None:
    text = "".join((json.dumps(r, sort_keys=False) if isinstance(r, dict) else r) + "\n" for r in lines)
    write_text(path, text)


def _record(path: Path, result: SubmitResult | dict) -> None:
    """Append `result` to the history, or replace its earlier line (same id)."""
    rec = result.to_dict() if isinstance(result, SubmitResult) else dict(result)
    rec["error"] = _redact(rec["error"]) if rec.get("error") else rec.get("error")
    with _locked(path):
        lines = _parse_lines(path)
        for i, old in enumerate(lines):
            if isinstance(old, dict) and old.get("id") == rec["id"]:
                lines[i] = rec
                break
        else:
            lines.append(rec)
        _write_lines(path, lines)


def read_history(path: Path) -> list[dict]:
    """The attempts recorded in `path`, oldest first (unreadable lines skipped)."""
    return [r for r in _parse_lines(Path(path)) if isinstance(r, dict)]


def _parse_time(text: str | None) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def refresh_history(path: Path, *, competition: str = COMPETITION, progress: Progress | None = None) -> list[dict]:
    """Ask Kaggle about PENDING and `unknown` attempts, update them in `path`, return all records.

    An `unknown` attempt (no answer to CreateSubmission) is matched to a Kaggle submission with the
    same file name and description, made after it and not claimed by another record.
    """
    say = progress or (lambda _m: None)
    path = Path(path)
    todo = [r for r in read_history(path) if r.get("status") in ("PENDING", "unknown")
            and r.get("competition", competition) == competition]
    if not todo:
        say("nothing pending to refresh")
        return read_history(path)
    with _network(f"listing submissions to {competition}"):
        api = _api()
        remote = [s for s in api.competition_submissions(competition, page_size=50) or [] if s is not None]
        by_ref = {int(s.ref): s for s in remote}
        claimed = {r.get("ref") for r in read_history(path) if r.get("ref")}
        updated = []
        for rec in todo:
            sub = by_ref.get(int(rec["ref"])) if rec.get("ref") else _match(rec, remote, claimed)
            if sub is None and rec.get("ref"):
                sub = _get_submission_or_none(api, rec["ref"])
            if sub is not None:
                _apply(rec, sub)
                claimed.add(rec["ref"])
                if rec["status"] != "ERROR":
                    rec["error"] = None
                rec["exit_code"] = 0 if rec["status"] != "ERROR" else KaggleUploadFailed.exit_code
            elif _older_than(rec, minutes=3) and _covers(remote, rec):  # Kaggle lists new ones in seconds
                rec["status"], rec["error"] = "failed", "not found among Kaggle's submissions: it was not created"
            updated.append(rec)
    for rec in updated:
        _record(path, rec)
        say(f"{rec['id']}: {rec['status']}" + (f" (ref {rec['ref']})" if rec.get("ref") else ""))
    return read_history(path)


def _match(rec: dict, remote: list, claimed: set) -> Any:
    start = _parse_time(rec.get("time"))
    for sub in sorted(remote, key=lambda s: s.date or _dt.datetime.min):
        when = sub.date.replace(tzinfo=_dt.timezone.utc) if sub.date else None
        if (int(sub.ref) not in claimed and sub.file_name == rec.get("file_name")
                and (sub.description or "").strip() == (rec.get("message") or "").strip()
                and (start is None or when is None or when >= start - _dt.timedelta(minutes=5))):
            return sub
    return None


def _covers(remote: list, rec: dict, page: int = 20) -> bool:
    """Whether the listed page reaches back to `rec`'s time (so its absence means it does not exist).

    Fewer than 20 (the client's page size; Kaggle may cap the 50 asked for) means the whole list.
    """
    start = _parse_time(rec.get("time"))
    dates = [s.date.replace(tzinfo=_dt.timezone.utc) for s in remote if s.date]
    return len(remote) < page or (start is not None and bool(dates) and min(dates) <= start)


def _older_than(rec: dict, minutes: float) -> bool:
    t = _parse_time(rec.get("time"))
    return t is not None and _dt.datetime.now(_dt.timezone.utc) - t > _dt.timedelta(minutes=minutes)
