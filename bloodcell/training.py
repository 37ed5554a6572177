"""Training jobs: a frozen config in, a stored run out."""

import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bloodcell import archs, datasets, evaluation, runs

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training job; saved, resolved, with its run."""

    arch: str
    data: str
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    warmup_epochs: int = 2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    shuffle: bool = True
    class_weights: bool = False
    patience: int = 0
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    seed: int = 0
    weights: str | None = None
    keep_model: bool = True
    name: str = ""

    def __post_init__(self):
        arch = archs.get(self.arch)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer '{self.optimizer}'; choose one of: {', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule '{self.schedule}'; choose one of: {', '.join(SCHEDULES)}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be at least 1.")
        if self.image_size is None:
            object.__setattr__(self, "image_size", arch.input_size)


def train(config: TrainConfig, log=print) -> runs.Run:
    """Train `config.arch` on `config.data`, evaluate it on the held-out test split and store the run."""
    dataset = datasets.discover(config.data)
    split = datasets.split(dataset, config.test_fraction, config.val_fraction, config.seed)
    log(
        f"data: {len(dataset)} images in {len(dataset.classes)} classes; "
        f"train {len(split.train)}, validation {len(split.val)}, test {len(split.test)}"
    )
    x, readable = datasets.load_arrays(dataset, config.image_size)
    if not readable.all():
        log(f"skipped {int((~readable).sum())} unreadable images")
    part = {name: idx[readable[idx]] for name, idx in dataclasses.asdict(split).items()}

    keras.utils.set_random_seed(config.seed)
    model = archs.build(config.arch, len(dataset.classes), config.image_size, config.weights)
    steps = -(-len(part["train"]) // config.batch_size)
    model.compile(
        optimizer=_optimizer(config, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    run = runs.create(
        config.name or config.arch,
        {
            "config": dataclasses.asdict(config),
            "arch": config.arch,
            "classes": list(dataset.classes),
            "image_size": config.image_size,
            "preprocessing": archs.get(config.arch).preprocessing,
            "resize": "PIL bilinear, antialiased, whole image to a square",
            "seed": config.seed,
            "dataset": {
                "root": str(Path(config.data).resolve()),
                "fingerprint": dataset.fingerprint,
                "counts": {c: int((dataset.labels == i).sum()) for i, c in enumerate(dataset.classes)},
            },
            "split": {k: len(v) for k, v in part.items()},
            "parameters": int(model.count_params()),
            "versions": _versions(),
        },
    )
    log(f"run {run.id}: {config.arch} at {config.image_size} px, {model.count_params():,} parameters")
    n_classes = len(dataset.classes)
    train_data = _batches(x[part["train"]], dataset.labels[part["train"]], n_classes, config, training=True)
    val_data = _batches(x[part["val"]], dataset.labels[part["val"]], n_classes, config, training=False)
    callbacks = [
        Progress(run, steps, config.epochs, log),
        keras.callbacks.ModelCheckpoint(run.checkpoint_path),
    ]
    if config.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=config.patience, restore_best_weights=True
            )
        )
    started = time.time()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        callbacks=callbacks,
        class_weight=_class_weights(dataset.labels[part["train"]], n_classes)
        if config.class_weights
        else None,
        verbose=0,
    )
    train_seconds = time.time() - started

    logits = predict_logits(model, x[part["test"]])
    probabilities = tf.nn.softmax(logits).numpy()
    result = evaluation.metrics(dataset.labels[part["test"]], probabilities, dataset.classes)
    run.write_history(history.history)
    run.write_predictions(
        logits=logits,
        labels=dataset.labels[part["test"]],
        files=np.array([str(dataset.files[i].relative_to(dataset.root)) for i in part["test"]]),
    )
    run.write_json(
        "metrics.json", {k: v for k, v in result.items() if k not in ("labels", "confusion_matrix")}
    )
    run.write_json("confusion.json", {"labels": result["labels"], "matrix": result["confusion_matrix"]})
    if config.keep_model:
        run.save_model(_without_optimizer(model))
    run.checkpoint_path.unlink(missing_ok=True)
    run.update(
        status="finished",
        finished=time.time(),
        train_seconds=train_seconds,
        epochs_run=len(history.history["loss"]),
    )
    log(
        f"test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} "
        f"({result['n']} images); training took {train_seconds / 60:.1f} min"
    )
    return run


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of `model` for uint8 images `x`, from its float32 `logits` layer."""
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(logits_model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def _without_optimizer(model):
    """A copy for serving: same weights, no optimizer state (a third of the file size)."""
    served = keras.models.clone_model(model)
    served.set_weights(model.get_weights())
    return served


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    rate = config.learning_rate
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate * 0.1 if warmup else rate,
            decay_steps=max(1, config.epochs * steps_per_epoch - warmup),
            alpha=0.0,
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        return (
            keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
            if decay
            else keras.optimizers.Adam(rate)
        )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    return keras.optimizers.RMSprop(rate, weight_decay=decay)


def _class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes)
    return {i: float(len(labels) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _batches(x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig, training: bool):
    data = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes)))
    if training and config.shuffle:
        data = data.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size)
    if training and config.augment:
        augment = augmenter(config.seed)
        data = data.map(lambda images, labels: (augment(images), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def augmenter(seed: int = 0):
    """Random augmentation for stained smears: the 8 flips/right-angle turns, a small free
    rotation and zoom, and mild colour jitter. Works on uint8-valued batches, returns float32."""
    rotate = keras.layers.RandomRotation(1 / 16, fill_mode="reflect", seed=seed)
    zoom = keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 1)
    generator = tf.random.Generator.from_seed(seed + 2)

    def apply(images):
        x = tf.cast(images, tf.float32)
        x = tf.image.rot90(x, k=generator.uniform([], 0, 4, dtype=tf.int32))
        x = tf.where(generator.uniform([tf.shape(x)[0], 1, 1, 1]) < 0.5, tf.reverse(x, axis=[2]), x)
        x = zoom(rotate(x, training=True), training=True)
        n = tf.shape(x)[0]
        brightness = generator.uniform([n, 1, 1, 1], -12.0, 12.0)
        contrast = generator.uniform([n, 1, 1, 1], 0.9, 1.1)
        channel = generator.uniform([n, 1, 1, 3], 0.96, 1.04)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = ((x - mean) * contrast + mean) * channel + brightness
        return tf.clip_by_value(x, 0.0, 255.0)

    return apply


class Progress(keras.callbacks.Callback):
    """Logs each epoch and keeps progress.json in the run up to date for the dashboard."""

    def __init__(self, run: runs.Run, steps: int, epochs: int, log):
        super().__init__()
        self.run, self.steps, self.epochs, self.log = run, steps, epochs, log
        self.started = time.time()
        self.last_write = 0.0
        self.epoch = 0
        self.curves: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.last_write > 2.0:
            self._write(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.curves.append({"epoch": epoch + 1, **logs})
        self._write(self.steps, logs)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "learning_rate")
        self.log(f"epoch {epoch + 1}/{self.epochs}  {shown}  ({time.time() - self.started:.0f} s)")

    def _write(self, batch: int, logs: dict):
        done = self.epoch + batch / self.steps
        elapsed = time.time() - self.started
        self.run.write_json(
            "progress.json",
            {
                "epoch": self.epoch + 1,
                "epochs": self.epochs,
                "batch": batch,
                "batches": self.steps,
                "logs": {k: float(v) for k, v in logs.items()},
                "elapsed": elapsed,
                "remaining": elapsed / done * (self.epochs - done) if done else None,
                "curves": self.curves,
            },
        )
        self.last_write = time.time()


def _versions() -> dict[str, str]:
    import sklearn

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": sys.platform,
        "cpus": str(os.cpu_count()),
    }
