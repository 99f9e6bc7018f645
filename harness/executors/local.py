"""Jobs on this machine: one at a time in this process, or in N worker processes.

- `InProcess` (`--jobs 1`, the default): one job at a time in this process (TensorFlow's default
  threads, a per-step progress bar).
- `Processes` (`--jobs N`): N spawned worker processes, each with `cpus_per_job` TF threads,
  reused from job to job (TF imported once; Keras's state cleared between jobs), and from one
  session to the next one of the same layout when the first keeps them warm (a run's calibration,
  then its training: `session(data, keep_warm=True)`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from typing import Any, Callable

from harness.core.errors import UsageError
from harness.executors.base import Executor, Failure, Job
from harness.train.jobs import JobData, Where, clear_keras, execute


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


def _worker(conn: Any, threads: int) -> None:
    """Entry point of a spawned worker process: the run's data arrives over `conn`, then jobs one
    at a time (None: stop). TensorFlow is imported once; each job starts from a cleared Keras session
    and sets its own seeds (harness.train.cv.train_fold), so a reused worker trains a fold exactly as
    a fresh one does. While a fold trains, the worker reports each finished epoch and takes the
    driver's word to end it with fewer (`_fold_hooks`)."""
    _exit_with_parent()
    try:
        data = conn.recv()
    except (EOFError, OSError):
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if job is None:
            return
        if isinstance(job, tuple):  # the data of the session that adopted this worker, or a
            if job[0] == "data":    # shortening that came after its fold had ended
                data = job[1]
            continue
        try:
            result = execute(job, data, Where("local", threads=threads), _fold_hooks(conn))
            message: tuple = ("ok", result)
        except BaseException as e:  # noqa: BLE001 (the parent reports it; a worker must not hang)
            message = ("error", f"{type(e).__name__}: {e}", traceback.format_exc(),
                       getattr(e, "exit_code", None))
        finally:
            clear_keras()
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return


def _fold_hooks(conn: Any) -> dict[str, Callable]:
    """A fold's epoch hooks in a worker: each finished epoch goes to the driver as
    ("epoch", epochs done, this process's clock) (harness.run.keeper measures the speed from them
    while folds run), and a ("shorten", epochs) from the driver, read between epochs, is the
    fold's new end (harness.train.cv.train_fold's `control`)."""

    def on_epoch(epoch: int, _logs: dict) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("epoch", epoch + 1, time.perf_counter()))

    def control(_done: int) -> int | None:
        asked = None
        with contextlib.suppress(EOFError, OSError):
            while conn.poll():
                message = conn.recv()
                if isinstance(message, tuple) and message[0] == "shorten":
                    asked = int(message[1])
        return asked

    return {"on_epoch": on_epoch, "control": control}


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


class _Worker:
    """One spawned worker process and the job it is running (None: idle).

    The data goes over the worker's own pipe, not as a process argument: a spawned child that dies
    before reading its arguments (an import error, a script without `if __name__ == "__main__":`,
    killed while starting) leaves the parent blocked for good writing a large argument, because the
    parent holds that pipe's other end until the write ends. Over `conn` the write fails instead,
    and the driver sees a dead worker like any other (`Processes.wait`)."""

    def __init__(self, ctx: Any, data: JobData, threads: int, name: str) -> None:
        self.threads, self.env = threads, _environment()
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(child, threads), name=name, daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.send(data)

    def send(self, what: Any) -> None:
        """Send to the worker; one that died is left for `Processes.wait` to find (its sentinel)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
            self.conn.send(what)


def _environment() -> int:
    """What a worker inherited at its spawn that its jobs read: harness's settings (HARNESS_*,
    failpoints among them). The engines' variables are read once, at their import, and the
    driver sets some of them itself on its own import (harness.core.tfquiet)."""
    return hash(frozenset((k, v) for k, v in os.environ.items() if k.startswith("HARNESS_")))


# Idle workers a session kept warm (`Executor.session(keep_warm=True)`), until the next session of
# Processes starts: it adopts those of its threads and environment, with its own data, and stops the
# rest. A run's calibration and training thus import TensorFlow once per slot, not twice (3 s a
# slot on a Zen 5, 14-24 s on an emulated AVX2 machine).
_WARM: list[_Worker] = []


def _stop(w: _Worker) -> None:
    """Stop a worker: an idle one finishes cleanly, a busy one is terminated."""
    if w.job is None and w.proc.is_alive():
        with contextlib.suppress(OSError):
            w.conn.send(None)
    elif w.proc.is_alive():
        w.proc.terminate()


def _join(w: _Worker) -> None:
    w.proc.join(timeout=10)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join(timeout=5)
    w.conn.close()


def _adoptable(w: _Worker, threads: int) -> bool:
    """Whether a warm worker can serve a session of `threads` threads started now."""
    return w.threads == threads and w.env == _environment() and w.proc.is_alive()


def warm_slots(jobs: int, cpus_per_job: int | None = None) -> int:
    """How many of a new `Processes(jobs, cpus_per_job)` session's slots would start with a warm
    worker (TensorFlow imported): the planner's warm-up is paid only by the others."""
    threads = cpus_per_job or max(1, (os.cpu_count() or 1) // jobs)
    return min(jobs, sum(1 for w in _WARM if _adoptable(w, threads)))


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
        self._epochs: list[tuple[Job, int, float]] = []

    def start(self, data: JobData, run_dir: Any) -> None:
        super().start(data, run_dir)
        stale = []
        while _WARM:
            w = _WARM.pop(0)
            if len(self._workers) < self.slots and _adoptable(w, self.cpus_per_job):
                w.send(("data", data))
                self._workers.append(w)
            else:
                stale.append(w)
        for w in stale:
            _stop(w)
        for w in stale:
            _join(w)

    def submit(self, job: Job) -> None:
        worker = next((w for w in self._workers if w.job is None and w.proc.is_alive()), None)
        if worker is None:
            # drop idle workers that died; a busy one that died stays until `wait` retries its job
            self._workers = [w for w in self._workers if w.job is not None or w.proc.is_alive()]
            worker = _Worker(self._ctx, self.data, self.cpus_per_job, f"harness worker {len(self._workers) + 1}")
            self._workers.append(worker)
        worker.send(job)
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
                while w.conn.poll():
                    message = w.conn.recv()
                    if message[0] != "epoch":
                        break
                    self._epochs.append((w.job, int(message[1]), float(message[2])))
                    message = None
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

    def epochs(self) -> list[tuple[Job, int, float]]:
        events, self._epochs = self._epochs, []
        return events

    def _running(self, job: Job) -> _Worker | None:
        """The worker running `job`, if any."""
        return next((w for w in self._workers if w.job is not None and w.job.key == job.key), None)

    def shorten(self, job: Job, epochs: int) -> bool:
        worker = self._running(job)
        if worker is None:
            return False
        worker.send(("shorten", int(epochs)))
        return True

    def cancel(self, job: Job) -> bool:
        """Stop the worker running `job` (a new one starts for the next job); its staging folder
        is left for the next run's clean-up (harness.train.jobs.clean_stale_stages)."""
        worker = self._running(job)
        if worker is None:
            return False
        worker.proc.terminate()
        worker.proc.join(timeout=10)
        if worker.proc.is_alive():
            worker.proc.kill()
            worker.proc.join(timeout=5)
        worker.conn.close()
        self._workers.remove(worker)
        self.in_flight.pop(job.key, None)
        return True

    def close(self) -> None:
        if self.keep_warm:  # idle workers wait for the next session; a busy one is stopped
            _WARM.extend(w for w in self._workers if w.job is None and w.proc.is_alive())
            self._workers = [w for w in self._workers if w not in _WARM]
        for w in self._workers:
            _stop(w)
        for w in self._workers:
            _join(w)
        self._workers.clear()
        self.in_flight.clear()


AUTO_JOB_MEMORY = 3 << 30   # a training process's peak (TF + data + cnn_deep), with room


def auto_jobs() -> int:
    """`--jobs auto`: one one-thread job per core on machines of up to 2 cores (two one-thread
    processes train 1.2-1.5x faster than one two-thread process: docs/SPEED_AUDIT.md), else one
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

