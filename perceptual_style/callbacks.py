"""`Model.fit` callbacks for style training: progress bar, NaN guard, checkpoints with
resume and clean interruption, a time budget, TensorBoard scalars and progress pictures.

Each callback knows the global step of the first batch (`start_step`), since a resumed run
fits only the remaining steps. On JAX, `self.model` syncs the training state first.
"""

import math
import os
import signal
import sys
import threading
import time

import keras
import numpy as np
from absl import logging

from perceptual_style.checkpoint import save_checkpoint
from perceptual_style.images import image_grid, save_image, to_uint8
from perceptual_style.losses import LOSS_NAMES


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: `what` says which and at which step; the message adds
    what to try."""

    def __init__(self, what):
        super().__init__(f"{what}; try a lower --learning_rate or loss weights")
        self.what = what


class StepCallback(keras.callbacks.Callback):
    def __init__(self, start_step=0):
        super().__init__()
        self.start_step = start_step

    def global_step(self, batch):
        return self.start_step + batch + 1


class NonFiniteLossGuard(StepCallback):
    """Stops training at the first NaN or Inf loss, before anything saves those weights."""

    def on_train_batch_end(self, batch, logs=None):
        bad = [name for name in LOSS_NAMES if not math.isfinite(float(logs[name]))]
        if bad:
            raise NonFiniteLossError(
                f"the {'/'.join(bad)} loss became {float(logs[bad[0]])} at step "
                f"{self.global_step(batch)}")


class ProgressBar(StepCallback):
    """Keras' progress bar over the whole run, showing the latest losses as the terms of
    the total: each loss times its weight, labelled so (`style*3e-05`), so they add up."""

    def __init__(self, steps, start_step=0, weights=None):
        super().__init__(start_step)
        self.steps = steps
        weights = weights or {}
        self.terms = [(k, f"{k}*{weights[k]:g}" if k in weights else k, weights.get(k, 1.0))
                      for k in LOSS_NAMES]

    def on_train_begin(self, logs=None):
        self.bar = _ResumedProgbar(self.steps, self.start_step,
                                   stateful_metrics=[t[1] for t in self.terms], unit_name="step")
        self.bar.update(self.start_step)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(self.global_step(batch),
                        [(label, weight * float(logs[k])) for k, label, weight in self.terms])


class _ResumedProgbar(keras.utils.Progbar):
    """Keras' bar times steps from step 0; a resumed run's first step is `start_step`, so
    its s/step and time left count only the steps this run has made."""

    def __init__(self, target, start_step, **kwargs):
        super().__init__(target, **kwargs)
        self.start_step = start_step

    def _estimate_step_duration(self, current, now):
        return super()._estimate_step_duration(current - self.start_step, now)


class TimeBudget(StepCallback):
    """Stops training before a step that would end after `seconds` from `started`
    (`time.monotonic()`), leaving `reserve` seconds for the final checkpoint and export."""

    def __init__(self, seconds, started, start_step=0, reserve=30.0):
        super().__init__(start_step)
        self.deadline = started + seconds - reserve
        self.exhausted = False

    def on_train_batch_begin(self, batch, logs=None):
        self.began = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now + (now - self.began) > self.deadline:
            self.exhausted = True
            self.model.stop_training = True


class Checkpointer(StepCallback):
    """Saves a checkpoint every `every` steps and on SIGINT/SIGTERM, after which it stops
    training cleanly (a second Ctrl-C interrupts at once). With `chief=False` (the other
    workers of a cluster, whose weights are the chief's) it keeps the schedule but writes
    nothing."""

    def __init__(self, directory, every, start_step=0, chief=True):
        super().__init__(start_step)
        self.directory, self.every, self.chief = directory, every, chief
        self.interrupted = False
        self.last_saved = start_step

    def _request_stop(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.warning("interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

    def on_train_begin(self, logs=None):
        self._previous = {sig: signal.signal(sig, self._request_stop)
                          for sig in (signal.SIGINT, signal.SIGTERM)}
        self._watchdog = SecondSignalExit()

    def on_train_end(self, logs=None):
        self._watchdog.close()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if self.interrupted or (self.every and step % self.every == 0):
            if self.chief:
                save_checkpoint(self.model, self.directory)
            self.last_saved = step
        if self.interrupted:
            self.model.stop_training = True


class SecondSignalExit:
    """Exits at a second SIGINT/SIGTERM even while TensorFlow blocks the main thread.

    Python runs signal handlers on the main thread only between bytecodes, so a step or an
    input pipeline that blocks in C++ would leave the first handler's "save after this
    step" waiting. The C-level handler writes each signal to a wakeup pipe at once; this
    thread counts them and ends the process at the second, the last checkpoint on disk.
    """

    def __init__(self):
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        self._write = write
        self._previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, daemon=True, name="second-signal-exit").start()

    def _watch(self):
        seen = 0
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                data = b""
            if not data:
                os.close(self._read)
                return
            seen += sum(byte in (signal.SIGINT, signal.SIGTERM) for byte in data)
            if seen >= 2:
                print("\ninterrupted twice: stopped at once; rerun the same command to resume "
                      "from the last checkpoint", file=sys.stderr, flush=True)
                os._exit(130)

    def close(self):
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write)  # the thread reads end-of-file and ends


class TensorBoardScalars(StepCallback):
    """Each loss as a TensorBoard scalar, every `every` steps."""

    def __init__(self, writer, every=10, start_step=0):
        super().__init__(start_step)
        self.writer, self.every = writer, every

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if step % self.every == 0 or step == self.start_step + 1:
            self.writer.scalars(step, {f"loss/{k}": float(logs[k]) for k in LOSS_NAMES})

    def on_train_end(self, logs=None):
        self.writer.flush()


class ProgressImages(StepCallback):
    """Every `every` steps and at the end: held-out photos (top row) and their stylized
    versions (the row below; one row per style for a network of several) as
    `images/<name>/step_NNNNNN.png` and a TensorBoard image."""

    def __init__(self, samples, directory, every, writer=None, start_step=0):
        super().__init__(start_step)
        self.samples = np.stack(samples).astype(np.float32)
        self.directory, self.every, self.writer = directory, every, writer
        self.step = start_step

    def write(self, step):
        net = self.model.transformer
        styles = ([{}] if net.num_styles == 1 else
                  [{"style_weights": w} for w in np.eye(net.num_styles, dtype=np.float32)])
        rows = [list(to_uint8(self.samples))]
        for style in styles:
            stylized = keras.ops.cast(net(self.samples, **style), "float32")
            rows.append(list(to_uint8(keras.ops.convert_to_numpy(stylized))))
        grid = image_grid(rows)
        save_image(grid, os.path.join(self.directory, f"step_{step:06d}.png"))
        if self.writer is not None:
            self.writer.image(step, "stylized_samples", grid)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.global_step(batch)
        if self.every and self.step % self.every == 0:
            self.write(self.step)

    def on_train_end(self, logs=None):
        if not (self.every and self.step % self.every == 0) and self.step > self.start_step:
            self.write(self.step)
