"""Talking to Kaggle's client: credentials, the network guard, error translation, the download.
The only module that imports the `kaggle` client, lazily; `harness.kaggle.api` builds submissions and
their history on it.

    has_credentials()                 cheap check, no network, no `kaggle` import
    download_competition(dest)        competition zip -> train.csv, test.csv, sample_submission.csv

Why the care (the team's KAGGLE.md notes describe the client's internals, `kaggle` 2.2.5 pinned):
- `import kaggle` authenticates at import time and prints help on stdout, so it is imported
  inside `_network()`, quietly, only when Kaggle is really needed.
- The client sends every request without a timeout; `_network()` gives each one
  HARNESS_KAGGLE_TIMEOUT seconds (default 60) so a hung server cannot hang the harness.
- Credentials are never logged: client output is captured, and every message that leaves this
  module passes through `_redact`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.core.errors import (
    HarnessError,
    KaggleAuthError,
    KaggleCredentialsMissing,
    KaggleError,
    KaggleLimitReached,
    KaggleNetworkError,
    KaggleNotFound,
    KaggleRulesNotAccepted,
    KaggleServerError,
    UsageError,
)
from harness.core.io import atomic_path

COMPETITION = "digit-recognizer"
DATA_FILES = ("train.csv", "test.csv", "sample_submission.csv")
TOKEN_URL = "https://www.kaggle.com/settings/api"
NO_CREDENTIALS = (
    "no Kaggle credentials: set KAGGLE_API_TOKEN (or save the token to ~/.kaggle/access_token), "
    f"or KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json in ~/.kaggle; create a token at {TOKEN_URL}"
)

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------- credentials

def _config_dir() -> Path:
    """Where the client looks for kaggle.json (mirrors KaggleApi.config_dir)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    if legacy.exists():
        return legacy
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "kaggle"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _token() -> str:
    """The access token the client would use ('' if none), from env or ~/.kaggle/access_token."""
    value = os.environ.get("KAGGLE_API_TOKEN", "")
    if value:
        # The client accepts a path to a token file in KAGGLE_API_TOKEN too.
        try:
            is_file = Path(value).is_file()
        except (OSError, ValueError):  # a long token is not a valid file name
            is_file = False
        return _read_text(Path(value)) if is_file else value
    for name in ("access_token", "access_token.txt"):
        token = _read_text(Path.home() / ".kaggle" / name)
        if token:
            return token
    return ""


def _api_key() -> tuple[str, str]:
    """(username, key) from kaggle.json overlaid by KAGGLE_USERNAME/KAGGLE_KEY, as the client does."""
    user = key = ""
    text = _read_text(_config_dir() / "kaggle.json")
    if text:
        try:
            doc = json.loads(text)
            user, key = str(doc.get("username") or ""), str(doc.get("key") or "")
        except (ValueError, AttributeError):
            pass
    return os.environ.get("KAGGLE_USERNAME") or user, os.environ.get("KAGGLE_KEY") or key


def has_credentials() -> bool:
    """Whether the client will find credentials. Cheap: no network, no `kaggle` import."""
    user, key = _api_key()
    oauth = Path.home() / ".kaggle" / "credentials.json"
    return bool(_token() or (user and key) or oauth.is_file())


def _secrets() -> list[str]:
    user, key = _api_key()
    found = [s for s in (_token(), key) if s]
    if user and key:
        found.append(base64.b64encode(f"{user}:{key}".encode()).decode())
    return sorted(found, key=len, reverse=True)


def _redact(text: str) -> str:
    """`text` with every credential we know of replaced by ***."""
    for secret in _secrets():
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


# ----------------------------------------------------------------------------- the client

@dataclass
class _Net:
    """What `_network()` saw: the RPC methods called, in order (to tell which step failed)."""

    calls: list[str] = dataclasses.field(default_factory=list)
    output: io.StringIO = dataclasses.field(default_factory=io.StringIO)

    @property
    def last(self) -> str:
        return self.calls[-1] if self.calls else ""


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get("HARNESS_KAGGLE_TIMEOUT", "60")))
    except ValueError:
        raise UsageError("HARNESS_KAGGLE_TIMEOUT must be a number of seconds") from None


@contextlib.contextmanager
def _network(action: str) -> Iterator[_Net]:
    """Run client calls with timeouts, captured client output and errors mapped to KaggleError.

    `action` ("submitting", ...) goes into error messages.
    """
    import requests.adapters
    from urllib3.util.retry import Retry

    net = _Net()
    limit = _timeout()
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        net.calls.append(request.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                         if request.method == "POST" else request.method)
        # The upload session retries 10 times with backoff up to 2 minutes; keep it bounded.
        if isinstance(self.max_retries, Retry) and (self.max_retries.total or 0) > 3:
            self.max_retries = self.max_retries.new(total=3, backoff_max=8)
        return original(self, request, stream=stream, timeout=limit if timeout is None else timeout,
                        verify=verify, cert=cert, proxies=proxies)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(net.output):
            yield net
    except HarnessError as e:
        raise type(e)(_redact(str(e)), exit_code=e.exit_code) from None
    except SystemExit:
        raise KaggleCredentialsMissing(NO_CREDENTIALS) from None
    except Exception as e:
        raise _translate(e, action) from e  # the cause shows with HARNESS_DEBUG=1
    finally:
        requests.adapters.HTTPAdapter.send = original  # type: ignore[method-assign]


def _server_message(e: Exception) -> str:
    response = getattr(e, "response", None)
    try:
        body = response.json()
        msg = body.get("message") or (body.get("error") or {}).get("message") or ""
    except Exception:
        msg = ""
    return " ".join(str(msg or "").split())[:300]


def _translate(e: Exception, action: str, competition: str = COMPETITION) -> KaggleError:
    """One clear KaggleError for whatever the client raised."""
    import requests

    response = getattr(e, "response", None)
    if isinstance(e, requests.HTTPError) and response is not None:
        status = response.status_code
        detail = _server_message(e)
        said = f": {detail}" if detail else ""
        if status == 401:
            return KaggleAuthError(_redact(
                f"Kaggle rejected the credentials (401) while {action}; check KAGGLE_API_TOKEN, "
                f"KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json (new token: {TOKEN_URL})"))
        if status == 403 and "rule" not in detail.lower() and "permission" in detail.lower():
            return KaggleNotFound(_redact(
                f"Kaggle denied access to competition {competition!r} (403{said}); check its name"))
        if status == 403:
            return KaggleRulesNotAccepted(_redact(
                f"the rules of {competition!r} are not accepted (403{said}); accept them at "
                f"https://www.kaggle.com/competitions/{competition}/rules, then run again"))
        if status == 404:
            return KaggleNotFound(_redact(f"not found on Kaggle (404{said}) while {action}; check the competition name"))
        if status == 429 or (status == 400 and ("submit" in action or "limit" in detail.lower())):
            # Kaggle does not document its daily-limit answer: historically 400, sometimes 429.
            return KaggleLimitReached(_redact(
                f"Kaggle refused the request while {action} ({status}{said}); the daily submission "
                "limit is probably reached: try again after it resets at 00:00 UTC"))
        if status >= 500:
            return KaggleServerError(_redact(f"Kaggle server error ({status}) while {action}; try again later"))
        return KaggleError(_redact(f"Kaggle answered {status} while {action}{said}"))
    if isinstance(e, (requests.ConnectionError, requests.Timeout)):
        kind = (f"timed out after {_timeout():g}s, see HARNESS_KAGGLE_TIMEOUT" if isinstance(e, requests.Timeout)
                else "connection failed")
        return KaggleNetworkError(_redact(
            f"cannot reach Kaggle while {action} ({kind}); check the network or proxy and try again"))
    return KaggleError(_redact(f"{action} failed: {type(e).__name__}: {e}"))


def _api() -> Any:
    """An authenticated KaggleApi. Call inside `_network()`."""
    if not has_credentials():
        raise KaggleCredentialsMissing(NO_CREDENTIALS)
    # VERBOSE makes the client print request headers (the Authorization header among them).
    saved = {k: os.environ.pop(k) for k in ("VERBOSE", "VERBOSE_OUTPUT") if k in os.environ}
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi  # runs kaggle/__init__ (authenticates)
    finally:
        os.environ.update(saved)
    api = KaggleApi()
    # The client reads these at import time; take them from the environment of now, so that the
    # credentials found here and by has_credentials() agree even in a long-lived process. No
    # "--verbose": it would print request headers, the Authorization header among them.
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    api.config_dir = str(_config_dir())
    api.config = os.path.join(api.config_dir, "kaggle.json")
    try:
        api.authenticate()
    except SystemExit:
        if _token():  # the client silently drops a token that introspection says is inactive
            raise KaggleAuthError(f"Kaggle rejected the API token (inactive or expired); create a new one at {TOKEN_URL}") from None
        raise KaggleCredentialsMissing(NO_CREDENTIALS) from None
    return api


# ----------------------------------------------------------------------------- download

def download_competition(dest: Path, *, competition: str = COMPETITION, files: tuple[str, ...] = DATA_FILES,
                         extras: tuple[str, ...] = (), progress: Progress | None = None) -> None:
    """Download the competition zip and put its data `files` (Digit Recognizer's: train.csv,
    test.csv, sample_submission.csv) in `dest`.

    Each file appears under its final name only once complete (temp file + rename); nothing is
    replaced until all are extracted. A file of `files` the archive lacks is an error; `extras`
    (Kannada-MNIST's Dig-MNIST.csv) are taken when present.
    """
    say = progress or (lambda _m: None)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".kaggle-download-") as tmp:
        with _network(f"downloading {competition}"):
            api = _api()
            say(f"downloading {competition} from Kaggle ...")
            api.competition_download_files(competition, path=tmp, quiet=True, unzip=False)
        archives = sorted(Path(tmp).glob("*.zip"))
        if not archives:
            raise KaggleError(f"Kaggle sent no zip archive for {competition}")
        staged = _extract(archives[0], Path(tmp), files, extras)
        for name, path in staged.items():
            os.replace(path, dest / name)
    say(f"unzipped {', '.join(staged)} into {dest}")


def _extract(archive: Path, tmp: Path, files: tuple[str, ...] = DATA_FILES,
             extras: tuple[str, ...] = ()) -> dict[str, Path]:
    """The data files (and the extras present) from `archive`, written under `tmp`; matched by
    base name (no zip-slip)."""
    try:
        with zipfile.ZipFile(archive) as z:
            by_name = {Path(m).name: m for m in sorted(z.namelist(), key=len, reverse=True)}
            missing = [n for n in files if n not in by_name]
            if missing:
                raise KaggleError(f"the competition archive lacks {', '.join(missing)}")
            staged = {}
            for name in [*files, *[n for n in extras if n in by_name]]:
                with atomic_path(tmp / "staged" / name) as part, z.open(by_name[name]) as src, open(part, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                staged[name] = tmp / "staged" / name
            return staged
    except zipfile.BadZipFile:
        raise KaggleError(f"the competition archive from Kaggle is not a valid zip ({archive.stat().st_size} bytes)") from None
