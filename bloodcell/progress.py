"""Training progress: each epoch logged, progress.json kept up to date for the dashboard, and a
checkpoint kept to resume from."""

import time

import keras

from bloodcell import runs

# A checkpoint after the first epoch, then at most once a minute: fast epochs (an accelerator)
# would otherwise spend their time writing files.
CHECKPOINT_SECONDS = 60.0


# The first batch of a process traces and compiles the model (and the first validation its
# evaluation): timed with them, a run of minutes was promised hours. The time left is estimated
# from the pace after the first batch, once this many more have passed.
ESTIMATE_AFTER_BATCHES = 10


class Progress(keras.callbacks.Callback):
    """Logs each epoch, keeps progress.json in the run up to date for the dashboard and keeps
    a checkpoint to resume from."""

    def __init__(self, run: runs.Run, steps: int, epochs: int, log, curves: list[dict] | None = None):
        super().__init__()
        self.run, self.steps, self.epochs, self.log = run, steps, epochs, log
        self.started = time.time()
        self.last_write = self.last_checkpoint = 0.0
        self.epoch = 0
        self.warm: tuple[float, float] | None = None  # (time, epochs done) at the end of the first batch
        self.curves: list[dict] = list(curves or [])

    def history(self) -> dict[str, list[float]]:
        """Per-epoch logs of the whole run, epochs before a resume included."""
        keys = [k for k in self.curves[0] if k != "epoch"] if self.curves else []
        return {k: [c.get(k, float("nan")) for c in self.curves] for k in keys}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.warm is None:
            self.warm = (time.time(), self.epoch + (batch + 1) / self.steps)
        if time.time() - self.last_write > 2.0:
            self._write(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.curves.append({"epoch": epoch + 1, **logs})
        self._write(self.steps, logs)
        if time.time() - self.last_checkpoint >= CHECKPOINT_SECONDS or epoch + 1 == self.epochs:
            self.run.save_checkpoint(self.model, epoch + 1, self.curves, time.time() - self.started)
            self.last_checkpoint = time.time()
        shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "learning_rate")
        self.log(f"epoch {epoch + 1}/{self.epochs}  {shown}  ({time.time() - self.started:.0f} s)")

    def remaining(self, done: float) -> float | None:
        """Seconds left after `done` epochs, at the pace since warm-up; None while estimating."""
        if self.warm is None or (done - self.warm[1]) * self.steps < ESTIMATE_AFTER_BATCHES:
            return None
        since, done_then = self.warm
        return (time.time() - since) / (done - done_then) * (self.epochs - done)

    def _write(self, batch: int, logs: dict):
        done = self.epoch + batch / self.steps
        self.run.write_json(
            "progress.json",
            {
                "epoch": self.epoch + 1,
                "epochs": self.epochs,
                "batch": batch,
                "batches": self.steps,
                "logs": {k: float(v) for k, v in logs.items()},
                "elapsed": time.time() - self.started,
                "remaining": self.remaining(done),
                "curves": self.curves,
            },
        )
        self.last_write = time.time()
