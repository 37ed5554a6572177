"""Training jobs: a frozen config in, a stored run out.

How a model is fitted is a strategy chosen by the architecture's registry entry (plain
supervised training, or supervised contrastive pre-training then a classifier); data handling
(SMOTE, class weights, augmentation, shuffling, cross-validation) is shared by all of them.
"""

import contextlib
import dataclasses
import hashlib
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from bloodcell import archs, datasets, distribute, evaluation, finder, runs, trust

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant")
# Above every architecture's own size (299 px): decoded in memory, the PBC pool is 3.2 GB at
# 299 px and would be 9.4 GB at 512. Batches are per replica.
MAX_IMAGE_SIZE = 320
MAX_BATCH_SIZE = 256


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training job; saved, resolved, with its run."""

    arch: str
    data: str
    image_size: int | None = None
    crop: float = 1.0
    framing: bool = False
    stain_augment: bool = False
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
    smote: bool = False
    folds: int = 0
    patience: int = 0
    head_epochs: int = 5
    fine_tune: bool = False
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    seed: int = 0
    split_seed: int | None = None
    weights: str | None = None
    keep_model: bool = True
    name: str = ""
    strategy: str = "default"
    mixed_precision: bool = False
    stream: bool = False

    def __post_init__(self):
        arch = archs.get(self.arch)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer '{self.optimizer}'; choose one of: {', '.join(OPTIMIZERS)}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule '{self.schedule}'; choose one of: {', '.join(SCHEDULES)}.")
        if self.epochs < 1 or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"epochs must be at least 1 and the batch size between 1 and {MAX_BATCH_SIZE} "
                f"(it is {self.batch_size})."
            )
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(
                f"Unknown strategy '{self.strategy}'; choose one of: {', '.join(distribute.STRATEGIES)}."
            )
        if self.stream and (self.smote or arch.strategy != "supervised"):
            raise ValueError(
                "SMOTE and contrastive pre-training need the images in memory; train them without --stream."
            )
        if self.folds == 1 or self.folds < 0:
            raise ValueError("cross-validation needs at least 2 folds (or 0 for none).")
        if self.image_size is None:
            object.__setattr__(self, "image_size", arch.input_size)
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(
                f"An image size of {self.image_size} px is more than this machine's memory and disk "
                f"should hold for a whole dataset; choose at most {MAX_IMAGE_SIZE} px."
            )
        archs.inputs(arch, self.image_size, self.crop)  # refuses a crop or size the network cannot take
        if self.weights in ("none", ""):
            object.__setattr__(self, "weights", None)
        if self.split_seed is None:
            object.__setattr__(self, "split_seed", self.seed)


@dataclass
class Part:
    """Images (uint8, N x size x size x 3, or files read as they are needed) and integer labels
    of one split."""

    x: np.ndarray | datasets.ImageFiles
    y: np.ndarray


def train(config: TrainConfig, log=print, on_run=None, resume: runs.Run | None = None) -> runs.Run | None:
    """Train `config.arch` on `config.data`, evaluate it on the held-out test split and store the run.

    `on_run(run)` is called once the run directory exists (the dashboard follows its progress).
    With `resume`, an interrupted run continues from its last checkpoint instead.

    Under `config.strategy` every worker of a cluster calls this alike; only the chief's run
    is kept and returned (the others write theirs to a temporary folder, removed at the end,
    and return None)."""
    placement = distribute.place(config.strategy)  # first: it may configure collective operations
    with contextlib.ExitStack() as stack:
        root = None if placement.chief else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stack.enter_context(placement.scope())
        policy = stack.enter_context(distribute.precision(config.mixed_precision))
        run = _train(config, log, on_run, resume, placement, policy, root)
    return run if placement.chief else None


def _train(config: TrainConfig, log, on_run, resume, placement, policy: str, root: Path | None) -> runs.Run:
    dataset, x, index = _split_arrays(config, config.data, log)
    n_classes = len(dataset.classes)
    if resume is not None:
        if dataset.fingerprint != resume.record["dataset"]["fingerprint"]:
            raise ValueError(f"The data changed since run {resume.id} started; it cannot be resumed.")
        run = resume
        run.restart()
        if on_run:
            on_run(run)
        log(f"run {run.id}: resuming after epoch {run.record['checkpoint_epoch']}")
        return _train_and_store(config, run, dataset, x, index, log, run.load_checkpoint())
    probe = archs.build(config.arch, n_classes, config.image_size, config.weights, config.crop)
    run = runs.create(
        config.name or config.arch,
        {
            "config": dataclasses.asdict(config),
            "arch": config.arch,
            "method": _method(config),
            "classes": list(dataset.classes),
            "image_size": config.image_size,
            "preprocessing": archs.get(config.arch).preprocessing,
            "resize": "PIL bilinear, antialiased, "
            + (
                "the cell found, framed at its size, white-balanced"
                if config.framing
                else "whole image to a square"
            ),
            "framing": finder.VERSION if config.framing else None,
            "crop": config.crop,
            "seed": config.seed,
            "dataset": {
                "root": str(Path(config.data).resolve()),
                "fingerprint": dataset.fingerprint,
                "counts": {c: int((dataset.labels == i).sum()) for i, c in enumerate(dataset.classes)},
            },
            "split": {k: len(v) for k, v in index.items()},
            "parameters": int(probe.count_params()),
            "distribution": {
                "strategy": placement.name,
                "replicas": placement.replicas,
                "batch_size_per_replica": config.batch_size,
                "global_batch_size": config.batch_size * placement.replicas,
            },
            "precision": policy,
            "versions": _versions(),
        },
        root=root,
    )
    del probe
    if on_run:
        on_run(run)
    log(f"run {run.id}: {config.arch} at {config.image_size} px, {_method(config)}, {policy}")
    if placement.name != "default":
        log(f"{placement.name}: {placement.replicas} replicas, {config.batch_size} images each a step")
    return _train_and_store(config, run, dataset, x, index, log)


def _split_arrays(config: TrainConfig, data: str, log) -> tuple:
    """(dataset, its images, {train/val/test: indices of its readable images}) of `data`: the
    images decoded in memory, or with `config.stream` left in their files."""
    dataset = datasets.discover(data)
    split = datasets.split(dataset, config.test_fraction, config.val_fraction, config.split_seed)
    if config.stream:
        x = datasets.ImageFiles(tuple(map(str, dataset.files)), config.image_size, config.framing)
        readable = datasets.readable(dataset, config.image_size, config.framing)
    else:
        x, readable = datasets.load_arrays(dataset, config.image_size, framing=config.framing)
    if not readable.all():
        log(f"skipped {int((~readable).sum())} unreadable images")
    index = {name: idx[readable[idx]] for name, idx in dataclasses.asdict(split).items()}
    log(
        f"data: {int(readable.sum())} images in {len(dataset.classes)} classes; "
        f"train {len(index['train'])}, validation {len(index['val'])}, test {len(index['test'])}"
    )
    return dataset, x, index


def resume(run_id: str, log=print, on_run=None) -> runs.Run:
    """Continue an interrupted single-split supervised run from its last completed epoch."""
    run = runs.get(run_id)
    record = run.record
    if run.status != "interrupted":
        raise ValueError(f"Run {run_id} is {run.status}; only an interrupted run can be resumed.")
    if "checkpoint_epoch" not in record:
        raise ValueError(
            f"Run {run_id} was interrupted before its first epoch ended; start it again instead."
        )
    config = TrainConfig(**record["config"])
    if config.folds or archs.get(config.arch).strategy != "supervised" or config.strategy == "multiworker":
        raise ValueError(
            "Only single-split supervised runs on one host can be resumed; start this one again instead."
        )
    return train(config, log, on_run, resume=run)


def _train_and_store(config, run, dataset, x, index, log, checkpoint=None) -> runs.Run:
    n_classes = len(dataset.classes)
    test = Part(x[index["test"]], dataset.labels[index["test"]])
    started = time.time()
    if config.folds:
        pool = np.concatenate([index["train"], index["val"]])
        fold_results, fold_logits, history = [], [], {}
        folds = datasets.folds(dataset, pool, config.folds, config.split_seed)
        for k, (fit_idx, held_idx) in enumerate(folds):
            log(f"fold {k + 1}/{config.folds}")
            held = Part(x[held_idx], dataset.labels[held_idx])
            model, history = fit(config, Part(x[fit_idx], dataset.labels[fit_idx]), held, n_classes, run, log)
            fold_results.append(
                evaluation.metrics(held.y, predict_probabilities(model, held.x), dataset.classes)
            )
            fold_logits.append(predict_logits(model, test.x))
        logits = np.mean(fold_logits, axis=0)
        cross_validation = _summarize_folds(fold_results)
    else:
        train_part = Part(x[index["train"]], dataset.labels[index["train"]])
        val_part = Part(x[index["val"]], dataset.labels[index["val"]])
        model, history = fit(config, train_part, val_part, n_classes, run, log, checkpoint)
        logits = predict_logits(model, test.x)
        cross_validation = None
    train_seconds = time.time() - started + run.record.get("train_seconds_before_resume", 0.0)

    run.write_history(history)
    result = _store_scores(run, dataset, index["test"], logits, cross_validation)
    if not config.folds:
        fit_trust(run, model, train_part, val_part, test, log, keep_familiarity=config.keep_model)
    if config.keep_model and not config.folds:
        run.save_model(_without_optimizer(model))
    run.checkpoint_path.unlink(missing_ok=True)
    run.update(
        status="finished",
        finished=time.time(),
        train_seconds=train_seconds,
        epochs_run=len(next(iter(history.values()), [])),
    )
    log(
        f"test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} "
        f"({result['n']} images); training took {train_seconds / 60:.1f} min"
    )
    log(f"weights sha256 {weights_digest(model)}")
    return run


def weights_digest(model) -> str:
    """A short hash of every weight: equal on every worker of a synchronised cluster."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _store_scores(run, dataset, test_index, logits, cross_validation=None) -> dict:
    """Test metrics, confusion matrix and per-image logits of a run."""
    labels = dataset.labels[test_index]
    result = evaluation.metrics(labels, _softmax(logits), dataset.classes)
    run.write_predictions(logits=logits, labels=labels, files=np.array(_relative(dataset, test_index)))
    summary = {k: v for k, v in result.items() if k not in ("labels", "confusion_matrix")}
    if cross_validation:
        summary["cross_validation"] = cross_validation
    run.write_json("metrics.json", summary)
    run.write_json("confusion.json", {"labels": result["labels"], "matrix": result["confusion_matrix"]})
    return result


def _relative(dataset, index) -> list[str]:
    return [str(dataset.files[i].relative_to(dataset.root)) for i in index]


def rescore(run: runs.Run, data: str | None = None, log=print) -> dict:
    """Score a stored run again on the test split of `data` (default: the data it was trained
    on): BatchNorm statistics of its training images (kept if validation accuracy rises), then
    metrics, confusion, predictions, calibration and statuses.

    `data` may be another copy of the same images, such as the full-size originals of a compact
    copy that an accelerator trained on. Its split must hold the very files the run was tested
    on (compared by path without extension), so no image the model learnt from is scored."""
    record = run.record
    config = TrainConfig(**record["config"])
    dataset, x, index = _split_arrays(config, data or config.data, log)
    tested = run.predictions()["files"] if (run.path / "predictions.npz").is_file() else []

    def keys(files) -> list[str]:
        return sorted(map(datasets.name_key, files))

    same_split = {k: len(v) for k, v in index.items()} == record.get("split")
    if not same_split or keys(tested) != keys(_relative(dataset, index["test"])):
        raise ValueError(
            f"The test split of {dataset.root} does not hold the images run {run.id} was tested on; "
            "rescoring it there could score images the model learnt from."
        )
    model = run.load_model()
    parts = {name: Part(x[i], dataset.labels[i]) for name, i in index.items()}
    before, after = precise_batchnorm(model, parts["train"].x, parts["val"], config.batch_size, config.seed)
    log(f"BatchNorm statistics of its training images: validation accuracy {before:.4f} -> {after:.4f}")
    with run.staged():  # the new weights serve only beside their own calibration, all switched at once
        if after > before:
            run.save_model(model)
        result = _store_scores(run, dataset, index["test"], predict_logits(model, parts["test"].x))
        fit_trust(run, model, parts["train"], parts["val"], parts["test"], log)
        run.update(
            scored_on={
                "root": str(dataset.root.resolve()),
                "fingerprint": dataset.fingerprint,
                "precise_batchnorm_val_accuracy": [before, after],
            }
        )
    log(f"test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} ({result['n']} images)")
    return result


def fit(
    config: TrainConfig, train: Part, val: Part, n_classes: int, run: runs.Run, log, checkpoint=None
) -> tuple:
    """Fit a model with the strategy of the architecture; returns (model, history dict).

    `checkpoint` (model, completed epochs, their curves) continues a supervised run."""
    keras.utils.set_random_seed(config.seed)
    if config.smote:
        before = len(train.y)
        train = Part(*oversample(train.x, train.y, config.seed))
        log(f"SMOTE: {len(train.y) - before} synthetic training images added")
    if checkpoint:
        return _fit_supervised(config, train, val, n_classes, run, log, checkpoint=checkpoint)
    strategy = STRATEGIES[archs.get(config.arch).strategy]
    return strategy(config, train, val, n_classes, run, log)


def _fit_supervised(
    config, train: Part, val: Part, n_classes: int, run, log, model=None, epochs=None, checkpoint=None
):
    epochs = epochs or config.epochs
    batch_size = config.batch_size * distribute.replicas()
    steps = -(-len(train.y) // batch_size)
    initial_epoch, curves = 0, []
    if checkpoint:  # compiled, with the optimizer's state and step count
        trainer, initial_epoch, curves = checkpoint
        model = trainer.get_layer(config.arch) if config.augment else trainer
    else:
        model = model or archs.build(config.arch, n_classes, config.image_size, config.weights, config.crop)
        trainer = with_augmentation(model, config)
        trainer.compile(
            optimizer=_optimizer(config, steps, epochs),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
    progress = Progress(run, steps, epochs, log, curves)
    callbacks = [progress]
    if config.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=config.patience, restore_best_weights=True
            )
        )
    one_hot = np.eye(n_classes, dtype=np.float32)
    weights = class_weights(train.y, n_classes) if config.class_weights else None
    trainer.fit(
        _batches(train.x, one_hot[train.y], batch_size, config.shuffle, config.seed, weights),
        validation_data=_batches(val.x, one_hot[val.y], batch_size),
        shuffle=False,  # the batches shuffle themselves, seeded
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=0,
    )
    history = progress.history()
    if config.augment:
        before, after = precise_batchnorm(model, train.x, val, config.batch_size, config.seed)
        log(f"BatchNorm statistics of clean training images: validation accuracy {before:.4f} -> {after:.4f}")
        history["val_accuracy_precise_bn"] = [float("nan")] * (len(history["loss"]) - 1) + [after]
    return model, history


def _batches(x, targets, batch_size: int, shuffle: bool = False, seed: int = 0, weights=None):
    """What `fit` reads: batches of images in memory, or a tf.data stream of image files."""
    if isinstance(x, datasets.ImageFiles):
        per_image = (
            None if weights is None else np.array([weights[i] for i in targets.argmax(axis=1)], "float32")
        )
        return x.stream(batch_size, targets, per_image, shuffle, seed)
    return Batches(x, targets, batch_size, shuffle, seed, weights=weights)


def with_augmentation(model, config: TrainConfig):
    """The model behind random augmentation: what is fitted; `model` alone is what is served."""
    if not config.augment:
        return model
    size = config.image_size
    augment = Augment(seed=config.seed, stain=config.stain_augment, dtype="float32")
    return keras.Sequential([keras.Input((size, size, 3), name="image"), augment, model], name="trainer")


def _fit_supcon(config, train: Part, val: Part, n_classes: int, run, log):
    """Supervised contrastive learning (Khosla et al. 2020): the encoder and a projection head
    learn with SupConLoss on two augmented views per image; then a classifier is trained on
    the frozen encoder, and optionally everything is fine-tuned at a tenth of the rate."""
    arch = archs.get(config.arch)
    image, x = archs.inputs(arch, config.image_size, config.crop)
    features = layers_pool(arch.builder(x))
    encoder = keras.Model(image, features, name="encoder")
    projection = keras.Sequential(
        [keras.layers.Dense(256, activation="relu"), keras.layers.Dense(128)], name="projection"
    )
    view = (
        Augment(seed=config.seed, stain=config.stain_augment, dtype="float32")(image)
        if config.augment
        else image
    )
    pretrain = keras.Model(image, projection(encoder(view)), name="supcon_pretrain")
    batch_size = config.batch_size * distribute.replicas()
    steps = -(-len(train.y) // batch_size)
    pretrain.compile(optimizer=_optimizer(config, steps, config.epochs), loss=SupConLoss())
    log("contrastive pre-training")
    contrastive = pretrain.fit(
        Batches(train.x, train.y, batch_size, config.shuffle, config.seed, views=2),
        epochs=config.epochs,
        callbacks=[Progress(run, steps, config.epochs, log)],
        verbose=0,
    )
    if config.augment:
        precise_batchnorm(encoder, train.x, None, config.batch_size, config.seed)
    encoder.trainable = False
    model = keras.Model(image, archs.head(encoder(image), n_classes), name=config.arch)
    log("classifier on the frozen encoder")
    head_config = dataclasses.replace(config, warmup_epochs=0)
    model, history = _fit_supervised(head_config, train, val, n_classes, run, log, model, config.head_epochs)
    if config.fine_tune:
        encoder.trainable = True
        tuned = dataclasses.replace(head_config, learning_rate=config.learning_rate / 10)
        log("fine-tuning everything")
        model, tuned_history = _fit_supervised(
            tuned, train, val, n_classes, run, log, model, config.head_epochs
        )
        history = {k: v + tuned_history.get(k, []) for k, v in history.items()}
    history["contrastive_loss"] = contrastive.history["loss"] + [float("nan")] * (
        len(history["loss"]) - len(contrastive.history["loss"])
    )
    return model, {k: v[: len(history["loss"])] for k, v in history.items()}


def layers_pool(x):
    return keras.layers.GlobalAveragePooling2D(name="pool")(x) if len(x.shape) == 4 else x


STRATEGIES = {"supervised": _fit_supervised, "supcon": _fit_supcon}


@keras.saving.register_keras_serializable(package="bloodcell")
class SupConLoss(keras.losses.Loss):
    """Supervised contrastive loss over L2-normalised embeddings; y_true holds integer labels."""

    def __init__(self, temperature: float = 0.1, name: str = "supcon", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        z = y_pred / ops.maximum(ops.norm(y_pred, axis=1, keepdims=True), 1e-12)
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        eye = ops.eye(ops.shape(z)[0], dtype=z.dtype)
        logits = ops.matmul(z, ops.transpose(z)) / self.temperature - 1e9 * eye
        log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        positives = ops.cast(ops.equal(labels[:, None], labels[None, :]), z.dtype) * (1.0 - eye)
        return -ops.sum(positives * log_prob, axis=1) / ops.maximum(ops.sum(positives, axis=1), 1.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def oversample(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE (imbalanced-learn) on flattened training images: every class up to the largest.

    Called on the training split only, so no synthetic image is built from a validation or
    test image; originals come first, synthetic images after them."""
    from imblearn.over_sampling import SMOTE

    shape = x.shape[1:]
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
    sampler = SMOTE(random_state=seed, k_neighbors=max(1, min(5, smallest - 1)))
    # float, since interpolating uint8 pixels in place wraps around
    flat, labels = sampler.fit_resample(x.reshape(len(x), -1).astype(np.float32), y)
    return np.clip(np.rint(flat), 0, 255).astype(np.uint8).reshape(-1, *shape), labels.astype(np.int64)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, 1 on average over the training images."""
    counts = np.bincount(labels, minlength=n_classes)
    return {i: float(len(labels) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of `model` for uint8 images `x`, from its float32 `logits` layer."""
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(logits_model.predict(*_inputs(x, batch_size), verbose=0), dtype=np.float32)


def _inputs(x, batch_size: int) -> tuple:
    """`predict`'s arguments for images in memory or in files."""
    if isinstance(x, datasets.ImageFiles):
        return (x.stream(batch_size),)
    return x, batch_size


def features_and_logits(model, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (the head's input) and logits for uint8 images `x`."""
    both = keras.Model(
        model.inputs, [model.get_layer("head_dropout").input, model.get_layer("logits").output]
    )
    features, logits = both.predict(*_inputs(x, batch_size), verbose=0)
    return np.asarray(features, np.float32), np.asarray(logits, np.float32)


def fit_trust(
    run: runs.Run, model, train: Part, val: Part, test: Part, log=print, keep_familiarity: bool = True
) -> dict:
    """Fit temperature, review threshold and familiarity on training and validation data, score
    them on the test split, and store them with the run (calibration.json, and trust.npz with
    `keep_familiarity`: it is needed only to serve the model)."""
    train_features, _ = features_and_logits(model, train.x)
    val_features, val_logits = features_and_logits(model, val.x)
    test_features, test_logits = features_and_logits(model, test.x)
    temperature = trust.fit_temperature(val_logits, val.y)
    val_p = trust.calibrated(val_logits, temperature)
    review = trust.review_threshold(val_p.max(axis=1), val_p.argmax(axis=1) == val.y)
    familiarity = trust.Familiarity.fit(train_features, train.y)
    familiarity.calibrate(val_features)
    test_raw, test_p = trust.calibrated(test_logits, 1.0), trust.calibrated(test_logits, temperature)
    statuses = np.array(
        trust.status(test_p, familiarity.distance(test_features), review["threshold"], familiarity.threshold)
    )
    accepted = statuses == "confident"
    correct = test_p.argmax(axis=1) == test.y
    curve = trust.risk_coverage(val_p.max(axis=1), val_p.argmax(axis=1) == val.y)
    keep = np.unique(np.linspace(0, len(curve["coverage"]) - 1, 200).astype(int))
    report = {
        "temperature": temperature,
        "validation": {
            "before": trust.scores(trust.calibrated(val_logits, 1.0), val.y),
            "after": trust.scores(val_p, val.y),
        },
        "test": {"before": trust.scores(test_raw, test.y), "after": trust.scores(test_p, test.y)},
        "reliability": {
            "before": trust.reliability(test_raw, test.y),
            "after": trust.reliability(test_p, test.y),
        },
        "review": review,
        "risk_coverage": {k: [v[i] for i in keep] for k, v in curve.items()},
        "familiar_below": familiarity.threshold,
        "test_status": {
            "confident": float(accepted.mean()),
            "review": float((statuses == "review").mean()),
            "unfamiliar": float((statuses == "unfamiliar").mean()),
            "error_among_confident": float(1 - correct[accepted].mean()) if accepted.any() else None,
        },
    }
    run.write_trust(report, familiarity.arrays() if keep_familiarity else None)
    run.update(
        temperature=temperature, review_below=review["threshold"], familiar_below=familiarity.threshold
    )
    log(
        f"calibration: T={temperature:.3f}, test ECE {report['test']['before']['ece']:.4f} -> "
        f"{report['test']['after']['ece']:.4f}; confident {accepted.mean():.1%} of test cells "
        f"with {report['test_status']['error_among_confident'] or 0:.2%} error, "
        f"unfamiliar {report['test_status']['unfamiliar']:.1%}"
    )
    return report


def predict_probabilities(model, x: np.ndarray) -> np.ndarray:
    return _softmax(predict_logits(model, x))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _summarize_folds(results: list[dict]) -> dict:
    summary = {"folds": len(results)}
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        values = [r[key] for r in results]
        summary[key] = {"per_fold": values, "mean": float(np.mean(values)), "std": float(np.std(values))}
    return summary


def _method(config: TrainConfig) -> str:
    parts = [archs.get(config.arch).strategy]
    parts += [name for name, on in (("smote", config.smote), ("class-weights", config.class_weights)) if on]
    parts += [] if config.augment else ["no-augment"]
    parts += [] if config.shuffle else ["no-shuffle"]
    parts += [f"{config.folds}-fold-cv"] if config.folds else []
    parts += [f"weights={'imagenet' if config.weights == 'imagenet' else 'file'}"] if config.weights else []
    return ", ".join(parts)


def _without_optimizer(model):
    """A copy for serving: same weights, no optimizer state (a third of the file size)."""
    served = keras.models.clone_model(model)
    served.set_weights(model.get_weights())
    return served


def _optimizer(config: TrainConfig, steps_per_epoch: int, epochs: int):
    rate = config.learning_rate
    if config.schedule == "cosine":
        warmup = min(config.warmup_epochs, epochs - 1) * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=rate * 0.1 if warmup else rate,
            decay_steps=max(1, epochs * steps_per_epoch - warmup),
            alpha=0.0,
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(rate, weight_decay=decay) if decay else keras.optimizers.Adam(rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    return keras.optimizers.RMSprop(rate, weight_decay=decay)


class Batches(keras.utils.PyDataset):
    """Batches of uint8 images and targets, reshuffled every epoch with a seeded generator.

    `views` repeats each batch (contrastive learning: the augmentation makes the copies
    differ); `weights` ({class: weight}) adds per-image loss weights from one-hot targets."""

    def __init__(
        self, x, y, batch_size: int, shuffle: bool = False, seed: int = 0, views: int = 1, weights=None
    ):
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle, self.views = x, y, batch_size, shuffle, views
        self.weights = (
            None if weights is None else np.array([weights[i] for i in sorted(weights)], np.float32)
        )
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(x))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i: int):
        chosen = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x, y = np.concatenate([self.x[chosen]] * self.views), np.concatenate([self.y[chosen]] * self.views)
        if self.weights is None:
            return x, y
        return x, y, self.weights[y.argmax(axis=1)]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


@keras.saving.register_keras_serializable(package="bloodcell")
class Augment(layers.Layer):
    """Random augmentation for stained smears, in training only: the 8 flips and right-angle
    turns, a rotation of up to 22.5 degrees with a zoom of up to 10% (one affine warp, edges
    reflected), and mild colour jitter. uint8-valued RGB in, float32 out. Written in Keras ops
    that compile (XLA), so it runs on any backend and on the accelerator inside the step.

    With `stain`, also what differs between laboratories: a random mixing of the stains in
    optical density (every stain's strength and hue), a wider zoom, stronger lamp colour and
    brightness, focus blur and camera noise."""

    def __init__(self, seed: int = 0, stain: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.stain = seed, stain
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        x = ops.cast(images, "float32")
        if not training:
            return x
        n, size = ops.shape(x)[0], x.shape[1]

        def uniform(shape, low=0.0, high=1.0):
            return keras.random.uniform(shape, low, high, seed=self.generator)

        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.transpose(x, (0, 2, 1, 3)), x)
        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.flip(x, axis=1), x)
        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.flip(x, axis=2), x)
        zoom = 0.2 if self.stain else 0.1
        angle, scale = uniform((n,), -np.pi / 8, np.pi / 8), uniform((n,), 1 - zoom, 1 + zoom)
        cos, sin, centre = ops.cos(angle) / scale, ops.sin(angle) / scale, (size - 1) / 2
        zero = ops.zeros_like(cos)
        # output pixel (col, row) samples the input at centre + R(angle) (p - centre) / scale
        transform = ops.stack(
            [cos, -sin, centre * (1 - cos + sin), sin, cos, centre * (1 - sin - cos), zero, zero], axis=1
        )
        x = ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="reflect")
        if self.stain:
            x = self._laboratory(x, n, uniform)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        spread = 0.06 if self.stain else 0.04
        contrast, tint = uniform((n, 1, 1, 1), 0.9, 1.1), uniform((n, 1, 1, 3), 1 - spread, 1 + spread)
        x = ((x - mean) * contrast + mean) * tint + uniform((n, 1, 1, 1), -12.0, 12.0)
        return ops.clip(x, 0.0, 255.0)

    def _laboratory(self, x, n, uniform):
        # optical density: each stain adds to it linearly (Beer-Lambert), so mixing the three
        # channels' densities by a random matrix near identity varies every stain's strength and hue
        density = -ops.log((x + 1.0) / 256.0)
        mixing = ops.eye(3) + uniform((n, 3, 3), -0.15, 0.15)
        density = ops.einsum("nhwc,ncd->nhwd", density, mixing) * uniform((n, 1, 1, 1), 0.8, 1.2)
        x = 256.0 * ops.exp(-ops.maximum(density, 0.0)) - 1.0
        kernel = np.outer(*[np.array([1, 4, 6, 4, 1], np.float32) / 16] * 2)
        blurred = ops.depthwise_conv(x, np.tile(kernel[:, :, None, None], (1, 1, 3, 1)), padding="same")
        blur = ops.where(uniform((n, 1, 1, 1)) < 0.3, uniform((n, 1, 1, 1)), 0.0)
        x = x + blur * (blurred - x)
        return x + keras.random.normal(ops.shape(x), seed=self.generator) * uniform((n, 1, 1, 1), 0.0, 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "stain": self.stain}


def precise_batchnorm(model, x: np.ndarray, val: Part | None, batch_size: int, seed: int) -> tuple:
    """Replace BatchNorm running statistics by their plain average over batches of clean
    (unaugmented) training images, as in "Rethinking Batch in BatchNorm" (Wu & Johnson, 2021):
    the moving averages of augmented batches lag behind the weights and miss clean images.

    Kept only if validation accuracy does not drop; returns it (before, after), NaN without `val`."""
    norms = [
        layer for layer in _layers(model) if isinstance(layer, layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return float("nan"), float("nan")
    score = (lambda: float(np.mean(predict_logits(model, val.x).argmax(axis=1) == val.y))) if val else None
    before, saved = score() if score else float("nan"), model.get_weights()
    momentum = [layer.momentum for layer in norms]
    for k, batch in enumerate(_clean_batches(x, batch_size, seed)):
        for layer in norms:
            layer.momentum = k / (k + 1)  # the running mean of the batch statistics seen so far
        model(batch, training=True)
    for layer, value in zip(norms, momentum, strict=True):
        layer.momentum = value
    after = score() if score else float("nan")
    if after < before:
        model.set_weights(saved)
        after = before
    return before, after


def _clean_batches(x, batch_size: int, seed: int):
    """Full batches of images in a seeded random order, from memory or from files."""
    if isinstance(x, datasets.ImageFiles):
        for batch in x.stream(batch_size, shuffle=True, seed=seed):
            if len(batch) == batch_size:
                yield batch
        return
    order = np.random.default_rng(seed).permutation(len(x))
    for start in range(0, len(x) - batch_size + 1, batch_size):
        yield x[order[start : start + batch_size]]


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


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


def _versions() -> dict[str, str]:
    import sklearn

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": sys.platform,
        "cpus": str(os.cpu_count()),
        "accelerator": distribute.accelerator(),
    }
