"""Executors: who runs the jobs of a run or a study (harness.train.jobs), and how many at once.

    executor = make_executor("local", jobs=2)            # or ("ray", address="10.0.0.5:6379")
    with executor.session(data, run_dir):                 # connects, checks the workers, puts the data
        run_jobs(executor, jobs, on_done, progress)       # blocks; a failed job stops the run

- `InProcess` (local, `--jobs 1`, the default): one job at a time in this process, exactly as
  before executors existed (TensorFlow's default threads, a per-step progress bar).
- `Processes` (local, `--jobs N`): N spawned worker processes, each with `cpus_per_job` TF threads,
  reused from job to job (TF imported once; Keras's state cleared between jobs).
- `RayExecutor` (`--executor ray`): one Ray task per job (`max_calls=1`, `num_cpus=cpus_per_job`)
  on a cluster at `--ray-address`, or on a Ray started for the run and stopped after it.

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
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.core.errors import RunError, UsageError
from harness.train.jobs import FoldJob, JobData, TrialJob, Where, execute

Job = FoldJob | TrialJob
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

    def __init__(self) -> None:
        self.in_flight: dict[str, Job] = {}

    @contextlib.contextmanager
    def session(self, data: JobData, run_dir: Path | None = None) -> Iterator["Executor"]:
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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "jobs": self.slots, "cpus_per_job": self.cpus_per_job,
                "nodes": [{"host": socket.gethostname(), "cpus": os.cpu_count()}],
                "resources": {"CPU": os.cpu_count()}}


# ----------------------------------------------------------------------------- local


class InProcess(Executor):
    """One job at a time, in this process (today's behaviour)."""

    def __init__(self, hooks: Callable[[Job], dict] | None = None) -> None:
        super().__init__()
        self.hooks = hooks or (lambda job: {})

    def submit(self, job: Job) -> None:
        self.in_flight[job.key] = job

    def wait(self, timeout: float) -> list[tuple[Job, dict | Failure]]:
        job = self.in_flight.pop(next(iter(self.in_flight)))
        where = Where("local", threads=None)
        try:
            return [(job, execute(job, self.data, where, self.hooks(job)))]
        except Exception as e:  # named after its job, as on every executor; a user error keeps its code
            return [(job, Failure(f"{type(e).__name__}: {e}", trace=traceback.format_exc(),
                                  exit_code=getattr(e, "exit_code", None)))]


def _worker(conn: Any, data: JobData, threads: int) -> None:
    """Entry point of a spawned worker process: TensorFlow is imported once, then jobs arrive over
    `conn` one at a time (None: stop). Each job starts from a cleared Keras session and sets its own
    seeds (harness.train.cv.train_fold), so a reused worker trains a fold exactly as a fresh one does."""
    _exit_with_parent()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if job is None:
            return
        try:
            result = execute(job, data, Where("local", threads=threads))
            message: tuple = ("ok", result)
        except BaseException as e:  # noqa: BLE001 (the parent reports it; a worker must not hang)
            message = ("error", f"{type(e).__name__}: {e}", traceback.format_exc(),
                       getattr(e, "exit_code", None))
        finally:
            _clear_keras()
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """Stop this worker within `poll_s` of its driver's death. A driver killed by SIGTERM or
    SIGKILL runs no clean-up, and an orphan would train its fold on, beside the workers of the
    command that resumes the run (two trainings of one fold on the same cores; the first to
    finish wins). Its staging folder is left for that command to remove (harness.train.jobs)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:  # re-parented: the driver is gone
                os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _clear_keras() -> None:
    """Drop the last job's models and graphs (Keras's global state) before the next job."""
    if "keras" in sys.modules:
        import gc

        sys.modules["keras"].backend.clear_session()
        gc.collect()


class _Worker:
    """One spawned worker process and the job it is running (None: idle)."""

    def __init__(self, ctx: Any, data: JobData, threads: int, name: str) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(child, data, threads), name=name, daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None


class Processes(Executor):
    """`jobs` spawned worker processes, `cpus_per_job` TensorFlow threads each. A worker is started
    once and reused for job after job: the spawn, TensorFlow's import and the data's transfer cost
    ~5 s per job, 3-5 % of a `--quick` run, when each job had a fresh process. A worker that dies
    (killed, out of memory) is replaced and its job retried once."""

    def __init__(self, jobs: int, cpus_per_job: int | None = None, retries: int = 1) -> None:
        super().__init__()
        import multiprocessing

        self.slots = jobs
        self.cpus_per_job = cpus_per_job or max(1, (os.cpu_count() or 1) // jobs)
        self.retries = retries
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that holds TF
        self._workers: list[_Worker] = []
        self._attempts: dict[str, int] = {}

    def submit(self, job: Job) -> None:
        worker = next((w for w in self._workers if w.job is None and w.proc.is_alive()), None)
        if worker is None:
            # drop idle workers that died; a busy one that died stays until `wait` retries its job
            self._workers = [w for w in self._workers if w.job is not None or w.proc.is_alive()]
            worker = _Worker(self._ctx, self.data, self.cpus_per_job, f"harness worker {len(self._workers) + 1}")
            self._workers.append(worker)
        worker.conn.send(job)
        worker.job = job
        self.in_flight[job.key] = job
        self._attempts[job.key] = self._attempts.get(job.key, 0) + 1

    def wait(self, timeout: float) -> list[tuple[Job, dict | Failure]]:
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.job is not None]
        if busy:
            wait([h for w in busy for h in (w.proc.sentinel, w.conn)], timeout)
        done: list[tuple[Job, dict | Failure]] = []
        for w in busy:
            message = None
            try:
                if w.conn.poll():
                    message = w.conn.recv()
            except (EOFError, OSError):
                message = None
            if message is None and w.proc.is_alive():
                continue
            job, w.job = w.job, None
            assert job is not None
            del self.in_flight[job.key]
            if message is None:  # died without a word: killed, out of memory, a crash
                w.proc.join(timeout=30)
                w.conn.close()
                self._workers.remove(w)
                if self._attempts[job.key] <= self.retries:
                    self.submit(job)
                    continue
                done.append((job, Failure(f"its worker process died twice (exit code {w.proc.exitcode})",
                                          died=True)))
            elif message[0] == "ok":
                done.append((job, message[1]))
            else:
                done.append((job, Failure(message[1], trace=message[2], exit_code=message[3])))
        return done

    def close(self) -> None:
        for w in self._workers:
            if w.job is None and w.proc.is_alive():
                with contextlib.suppress(OSError):
                    w.conn.send(None)  # idle: finish cleanly
            elif w.proc.is_alive():
                w.proc.terminate()  # a job still running: the run is stopping
        for w in self._workers:
            w.proc.join(timeout=10)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()
        self._workers.clear()
        self.in_flight.clear()


AUTO_JOB_MEMORY = 3 << 30   # a training process's peak (TF + data + cnn_deep), with room


def auto_jobs() -> int:
    """`--jobs auto`: one one-thread job per core on machines of up to 2 cores (two one-thread
    processes train 1.2-1.5x faster than one two-thread process, issue 11 speed audit), else one
    two-thread job per two cores; never more than memory holds. With an NVIDIA GPU: one job, in
    this process, which trains on the GPU (TensorFlow uses its first GPU)."""
    from harness.core.device import nvidia_gpus

    if nvidia_gpus():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    jobs = cores if cores <= 2 else cores // 2
    try:
        jobs = min(jobs, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // AUTO_JOB_MEMORY)
    except (ValueError, OSError, AttributeError):
        pass
    return max(1, jobs)


def parse_jobs(value: str | int | None, executor: str = "local") -> int | None:
    """--jobs N or `auto`: auto_jobs() locally, as the CPUs allow on Ray (None); a bad value is a
    usage error."""
    if value is None or isinstance(value, int):
        return value
    if str(value).strip().lower() == "auto":
        return auto_jobs() if executor == "local" else None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--jobs must be a whole number or 'auto', got {value!r}") from None


def make_executor(name: str = "local", *, jobs: int | None = None, cpus_per_job: int | None = None,
                  address: str | None = None, timeout: float = CONNECT_TIMEOUT_S,
                  hooks: Callable[[Job], dict] | None = None) -> Executor:
    """The executor the flags ask for; bad combinations are usage errors."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if cpus_per_job is not None and cpus_per_job < 1:
        raise UsageError(f"--cpus-per-job must be at least 1, got {cpus_per_job}")
    if timeout <= 0:
        raise UsageError(f"--ray-timeout must be positive, got {timeout:g}")
    if name == "local":
        if address:
            raise UsageError("--ray-address needs --executor ray")
        if (jobs or 1) == 1 and cpus_per_job is None:
            return InProcess(hooks)
        return Processes(jobs or 1, cpus_per_job)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL} (installs {RAY_PIN})")
    from harness.executors.ray import RayExecutor

    return RayExecutor(address=address, jobs=jobs, cpus_per_job=cpus_per_job or 1, timeout=timeout)


# ----------------------------------------------------------------------------- the driver loop


def run_jobs(executor: Executor, jobs: list[Job], on_done: Callable[[Job, dict], None],
             progress: Any = None) -> None:
    """Hand out `jobs` (in order, as slots free up) and call `on_done` in this process for each
    result. A Failure stops the run: in-flight jobs are cancelled, finished ones stay."""
    pending = deque(jobs)
    started: dict[str, float] = {}
    if progress:
        progress.jobs_begin(jobs, executor.slots)
    try:
        while pending or executor.in_flight:
            while pending and executor.free() > 0:
                job = pending.popleft()
                executor.submit(job)
                started[job.key] = time.perf_counter()
                if progress:
                    progress.job_started(job)
            for job, outcome in executor.wait(timeout=1.0):
                if isinstance(outcome, Failure):
                    if outcome.trace and os.environ.get("HARNESS_DEBUG"):
                        print(outcome.trace, file=sys.stderr)
                    raise JobFailed(f"job {job.name} failed on the {executor.name} executor: {outcome.message}; "
                                    f"finished jobs are kept (run the same command again to resume)",
                                    exit_code=outcome.exit_code)
                # wall_s: submit to result as the driver saw it (queueing, start-up, transfer, work)
                outcome = {**outcome, "wall_s": round(time.perf_counter() - started.pop(job.key), 3)}
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

