"""Scoring a fitted model on its run's split: the split itself, test metrics and per-image
logits (the test files named as predictions.npz keeps them), calibration (temperature, review
threshold, familiarity) and rescoring a stored run."""

import dataclasses

import numpy as np

from bloodcell import datasets, evaluation, fit, inference, runs, trust
from bloodcell.config import TrainConfig, stored


def split_arrays(config: TrainConfig, data: str, log) -> tuple:
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


def store_scores(run, dataset, test_index, logits, cross_validation=None) -> dict:
    """Test metrics, confusion matrix and per-image logits of a run."""
    labels = dataset.labels[test_index]
    result = evaluation.metrics(labels, trust.calibrated(logits, 1.0), dataset.classes)
    run.write_predictions(logits=logits, labels=labels, files=np.array(relative_files(dataset, test_index)))
    summary = {k: v for k, v in result.items() if k not in ("labels", "confusion_matrix")}
    if cross_validation:
        summary["cross_validation"] = cross_validation
    run.write_json("metrics.json", summary)
    run.write_json("confusion.json", {"labels": result["labels"], "matrix": result["confusion_matrix"]})
    return result


def relative_files(dataset, index) -> list[str]:
    """The files at `index` of `dataset`, relative to its root: how a run names its test images."""
    return [str(dataset.files[i].relative_to(dataset.root)) for i in index]


def rescore(run: runs.Run, data: str | None = None, log=print) -> dict:
    """Score a stored run again on the test split of `data` (default: the data it was trained
    on): BatchNorm statistics of its training images (kept if validation accuracy rises), then
    metrics, confusion, predictions, calibration and statuses.

    `data` may be another copy of the same images, such as the full-size originals of a compact
    copy that an accelerator trained on. Its split must hold the very files the run was tested
    on (compared by path without extension), so no image the model learnt from is scored."""
    record = run.record
    config = stored(record["config"])
    dataset, x, index = split_arrays(config, data or config.data, log)
    tested = run.predictions()["files"] if (run.path / "predictions.npz").is_file() else []

    def keys(files) -> list[str]:
        return sorted(map(datasets.name_key, files))

    same_split = {k: len(v) for k, v in index.items()} == record.get("split")
    if not same_split or keys(tested) != keys(relative_files(dataset, index["test"])):
        raise ValueError(
            f"The test split of {dataset.root} does not hold the images run {run.id} was tested on; "
            "rescoring it there could score images the model learnt from."
        )
    model = run.load_model()
    parts = {name: fit.Part(x[i], dataset.labels[i]) for name, i in index.items()}
    before, after = fit.precise_batchnorm(
        model, parts["train"].x, parts["val"], config.batch_size, config.seed
    )
    log(f"BatchNorm statistics of its training images: validation accuracy {before:.4f} -> {after:.4f}")
    with run.staged():  # the new weights serve only beside their own calibration, all switched at once
        if after > before:
            run.save_model(model)
        result = store_scores(run, dataset, index["test"], inference.outputs(model, parts["test"].x).logits)
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


def fit_trust(
    run: runs.Run,
    model,
    train: fit.Part,
    val: fit.Part,
    test: fit.Part,
    log=print,
    keep_familiarity: bool = True,
) -> dict:
    """Fit temperature, review threshold and familiarity on training and validation data, score
    them on the test split, and store them with the run (calibration.json, and trust.npz with
    `keep_familiarity`: it is needed only to serve the model)."""
    forward = inference.Inference(model)
    train_features = forward(train.x).features
    val_features, val_logits, _ = forward(val.x)
    test_features, test_logits, _ = forward(test.x)
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


def summarize_folds(results: list[dict]) -> dict:
    summary = {"folds": len(results)}
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        values = [r[key] for r in results]
        summary[key] = {"per_fold": values, "mean": float(np.mean(values)), "std": float(np.std(values))}
    return summary
