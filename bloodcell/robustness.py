"""How the statuses hold up on damaged cells: images a run was tested on (`bloodcell.tested`),
blurred, with colour channels swapped, or cropped to a corner, answered like any upload."""

import numpy as np
from PIL import Image, ImageFilter

from bloodcell import datasets, images, tested
from bloodcell.predictor import Classifier

RECORD = "robustness.json"  # kept in the measured run

DAMAGES = {
    "none": lambda rgb: rgb,
    "heavy blur": lambda rgb: np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(8))),
    "swapped colour channels": lambda rgb: np.ascontiguousarray(rgb[..., ::-1]),
    "corner crop (a ninth)": lambda rgb: rgb[: rgb.shape[0] // 3, : rgb.shape[1] // 3],
}


def damaged(data: str, model: str | None = None, n: int = 200, seed: int = 0) -> dict:
    """Per damage: the share of `n` cells the model was tested on (found in `data`) answered
    confident / review / unfamiliar, the accuracy, and the share confident yet wrong."""
    classifier = Classifier.load(model)
    dataset = datasets.discover(data)
    test = tested.index(dataset, classifier.run)
    chosen = np.random.default_rng(seed).choice(test, min(n, len(test)), replace=False)
    labels = np.array([classifier.classes.index(dataset.classes[y]) for y in dataset.labels[chosen]])
    originals = [images.read_image(dataset.files[i]) for i in chosen]
    result = {"model": classifier.run.id, "cells": len(chosen)}
    for name, damage in DAMAGES.items():
        x = np.stack([images.resize(damage(rgb), classifier.image_size) for rgb in originals])
        probabilities, distance = classifier.analyse(x)
        status = np.array(classifier.statuses(probabilities, distance))
        right = probabilities.argmax(axis=1) == labels
        result[name] = {
            **{s: float(np.mean(status == s)) for s in ("confident", "review", "unfamiliar")},
            "accuracy": float(right.mean()),
            "confident_but_wrong": float(np.mean((status == "confident") & ~right)),
        }
    return result
