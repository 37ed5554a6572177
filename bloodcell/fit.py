"""Fitting a model: the training strategies (plain supervised, or supervised contrastive
pre-training then a classifier), chosen by the architecture's registry entry, and what they
share: SMOTE, class weights, the optimizer and its schedule, augmentation, early stopping and
BatchNorm statistics of clean images."""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from bloodcell import archs, datasets, distribute, inference, networks, runs
from bloodcell.augment import Augment, Batches
from bloodcell.config import TrainConfig
from bloodcell.progress import Progress


@dataclass
class Part:
    """Images (uint8, N x size x size x 3, or files read as they are needed) and integer labels
    of one split."""

    x: np.ndarray | datasets.ImageFiles
    y: np.ndarray


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
            optimizer=optimizer(config, steps, epochs),
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


def _augmentation(config: TrainConfig) -> Augment:
    return Augment(
        seed=config.seed,
        stain=config.stain_augment,
        spread=config.stain_spread,
        blur=config.focus_blur,
        dtype="float32",
    )


def with_augmentation(model, config: TrainConfig):
    """The model behind random augmentation: what is fitted; `model` alone is what is served."""
    if not config.augment:
        return model
    size = config.image_size
    image = keras.Input((size, size, 3), name="image")
    return keras.Sequential([image, _augmentation(config), model], name="trainer")


def _fit_supcon(config, train: Part, val: Part, n_classes: int, run, log):
    """Supervised contrastive learning (Khosla et al. 2020): the encoder and a projection head
    learn with SupConLoss on two augmented views per image; then a classifier is trained on
    the frozen encoder, and optionally everything is fine-tuned at a tenth of the rate."""
    arch = archs.get(config.arch)
    image, x = networks.inputs(arch, config.image_size, config.crop)
    features = networks.pool(networks.builder(arch)(x))
    encoder = keras.Model(image, features, name="encoder")
    projection = keras.Sequential(
        [keras.layers.Dense(256, activation="relu"), keras.layers.Dense(128)], name="projection"
    )
    view = _augmentation(config)(image) if config.augment else image
    pretrain = keras.Model(image, projection(encoder(view)), name="supcon_pretrain")
    batch_size = config.batch_size * distribute.replicas()
    steps = -(-len(train.y) // batch_size)
    pretrain.compile(optimizer=optimizer(config, steps, config.epochs), loss=SupConLoss())
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
    model = keras.Model(image, networks.head(encoder(image), n_classes), name=config.arch)
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


def optimizer(config: TrainConfig, steps_per_epoch: int, epochs: int):
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


def precise_batchnorm(model, x: np.ndarray, val: Part | None, batch_size: int, seed: int) -> tuple:
    """Replace BatchNorm running statistics by their plain average over batches of clean
    (unaugmented) training images, as in "Rethinking Batch in BatchNorm" (Wu & Johnson, 2021):
    the moving averages of augmented batches lag behind the weights and miss clean images.

    Kept only if validation accuracy does not drop; returns it (before, after), NaN without `val`."""
    norms = [
        layer
        for layer in archs.all_layers(model)
        if isinstance(layer, layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return float("nan"), float("nan")
    forward = inference.Inference(model) if val else None
    score = (lambda: float(np.mean(forward(val.x).logits.argmax(axis=1) == val.y))) if val else None
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
