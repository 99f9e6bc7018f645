"""Progress on stderr: a tqdm bar per model fold (steps, ETA, validation accuracy) on a terminal;
one line per finished fold otherwise (CI logs stay readable). Never Keras's own log spam."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable


class TrainingProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self.on_fold: Callable[[], None] | None = None  # called after each finished fold (checkpoints)

    def _say(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr, flush=True)

    def stage(self, msg: str) -> None:
        self._say(f"[{time.perf_counter() - self._t0:7.1f}s] {msg}")

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

    def end_fold(self, model: str, fold: int, result: Any) -> None:
        if self.on_fold:
            self.on_fold()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._say(f"  {model} fold {fold + 1}: val acc {100 * result.accuracy:.2f} %, "
                  f"{result.seconds:.0f} s, {result.images_per_s:,.0f} img/s")
