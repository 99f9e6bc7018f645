"""The time limit kept while jobs run (harness.run.keeper under harness.executors.run_jobs), on
a simulated clock: jobs that take their planned time, or twice it from some point on."""

from __future__ import annotations

import dataclasses

import pytest

from harness.executors.base import Executor, run_jobs
from harness.run.keeper import Keeper
from harness.run.planner import job_order, list_schedule


@dataclasses.dataclass(frozen=True)
class Job:
    model: str
    fold: int
    epochs: int
    params: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    kind: str = "fold"

    @property
    def key(self) -> str:
        return f"{self.model}/{self.fold}"

    @property
    def name(self) -> str:
        return f"{self.model} fold {self.fold + 1}"


EPOCH_S = {"cnn_deep": 10.0, "cnn_small": 4.0, "ann": 1.0}   # one epoch of one fold job, seconds
JOB_S = 5.0                                                   # a job's fixed seconds


def planned_s(model: str, epochs: int) -> float:
    return JOB_S + epochs * EPOCH_S[model.split("~")[0]]


class Simulated(Executor):
    """Jobs of planned_s seconds of work, `slots` at once, on a simulated clock: at time t the work
    goes 1 / `slow(t)` as fast as planned, so a job that started fast slows down when the machine
    does (the speed is read once per simulated second). With `epochs`, a job's work is half its
    fixed seconds, its epochs, then the other half, and it reports each epoch it finishes and
    takes a shortening as the local workers do."""

    def __init__(self, slots: int, slow=lambda t: 1.0, epochs: bool = False) -> None:
        super().__init__()
        self.slots, self.now, self.slow, self.reports = slots, 0.0, slow, epochs
        self.work: dict[str, float] = {}      # planned seconds of work left, per running job
        self.ends: dict[str, int] = {}        # the epochs each running job ends with
        self.cancelled: list[str] = []
        self.reported: list[tuple] = []

    def clock(self) -> float:
        return self.now

    def submit(self, job) -> None:
        self.in_flight[job.key] = job
        self.work[job.key] = planned_s(job.model, job.epochs)
        self.ends[job.key] = job.epochs

    def _done_epochs(self, key: str) -> int:
        job = self.in_flight[key]
        done = planned_s(job.model, self.ends[key]) - self.work[key] - JOB_S / 2
        return max(0, min(int(done / EPOCH_S[job.model.split("~")[0]] + 1e-9), self.ends[key]))

    def epochs(self):
        events, self.reported = self.reported, []
        return events

    def shorten(self, job, epochs: int) -> bool:
        if not self.reports or job.key not in self.work:
            return False
        epochs = max(epochs, self._done_epochs(job.key) + 2)   # as a worker: read at the end of this epoch
        self.work[job.key] -= planned_s(job.model, self.ends[job.key]) - planned_s(job.model, epochs)
        self.ends[job.key] = epochs
        return True

    def wait(self, timeout: float):
        stop = self.now + timeout
        while self.work:
            rate = 1.0 / self.slow(self.now)
            step = min(min(self.work.values()) / rate, stop - self.now, 1.0)
            before = {key: self._done_epochs(key) for key in self.work}
            self.now += step
            for key in self.work:
                self.work[key] -= step * rate
            for key, was in before.items():
                if self.reports and self._done_epochs(key) > was:
                    self.reported.append((self.in_flight[key], self._done_epochs(key), self.now))
            done = [key for key, left in self.work.items() if left <= 1e-9]
            if done or self.now >= stop - 1e-9:
                for key in done:
                    del self.work[key]
                return [(self.in_flight.pop(key), {"status": "trained", "epochs": self.ends.pop(key)})
                        for key in done]
        return []

    def cancel(self, job) -> bool:
        self.work.pop(job.key, None)
        self.in_flight.pop(job.key, None)
        self.cancelled.append(job.key)
        return True


def jobs_of(models: dict[str, int], k: int = 5, standby=(), first: str | None = "ann") -> list[Job]:
    jobs = [Job(m, f, e, {"epochs": e}) for m, e in models.items() for f in range(k)]
    return job_order(jobs, lambda j: planned_s(j.model, j.epochs), lambda j: j.model, standby, first=first)


def run(models: dict[str, int], deadline: float, slots: int = 2, slow=lambda t: 1.0, grace: float = 0.0,
        standby: dict[str, float] | None = None, first: str | None = "ann", epochs: bool = False,
        minimum: int = 3):
    """The jobs of `models` (5 folds each) under a keeper that protects `ann`; `first`: whose jobs
    are dealt first (the training module's order deals the protected model's first); `epochs`:
    the jobs report their epochs (local worker processes); `minimum`: every model's fewest epochs."""
    executor = Simulated(slots, slow, epochs)
    keeper = Keeper(deadline=deadline, slots=slots, planned_s=planned_s,
                    min_epochs={m: minimum for m in models}, protected="ann", grace_s=grace, clock=executor.clock,
                    standby=standby or {})
    done: list[Job] = []
    run_jobs(executor, jobs_of(models, standby=standby or {}, first=first), lambda job, _r: done.append(job),
             keeper=keeper)
    return executor, keeper, done


PLAN = {"cnn_deep": 30, "cnn_small": 10, "ann": 10, "cnn_deep~2": 30, "cnn_deep~3": 30}


def test_the_order_is_the_kept_model_then_every_model_then_bag_2_then_bag_3():
    order = [j.model for j in jobs_of(PLAN, k=1)]
    assert order == ["ann", "cnn_deep", "cnn_small", "cnn_deep~2", "cnn_deep~3"]
    assert [j.model for j in jobs_of(PLAN, k=1, first=None)] == ["cnn_deep", "cnn_small", "ann", "cnn_deep~2",
                                                                 "cnn_deep~3"]


def test_a_machine_that_halves_its_speed_during_long_folds_still_ends_in_time_with_the_kept_model():
    # A 10-minute run's shape: five long folds, then two cheap models. The machine halves its speed
    # 120 s in, while the first long folds run: the keeper learns it only as they end (1.2x), lets
    # two more start, which then run at half speed to the deadline.
    models, deadline, grace = {"cnn_deep": 15, "cnn_small": 3, "ann": 10}, 500.0, 60.0
    slow = lambda t: 1.0 if t < 120 else 2.0  # noqa: E731
    # dealt last, the kept model's folds start only at the deadline and use all of its grace
    executor, keeper, done = run(models, deadline=deadline, slow=slow, grace=grace, first=None)
    assert executor.now >= deadline + grace - 1.0 and [j.model for j in done].count("ann") == 5
    # dealt first, they are done before the slowdown, and the run ends in time
    executor, keeper, done = run(models, deadline=deadline, slow=slow, grace=grace)
    assert executor.now <= deadline + grace + 1.0 + 1e-6
    assert [j.model for j in done][:5] == ["ann"] * 5
    for model in models:
        assert [j.model for j in done].count(model) in (0, 5) or model in keeper.dropped, model
    # cnn_deep keeps its five folds: those not started when the slowdown shows start with fewer epochs
    assert [j.model for j in done].count("cnn_deep") == 5 and "cnn_deep" not in keeper.dropped
    refit = [e for e in keeper.events if e["event"] == "epochs" and e["model"] == "cnn_deep"]
    assert refit and refit[0]["folds"] == [2, 3, 4] and all(3 <= e["epochs"] < 15 for e in refit)
    assert {j.epochs for j in done if j.model == "cnn_deep" and j.fold < 2} == {15}
    # when its folds cannot have fewer epochs (its minimum is its plan's), cnn_deep is dropped; with
    # a long grace, the fold of it still running then would end inside it, unused: it is cancelled
    # instead of holding its slot
    executor, keeper, done = run(models, deadline=deadline, slow=slow, grace=200.0, minimum=15)
    dropped = next(e for e in keeper.events if e["model"] == "cnn_deep")
    assert dropped["event"] == "dropped" and any(key.startswith("cnn_deep") for key in executor.cancelled)
    assert not any(e["event"] == "cancelled" for e in keeper.events)   # dropped once, not cancelled again
    # dropped when its folds left could not all end in time, not when one of them could not: the
    # slots it would have held train cnn_small whole
    assert [j.model for j in done].count("cnn_small") == 5 and executor.now <= deadline


def test_a_plan_that_fits_runs_whole():
    executor, keeper, done = run(PLAN, deadline=10_000)
    assert len(done) == 25 and not keeper.events and not executor.cancelled


def test_at_half_speed_later_bags_are_cut_then_dropped_whole_and_the_run_ends_in_time():
    # the plan's makespan on 2 slots: 25 jobs, about 5 x (3 x 305 + 105 + 15) / 2 = 2,590 s
    deadline = 2700.0
    executor, keeper, done = run(PLAN, deadline=deadline, slow=lambda t: 1.0 if t < 600 else 2.0)
    assert executor.now <= deadline + 1e-6
    kinds = {(e["event"], e["model"]) for e in keeper.events}
    assert ("dropped", "cnn_deep~3") in kinds          # the last bag goes first
    finished = {m for m in PLAN if sum(j.model == m for j in done) == 5}
    assert {"cnn_deep", "cnn_small", "ann"} <= finished
    for model in PLAN:                                # no model ends with some of its folds: whole or none
        assert sum(j.model == model for j in done) in (0, 5), model
    # a bag that was cut (perhaps more than once before it started) trains every fold at its last epochs
    cut = {e["model"]: e["epochs"] for e in keeper.events if e["event"] == "epochs"}
    for model, epochs in cut.items():
        assert {j.epochs for j in done if j.model == model} <= {epochs}


def test_a_job_that_cannot_finish_is_not_started_but_the_cheapest_model_always_trains():
    # cnn_deep's folds at 30 epochs (305 s) cannot end by 100 s, nor at its fewest (3: 35 s each)
    executor, keeper, done = run({"cnn_deep": 30, "ann": 10}, deadline=100.0)
    assert [(e["event"], e["model"]) for e in keeper.events] == [("dropped", "cnn_deep")]
    assert [j.model for j in done].count("ann") == 5 and "cnn_deep" not in {j.model for j in done}


def test_a_model_with_no_fold_started_trains_fewer_epochs_rather_than_none():
    # at 30 epochs cnn_deep's folds end far past 200 s, at its fewest (3) well before: none of
    # them started, all five train at the most epochs that end in time (5 here)
    executor, keeper, done = run({"cnn_deep": 30, "ann": 10}, deadline=200.0)
    (event,) = keeper.events
    assert event["event"] == "epochs" and event["model"] == "cnn_deep" and 3 <= event["epochs"] < 30
    assert {j.epochs for j in done if j.model == "cnn_deep"} == {event["epochs"]}
    assert [j.model for j in done].count("cnn_deep") == 5 and executor.now <= 200.0 + 1e-6


def test_jobs_still_running_past_the_deadline_and_its_grace_are_cancelled():
    # every job takes 4x its planned time, seen only once the first (ann's) finishes: the cnn_deep
    # folds all started at once (dealt first here), and only cancelling keeps the limit
    executor, keeper, done = run({"cnn_deep": 30, "ann": 10}, deadline=400.0, slots=6, grace=50.0,
                                 slow=lambda t: 4.0, first=None)
    assert executor.cancelled and all(key.startswith("cnn_deep") for key in executor.cancelled)
    assert executor.now <= 400.0 + 50.0 + 1.0 + 1e-6   # + one wait's timeout
    (event,) = [e for e in keeper.events if e["event"] == "cancelled"]
    assert event["model"] == "cnn_deep" and len(event["folds"]) == len(executor.cancelled)
    assert all(target == 30 for _, target in event["folds"].values())   # [epochs done, to end with]
    assert [j.model for j in done].count("ann") == 5


@pytest.mark.parametrize("speed", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_whatever_the_speed_no_job_ends_past_the_deadline_and_grace(speed):
    deadline = 2700.0
    executor, keeper, done = run(PLAN, deadline=deadline, slow=lambda t: speed, grace=0.05 * deadline)
    assert executor.now <= deadline * 1.05 + 1.0
    assert [j.model for j in done].count("ann") == 5


def test_a_model_may_end_within_the_grace_rather_than_be_dropped():
    # on one slot, cnn_deep's folds then cnn_small's: cnn_small's last fold ends 5 s past the deadline
    models = {"cnn_deep": 3, "cnn_small": 2}
    total = 5 * planned_s("cnn_deep", 3) + 5 * planned_s("cnn_small", 2)
    executor, keeper, done = run(models, deadline=total - 5, slots=1, grace=60.0)
    assert [j.model for j in done].count("cnn_small") == 5 and not keeper.events
    executor, keeper, done = run(models, deadline=total - 5, slots=1, grace=0.0)
    # without it, cnn_small is dropped before any fold of it starts: its five would not all end in time
    assert [j.model for j in done].count("cnn_small") == 0
    assert ("dropped", "cnn_small") in {(e["event"], e["model"]) for e in keeper.events}


# cnn_deep and a planned bag, then two stand-by bags: jobs of 305 s (cnn_deep), 45 s and 15 s
STANDBY_PLAN = {"cnn_deep": 30, "cnn_small": 10, "ann": 10, "cnn_deep~2": 30, "cnn_deep~3": 30, "cnn_deep~4": 30}
STANDBY = {"cnn_deep~3": 20.0, "cnn_deep~4": 20.0}


def test_stand_by_bags_are_dealt_after_every_planned_job():
    order = [j.model for j in jobs_of({"cnn_deep~3": 30, "ann": 10, "cnn_small~2": 10}, k=1, standby={"cnn_deep~3"})]
    assert order == ["ann", "cnn_small~2", "cnn_deep~3"]


def test_stand_by_bags_start_only_when_the_measured_speed_ends_them_in_time():
    # the planned jobs alone end at 1,795 s at the planned speed; a stand-by bag's 5
    # folds on 2 slots take 3 rounds: 915 s at the planned speed, 686 s at 0.75 of it
    deadline = 2450.0
    executor, keeper, done = run(STANDBY_PLAN, deadline=deadline, standby=STANDBY, slow=lambda t: 0.75)
    assert [j.model for j in done].count("cnn_deep~3") == 5      # faster than costed: one more bag, whole
    assert {j.epochs for j in done if j.model == "cnn_deep~3"} == {30}
    assert max(j.epochs for j in done if j.model == "cnn_deep~4") < 30   # and a second with fewer epochs
    assert [e["why"].split(" ")[0] for e in keeper.events] == ["started:", "started"]
    assert executor.now <= deadline - 2 * 20.0                    # their own stages after training fit too
    assert keeper.deadline == deadline - 2 * 20.0
    assert [j.model for j in done].count("cnn_deep~2") == 5 and not keeper.dropped   # planned work untouched


def test_a_stand_by_bag_trains_the_most_epochs_that_fit_and_none_when_not_even_its_fewest_fit():
    executor, keeper, done = run(STANDBY_PLAN, deadline=2300.0, standby=STANDBY)   # as costed: 30 epochs do not fit
    epochs = {j.epochs for j in done if j.model == "cnn_deep~3"}
    assert len(epochs) == 1 and 3 <= epochs.pop() < 30 and [j.model for j in done].count("cnn_deep~3") == 5
    started = next(e for e in keeper.events if e["model"] == "cnn_deep~3")
    assert started["why"].startswith("started at") and started["epochs"] < 30
    assert executor.now <= 2300.0 - 20.0
    executor, keeper, done = run(STANDBY_PLAN, deadline=1810.0, standby=STANDBY)   # no room at 3 epochs either
    assert not {"cnn_deep~3", "cnn_deep~4"} & {j.model for j in done}
    assert [(e["event"], e["model"]) for e in keeper.events] == [("standby", "cnn_deep~3"), ("standby", "cnn_deep~4")]
    assert all(e["why"].startswith("not started: even at 3") for e in keeper.events) and not keeper.dropped


def test_no_stand_by_bag_starts_once_planned_work_was_cut():
    executor, keeper, done = run(STANDBY_PLAN, deadline=1600.0, standby=STANDBY)
    assert keeper.events[0]["event"] == "epochs" and keeper.events[0]["model"] == "cnn_deep~2"
    assert not {"cnn_deep~3", "cnn_deep~4"} & {j.model for j in done}
    assert [e["why"] for e in keeper.events[1:]] == ["not started: planned work was already cut to keep the limit"] * 2


def test_a_stand_by_bag_keeps_the_promise_when_the_machine_slows_after_it_started():
    deadline = 2450.0
    slow = lambda t: 0.75 if t < 1300 else 2.0  # noqa: E731 (fast until the bag has started, then half speed)
    executor, keeper, done = run(STANDBY_PLAN, deadline=deadline, standby=STANDBY, slow=slow, grace=100.0)
    assert executor.now <= deadline + 100.0 + 1.0 + 1e-6
    assert any(e["event"] == "standby" and e["why"].startswith("started") for e in keeper.events)
    for model in STANDBY_PLAN:  # whole, or dropped (its finished folds then unused: no partial OOF)
        assert [j.model for j in done].count(model) in (0, 5) or model in keeper.dropped, model
    assert [j.model for j in done].count("ann") == 5


def test_the_speed_is_that_of_the_bulk_of_the_work_not_of_the_short_jobs():
    keeper = Keeper(deadline=1000.0, slots=2, planned_s=planned_s, min_epochs={}, protected="ann")
    assert keeper.speed() == 1.0
    keeper.finished(Job("cnn_deep", 0, 30), 0.8 * planned_s("cnn_deep", 30))
    for fold in range(3):
        keeper.finished(Job("cnn_small", fold, 2), 1.2 * planned_s("cnn_small", 2))
    assert keeper.speed() == pytest.approx((0.8 * 305 + 3 * 1.2 * 13) / (305 + 3 * 13))   # 0.83, not the mean 1.1


def test_the_kept_models_jobs_dealt_first_do_not_set_the_speed():
    # they are short and carry each worker's warm-up: at 1.5x they would cut a plan that fits
    keeper = Keeper(deadline=1000.0, slots=2, planned_s=planned_s, min_epochs={}, protected="ann")
    for fold in range(5):
        keeper.finished(Job("ann", fold, 10), 1.5 * planned_s("ann", 10))
    assert keeper.speed() == 1.0
    keeper.finished(Job("cnn_deep", 0, 30), 1.1 * planned_s("cnn_deep", 30))
    assert keeper.speed() == pytest.approx(1.1)
    executor, keeper, done = run(PLAN, deadline=2600.0, slow=lambda t: 1.5 if t < 50 else 1.0)
    assert not keeper.events and len(done) == 25


# ---------------------------------------------------------------- running folds that report their epochs


def test_a_slowdown_shows_in_the_speed_from_the_epochs_of_running_folds():
    keeper = Keeper(deadline=1000.0, slots=2, planned_s=planned_s, min_epochs={}, protected="ann")
    job = Job("cnn_deep", 0, 30)
    keeper.epoch(job, 1, 100.0)
    assert keeper.speed() == 1.0                        # the first epoch (start-up, tracing) says nothing
    keeper.epoch(job, 2, 110.0)
    keeper.epoch(job, 4, 150.0)                         # 3 epochs of 10 s planned in 50 s
    assert keeper.speed() == pytest.approx(50 / 30)
    keeper.finished(job, 1.0 * planned_s("cnn_deep", 30))
    assert keeper.speed() == pytest.approx(1.0)         # finished: its whole time counts, not its epochs
    # the kept model's jobs count by their epochs after the first, not their whole (warm-up) time
    kept = Job("ann", 0, 10)
    for done, at in ((1, 5.0), (2, 6.0), (10, 22.0)):
        keeper.epoch(kept, done, at)
    keeper.finished(kept, 3.0 * planned_s("ann", 10))
    assert keeper.ratios[-1] == pytest.approx((17.0, 9.0))   # epochs 2-10: 17 s for 9 planned


def run_2_folds(deadline: float, slow, grace: float, epochs: bool, deep_min: int = 3):
    """A slow machine's 30-minute shape: 2 folds on 2 slots, the kept model's first, then both
    long folds side by side, then the cheap model's."""
    executor = Simulated(2, slow, epochs)
    keeper = Keeper(deadline=deadline, slots=2, planned_s=planned_s, min_epochs={"cnn_deep": deep_min, "cnn_small": 3,
                                                                                  "ann": 3},
                    protected="ann", grace_s=grace, clock=executor.clock)
    done: list[Job] = []
    jobs = job_order([Job(m, f, e, {"epochs": e}) for m, e in {"cnn_deep": 40, "cnn_small": 3, "ann": 8}.items()
                      for f in range(2)], lambda j: planned_s(j.model, j.epochs), lambda j: j.model, {}, first="ann")
    run_jobs(executor, jobs, lambda job, _r: done.append(job), keeper=keeper)
    return executor, keeper, done


def test_long_folds_on_a_machine_that_halves_its_speed_are_shortened_not_lost():
    # ann's folds (13 s), cnn_deep's side by side (405 s), cnn_small's (17 s): 435 s planned, the
    # deadline 450 s. The machine halves its speed 200 s in, under the long folds.
    slow = lambda t: 1.0 if t < 200 else 2.0  # noqa: E731
    # folds that do not report their epochs run on to the deadline and its grace and are cancelled:
    # the run ends with ann alone
    executor, keeper, done = run_2_folds(450.0, slow, grace=30.0, epochs=False)
    assert sorted(executor.cancelled) == ["cnn_deep/0", "cnn_deep/1"] and "cnn_deep" in keeper.dropped
    # folds that do are told to end with fewer epochs, the rest of their schedule in them, and end
    # in time: cnn_deep keeps both folds
    executor, keeper, done = run_2_folds(450.0, slow, grace=30.0, epochs=True)
    assert executor.now <= 450.0 + 30.0 + 1.0 + 1e-6 and not executor.cancelled
    shortened = [e for e in keeper.events if e["event"] == "shortened"]
    assert {e["fold"] for e in shortened} == {0, 1} and all(3 <= e["epochs"] < 40 for e in shortened)
    assert [j.model for j in done].count("cnn_deep") == 2 and "cnn_deep" not in keeper.dropped
    assert [j.model for j in done].count("ann") == 2


def test_a_model_whose_folds_are_late_keeps_all_five_with_fewer_epochs():
    # the 10-minute shape above: cnn_deep's first two folds run when the machine slows, its other
    # three wait. Folds that report their epochs are told to end sooner to make room for the
    # others, which start with as many epochs; all five end in time (the kept model's too)
    models, slow = {"cnn_deep": 15, "cnn_small": 3, "ann": 10}, (lambda t: 1.0 if t < 120 else 2.0)
    executor, keeper, done = run(models, deadline=500.0, slow=slow, grace=60.0, epochs=True)
    deep = {j.fold: executor_epochs for j, executor_epochs in ((j, j.epochs) for j in done) if j.model == "cnn_deep"}
    assert sorted(deep) == [0, 1, 2, 3, 4] and "cnn_deep" not in keeper.dropped
    trained = [e for e in keeper.events if e["event"] == "shortened" and e["model"] == "cnn_deep"]
    assert {e["fold"] for e in trained} >= {0, 1} and all(3 <= e["epochs"] < 15 for e in trained)
    refit = next(e for e in keeper.events if e["event"] == "epochs")
    assert refit["model"] == "cnn_deep" and refit["folds"] == [2, 3, 4] and 3 <= refit["epochs"] < 15
    assert not any(key.startswith("cnn_deep") for key in executor.cancelled)
    assert executor.now <= 500.0 + 60.0 + 1.0 + 1e-6 and [j.model for j in done].count("ann") == 5
    # folds that do not report their epochs cannot be shortened: the three that wait start with
    # fewer epochs, and the run still ends in time
    executor, keeper, done = run(models, deadline=500.0, slow=slow, grace=60.0)
    assert executor.now <= 500.0 + 60.0 + 1.0 + 1e-6 and [j.model for j in done].count("ann") == 5
    assert not any(e["event"] == "shortened" for e in keeper.events)



def test_a_fold_that_ends_within_the_grace_as_told_is_not_told_again_on_every_pass():
    # at a minimum of 35 of its 40 epochs, cnn_deep's folds end within the grace at best: told to
    # end with 36, each still misses the deadline, and was told 35 a second later; a fold's next
    # shortening comes an epoch or more later, as its speed shows
    executor, keeper, done = run_2_folds(450.0, lambda t: 1.0 if t < 150 else 2.0, grace=60.0, epochs=True,
                                         deep_min=35)
    shortened = [e for e in keeper.events if e["event"] == "shortened"]
    assert shortened and executor.now <= 450.0 + 60.0 + 1.0 + 1e-6
    assert any("or within its grace" in e["why"] for e in shortened)
    for fold in (0, 1):
        lefts = [e["left_s"] for e in shortened if e["fold"] == fold]
        assert all(a - b >= EPOCH_S["cnn_deep"] for a, b in zip(lefts, lefts[1:])), (fold, lefts)


def test_a_fold_is_never_shortened_below_its_models_minimum_nor_the_kept_models():
    # 4x slower from the start: even at 3 epochs cnn_deep's folds end past the grace, so they
    # are left to be cancelled, not shortened below their minimum; ann's are never touched
    executor, keeper, done = run({"cnn_deep": 30, "ann": 10}, deadline=400.0, slots=6, grace=50.0,
                                 slow=lambda t: 4.0, first=None, epochs=True)
    assert all(e["epochs"] >= 3 for e in keeper.events if e["event"] == "shortened")
    assert not any(e["event"] == "shortened" and e["model"] == "ann" for e in keeper.events)
    assert executor.now <= 400.0 + 50.0 + 1.0 + 1e-6
    assert [j.model for j in done].count("ann") == 5


def test_with_epochs_reported_a_plan_that_fits_runs_whole_and_no_fold_is_shortened():
    executor, keeper, done = run(PLAN, deadline=10_000, epochs=True)
    assert len(done) == 25 and not keeper.events and {j.epochs for j in done if j.model == "cnn_deep"} == {30}


@pytest.mark.parametrize("speed", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_with_epochs_reported_no_job_ends_past_the_deadline_and_grace(speed):
    deadline = 2700.0
    executor, keeper, done = run(PLAN, deadline=deadline, slow=lambda t: speed, grace=0.05 * deadline, epochs=True)
    assert executor.now <= deadline * 1.05 + 1.0
    assert [j.model for j in done].count("ann") == 5


FULL = {"cnn_deep": 30, "cnn_small": 5, "ann": 10}
FULL_S = list_schedule([planned_s(j.model, j.epochs) for j in jobs_of(FULL)], 2)   # its makespan: 945 s


@pytest.mark.parametrize("speed", [0.97, 1.0, 1.03])
@pytest.mark.parametrize("epochs", [False, True])
def test_a_plan_that_fills_its_budget_keeps_every_epoch_when_a_little_slow(speed, epochs):
    # the plan's last cnn_deep fold ends at the deadline; a few % slower, it ends a little past it,
    # within half the grace: no fold loses an epoch to a speed read a little slow
    executor, keeper, done = run(FULL, deadline=FULL_S, slow=lambda t: speed, grace=0.05 * FULL_S + 60, epochs=epochs)
    assert not keeper.events and len(done) == 15 and {j.epochs for j in done if j.model == "cnn_deep"} == {30}


@pytest.mark.parametrize("speed", [1.1, 1.2, 1.5])
@pytest.mark.parametrize("epochs", [False, True])
def test_a_plan_that_fills_its_budget_keeps_its_long_model_whole_when_slow(speed, epochs):
    # slower still, its folds are cut to fewer epochs, not dropped, and the run ends in time
    grace = 0.05 * FULL_S + 60
    executor, keeper, done = run(FULL, deadline=FULL_S, slow=lambda t: speed, grace=grace, epochs=epochs)
    assert [j.model for j in done].count("cnn_deep") == 5 and "cnn_deep" not in keeper.dropped
    assert executor.now <= FULL_S + grace + 1.0 + 1e-6


@pytest.mark.parametrize("slows_at", [200.0, 400.0])
@pytest.mark.parametrize("epochs", [False, True])
def test_a_plan_that_fills_its_budget_keeps_its_long_model_whole_when_it_halves_its_speed_partway(slows_at, epochs):
    # the 30-minute shape of the default run: half speed from a point while cnn_deep's folds train
    grace = 0.05 * FULL_S + 60
    executor, keeper, done = run(FULL, deadline=FULL_S, slow=lambda t: 1.0 if t < slows_at else 2.0, grace=grace,
                                 epochs=epochs)
    assert [j.model for j in done].count("cnn_deep") == 5 and "cnn_deep" not in keeper.dropped
    assert executor.now <= FULL_S + grace + 1.0 + 1e-6 and [j.model for j in done].count("ann") == 5


def test_the_runs_deadline_does_not_hold_back_the_seconds_spent_before_training(tmp_path):
    """The plan counts the run's own seconds (data, run folder, folds, submission, report) once;
    those before training are spent when the keeper starts, so its deadline holds back only the rest."""
    from types import SimpleNamespace

    from harness.run.calibrate import After
    from harness.run.planner import MARGIN
    from harness.run.training import _keeper

    spec = SimpleNamespace(name="ann")
    plan = {"slots": 2, "after_s": 40.0, "bags": {"ann": 1}, "jobs": [{"model": "ann", "epochs": 8, "min_epochs": 2}]}
    budget = {"limit_s": 600.0, "plan": plan, "after": dataclasses.asdict(After()), "calibration": {},
              "costs": {"job_s": {"ann": 5.0}, "epoch_s": {"ann": 10.0}, "after_s": {"ann": 40.0},
                        "run_s": 30.0, "start_s": 12.0}}
    run = SimpleNamespace(budget=budget, clock=1000.0, say=lambda _m: None, run_dir=tmp_path, manifest={"params": {}})
    keeper = _keeper(run, [spec], {"ann": {"epochs": 8}})
    assert keeper.deadline == pytest.approx(1000.0 + 600 * (1 - MARGIN) - 40.0 - (30.0 - 12.0))
    del budget["costs"]["start_s"]  # a plan recorded before the start was kept apart holds it all back
    assert _keeper(run, [spec], {"ann": {"epochs": 8}}).deadline == pytest.approx(keeper.deadline - 12.0)
