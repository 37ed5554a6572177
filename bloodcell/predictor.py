"""Serving: a stored run's model answering images with class, calibrated probabilities and a status."""

import copy
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from bloodcell import finder, images, runs, trust

REVIEW_BELOW = 0.9
# Fewest cells of one laboratory whose statistics stand in for the training pictures'
# (label-free adaptation): fewer give BatchNorm statistics too noisy to trust.
MIN_LAB_CELLS = 20
MAX_LAB_CELLS = 512  # more add nothing to the statistics but memory
DECODE_THREADS = min(8, os.cpu_count() or 1)
ANSWER_BATCH = 256  # pictures the model answers at once while the next ones are read
T, R = TypeVar("T"), TypeVar("R")


FIELD_NOTE = (
    "This picture looks like a microscope field with several cells, not one cell's picture: "
    "the cell nearest the centre was answered; use field mode to answer every cell."
)
NOTHING_TO_ADAPT = (
    "This model normalises each picture by itself and keeps no statistics of its training "
    "pictures to replace with a laboratory's, so adapting without labels would change nothing."
)


@dataclass
class Prediction:
    """One answer: a picture's cell, or (with `box`) one cell of a field."""

    file: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    status: str | None = None
    error: str | None = None
    box: tuple[int, int, int, int] | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        answer = {"file": self.file}
        if self.box is not None:
            answer["box"] = list(self.box)
        answer |= {"label": self.label, "probabilities": self.probabilities, "status": self.status}
        return answer | ({"note": self.note} if self.note else {})


@dataclass
class FieldAnswer:
    """A microscope field: every nucleated cell found, each answered, and the platelets counted."""

    file: str
    cells: list[Prediction] = field(default_factory=list)
    platelets: int = 0
    error: str | None = None

    def answers(self) -> list[Prediction]:
        """Its cells' answers, or its error as an answer (for reports that list every file)."""
        return [Prediction(self.file, error=self.error)] if self.error is not None else self.cells

    def lines(self) -> list[dict]:
        """The command line's JSON objects: one per cell, or one saying none was found."""
        if self.error is not None:
            return [{"file": self.file, "error": self.error}]
        return [cell.as_dict() for cell in self.cells] or [{"file": self.file, "cells": 0}]


def _in_threads(function: Callable[[T], R], items: list[T]) -> Iterator[R]:
    """`function` of each item, in order, computed in threads: decoding (Pillow), the finder
    (NumPy, SciPy) and resizing release the GIL, so pictures are read on every core at once."""
    if len(items) < 2:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=min(len(items), DECODE_THREADS)) as pool:
        yield from pool.map(function, items)


def _unzip(pairs: list[tuple[Prediction, np.ndarray]]) -> tuple[list[Prediction], np.ndarray]:
    return [answer for answer, _ in pairs], np.stack([x for _, x in pairs])


def dihedral(batch: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and right-angle turns of square images (N, H, W, C), the images themselves first."""
    flipped = batch[:, :, ::-1]
    return [np.ascontiguousarray(np.rot90(b, k, axes=(1, 2))) for b in (batch, flipped) for k in range(4)]


def _batch_norms(model) -> list:
    import keras

    from bloodcell import archs

    return [layer for layer in archs.all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _compute_in_bfloat16(model) -> None:
    """Switch a loaded float32 model to Keras' mixed bfloat16 policy, layer by layer, except the
    layers built to stay float32 (logits and softmax)."""
    from bloodcell import archs

    for layer in archs.all_layers(model):
        if layer.dtype_policy.name == "float32" and layer.name not in archs.FLOAT32_LAYERS:
            layer.dtype_policy = "mixed_bfloat16"


class Classifier:
    """A loaded run: its model, class names, input size, temperature and status thresholds.

    Runs calibrated by `bloodcell.trust` answer with temperature-scaled probabilities and all
    three statuses; older runs fall back to a plain confidence threshold.

    With `bfloat16`, every layer but the float32 logits and softmax computes in bfloat16 (the
    weights stay float32): faster on CPUs with native bfloat16."""

    def __init__(self, run: runs.Run, bfloat16: bool = False):
        self.run = run
        record = run.record
        self.classes: tuple[str, ...] = tuple(record["classes"])
        self.image_size: int = int(record["image_size"])
        self.framing: bool = bool(record.get("framing"))
        if self.framing and record["framing"] != finder.VERSION:
            raise runs.RunError(
                f"Run {run.id} learnt from cells framed the way bloodcell's finder did in its version "
                f"{record['framing']}; this one frames them as in version {finder.VERSION}, which the "
                "model would misread. Train it again, or serve it with the bloodcell it was trained with."
            )
        self.temperature: float = float(record.get("temperature", 1.0))
        self.review_below: float = float(record.get("review_below", REVIEW_BELOW))
        stored = run.familiarity()
        self.familiarity = trust.Familiarity.from_arrays(stored) if stored else None
        self.adapted_to = 0
        model = run.load_model()
        if bfloat16:
            _compute_in_bfloat16(model)
        self._bind(model)

    def _bind(self, model) -> None:
        from bloodcell import inference

        self.model = model
        self._grad_cam = None
        self._inference = inference.Inference(model)
        self.analyse(np.zeros((1, self.image_size, self.image_size, 3), np.uint8))  # trace once, at load

    def inputs(self, source: bytes | str | Path) -> np.ndarray:
        """One picture as this model's input (the one loader; framed if the model was trained so)."""
        return images.load(source, self.image_size, self.framing)

    def adapted(self, x: np.ndarray, minimum: int = MIN_LAB_CELLS) -> "Classifier":
        """This classifier adapted, without labels, to the laboratory of the cells `x` (model
        inputs, at least `MIN_LAB_CELLS`): its BatchNorm statistics are those of these cells
        instead of the training pictures' (AdaBN, Li et al. 2016), so another lab's stain and
        camera shift what every layer sees back to what it learnt on. The original is untouched;
        a model without BatchNorm comes back as a copy, `adapted_to` 0."""
        import keras

        if len(x) < minimum:
            raise ValueError(
                f"Adapting to a laboratory needs at least {minimum} of its cells; {len(x)} were given."
            )
        from bloodcell import archs

        model = keras.models.clone_model(self.model)
        model.set_weights(self.model.get_weights())
        norms = _batch_norms(model)
        for layer in norms:
            layer.momentum = 0.0  # the statistics of this one batch replace the stored ones
        if norms:
            model(x[:MAX_LAB_CELLS], training=True)
        for layer in norms:
            layer.momentum = archs.BN_MOMENTUM
        adapted = copy.copy(self)
        adapted._bind(model)
        adapted.adapted_to = len(x) if norms else 0
        return adapted

    @property
    def adapts_without_labels(self) -> bool:
        """Whether `adapted` changes anything: only BatchNorm keeps statistics of the training
        pictures; a model that normalises each picture by itself (GroupNorm) has none."""
        return bool(_batch_norms(self.model))

    @classmethod
    def load(cls, ref: str | None = None, bfloat16: bool = False) -> "Classifier":
        """The classifier of run `ref` (an id or a run directory), or of the default run."""
        return cls(runs.resolve(ref), bfloat16)

    def features_and_logits(self, batch: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and logits for uint8 images at the input size, through the one
        inference path (bloodcell.inference) of calibration, serving, adaptation and evaluation."""
        found = self._inference(batch, batch_size)
        return found.features, found.logits

    def analyse(
        self, batch: np.ndarray, batch_size: int = 256, tta: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and unfamiliarity distances for uint8 images at the input size.

        With `tta`, the probabilities are the mean over each image's 8 flips and right-angle
        turns (a cell has no up or left), at 8 times the work; the distance is the image's own."""
        if not len(batch):
            return np.zeros((0, len(self.classes))), np.zeros(0)
        features, logits = self.features_and_logits(batch, batch_size)
        p = trust.calibrated(logits, self.temperature)
        if tta:
            turned = [self.features_and_logits(view, batch_size)[1] for view in dihedral(batch)[1:]]
            p = np.mean([p] + [trust.calibrated(t, self.temperature) for t in turned], axis=0)
        distance = self.familiarity.distance(features) if self.familiarity else np.zeros(len(features))
        return p, distance

    def statuses(self, probabilities: np.ndarray, distance: np.ndarray) -> list[str]:
        familiar_below = self.familiarity.threshold if self.familiarity else math.inf
        return trust.status(probabilities, distance, self.review_below, familiar_below)

    def predict(self, sources: list[tuple[str, bytes | str | Path]], adapt: bool = False) -> list[Prediction]:
        """Answer each (name, image bytes or path); an unusable image gets its own error. A
        picture that looks like a microscope field is never answered `confident`: its answer
        is the cell nearest the centre, held for review with a note.

        With `adapt`, the pictures are taken as cells of one laboratory and the model is first
        adapted to them (`adapted`; at least `MIN_LAB_CELLS` usable pictures)."""
        if adapt and not self.adapts_without_labels:
            raise ValueError(NOTHING_TO_ADAPT)
        answers = [Prediction(name) for name, _ in sources]
        waiting: list[tuple[Prediction, np.ndarray]] = []
        # the model answers a batch while the threads go on reading the next pictures
        for answer, seen in zip(answers, _in_threads(self._served, [s for _, s in sources]), strict=True):
            if isinstance(seen, images.UnusableImage):
                answer.error = str(seen)
                continue
            x, is_field = seen
            answer.note = FIELD_NOTE if is_field else None
            waiting.append((answer, x))
            if not adapt and len(waiting) == ANSWER_BATCH:
                self._answer(*_unzip(waiting))
                waiting = []
        answering = self
        if adapt:
            answering = self.adapted(np.stack([x for _, x in waiting]) if waiting else np.zeros(0))
        if waiting:
            answering._answer(*_unzip(waiting))
        for answer in answers:
            if answer.note and answer.status == "confident":
                answer.status = "review"
        return answers

    def _served(self, source: bytes | str | Path) -> tuple[np.ndarray, bool] | images.UnusableImage:
        try:
            return images.load_served(source, self.image_size, self.framing)
        except images.UnusableImage as error:
            return error

    def predict_fields(self, sources: list[tuple[str, bytes | str | Path]]) -> list[FieldAnswer]:
        """Answer every nucleated cell of each microscope field (name, image bytes or path),
        each framed as the model expects; an unusable picture gets its own error."""
        fields = [FieldAnswer(name) for name, _ in sources]
        crops, cells = [], []
        for answer, seen in zip(fields, _in_threads(self._cells, [s for _, s in sources]), strict=True):
            if isinstance(seen, images.UnusableImage):
                answer.error = str(seen)
                continue
            found, x = seen
            answer.platelets = found.platelets
            answer.cells = [Prediction(answer.file, box=cell.box) for cell in found.cells]
            crops.append(x)
            cells += answer.cells
        if cells:
            self._answer(cells, np.concatenate(crops))
        return fields

    def _cells(self, source: bytes | str | Path) -> tuple[finder.Field, np.ndarray] | images.UnusableImage:
        try:
            rgb = images.read_image(source)
        except images.UnusableImage as error:
            return error
        found = finder.survey(rgb)
        return found, finder.frames(rgb, found.cells, self.image_size)

    def _answer(self, answers: list[Prediction], x: np.ndarray) -> None:
        """Fill in class, probabilities and status of `answers` from their model inputs `x`."""
        probabilities, distance = self.analyse(x)
        for answer, p, status in zip(
            answers, probabilities, self.statuses(probabilities, distance), strict=True
        ):
            answer.label = self.classes[int(p.argmax())]
            answer.probabilities = {c: float(v) for c, v in zip(self.classes, p, strict=True)}
            answer.status = status

    def heat_map(self, source: bytes | str | Path, class_name: str, display: int = 320) -> np.ndarray:
        """The original picture (at most `display` px) with a Grad-CAM heat map of `class_name`
        over the part of it the model saw."""
        from bloodcell import saliency

        if self._grad_cam is None:
            self._grad_cam = saliency.GradCam(self.model)
        rgb = images.read_image(source)
        x, cell = images.prepare(rgb, self.image_size, self.framing)
        heat = self._grad_cam(x, self.classes.index(class_name))
        if cell is not None:
            heat = saliency.place(heat, cell.frame, rgb.shape[:2])
        scale = display / max(rgb.shape[:2])
        if scale < 1:
            rgb = images.resize_to(rgb, round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        return saliency.overlay(rgb, heat)
