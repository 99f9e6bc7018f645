"""A stand-in for the part of the Kaggle API that the `kaggle` 2.2.5 client uses, on 127.0.0.1.

The unmodified client reaches it as a proxy (KAGGLE.md, way 1): in the client's environment set
`KAGGLE_API_ENVIRONMENT=LOCALHOST` and `HTTP_PROXY=http://127.0.0.1:<port>`; requests then arrive
in absolute form (`POST http://localhost/api/v1/<service>/<Method>`). `HTTPS_PROXY` should point
here too: any CONNECT (an https request, i.e. one meant for the real host) is refused and
recorded in `connects`, so a test can assert that nothing tried to leave the machine.

    with StandIn(solution={1: 3, 2: 7, ...}) as server:
        env = server.client_env(home)          # the environment for a `harness` subprocess
        server.fail("CreateSubmission", 429)   # or hang=True, drop=True, times=1, ...
        ...
        server.count("CreateSubmission"), server.uploads, server.submissions

Endpoints: IntrospectToken, ListCompetitions, GetSubmissionLimits, StartSubmissionUpload, the PUT
upload (`PUT`), CreateSubmission (scores the upload against `solution`), GetSubmission,
ListSubmissions, DownloadDataFiles (a 302 to `http://storage.localhost/...zip`, then `ZIP`).

The end of the file has the pytest fixtures the Kaggle tests share (`standin`, `home`, `project`,
`isolate`, `cli`) and `run_subprocess`; test modules import what they use.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

USERNAME = "standin-user"
KEY = "standin-key-0123456789abcdef"      # not a real key: the stand-in's own
TOKEN = "KGAT_standin_token_0123456789"   # not a real token
COMPETITION = "digit-recognizer"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to submit"


@dataclass
class Fault:
    """How to answer one endpoint: an HTTP status (with a JSON body), a hang, or a dropped connection."""

    status: int = 0
    message: str = ""
    shape: str = "code"        # "code": {"code", "message"}; "error": {"error": {"code", "message", "status"}}
    hang: bool = False         # never answer (until the server stops)
    drop: bool = False         # close the connection without an answer
    after: bool = False        # for drop: do the work first (e.g. create the submission), then drop
    times: int | None = None   # how many requests it applies to (None: all)


@dataclass
class Seen:
    method: str
    host: str
    endpoint: str
    authorization: str | None
    body: bytes


@dataclass
class StandIn:
    solution: dict[int, int] = field(default_factory=dict)
    data_zip: bytes = b""
    entered: bool = True           # rules accepted
    max_daily: int = 5
    num_today: int = 0
    pending_polls: int = 1         # GetSubmission answers PENDING this many times before scoring
    score_error: str | None = None  # make scoring fail with this description

    def __post_init__(self) -> None:
        self.requests: list[Seen] = []
        self.connects: list[str] = []
        self.uploads: dict[str, bytes] = {}
        self.submissions: list[dict] = []
        self.faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refs = itertools.count(50_000_001)
        self._polls: dict[int, int] = {}
        self.server: ThreadingHTTPServer | None = None

    # -- control
    def start(self) -> "StandIn":
        handler = type("Handler", (_Handler,), {"standin": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, endpoint: str, status: int = 0, message: str = "", **kw) -> None:
        self.faults.setdefault(endpoint, []).append(Fault(status=status, message=message, **kw))

    def count(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if r.endpoint == endpoint)

    def endpoints(self) -> list[str]:
        return [r.endpoint for r in self.requests]

    def client_env(self, home: str, **extra: str) -> dict[str, str]:
        """An environment that sends the real client here and nowhere else (no real credentials)."""
        env = {
            "HOME": home, "KAGGLE_CONFIG_DIR": f"{home}/.kaggle", "XDG_CONFIG_HOME": f"{home}/.config",
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": self.proxy, "http_proxy": self.proxy,
            # https would mean a real host: send it here too, where CONNECT is refused and recorded.
            "HTTPS_PROXY": self.proxy, "https_proxy": self.proxy,
            "HARNESS_KAGGLE_TIMEOUT": "5", "HARNESS_KAGGLE_POLL": "0.05",
        }
        env.update(extra)
        return env

    # -- internals
    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self.faults.get(endpoint, []):
                if fault.times is None or fault.times > 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value == TOKEN
        if scheme == "Basic":
            try:
                return base64.b64decode(value).decode() == f"{USERNAME}:{KEY}"
            except ValueError:
                return False
        return False

    def score(self, data: bytes) -> tuple[str, str | None]:
        """(public score, error description) for an uploaded file, the way Kaggle scores it."""
        if self.score_error:
            return "", self.score_error
        try:
            rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        except UnicodeDecodeError:
            return "", "Submission is not UTF-8 text"
        if not rows or [c.strip() for c in rows[0]] != ["ImageId", "Label"]:
            return "", "Submission must have the header ImageId,Label"
        if len(rows) - 1 != len(self.solution):
            return "", f"Submission must have {len(self.solution)} rows; found {len(rows) - 1}"
        public = [i for i in self.solution if i % 4 == 0] or list(self.solution)
        try:
            predicted = {int(r[0]): int(r[1]) for r in rows[1:]}
        except (ValueError, IndexError):
            return "", "Submission has a malformed row"
        correct = sum(predicted.get(i) == self.solution[i] for i in public)
        return f"{correct / len(public):.5f}", None


def _submission_json(sub: dict) -> dict:
    return {k: v for k, v in {
        "ref": sub["ref"], "date": sub["date"], "description": sub["description"], "fileName": sub["fileName"],
        "status": sub["status"], "publicScore": sub.get("publicScore"), "privateScore": sub.get("privateScore"),
        "errorDescription": sub.get("errorDescription"), "totalBytes": sub["totalBytes"],
    }.items() if v is not None}


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and hangs stay isolated

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing
    def _target(self) -> tuple[str, str]:
        parts = urlsplit(self.path)
        host = parts.hostname or (self.headers.get("Host") or "").split(":")[0]
        return host, parts.path

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str, shape: str = "code") -> None:
        if shape == "error":
            names = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 500: "INTERNAL"}
            self._json({"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}, status)
        else:
            self._json({"code": status, "message": message}, status)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _apply_fault(self, fault: Fault | None, stage: str) -> bool:
        """Act on `fault` before ("pre") or after ("post") the work; True if the request is answered."""
        if fault is None:
            return False
        if stage == "pre" and fault.hang:
            self.standin._stop.wait(60)
            self._drop()
            return True
        if fault.drop and (fault.after == (stage == "post")):
            self._drop()
            return True
        if stage == "pre" and fault.status:
            self._error(fault.status, fault.message or {401: "Unauthenticated", 404: "Not found",
                                                         500: "Internal error"}.get(fault.status, "error"),
                        fault.shape)
            return True
        return False

    # -- verbs
    def do_CONNECT(self) -> None:
        self.standin.connects.append(self.path)
        self._send(403, b"the stand-in refuses CONNECT: nothing may reach a real host", "text/plain")

    def do_PUT(self) -> None:
        host, path = self._target()
        body = self._body()
        s = self.standin
        s.requests.append(Seen("PUT", host, "PUT", self.headers.get("Authorization"), body))
        fault = s._take_fault("PUT")
        if self._apply_fault(fault, "pre"):
            return
        token = path.rsplit("/", 1)[-1]
        if token not in s.uploads:
            self._send(404, b"unknown upload", "text/plain")
            return
        s.uploads[token] = body
        self._send(200, b"", "text/plain")

    def do_GET(self) -> None:
        host, path = self._target()
        s = self.standin
        s.requests.append(Seen("GET", host, "ZIP", self.headers.get("Authorization"), b""))
        if self._apply_fault(s._take_fault("ZIP"), "pre"):
            return
        if host == "storage.localhost" and path.endswith(".zip"):
            self._send(200, s.data_zip, "application/zip",
                       {"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT", "Accept-Ranges": "bytes"})
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        host, path = self._target()
        body = self._body()
        s = self.standin
        endpoint = path.rstrip("/").rsplit("/", 1)[-1]
        s.requests.append(Seen("POST", host, endpoint, self.headers.get("Authorization"), body))
        fault = s._take_fault(endpoint)
        if self._apply_fault(fault, "pre"):
            return
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            self._error(400, "body is not JSON")
            return
        if endpoint == "IntrospectToken":
            ok = req.get("token") == TOKEN
            self._json({"active": ok, "username": USERNAME} if ok else {"active": False})
            return
        if not path.startswith("/api/v1/"):
            self._error(404, f"unknown path {path}")
            return
        if not s._authorized(self.headers.get("Authorization")):
            self._error(401, "Unauthenticated")
            return
        handler = getattr(self, f"rpc_{endpoint}", None)
        if handler is None:
            self._error(404, f"unknown method {endpoint}")
            return
        if req.get("competitionName", COMPETITION) != COMPETITION:
            self._error(403, "Permission 'competitions.participate' was denied")
            return
        answer = handler(req)
        if self._apply_fault(fault, "post"):
            return
        if answer is not None:
            self._json(answer)

    # -- RPCs (each returns the JSON answer, or None after answering itself)
    def rpc_ListCompetitions(self, req: dict) -> dict:
        s = self.standin
        comps = [{"ref": f"https://www.kaggle.com/competitions/{COMPETITION}", "title": "Digit Recognizer",
                  "userHasEntered": s.entered, "maxDailySubmissions": s.max_daily, "teamCount": 1000}]
        return {"competitions": [c for c in comps if (req.get("search") or "") in c["ref"]]}

    def rpc_GetSubmissionLimits(self, req: dict) -> dict:
        s = self.standin
        if not s.entered:
            return {}  # all zero when not on a team (client docstring)
        return {"numToday": s.num_today, "numTotal": s.num_today,
                "numAllowedNow": max(0, s.max_daily - s.num_today)}

    def rpc_StartSubmissionUpload(self, req: dict) -> dict:
        token = f"blob-{len(self.standin.uploads) + 1}"
        self.standin.uploads[token] = b""  # announced; filled by the PUT
        return {"token": token, "createUrl": f"http://upload.localhost/upload/{token}"}

    def rpc_CreateSubmission(self, req: dict) -> dict | None:
        s = self.standin
        if not s.entered:
            self._error(403, RULES_MESSAGE)
            return None
        if s.num_today >= s.max_daily:
            self._error(400, "Submission not allowed:  Your team has used its daily Submission allowance "
                             f"({s.max_daily}) today, please try again tomorrow UTC")
            return None
        data = s.uploads.get(req.get("blobFileTokens", ""))
        if not data:
            self._error(400, "No uploaded file for that token")
            return None
        ref = next(s._refs)
        s.num_today += 1
        s.submissions.append({
            "ref": ref, "date": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
            "description": req.get("submissionDescription", ""), "fileName": f"{req['blobFileTokens']}.csv",
            "status": "PENDING", "totalBytes": len(data), "bytes": data,
        })
        # Kaggle names the file after StartSubmissionUpload's fileName; keep the one the client sent.
        for r in reversed(s.requests):
            if r.endpoint == "StartSubmissionUpload":
                s.submissions[-1]["fileName"] = json.loads(r.body).get("fileName", "")
                break
        return {"message": "Successfully submitted to Digit Recognizer", "ref": ref}

    def _advance(self, sub: dict) -> None:
        s = self.standin
        seen = s._polls.get(sub["ref"], 0)
        s._polls[sub["ref"]] = seen + 1
        if sub["status"] == "PENDING" and seen >= s.pending_polls:
            score, error = s.score(sub["bytes"])
            sub.update(status="ERROR", errorDescription=error) if error else sub.update(
                status="COMPLETE", publicScore=score, privateScore=score)

    def rpc_GetSubmission(self, req: dict) -> dict | None:
        for sub in self.standin.submissions:
            if sub["ref"] == int(req.get("ref", 0)):
                self._advance(sub)
                return _submission_json(sub)
        self._error(404, "Submission not found")
        return None

    def rpc_ListSubmissions(self, req: dict) -> dict:
        subs = list(reversed(self.standin.submissions))
        for sub in subs:
            self._advance(sub)
        return {"submissions": [_submission_json(s) for s in subs[: int(req.get("pageSize") or 20)]]}

    def rpc_DownloadDataFiles(self, req: dict) -> None:
        # Like Kaggle: a redirect to signed storage on another host (the client must drop its auth).
        self.send_response(302)
        self.send_header("Location", f"http://storage.localhost/competitions/{COMPETITION}.zip?X-Goog-Signature=abc")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None


# ----------------------------------------------------------------------------- test data

def make_solution(n: int = 28000, seed: int = 0) -> dict[int, int]:
    rng = random.Random(seed)
    return {i: rng.randrange(10) for i in range(1, n + 1)}


def submission_csv(labels: dict[int, int], wrong: int = 0) -> bytes:
    """A valid submission for `labels`, with the first `wrong` answers off by one."""
    lines = ["ImageId,Label"]
    for k, (i, y) in enumerate(sorted(labels.items())):
        lines.append(f"{i},{(y + 1) % 10 if k < wrong else y}")
    return ("\n".join(lines) + "\n").encode()


def make_competition_zip(n_train: int = 50, n_test: int = 30, seed: int = 0) -> bytes:
    """A tiny but well-formed digit-recognizer archive: Kaggle's headers, pixels 0..255, all labels."""
    rng = random.Random(seed)
    pixels = [f"pixel{i}" for i in range(784)]

    def image() -> str:
        return ",".join(str(rng.randrange(256) if rng.random() < 0.2 else 0) for _ in range(784))

    train = ["label," + ",".join(pixels)] + [f"{k % 10},{image()}" for k in range(n_train)]
    test = [",".join(pixels)] + [image() for _ in range(n_test)]
    sample = ["ImageId,Label"] + [f"{i},0" for i in range(1, n_test + 1)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, rows in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
            z.writestr(name, "\n".join(rows) + "\n")
    return buf.getvalue()


# ----------------------------------------------------------------------------- pytest helpers
# (here rather than in conftest.py so the Kaggle tests stay self-contained: import what you use)

SOLUTION = make_solution()            # 28,000 rows like Kaggle's test set
ARCHIVE = make_competition_zip()      # 50 train / 30 test rows
# Variables of the calling shell that must never reach the client under test.
SCRUB = ("KAGGLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "HARNESS_", "VERBOSE", "REQUESTS_CA",
         "CURL_CA")


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def _scrubbed(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.upper().startswith(SCRUB)}


@pytest.fixture
def standin():
    with StandIn(solution=SOLUTION, data_zip=ARCHIVE) as server:
        yield server
        assert server.connects == [], f"something tried to reach a real (https) host: {server.connects}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fake HOME holding the stand-in's kaggle.json (the only credentials anywhere)."""
    h = tmp_path / "home"
    (h / ".kaggle").mkdir(parents=True)
    (h / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": USERNAME, "key": KEY}))
    os.chmod(h / ".kaggle" / "kaggle.json", 0o600)
    return h


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    h = tmp_path / "emptyhome"
    h.mkdir()
    return h


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a valid submission sub.csv (99% right)."""
    p = tmp_path / "project"
    p.mkdir()
    (p / "sub.csv").write_bytes(submission_csv(SOLUTION, wrong=280))
    return p


def run_subprocess(standin: StandIn, home: Path, cwd: Path, argv: list[str], **env: str) -> Ran:
    """`python ARGV` in a child whose environment can only reach the stand-in."""
    full = _scrubbed(dict(os.environ)) | standin.client_env(str(home)) | env
    p = subprocess.run([sys.executable, *argv], cwd=cwd, env=full, capture_output=True, text=True, timeout=60)
    return Ran(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def isolate(standin: StandIn, monkeypatch: pytest.MonkeyPatch):
    """`isolate(home, **env)`: this process's environment as a subprocess would get it, and a
    guard that refuses to resolve any host but the loopback (belt and braces)."""
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kw):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test guard: no network beyond the stand-in (asked for {host})")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)

    def use(home: Path, **env: str) -> None:
        for key in list(os.environ):
            if key.upper().startswith(SCRUB):
                monkeypatch.delenv(key)
        for key, value in (standin.client_env(str(home)) | env).items():
            monkeypatch.setenv(key, value)

    return use


@pytest.fixture
def cli(isolate, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`cli(home, cwd, *argv, **env)`: run `harness ARGV` in this process (fast), isolated."""
    from harness.cli import main

    def run(home: Path, cwd: Path, *argv: str, **env: str) -> Ran:
        isolate(home, **env)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def history(project: Path) -> list[dict]:
    path = project / "submissions" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
