"""A running fold told to end with fewer epochs (harness.train.shorten, the keeper's `shorten`):
the learning-rate schedule compressed, not cut, in the traced training step; a real worker
process slowed under a fold, shortened by the driver; and the same fold replayed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.executors import Processes, run_jobs
from harness.run.keeper import Keeper
from harness.train.jobs import FoldJob, JobData


def test_the_schedule_is_unchanged_until_shortened_then_runs_its_rest_in_the_steps_left():
    import keras
    from keras import ops

    from harness.train.shorten import shorten, shortenable

    def cosine():
        return keras.optimizers.schedules.CosineDecay(1e-4, decay_steps=58, alpha=0.01, warmup_target=1e-3,
                                                      warmup_steps=2)

    plain, schedule = cosine(), shortenable(cosine())
    assert all(float(schedule(i)) == float(plain(i)) for i in range(61))     # bit for bit
    shorten(schedule, 10, 30)   # at step 10 of 60: end at step 30
    assert float(schedule(10)) == pytest.approx(float(plain(10)))           # no jump
    assert float(schedule(30)) == pytest.approx(float(plain(60)))           # the schedule's own end
    assert float(schedule(20)) == pytest.approx(float(plain(35)))           # its middle, halfway
    # the traced training step reads the map: SGD on a loss whose gradient is 1 moves the weight
    # by the sum of the rates it used
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    schedule = shortenable(cosine())
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=lambda _y, p: ops.mean(p))

    class Shorten(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shorten(schedule, 10, 30)
            if epoch == 2:
                self.model.stop_training = True

    model.fit(np.ones((10, 1)), np.zeros((10, 1)), batch_size=1, epochs=6, verbose=0, callbacks=[Shorten()])
    reference = shortenable(cosine())
    rates = [float(reference(i)) for i in range(10)]
    shorten(reference, 10, 30)
    rates += [float(reference(i)) for i in range(10, 30)]
    assert -float(model.get_weights()[0][0, 0]) == pytest.approx(sum(rates), rel=1e-5)
    assert sum(rates) < 0.99 * sum(float(plain(i)) for i in range(30))     # not the first 30 steps of 60


@pytest.fixture(scope="module")
def data(replica_dir: Path) -> JobData:
    from harness.data.dataset import load
    from harness.train.cv import make_folds, stratified_subset

    ds = load(replica_dir)
    rows = stratified_subset(ds.y_train, 2000, 0)
    return JobData(ds.x_train[rows], ds.y_train[rows], ds.x_test[:100], make_folds(ds.y_train[rows], 2, 0))


class FromFirstEpoch(Keeper):
    """A keeper whose deadline is 20 s after the fold's first epoch (whatever the worker's start took)."""

    def epoch(self, job, done, at):
        if not self.running_epochs:
            self.deadline = self.clock() + 20.0
        super().epoch(job, done, at)

    def overdue(self, running):
        # the fold is shortened to end by the deadline at the speed of its epochs, plus this plan's
        # 2 s after its last; its predictions and writes take 6 s on a fast machine and more on a
        # slow one, so it may end a little past it. A run's keeper allows that (its grace, the
        # time of the stages after training); this test's subject is the shortening, not that.
        return []


def _job(run_dir: Path, **params) -> FoldJob:
    from harness.registry import get_model

    return FoldJob(run_dir=str(run_dir), model="cnn_tiny", fold=0, k=2,
                   params={**get_model("cnn_tiny").params(), "epochs": 8, **params}, seed=0, epochs=8)


def test_a_fold_slowed_under_its_worker_is_shortened_and_replayed_exactly(data, tmp_path, monkeypatch):
    # every epoch after the second takes 3 s more: 8 epochs end ~20 s after the first, past the
    # deadline; the driver tells the worker to end sooner, and the fold trains fewer epochs
    monkeypatch.setenv("HARNESS_FAILPOINT_EPOCH_SLEEP", "cnn_tiny:3")
    keeper = FromFirstEpoch(deadline=float("inf"), slots=1, planned_s=lambda _m, e: 2.0 + 0.5 * e,
                            min_epochs={"cnn_tiny": 3}, protected="ann_tiny")
    done: list[dict] = []
    with Processes(1, cpus_per_job=1).session(data, tmp_path / "run") as ex:
        run_jobs(ex, [_job(tmp_path / "run")], lambda job, r: done.append(r), keeper=keeper)
    (event, *_) = [e for e in keeper.events if e["event"] == "shortened"]
    assert event["fold"] == 0 and 3 <= event["epochs"] < 8, keeper.events
    fold = json.loads((tmp_path / "run" / "cnn_tiny" / "fold_0" / "fold.json").read_text())
    assert fold["planned_epochs"] == 8 and 3 <= fold["epochs"] < 8 and fold["shortened_at"] < fold["epochs"]
    history = json.loads((tmp_path / "run" / "cnn_tiny" / "fold_0" / "history.json").read_text())
    assert len(history["loss"]) == fold["epochs"] == done[0]["epochs"], (keeper.events, done)
    # --replay's way: the same fold, shortened at the same epoch (params `shortened`), no clock
    monkeypatch.delenv("HARNESS_FAILPOINT_EPOCH_SLEEP")
    replay = _job(tmp_path / "replay", shortened={"0": [fold["shortened_at"], fold["epochs"]]})
    with Processes(1, cpus_per_job=1).session(data, tmp_path / "replay") as ex:
        run_jobs(ex, [replay], lambda job, r: None)
    again = json.loads((tmp_path / "replay" / "cnn_tiny" / "fold_0" / "fold.json").read_text())
    assert (again["epochs"], again["shortened_at"]) == (fold["epochs"], fold["shortened_at"])
    for name in ("oof.npy", "test.npy"):
        np.testing.assert_array_equal(*(np.load(tmp_path / d / "cnn_tiny" / "fold_0" / name) for d in ("run", "replay")))
