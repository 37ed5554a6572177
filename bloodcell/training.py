"""Training jobs: a frozen config in, a stored run out.

The pipeline: the data and its split (`scoring.split_arrays`), fitting with the strategy the
architecture's registry entry names (`bloodcell.fit`), test scores and calibration
(`bloodcell.scoring`), all stored through `bloodcell.runs`. `train` starts a run, `resume`
continues an interrupted one.
"""

import contextlib
import dataclasses
import hashlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from bloodcell import archs, datasets, distribute, evaluation, finder, fit, inference, runs, scoring
from bloodcell.config import TrainConfig, stored


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
    dataset, x, index = scoring.split_arrays(config, config.data, log)
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
                "compact_copy_of": datasets.compacted(config.data),
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
    config = stored(record["config"])
    if config.folds or archs.get(config.arch).strategy != "supervised" or config.strategy == "multiworker":
        raise ValueError(
            "Only single-split supervised runs on one host can be resumed; start this one again instead."
        )
    return train(config, log, on_run, resume=run)


def _train_and_store(config, run, dataset, x, index, log, checkpoint=None) -> runs.Run:
    n_classes = len(dataset.classes)
    test = fit.Part(x[index["test"]], dataset.labels[index["test"]])
    started = time.time()
    if config.folds:
        pool = np.concatenate([index["train"], index["val"]])
        fold_results, fold_logits, history = [], [], {}
        folds = datasets.folds(dataset, pool, config.folds, config.split_seed)
        for k, (fit_idx, held_idx) in enumerate(folds):
            log(f"fold {k + 1}/{config.folds}")
            held = fit.Part(x[held_idx], dataset.labels[held_idx])
            model, history = fit.fit(
                config, fit.Part(x[fit_idx], dataset.labels[fit_idx]), held, n_classes, run, log
            )
            forward = inference.Inference(model)
            fold_results.append(evaluation.metrics(held.y, forward(held.x).probabilities, dataset.classes))
            fold_logits.append(forward(test.x).logits)
        logits = np.mean(fold_logits, axis=0)
        cross_validation = scoring.summarize_folds(fold_results)
    else:
        train_part = fit.Part(x[index["train"]], dataset.labels[index["train"]])
        val_part = fit.Part(x[index["val"]], dataset.labels[index["val"]])
        model, history = fit.fit(config, train_part, val_part, n_classes, run, log, checkpoint)
        logits = inference.outputs(model, test.x).logits
        cross_validation = None
    train_seconds = time.time() - started + run.record.get("train_seconds_before_resume", 0.0)

    run.write_history(history)
    result = scoring.store_scores(run, dataset, index["test"], logits, cross_validation)
    if not config.folds:
        scoring.fit_trust(run, model, train_part, val_part, test, log, keep_familiarity=config.keep_model)
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
