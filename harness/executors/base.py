"""The contract of an executor, and the driver loop every executor runs under.

    with executor.session(data, run_dir):                 # connects, checks the workers, puts the data
        run_jobs(executor, jobs, on_done, progress)       # blocks; a failed job stops the run

Only the driver writes model-level files; workers write fold folders (published whole, see
harness.train.jobs). A worker that dies is retried once; a second death, or a job that raises, stops the
run with one line naming the job, and everything finished is kept.
"""

from __future__ import annotations

import abc
import contextlib
import os
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.core.errors import RunError
from harness.train.jobs import FoldJob, JobData, ProbeJob, TrialJob

Job = FoldJob | TrialJob | ProbeJob
RAY_PIN = "ray==2.60.0"
RAY_INSTALL = "pip install 'harness[ray]'"
CONNECT_TIMEOUT_S = 30.0     # --ray-timeout default: connecting, and each node's probe
EXECUTORS = ("local", "ray")


class JobFailed(RunError):
    """A job raised, or its worker died twice; names the job."""


class Failure:
    """What a job that did not finish left behind: why, and whether its worker died."""

    def __init__(self, message: str, died: bool = False, trace: str | None = None,
                 exit_code: int | None = None) -> None:
        self.message, self.died, self.trace, self.exit_code = message, died, trace, exit_code


class Executor(abc.ABC):
    """Runs jobs; `submit` hands one out, `wait` returns those that finished (result or Failure)."""

    name = "local"
    slots = 1
    cpus_per_job: int | None = None
    keep_warm = False            # close() leaves idle workers for the next session (Processes)

    def __init__(self) -> None:
        self.in_flight: dict[str, Job] = {}

    @contextlib.contextmanager
    def session(self, data: JobData, run_dir: Path | None = None, keep_warm: bool = False) -> Iterator["Executor"]:
        """Start the workers with `data`, yield, close; with `keep_warm`, idle worker processes
        are left for the next session of the same layout to adopt (where the executor has them)."""
        self.keep_warm = keep_warm
        self.start(data, run_dir)
        try:
            yield self
        finally:
            self.close()

    def start(self, data: JobData, run_dir: Path | None) -> None:
        self.data = data

    def free(self) -> int:
        return self.slots - len(self.in_flight)

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Start `job` (a slot must be free)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[tuple[Job, dict | Failure]]:
        """Jobs finished within `timeout` seconds, each with its result or Failure."""

    def close(self) -> None:
        pass

    def cancel(self, job: Job) -> bool:
        """Stop a running job; False where this executor cannot (it then runs to its end)."""
        return False

    def epochs(self) -> list[tuple[Job, int, float]]:
        """The epochs running folds finished since the last call: (job, epochs done, the worker's
        clock at that end); none where this executor's workers do not report them."""
        return []

    def shorten(self, job: Job, epochs: int) -> bool:
        """Tell a running fold to end with `epochs` (harness.train.cv.train_fold's `control`);
        False where this executor cannot reach it."""
        return False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.slots, "cpus_per_job": self.cpus_per_job,
                "nodes": [{"host": socket.gethostname(), "cpus": os.cpu_count()}],
                "resources": {"CPU": os.cpu_count()}}


# ----------------------------------------------------------------------------- the driver loop


def run_jobs(executor: Executor, jobs: list[Job], on_done: Callable[[Job, dict], None],
             progress: Any = None, keeper: Any = None) -> None:
    """Hand out `jobs` (in order, as slots free up) and call `on_done` in this process for each
    result. A Failure stops the run: in-flight jobs are cancelled, finished ones stay. A `keeper`
    (harness.run.keeper) re-plans the jobs not started to keep a time limit, learns the speed
    from the epochs running folds finish, shortens a fold that would end past the deadline, and
    cancels what runs past it."""
    pending = deque(jobs)
    running: dict[str, tuple[Job, float]] = {}
    clock = keeper.clock if keeper else time.perf_counter
    if progress:
        progress.jobs_begin(jobs, executor.slots)
    try:
        while pending or executor.in_flight:
            while pending and executor.free() > 0:
                before = {j.key: j.model for j in pending}
                job = keeper.admit(pending, running) if keeper else pending.popleft()
                gone = set(before) - {j.key for j in pending} - ({job.key} if job else set())
                if progress and gone:
                    progress.jobs_dropped([before[key] for key in gone])
                if job is None:
                    break
                executor.submit(job)
                running[job.key] = (job, clock())
                if progress:
                    progress.job_started(job)
            if keeper:
                for job, epochs in keeper.shorten(running, pending):
                    if executor.shorten(job, epochs):
                        keeper.shortened(job, epochs)
                for job in keeper.overdue(running):
                    if executor.cancel(job):
                        running.pop(job.key)
                        gone = [j.model for j in pending if j.model == job.model]
                        keeper.forget(job.model, pending)
                        if progress:
                            progress.jobs_dropped([job.model, *gone], cancelled=job)
            finished = executor.wait(timeout=1.0)
            for job, done, at in executor.epochs():  # before the results: a finished job's are its last
                if keeper and job.key in running:
                    keeper.epoch(job, done, at)
            for job, outcome in finished:
                if isinstance(outcome, Failure):
                    if outcome.trace and os.environ.get("HARNESS_DEBUG"):
                        print(outcome.trace, file=sys.stderr)
                    raise JobFailed(f"job {job.name} failed on the {executor.name} executor: {outcome.message}; "
                                    f"finished jobs are kept (run the same command again to resume)",
                                    exit_code=outcome.exit_code)
                # wall_s: submit to result as the driver saw it (queueing, start-up, transfer, work)
                outcome = {**outcome, "wall_s": round(clock() - running.pop(job.key)[1], 3)}
                if keeper and outcome.get("status") == "trained":
                    keeper.finished(job, outcome["wall_s"], outcome.get("epochs"))
                if progress:
                    progress.job_done(job, outcome)
                on_done(job, outcome)
    finally:
        if progress:
            progress.jobs_end()


def tcp_reachable(address: str, timeout: float) -> str | None:
    """None if host:port accepts a TCP connection within `timeout`, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return f"{address!r} is not HOST:PORT"
    except OSError as e:
        return e.strerror or type(e).__name__


def call_with_timeout(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
    """Run `fn` in a daemon thread; (True, result) or (False, None) if it did not return in time.
    Exceptions are re-raised here. For library calls that retry forever (Ray's connect)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")

