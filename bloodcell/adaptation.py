"""Adapting a model to another laboratory's cells, and measuring how well it answers there.

Without labels, a classifier takes the BatchNorm statistics of the lab's cells
(`Classifier.adapted`). With a few labelled cells per class, it also learns new weights for its
last layer (the logits), held near the original ones, and is calibrated again (temperature,
review threshold, familiarity) on a part of them kept apart from that fitting.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.metrics import f1_score

from bloodcell import archs, datasets, images, noncells, runs, trust
from bloodcell.predictor import MIN_LAB_CELLS, Classifier

MIN_PER_CLASS = 5
# Pull of the original logit weights (L2, per cell): keeps what 6,700 training pictures taught
# when a handful of a lab's cells disagree, and keeps classes the lab gave no cell of.
STAY_NEAR = 1.0
CALIBRATION_SHARE = 0.4
# The familiarity threshold of an adapted model stays this far inside the nearest generated
# non-cell picture, drawn with another seed than the ones `crosslab` scores.
NON_CELL_MARGIN = 0.9
NON_CELL_SEED = 1


@dataclasses.dataclass
class LabCells:
    """A laboratory's labelled cells as model inputs; `labels` index the model's classes."""

    root: Path
    files: list[Path]
    x: np.ndarray
    labels: np.ndarray
    refused: list[tuple[Path, str]]
    refused_labels: np.ndarray

    def subset(self, index: np.ndarray) -> "LabCells":
        """These cells at `index` (the refused pictures are kept)."""
        return dataclasses.replace(
            self, files=[self.files[i] for i in index], x=self.x[index], labels=self.labels[index]
        )


def read_lab(folder: str | Path, classifier: Classifier) -> LabCells:
    """The cells of a folder with one sub-folder per class (any subset of the model's classes),
    as `classifier`'s inputs; pictures where no cell is found are listed apart."""
    dataset = datasets.discover(folder)
    unknown = [c for c in dataset.classes if c not in classifier.classes]
    if unknown:
        raise ValueError(f"The model was not trained on {', '.join(unknown)}; remove those folders.")
    files, arrays, labels, refused, refused_labels = [], [], [], [], []
    for file, label in zip(dataset.files, dataset.labels, strict=True):
        index = classifier.classes.index(dataset.classes[label])
        try:
            arrays.append(classifier.inputs(file))
        except images.UnusableImage as error:
            refused.append((file, str(error)))
            refused_labels.append(index)
            continue
        files.append(file)
        labels.append(index)
    size = classifier.image_size
    x = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return LabCells(
        dataset.root, files, x, np.array(labels, np.int64), refused, np.array(refused_labels, np.int64)
    )


def check_enough(labels: np.ndarray, classes: tuple[str, ...]) -> None:
    """Refuse a lab set with fewer than `MIN_PER_CLASS` usable cells in any of its classes."""
    counts = np.bincount(labels, minlength=len(classes))
    short = [f"{classes[c]} ({n})" for c, n in enumerate(counts) if 0 < n < MIN_PER_CLASS]
    if short or not counts.any():
        raise ValueError(
            f"Adapting needs at least {MIN_PER_CLASS} usable cells of every class given; "
            f"too few: {', '.join(short) or 'no cells at all'}. Add cells or remove those folders."
        )


def calibration_split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibrate) indices: `CALIBRATION_SHARE` of each class, at least one, to calibrate."""
    rng = np.random.default_rng(seed)
    fit, calibrate = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held = max(1, round(CALIBRATION_SHARE * len(members)))
        calibrate += list(members[:held])
        fit += list(members[held:])
    return np.sort(fit), np.sort(calibrate)


def fine_tuned(
    classifier: Classifier, x: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray | None = None
) -> tuple[Classifier, dict]:
    """`classifier` adapted to a lab from its labelled cells `x` (and, for the BatchNorm
    statistics only, its `unlabelled` cells too): new logit weights fitted on part of them,
    then temperature, review threshold and familiarity calibrated on the rest.

    Returns the adapted classifier and a report of the calibration."""
    pool = x if unlabelled is None or not len(unlabelled) else np.concatenate([x, unlabelled])
    adapted = classifier.adapted(pool, minimum=len(x))
    fit, held = calibration_split(labels)
    features, logits = adapted.features_and_logits(x)
    layer = adapted.model.get_layer(archs.LOGITS)
    weights, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    weights, bias = _logistic(features[fit], labels[fit], weights, bias)
    layer.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    logits = features @ weights + bias
    adapted.temperature = trust.fit_temperature(logits[held], labels[held])
    p = trust.calibrated(logits[held], adapted.temperature)
    review = trust.review_threshold(p.max(axis=1), p.argmax(axis=1) == labels[held])
    adapted.review_below = review["threshold"]
    if adapted.familiarity is not None:
        adapted.familiarity = _familiarity_at_lab(adapted, features, labels, held)
    report = {
        "cells": {"fit": len(fit), "calibrate": len(held)},
        "temperature": adapted.temperature,
        "review": review,
        "familiar_below": adapted.familiarity.threshold if adapted.familiarity else None,
    }
    return adapted, report


def _logistic(features, labels, weights, bias) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression from (weights, bias), penalised towards them (L-BFGS)."""
    start = np.concatenate([weights.ravel(), bias])
    shape, n = weights.shape, len(labels)
    target = np.eye(shape[1])[labels]

    def loss(theta):
        w, b = theta[: weights.size].reshape(shape), theta[weights.size :]
        z = features @ w + b
        nll = -(log_softmax(z, axis=1) * target).sum() / n
        drift = theta[: weights.size] - start[: weights.size]
        g = (softmax(z, axis=1) - target) / n
        grad = np.concatenate([(features.T @ g).ravel() + STAY_NEAR * drift, g.sum(axis=0)])
        return nll + STAY_NEAR / 2 * drift @ drift, grad

    theta = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 200}).x
    return theta[: weights.size].reshape(shape), theta[weights.size :]


def _familiarity_at_lab(adapted: Classifier, features, labels, held) -> trust.Familiarity:
    """The lab's own class means where it gave cells of a class, with the training pictures'
    covariance. The threshold widens, if need be, to take in the lab's calibration cells, but
    never so far that a generated non-cell picture (another draw than `crosslab` scores) would
    pass, and never narrows below the training pictures' own."""
    familiarity = adapted.familiarity
    means = familiarity.means.copy()
    for c in np.unique(labels):
        means[c] = features[labels == c].mean(axis=0)
    lab = trust.Familiarity(means, familiarity.precision)
    x, _ = noncells.inputs(
        adapted, [p for kind in noncells.non_cells(seed=NON_CELL_SEED).values() for p in kind]
    )
    nearest_non_cell = float(lab.distance(adapted.features_and_logits(x)[0]).min()) if len(x) else np.inf
    widened = min(float(lab.distance(features[held]).max()), NON_CELL_MARGIN * nearest_non_cell)
    lab.threshold = max(familiarity.threshold, widened)
    return lab


def store(adapted: Classifier, lab: LabCells, report: dict, name: str) -> runs.Run:
    """Keep an adapted classifier as a run of its own, served like any other."""
    base = adapted.run.record
    record = {
        k: base[k]
        for k in ("arch", "classes", "image_size", "preprocessing", "resize", "framing", "crop", "seed")
        if k in base
    }
    record |= {
        "method": f"adapted to {lab.root.name} ({len(lab.labels)} labelled cells)",
        "adapted_from": adapted.run.id,
        "adaptation": {"data": str(lab.root.resolve()), **report},
        "dataset": {
            "root": str(lab.root.resolve()),
            "counts": {
                adapted.classes[c]: int(n)
                for c, n in zip(*np.unique(lab.labels, return_counts=True), strict=True)
            },
        },
        "config": {**base.get("config", {}), "name": name},
    }
    run = runs.create(name, record)
    run.save_model(adapted.model)
    if adapted.familiarity is not None:
        run.write_trust({"temperature": adapted.temperature, **report}, adapted.familiarity.arrays())
    run.update(
        status="finished",
        finished=time.time(),
        temperature=adapted.temperature,
        review_below=adapted.review_below,
        familiar_below=adapted.familiarity.threshold if adapted.familiarity else None,
    )
    return run


def scores(classifier: Classifier, lab: LabCells) -> dict:
    """Accuracy, balanced accuracy and macro-F1 over the classes present, and the share of cells
    per status with the error among confident ones. A picture where no cell was found counts
    as `refused`, answered by no class: it lowers every score."""
    probabilities, distance = classifier.analyse(lab.x)
    statuses = np.array(classifier.statuses(probabilities, distance) + ["refused"] * len(lab.refused))
    truth = np.concatenate([lab.labels, lab.refused_labels]).astype(np.int64)
    guess = np.concatenate([probabilities.argmax(axis=1), np.full(len(lab.refused), -1)])
    present = np.unique(truth)
    confident = statuses == "confident"
    shares = {s: float((statuses == s).mean()) for s in ("confident", "review", "unfamiliar", "refused")}
    return {
        "n": len(truth),
        "accuracy": float((truth == guess).mean()),
        "balanced_accuracy": float(np.mean([(guess[truth == c] == c).mean() for c in present])),
        "macro_f1": float(f1_score(truth, guess, labels=present, average="macro", zero_division=0)),
        **shares,
        "error_among_confident": float((truth != guess)[confident].mean()) if confident.any() else None,
    }


SHOTS = (5, 20)


def crosslab(
    classifier: Classifier, folders: list[str], shots: tuple[int, ...] = SHOTS, seed: int = 0
) -> dict:
    """Scores of `classifier` on labelled folders of other laboratories: zero-shot, adapted
    without labels (to all of a folder's cells), and adapted with `shots` labelled cells per
    class, which are then taken out of the scored cells (a class keeps at least one to score).
    Each setting also says which share of generated non-cell pictures its model still flags."""
    pictures = [p for kind in noncells.non_cells(seed).values() for p in kind]

    def scored(model: Classifier, cells: LabCells) -> dict:
        return scores(model, cells) | {"non_cells_flagged": float(np.mean(noncells.flagged(model, pictures)))}

    result = {"model": classifier.run.id, "sets": {}}
    for folder in folders:
        lab = read_lab(folder, classifier)
        row = {"zero_shot": scored(classifier, lab)}
        if len(lab.x) >= MIN_LAB_CELLS and classifier.adapts_without_labels:
            row["label_free"] = scored(classifier.adapted(lab.x), lab)
        for k in shots:
            labelled, rest = _take_shots(lab.labels, k, seed)
            adapted, _ = fine_tuned(classifier, lab.x[labelled], lab.labels[labelled], lab.x[rest])
            row[f"{k}_labelled"] = scored(adapted, lab.subset(rest)) | {
                "labelled": {
                    classifier.classes[c]: int((lab.labels[labelled] == c).sum())
                    for c in np.unique(lab.labels)
                }
            }
        result["sets"][Path(folder).name] = row
    return result


def _take_shots(labels: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, scored) indices: k cells of each class, or all but one where it has fewer."""
    rng = np.random.default_rng(seed)
    labelled = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        labelled += list(members[: min(k, len(members) - 1)])
    labelled = np.sort(np.array(labelled, np.int64))
    return labelled, np.setdiff1d(np.arange(len(labels)), labelled)


def table(result: dict) -> str:
    """The cross-lab scores as a Markdown table, one row per set and setting."""
    head = (
        "| set | setting | cells | accuracy | balanced acc. | macro-F1 | confident | review "
        "| unfamiliar | refused | error among confident | non-cells flagged |"
    )
    rows = [head, "|" + "---|" * 12]
    for name, settings in result["sets"].items():
        for setting, s in settings.items():
            error = "-" if s["error_among_confident"] is None else f"{s['error_among_confident']:.1%}"
            rows.append(
                f"| {name} | {setting.replace('_', ' ')} | {s['n']} | {s['accuracy']:.1%} | "
                f"{s['balanced_accuracy']:.1%} | {s['macro_f1']:.1%} | {s['confident']:.1%} | "
                f"{s['review']:.1%} | {s['unfamiliar']:.1%} | {s['refused']:.1%} | {error} | "
                f"{s['non_cells_flagged']:.1%} |"
            )
    return "\n".join(rows)


def comparison(compared: list[runs.Run]) -> str:
    """A Markdown table of runs side by side from their stored cross-lab records: the PBC test
    accuracy, then per set the balanced accuracy zero-shot, adapted without labels and with
    the fewest labelled cells measured, and the share of cells answered `unfamiliar` zero-shot."""
    records = {run.id: run.read_json("crosslab.json") for run in compared}
    missing = [run_id for run_id, record in records.items() if record is None]
    if missing:
        raise ValueError(
            f"Run(s) {', '.join(missing)} have no cross-lab record; "
            "run `python -m bloodcell crosslab DIR... --model RUN` first."
        )
    sets = list(dict.fromkeys(name for record in records.values() for name in record["sets"]))
    head = ["run", "arch", "framing", "stain augment", "PBC test accuracy"]
    for name in sets:
        head += [f"{name}: zero-shot", "label-free", "few labels", "unfamiliar (zero-shot)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in compared:
        config, sets_of_run = run.record.get("config", {}), records[run.id]["sets"]
        cells = [
            run.id,
            run.record.get("arch", "?"),
            f"v{run.record['framing']}" if run.record.get("framing") else "no",
            "yes" if config.get("stain_augment") else "no",
            f"{run.metrics['accuracy']:.2%}" if run.metrics else "-",
        ]
        for name in sets:
            settings = sets_of_run.get(name, {})
            few = next((v for k, v in settings.items() if k.endswith("_labelled")), None)
            cells += [
                _share(settings.get("zero_shot"), "balanced_accuracy"),
                _share(settings.get("label_free"), "balanced_accuracy"),
                _share(few, "balanced_accuracy"),
                _share(settings.get("zero_shot"), "unfamiliar"),
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _share(scores: dict | None, key: str) -> str:
    return "-" if scores is None else f"{scores[key]:.1%}"
