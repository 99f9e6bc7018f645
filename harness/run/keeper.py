"""Keeping a plan's promise while its jobs run: after every finished job the driver compares the
measured with the planned time and re-plans the jobs not started.

    keeper = Keeper(deadline, slots, planned_s, min_epochs, protected="ann", say=run.say)
    run_jobs(executor, jobs, on_done, progress, keeper=keeper)   # harness.executors.run_jobs

The plan (harness.run.planner) assumed the calibrated speed. The keeper measures the speed the
jobs really have (the recent finished jobs' actual / planned seconds, and the epochs that running
folds report as they finish them, where the executor relays them: local worker processes),
predicts when the pending jobs would end over the slots, and when that is past the training
deadline it gives up work, last planned first:

1. the last bag not started trains fewer epochs (down to its model's minimum; its learning-rate
   schedule is sized to them, as the planner's are), else is dropped whole;
2. with no bag left to cut, the last model with no fold started trains fewer epochs, when some
   number down to its minimum makes every pending job end in time (a 5-minute run on a slow
   machine whose kept model's folds ran long trains `ann` at fewer epochs rather than not at all);
3. else the model at the front starts its folds left only if all of them end in time (a model
   with a missing fold has no out-of-fold predictions): as planned when they end at most half
   the grace past the deadline (a plan that fills its budget ends near it), else with fewer
   epochs (down to its minimum) by the deadline, or for a model with folds trained or training
   by the grace; its folds already trained keep their epochs. Else it is dropped whole;
4. a running fold of a model with no fold left to start that, at the speed of its own epochs,
   would end more than half the grace past the deadline is told to end with fewer (the most
   that end by the deadline, else by its grace; never below its model's minimum), and runs the
   rest of its learning-rate schedule in them (harness.train.shorten): on a slow machine one
   `cnn_deep` fold is most of a 30-minute run, and a machine that slows under it would otherwise
   see it cancelled and all of it lost. A model with folds still to start, whose folds would not all end so, has its
   running folds told to end sooner to make room for those, and those re-planned, at the most
   epochs, the same for all, that end them all by the deadline (else its grace): five folds on
   two slots of a 30-minute run on a machine that slows keep `cnn_deep` whole;
5. a dropped model's jobs still running are cancelled (its folds would go unused); at the
   deadline plus a grace, jobs still running are cancelled and their models dropped. The
   grace is the time the leanest stages after training leave (export, ensemble, submission,
   report; no benchmark): the stages after training give up INT8 and benchmarks before finished
   training work is thrown away.

Stand-by bags (harness.run.planner) are dealt after every planned job and count in none of the
above until one starts: when its first fold reaches the front, it starts with the most epochs
(down to its model's minimum) at which all of its folds, at the speed measured so far, end by the
deadline less its own stages after training (which then move the deadline earlier); else it is
left out whole, as is every later one that does not fit, and every one once planned work was cut.

The `protected` model (the cheapest) is never dropped or cancelled: a run always ends with at
least one model to submit. Its jobs are dealt first (harness.run.planner.job_order), so a machine
that slows partway cannot leave them to run past the limit. Every decision is an event in the
manifest's budget record.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Any, Callable

from harness.core.names import bag_number
from harness.core.progress import fmt_seconds
from harness.run.planner import list_schedule

RECENT = 4          # the speed is measured over this many latest finished jobs (a slowdown shows fast)
RECENT_EPOCHS = 3   # a running fold's time left, at the speed of this many of its latest epochs


@dataclasses.dataclass
class Keeper:
    deadline: float                                  # time.perf_counter() by which training must end
    slots: int
    planned_s: Callable[[str, int], float]           # (model, epochs) -> planned seconds of one job
    min_epochs: dict[str, int]                       # per model name, bags included
    protected: str                                   # never dropped
    grace_s: float = 0.0                             # past the deadline, before running jobs are cancelled
    say: Callable[[str], None] = lambda _m: None
    on_epochs: Callable[[str, int], None] = lambda _m, _e: None   # a bag's epochs changed (params.json)
    standby: dict[str, float] = dataclasses.field(default_factory=dict)  # stand-by bag -> its seconds after training
    clock: Callable[[], float] = time.perf_counter
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped: set[str] = dataclasses.field(default_factory=set)
    ratios: list[tuple[float, float]] = dataclasses.field(default_factory=list)   # (used, planned) seconds
    started: set[str] = dataclasses.field(default_factory=set)    # models with a job handed out
    # running folds that report their epochs: job key -> (job, [(epochs done, worker clock, our clock)])
    running_epochs: dict[str, tuple[Any, list[tuple[int, float, float]]]] = dataclasses.field(default_factory=dict)
    ends_with: dict[str, int] = dataclasses.field(default_factory=dict)   # a shortened running fold's epochs
    asked_by: dict[str, float] = dataclasses.field(default_factory=dict)  # and by when its last ask ends it

    # ------------------------------------------------------------------ what the driver calls

    def speed(self) -> float:
        """Measured / planned seconds of the latest finished jobs and of the epochs the running
        folds have finished since their first, together (1.0 before any): a long job weighs by its
        length, so the speed is that of the bulk of the work, not of the short jobs that finish
        often (a 2-hour run's `cnn_deep` folds took 0.85 of their plan while its `cnn_small` folds
        took 0.8-1.2), and a machine that slows shows within a few epochs, not at the end of a
        fold that may take 20 minutes."""
        recent = self.ratios[-RECENT:] + [m for m in map(self._measured, self.running_epochs) if m]
        return sum(a for a, _ in recent) / sum(p for _, p in recent) if recent else 1.0

    def epoch(self, job: Any, done: int, at: float) -> None:
        """A running fold finished its `done`-th epoch at `at` on its worker's clock."""
        self.running_epochs.setdefault(job.key, (job, []))[1].append((done, at, self.clock()))

    def finished(self, job: Any, wall_s: float, epochs: int | None = None) -> None:
        """Count a finished job in the speed. The protected model's count by their epochs after the
        first only: those jobs are dealt first, short, and their whole time carries each worker's
        warm-up (a 30-minute run's took 0.94-1.45x their plan while the long folds after them took
        0.97-1.04x), too noisy to cut a plan on. `epochs`: those it trained (fewer when shortened)."""
        measured = self._measured(job.key)
        epochs = epochs or self.ends_with.get(job.key, job.epochs)
        self.ends_with.pop(job.key, None)
        self.running_epochs.pop(job.key, None)
        if job.model != self.protected:
            self.ratios.append((wall_s, max(self.planned_s(job.model, epochs), 1e-6)))
        elif measured:
            self.ratios.append(measured)

    def _measured(self, key: str, recent: int | None = None) -> tuple[float, float] | None:
        """(seconds, planned seconds) of a running fold's epochs after its first (no start-up, no
        tracing in them), or of its `recent` latest; None before it has finished two."""
        job, ends = self.running_epochs.get(key, (None, []))
        if len(ends) < 2:
            return None
        (first, t0, _), (last, t1, _) = ends[max(len(ends) - 1 - recent, 0) if recent else 0], ends[-1]
        planned = self.planned_s(job.model, last) - self.planned_s(job.model, first)
        return (t1 - t0, planned) if planned > 0 else None

    def _tolerated(self) -> float:
        """How late a model with folds trained or training may end before its epochs are cut: half
        the grace past the deadline. A plan that fills its budget ends its long model's last fold
        near the deadline, and a speed read a few % slow would otherwise cut its epochs in every
        run; once cut, for a machine that slowed, its folds aim at the deadline, and the other
        half of the grace is left for the speed misread as it changes."""
        return self.deadline + self.grace_s / 2

    def left(self) -> float:
        return self.deadline - self.clock()

    def admit(self, pending: deque, running: dict[str, tuple[Any, float]]) -> Any | None:
        """The next job to start from the front of `pending` (re-planned: its epochs may be
        fewer), or None when none may start; drops from `pending` the work that no longer fits."""
        while pending:
            now = self.clock()
            if self._waiting(pending[0]):
                self._standby(pending, running, now)
                continue
            if self._ends(pending, running, now) <= self.deadline:
                return self._start(pending)
            bag = self._last_unstarted_bag(pending)
            if bag is not None:
                self._cut(bag, pending, running, now)
                continue
            model = self._last_unstarted_model(pending)
            if model is not None and self._fewer(model, pending, running, now):
                continue
            job = pending[0]
            if job.model == self.protected:
                return self._start(pending)
            # all of its folds left must end (a model with a missing fold is of no use); a little
            # late (`_tolerated`) they keep their epochs, else fewer, by the deadline, or for a
            # model with folds trained or training, by the grace rather than lose those
            ends = self._folds_end(job.model, pending, running, now)
            if ends <= self._tolerated():
                return self._start(pending)
            for latest in (self.deadline, self.deadline + self.grace_s)[:2 if job.model in self.started else 1]:
                if self._fewer_folds(job.model, pending, running, now, latest):
                    return self._start(pending)
            self._drop(job.model, pending, f"its folds{' left' if job.model in self.started else ''} would end "
                       f"{fmt_seconds(ends - self.deadline)} past the training deadline")
        return None

    def _waiting(self, job: Any) -> bool:
        """Whether `job` is of a stand-by bag not started yet."""
        return job.model in self.standby and job.model not in self.started

    def _standby(self, pending: deque, running: dict[str, tuple[Any, float]], now: float) -> None:
        """The stand-by bag at the front: started with the most epochs (down to its model's
        minimum) that end in time, else left out whole."""
        model, epochs = pending[0].model, pending[0].epochs
        after_s = self.standby[model]
        if any(e["event"] in ("epochs", "dropped", "cancelled", "shortened") for e in self.events):
            self.forget(model, pending)  # no extras on a run that could not keep its own plan
            self._event("standby", model, "not started: planned work was already cut to keep the limit")
            return
        for e in range(epochs, self.min_epochs.get(model, epochs) - 1, -1):
            trial = _at_epochs(pending, model, e)
            ends = self._ends(trial, running, now, include=model)
            if ends <= self.deadline - after_s:
                if e != epochs:
                    pending.clear()
                    pending.extend(trial)
                    self.on_epochs(model, e)
                self.deadline -= after_s
                self.started.add(model)
                self._event("standby", model, f"started{f' at {e} of its {epochs} epochs' if e != epochs else ''}: "
                            f"at the measured speed its folds end {fmt_seconds(self.deadline - ends)} before "
                            f"the training deadline", epochs=e)
                return
        self.forget(model, pending)
        self._event("standby", model, f"not started: even at {self.min_epochs.get(model, epochs)} epochs its folds "
                    f"would end {fmt_seconds(ends + after_s - self.deadline)} past the training deadline")

    def _start(self, pending: deque) -> Any:
        job = pending.popleft()
        self.started.add(job.model)
        return job

    def shorten(self, running: dict[str, tuple[Any, float]], pending: deque) -> list[tuple[Any, int]]:
        """Running folds to end with fewer epochs, and with how many: those that, at the speed
        their own epochs ran, would end more than half the grace past the training deadline
        (`_tolerated`; then the most epochs that end by it, else by its grace; down to their
        model's minimum and two more than they have done: the one they are in, and one to end
        the schedule in).
        A model with folds still to start: its running folds end sooner only to make room for
        those (`_make_room`). The protected model's are left to run: they are short and dealt first."""
        now, asks = self.clock(), []
        waiting = {j.model for j in pending}
        reporting = {job.model for key, (job, ends) in self.running_epochs.items() if key in running and len(ends) >= 2}
        for model in sorted(reporting & waiting - self.dropped - {self.protected}):
            asks += self._make_room(model, running, pending, now)
        for key, (job, ends) in self.running_epochs.items():
            if (key not in running or job.model == self.protected or job.model in self.dropped | waiting
                    or len(ends) < 2):
                continue
            started, epochs = running[key][1], self.ends_with.get(key, job.epochs)
            if now + self._remaining(job, started, now) <= self._tolerated():
                continue  # as in admit: a fold a little late keeps its epochs
            # the worker reads it at the end of the epoch it is in, and runs at least one more
            low = max(ends[-1][0] + 2, self.min_epochs.get(job.model, 1))
            for latest in (self.deadline, self.deadline + self.grace_s):
                # the epochs it ends with now are a candidate: a fold that ends within the grace
                # as it is is not shortened again because it still does not end by the deadline
                fits = next((e for e in range(epochs, low - 1, -1)
                             if now + self._remaining(job, started, now, e) <= latest), None)
                if fits is not None:
                    if fits < epochs:
                        asks.append((job, fits))
                        self.asked_by[key] = latest
                    break
        return asks

    def _make_room(self, model: str, running: dict[str, tuple[Any, float]], pending: deque,
                   now: float) -> list[tuple[Any, int]]:
        """For `model`, with folds running and folds still to start: when those would not all end
        by `_tolerated`, the most epochs e (down to its minimum) at which its running folds, told
        to end with e (none sooner than two epochs on, none with more than it has now), and then
        its folds still to start, at e, all end by the deadline, else by its grace. Returns the
        running folds to shorten and re-plans the others at e; nothing when even its minimum does
        not fit (the model is then dropped when its next fold is due)."""
        mine = {key: job for key, (job, _) in running.items() if job.model == model}
        current = next(j.epochs for j in pending if j.model == model)

        def plan(e: int) -> tuple[float, dict[str, int]]:
            """When the model's folds end with running ones at e and the others at e; their targets."""
            targets = {}
            for key, job in mine.items():
                ends = self.running_epochs.get(key, (None, []))[1]
                target = self.ends_with.get(key, job.epochs)
                targets[key] = min(target, max(e, ends[-1][0] + 2)) if len(ends) >= 2 else target
            running_end = now + max(self._remaining(job, running[key][1], now, targets[key]) for key, job in mine.items())
            return max(running_end, self._folds_end(model, pending, running, now, min(e, current), targets)), targets

        if plan(current)[0] <= self._tolerated():
            return []
        top = max(current, *(self.ends_with.get(k, j.epochs) for k, j in mine.items()))
        for latest in (self.deadline, self.deadline + self.grace_s):
            for e in range(top, self.min_epochs.get(model, 1) - 1, -1):
                ends, targets = plan(e)
                if ends > latest:
                    continue
                asks = [(job, targets[key]) for key, job in mine.items() if targets[key] < self.ends_with.get(key, job.epochs)]
                for job, _ in asks:
                    self.asked_by[job.key] = latest
                if e < current:
                    self._refit(model, pending, e, latest)
                return asks
        return []

    def shortened(self, job: Any, epochs: int) -> None:
        """`job` was told to end with `epochs`."""
        before = self.ends_with.get(job.key, job.epochs)
        self.ends_with[job.key] = epochs
        grace = self.asked_by.pop(job.key, self.deadline) > self.deadline
        self._event("shortened", job.model, f"fold {job.fold + 1}: {before} -> {epochs} epochs, the rest of its "
                    f"learning-rate schedule run in them, to end by the training deadline"
                    f"{' or within its grace' if grace else ''}",
                    fold=job.fold, epochs=epochs, planned_epochs=job.epochs)

    def overdue(self, running: dict[str, tuple[Any, float]]) -> list[Any]:
        """Running jobs to cancel now: a dropped model's (a fold of it is never used: its slot is
        better given to what remains) and, past the deadline and its grace, all but the protected
        model's."""
        past = self.clock() > self.deadline + self.grace_s
        late = [job for job, _ in running.values()
                if job.model in self.dropped or (past and job.model != self.protected)]
        for model in sorted({j.model for j in late} - self.dropped):
            # how far each of its running folds got: [epochs done, epochs it was to end with]
            folds = {job.fold: [self._done(job.key), self.ends_with.get(job.key, job.epochs)]
                     for job in late if job.model == model}
            self._event("cancelled", model, "still training at the deadline", folds=folds)
            self.dropped.add(model)
        for job in late:
            self.running_epochs.pop(job.key, None)
        return late

    def _done(self, key: str) -> int:
        """Epochs a running fold has reported finished (0: none, or it does not report them)."""
        ends = self.running_epochs.get(key, (None, []))[1]
        return ends[-1][0] if ends else 0

    def forget(self, model: str, pending: deque) -> None:
        """Drop `model`'s pending jobs (one of its jobs was cancelled)."""
        for job in [j for j in pending if j.model == model]:
            pending.remove(job)

    # ------------------------------------------------------------------ the re-plan

    def _seconds(self, job: Any) -> float:
        return self.planned_s(job.model, job.epochs) * self.speed()

    def _remaining(self, job: Any, started: float, now: float, epochs: int | None = None) -> float:
        """Seconds a running job has left (ending with `epochs`, else as planned or shortened): from
        its last finished epoch at the speed of its latest epochs, plus its fixed seconds (an upper
        bound of the predictions and writes after its last epoch); before it has reported two
        epochs, its planned seconds at the measured speed less the time it has run."""
        epochs = epochs or self.ends_with.get(job.key, job.epochs)
        recent = self._measured(job.key, RECENT_EPOCHS)  # a slowdown shows in the latest
        if not recent:
            return max(self.planned_s(job.model, epochs) * self.speed() - (now - started), 1.0)
        done, _, at = self.running_epochs[job.key][1][-1]
        left = self.planned_s(job.model, epochs) - self.planned_s(job.model, done) + self.planned_s(job.model, 0)
        return max(left * recent[0] / recent[1] - (now - at), 1.0)

    def _ends(self, pending: deque, running: dict[str, tuple[Any, float]], now: float,
              include: str | None = None) -> float:
        """When the last of `pending` would end, dealt in order after the running jobs (stand-by
        bags not started left out, but for `include`)."""
        busy = [self._remaining(job, started, now) for job, started in running.values()]
        return now + list_schedule([self._seconds(j) for j in pending if j.model == include or not self._waiting(j)],
                                   self.slots, busy)

    def _last_unstarted_bag(self, pending: deque) -> str | None:
        """The bag (bag number > 1) dealt last among those with no job started (stand-by bags aside)."""
        bags = [j.model for j in pending if bag_number(j.model) > 1 and j.model not in self.started
                and j.model not in self.standby]
        return bags[-1] if bags else None

    def _last_unstarted_model(self, pending: deque) -> str | None:
        """The model (bag 1) dealt last among those with no job started, the protected one aside."""
        models = [j.model for j in pending if bag_number(j.model) == 1 and j.model not in self.started
                  and j.model != self.protected]
        return models[-1] if models else None

    def _cut(self, model: str, pending: deque, running: dict[str, tuple[Any, float]], now: float) -> None:
        """Fewer epochs for `model`'s pending jobs, the most that fits; else drop it whole."""
        if not self._fewer(model, pending, running, now):
            self._drop(model, pending, "not enough time left for it")

    def _fewer(self, model: str, pending: deque, running: dict[str, tuple[Any, float]], now: float) -> bool:
        """`model`'s pending jobs (none of its folds started) at the most epochs, down to its
        minimum, at which every pending job ends by the deadline; False, nothing changed, when
        even its minimum does not."""
        epochs = next(j.epochs for j in pending if j.model == model)
        for e in range(epochs - 1, self.min_epochs.get(model, epochs) - 1, -1):
            if self._ends(_at_epochs(pending, model, e), running, now) <= self.deadline:
                self._refit(model, pending, e, self.deadline)
                return True
        return False

    def _folds_end(self, model: str, pending: deque, running: dict[str, tuple[Any, float]], now: float,
                   epochs: int | None = None, targets: dict[str, int] | None = None) -> float:
        """When `model`'s pending jobs (at `epochs`, else their own) would end, dealt now after the
        running jobs (those in `targets` ending with those epochs)."""
        speed = self.speed()
        seconds = [self.planned_s(model, epochs or j.epochs) * speed for j in pending if j.model == model]
        busy = [self._remaining(j, s, now, (targets or {}).get(key)) for key, (j, s) in running.items()]
        return now + list_schedule(seconds, self.slots, busy, own=True)

    def _fewer_folds(self, model: str, pending: deque, running: dict[str, tuple[Any, float]], now: float,
                     latest: float) -> bool:
        """The folds still to start of `model` at the most epochs (down to its minimum) at which
        they end by `latest`; False, nothing changed, when even its minimum does not. Each starts
        with its learning-rate schedule sized to its own epochs; where the model has folds trained
        or training, those keep theirs (a fold's epochs are in its fold.json, and --replay trains
        it with them)."""
        epochs = next(j.epochs for j in pending if j.model == model)
        for e in range(epochs - 1, self.min_epochs.get(model, epochs) - 1, -1):
            if self._folds_end(model, pending, running, now, e) <= latest:
                self._refit(model, pending, e, latest)
                return True
        return False

    def _refit(self, model: str, pending: deque, e: int, latest: float) -> None:
        """`model`'s folds still to start re-planned at `e` epochs, to end by `latest`."""
        waiting = [j for j in pending if j.model == model]
        epochs = waiting[0].epochs
        trial = _at_epochs(pending, model, e)
        pending.clear()
        pending.extend(trial)
        if model not in self.started:  # all of its folds: the model's epochs
            self.on_epochs(model, e)
            self._event("epochs", model, f"{epochs} -> {e} epochs to fit the time left", epochs=e)
            return
        folds = [j.fold for j in waiting]
        self._event("epochs", model, f"fold{'s' if len(folds) > 1 else ''} {', '.join(str(f + 1) for f in folds)}: "
                    f"{epochs} -> {e} epochs, to end by the training deadline"
                    f"{' or within its grace' if latest > self.deadline else ''} (its other folds keep theirs)",
                    epochs=e, folds=folds)

    def _drop(self, model: str, pending: deque, why: str) -> None:
        self.forget(model, pending)
        self.dropped.add(model)
        self._event("dropped", model, why)

    def _event(self, kind: str, model: str, why: str, **extra: Any) -> None:
        left = self.left()
        self.events.append({"event": kind, "model": model, "why": why, "speed": round(self.speed(), 3),
                            "left_s": round(left, 1), **extra})
        what = {"epochs": "re-planned", "standby": "(stand-by bag)", "shortened": "shortened"}.get(kind, "dropped")
        self.say(f"budget: {model} {what}: {why} "
                 f"(jobs run at {self.speed():.2f}x their planned time; {fmt_seconds(max(left, 0))} of training left)")


def _at_epochs(pending: deque, model: str, epochs: int) -> deque:
    """`pending` with `model`'s jobs at `epochs` (their learning-rate schedule sized to them)."""
    return deque(dataclasses.replace(j, epochs=epochs, params={**j.params, "epochs": epochs})
                 if j.model == model else j for j in pending)
