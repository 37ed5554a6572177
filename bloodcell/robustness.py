"""How the statuses hold up on damaged cells: images a run was tested on (`bloodcell.tested`),
blurred, with colour channels swapped, or cropped to a corner, answered like any upload."""

from collections import Counter

import numpy as np
from PIL import Image, ImageFilter

from bloodcell import datasets, images, noncells, tested
from bloodcell.predictor import Classifier

RECORD = "robustness.json"  # kept in the measured run

DAMAGES = {
    "none": lambda rgb: rgb,
    # softer optics, as another lab's camera or a small picture enlarged
    "blur": lambda rgb: np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(3))),
    "heavy blur": lambda rgb: np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(8))),
    "swapped colour channels": lambda rgb: np.ascontiguousarray(rgb[..., ::-1]),
    "corner crop (a ninth)": lambda rgb: rgb[: rgb.shape[0] // 3, : rgb.shape[1] // 3],
}


def damaged(data: str, model: str | None = None, n: int = 200, seed: int = 0) -> dict:
    """Per damage: the share of `n` cells the model was tested on (found in `data`) refused or
    answered confident / review / unfamiliar, the accuracy, the share confident yet wrong, and
    the commonest wrong answer. Each damaged picture takes the model's own input path (framed,
    where the model frames)."""
    classifier = Classifier.load(model)
    dataset = datasets.discover(data)
    test = tested.index(dataset, classifier.run)
    chosen = np.random.default_rng(seed).choice(test, min(n, len(test)), replace=False)
    labels = np.array([classifier.classes.index(dataset.classes[y]) for y in dataset.labels[chosen]])
    originals = [images.read_image(dataset.files[i]) for i in chosen]
    result = {"model": classifier.run.id, "cells": len(chosen)}
    for name, damage in DAMAGES.items():
        x, refused = noncells.inputs(classifier, [damage(rgb) for rgb in originals])
        taken = ~np.array(refused)
        probabilities, distance = classifier.analyse(x)
        status = np.full(len(originals), "refused", dtype=object)
        status[taken] = classifier.statuses(probabilities, distance)
        answer = np.full(len(originals), -1)
        answer[taken] = probabilities.argmax(axis=1)
        right = answer == labels
        wrong = Counter(classifier.classes[a] for a in answer[taken & ~right])
        result[name] = {
            **{s: float(np.mean(status == s)) for s in ("confident", "review", "unfamiliar", "refused")},
            "accuracy": float(right.mean()),
            "confident_but_wrong": float(np.mean((status == "confident") & ~right)),
            "commonest_wrong": wrong.most_common(1)[0][0] if wrong else None,
        }
    return result
