"""A running fold told to end with fewer epochs than it started with, its learning-rate schedule
compressed so that it still runs to its end (never a long schedule cut short).

    schedule = shortenable(keras.optimizers.schedules.CosineDecay(...))   # compile with it
    shorten(schedule, done_steps=d * steps_per_epoch, new_total_steps=e * steps_per_epoch)

The schedule reads the optimizer's step through a linear map `offset + scale x step`, identity
until a shortening (the same learning rate, bit for bit: a run with no shortening trains as
before). A shortening at step `s` keeps the rate at `s` and maps the new last step onto the
original last one, so the part of the schedule not yet run (the cosine's decay) is run in the
steps that are left. The map lives in two variables, read by the traced training step, so that
a callback between epochs can change it.
"""

from __future__ import annotations

from typing import Any


def shortenable(schedule: Any) -> Any:
    """`schedule` (a Keras LearningRateSchedule with `decay_steps` and `warmup_steps`) behind the
    shortenable step map."""
    return _shortenable_class()(schedule)


def shorten(schedule: Any, done_steps: int, new_total_steps: int) -> None:
    """From step `done_steps` on, run the rest of `schedule` in `new_total_steps - done_steps`
    steps (at least one)."""
    schedule.shorten(done_steps, new_total_steps)


_CLASS: Any = None


def _shortenable_class() -> Any:
    """The schedule class, made once Keras is imported (workers import it only to train)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="harness")
    class ShortenableSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.total = float(getattr(inner, "warmup_steps", 0) + inner.decay_steps)  # the original last step
            self.scale = keras.Variable(1.0, dtype="float32", trainable=False, name="schedule_scale")
            self.offset = keras.Variable(0.0, dtype="float32", trainable=False, name="schedule_offset")

        def __call__(self, step: Any) -> Any:
            return self.inner(ops.cast(step, "float32") * self.scale + self.offset)

        def shorten(self, done_steps: int, new_total_steps: int) -> None:
            at = float(self.offset.numpy()) + float(self.scale.numpy()) * done_steps  # where the schedule is now
            scale = (self.total - at) / max(new_total_steps - done_steps, 1)
            self.scale.assign(scale)
            self.offset.assign(at - scale * done_steps)

        def get_config(self) -> dict[str, Any]:
            return {"inner": keras.optimizers.schedules.serialize(self.inner)}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            return cls(keras.optimizers.schedules.deserialize(config["inner"]))

    _CLASS = ShortenableSchedule
    return _CLASS
