"""One family of user-facing errors, each with the exit code the CLI returns for it.

Library code raises these; only `harness.cli` turns them into one line on stderr and an exit
code. Anything else escaping to the CLI is a bug and exits 1 (HARNESS_DEBUG=1 shows the traceback).
The table of codes is mirrored in README.md ("Exit codes"); a test keeps the two in step.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(HarnessError):
    """Bad flag, option value or argument combination."""

    exit_code = 2


class DataError(HarnessError):
    """Missing, malformed or inconsistent data file (train/test/sample_submission, caches)."""

    exit_code = 3


class ModelError(HarnessError):
    """Unknown model name, broken plugin, duplicate registration, bad hyperparameter."""

    exit_code = 4


class RunError(HarnessError):
    """Missing or incomplete run folder, failed export/parity gate, nothing to rank."""

    exit_code = 5


class SubmissionError(HarnessError):
    """A submission file that fails validation (it is never uploaded)."""

    exit_code = 6


class BusyError(HarnessError):
    """Another live harness process is working on the same run folder or tuning study."""

    exit_code = 7


class KaggleError(HarnessError):
    """Base of errors talking to Kaggle; subclasses carry distinct exit codes."""

    exit_code = 17


class KaggleCredentialsMissing(KaggleError):
    exit_code = 10


class KaggleAuthError(KaggleError):
    exit_code = 11


class KaggleRulesNotAccepted(KaggleError):
    exit_code = 12


class KaggleNotFound(KaggleError):
    exit_code = 13


class KaggleLimitReached(KaggleError):
    exit_code = 14


class KaggleServerError(KaggleError):
    exit_code = 15


class KaggleNetworkError(KaggleError):
    exit_code = 16


class KaggleUploadFailed(KaggleError):
    exit_code = 17


# Documented exit codes (README.md "Exit codes" mirrors this; tests/test_cli.py checks it).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug; HARNESS_DEBUG=1 shows the traceback)",
    2: "usage error: bad flag, option value or argument; a --time-limit below the cheapest plan here",
    3: "data error: missing, malformed or inconsistent data file",
    4: "model error: unknown model, broken plugin, bad hyperparameter",
    5: "run error: missing/incomplete run, failed export or parity gate, no model fits `--max-latency-ms`",
    6: "invalid submission file",
    7: "busy: another live harness process is working on that run or study (its pid is named)",
    10: "Kaggle: no credentials configured",
    11: "Kaggle: credentials rejected (401)",
    12: "Kaggle: competition rules not accepted (403)",
    13: "Kaggle: competition or submission not found (404)",
    14: "Kaggle: daily submission limit reached (400/429)",
    15: "Kaggle: server error (5xx)",
    16: "Kaggle: network unreachable or timed out",
    17: "Kaggle: upload refused or failed",
    130: "interrupted (Ctrl-C); a re-run resumes from what finished",
}
