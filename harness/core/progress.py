"""Progress on stderr, whichever executor runs the jobs: on a terminal a tqdm bar over jobs (done,
in flight, ETA) and, for jobs run in this process, a bar per fold (steps, validation accuracy); one
line per finished job otherwise (CI logs stay readable). Never Keras's own log spam."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Callable, Iterable


def fmt_seconds(seconds: float) -> str:
    """A duration as 42s, 3m05s or 1h06m (ETAs and elapsed times on stderr)."""
    seconds = int(round(max(seconds, 0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class TrainingProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._jobs_bar: Any = None
        self._total = self._done = self._slots = 0
        self._running: dict[str, tuple[float, str]] = {}   # job name -> (start time, model)
        self._job_seconds: list[float] = []
        self._optional: set[str] = set()    # models the ETA leaves out until one of their jobs starts
        self.deadline: float | None = None   # time.perf_counter() a time-limited run ends by

    def time_left(self) -> float | None:
        """Seconds left in the run's time limit (None without one)."""
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def _say(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr, flush=True)

    def stage(self, msg: str) -> None:
        left = self.time_left()
        self._say(f"[{time.perf_counter() - self._t0:7.1f}s"
                  + (f", {fmt_seconds(max(left, 0))} left" if left is not None else "") + f"] {msg}")

    def skip_fold(self, model: str, fold: int, k: int) -> None:
        self._say(f"  {model} fold {fold + 1}/{k}: already trained, resumed")

    def fold_hooks(self, model: str, fold: int, k: int, epochs: int, steps: int) -> dict[str, Callable]:
        if not (self.enabled and self.tty):
            return {}
        from tqdm import tqdm

        self._bar = tqdm(total=epochs * steps, desc=f"{model} fold {fold + 1}/{k}", unit="step",
                         file=sys.stderr, leave=False, dynamic_ncols=True)
        bar = self._bar

        def on_batch() -> None:
            bar.update(1)

        def on_epoch(epoch: int, logs: dict) -> None:
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{logs.get('loss', 0):.3f}",
                            val_acc=f"{logs.get('val_accuracy', 0):.4f}")

        return {"on_batch": on_batch, "on_epoch": on_epoch}

    # -------------------------------------------------------------- jobs (any executor)

    def jobs_begin(self, jobs: list[Any], slots: int) -> None:
        total = len(jobs)
        self._total, self._done, self._slots, self._t_jobs = total, 0, slots, time.perf_counter()
        self._running.clear()
        self._job_seconds.clear()
        self._left = Counter(job.model for job in jobs)   # jobs not finished, per model
        self._model_seconds: dict[str, list[float]] = {}
        if self.enabled and self.tty and slots > 1:
            from tqdm import tqdm

            self._jobs_bar = tqdm(total=total, desc="jobs", unit="job", file=sys.stderr, dynamic_ncols=True)

    def job_started(self, job: Any) -> None:
        self._running[job.name] = (time.perf_counter(), job.model)
        self._optional.discard(job.model)  # a stand-by bag once started is trained whole
        self._refresh()

    def set_costs(self, costs: dict[str, float], optional: Iterable[str] = ()) -> None:
        """Relative cost of one job of each model (epochs x FLOPs, harness.run.training), so that the
        ETA of a model with no finished job yet scales from the others' time per unit of cost.
        `optional` models (a time limit's stand-by bags) count only once one of their jobs starts."""
        self._costs = dict(costs)
        self._optional = set(optional)

    def eta(self) -> float | None:
        """Seconds left: each unfinished job costs the mean time of its model's finished jobs (for a
        model with none yet: its relative cost times the finished jobs' seconds per unit of cost,
        else their mean), spread over the jobs at once; None before the first job finishes."""
        if not self._job_seconds:
            return None
        overall = sum(self._job_seconds) / len(self._job_seconds)
        costs = getattr(self, "_costs", {})
        timed = [m for m in self._model_seconds if costs.get(m)]
        rate = (sum(sum(self._model_seconds[m]) for m in timed)
                / sum(costs[m] * len(self._model_seconds[m]) for m in timed)) if timed else None

        def cost(model: str) -> float:
            times = self._model_seconds.get(model)
            if times:
                return sum(times) / len(times)
            return rate * costs[model] if rate is not None and costs.get(model) else overall

        now = time.perf_counter()
        running = Counter(model for _, model in self._running.values())
        work = sum(max(cost(model) - (now - t), 0.0) for t, model in self._running.values())
        work += sum((n - running[model]) * cost(model) for model, n in self._left.items()
                    if model not in self._optional)
        return work / max(1, min(self._slots, self._total - self._done))

    def jobs_dropped(self, models: list[str], cancelled: Any = None) -> None:
        """Jobs (of these models) given up to keep the time limit (harness.run.keeper); one of
        them was running if `cancelled`."""
        self._total -= len(models)
        for model in models:
            self._left[model] -= 1
        if cancelled is not None:
            self._running.pop(cancelled.name, None)
            self._say(f"  {cancelled.name}: cancelled to keep the time limit ({self._status()})")
        self._refresh()

    def _status(self) -> str:
        eta, left = self.eta(), self.time_left()
        return (f"{self._done}/{self._total} done, {len(self._running)} running"
                + (f", ETA {fmt_seconds(eta)}" if eta is not None else "")
                + (f", {fmt_seconds(max(left, 0))} left of the time limit" if left is not None else ""))

    def _refresh(self) -> None:
        if self._jobs_bar is not None:
            self._jobs_bar.n = self._done
            self._jobs_bar.total = self._total
            left = self.time_left()
            self._jobs_bar.set_postfix_str((", ".join(self._running) or "-")
                                           + (f" | {fmt_seconds(max(left, 0))} left" if left is not None else ""))
            self._jobs_bar.refresh()

    def job_done(self, job: Any, result: dict) -> None:
        started, _ = self._running.pop(job.name, (None, None))
        self._done += 1
        self._left[job.model] -= 1
        if result.get("status") in ("trained", "duplicate") or job.kind == "trial":
            seconds = result.get("wall_s") or (time.perf_counter() - (started or time.perf_counter()))
            self._job_seconds.append(seconds)
            self._model_seconds.setdefault(job.model, []).append(seconds)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._refresh()
        if job.kind != "fold":
            return
        where = result.get("host") or "?"
        if result.get("node"):
            where += f" node {result['node']}"
        threads = result.get("threads")
        how = f"{where}, pid {result.get('pid')}" + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")
        what = {"skipped": "already finished by another worker", "duplicate": "a duplicate, discarded"}.get(
            result.get("status"), f"val acc {100 * result['accuracy']:.2f} %, {result['seconds']:.0f} s, "
                                  f"{result['images_per_s']:,.0f} img/s")
        line = f"  {job.name}: {what} [{how}] ({self._status()})"
        if self._jobs_bar is not None:
            self._jobs_bar.write(line, file=sys.stderr)
        else:
            self._say(line)

    def jobs_end(self) -> None:
        if self._jobs_bar is not None:
            self._jobs_bar.close()
            self._jobs_bar = None
