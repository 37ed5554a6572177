"""Serving: a stored run's model answering images with class, calibrated probabilities and a status."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell import images, runs, trust

REVIEW_BELOW = 0.9


@dataclass
class Prediction:
    file: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    status: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "label": self.label,
            "probabilities": self.probabilities,
            "status": self.status,
        }


def dihedral(batch: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and right-angle turns of square images (N, H, W, C), the images themselves first."""
    flipped = batch[:, :, ::-1]
    return [np.ascontiguousarray(np.rot90(b, k, axes=(1, 2))) for b in (batch, flipped) for k in range(4)]


def _compute_in_bfloat16(model) -> None:
    """Switch a loaded float32 model to Keras' mixed bfloat16 policy, layer by layer, except the
    layers built to stay float32 (logits and softmax)."""
    from bloodcell import archs

    for layer in archs.all_layers(model):
        if layer.dtype_policy.name == "float32" and layer.name not in ("logits", "probabilities"):
            layer.dtype_policy = "mixed_bfloat16"


class Classifier:
    """A loaded run: its model, class names, input size, temperature and status thresholds.

    Runs calibrated by `bloodcell.trust` answer with temperature-scaled probabilities and all
    three statuses; older runs fall back to a plain confidence threshold.

    With `bfloat16`, every layer but the float32 logits and softmax computes in bfloat16 (the
    weights stay float32): faster on CPUs with native bfloat16."""

    def __init__(self, run: runs.Run, bfloat16: bool = False):
        import keras
        import tensorflow as tf

        self.run = run
        record = run.record
        self.classes: tuple[str, ...] = tuple(record["classes"])
        self.image_size: int = int(record["image_size"])
        self.temperature: float = float(record.get("temperature", 1.0))
        self.review_below: float = float(record.get("review_below", REVIEW_BELOW))
        stored = run.familiarity()
        self.familiarity = trust.Familiarity.from_arrays(stored) if stored else None
        self.model = run.load_model()
        if bfloat16:
            _compute_in_bfloat16(self.model)
        self._grad_cam = None
        both = keras.Model(
            self.model.inputs,
            [self.model.get_layer("head_dropout").input, self.model.get_layer("logits").output],
        )
        self._outputs = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
        self.analyse(np.zeros((1, self.image_size, self.image_size, 3), np.uint8))  # trace once, at load

    @classmethod
    def load(cls, ref: str | None = None, bfloat16: bool = False) -> "Classifier":
        """The classifier of run `ref` (an id or a run directory), or of the default run."""
        return cls(runs.resolve(ref), bfloat16)

    def analyse(
        self, batch: np.ndarray, batch_size: int = 256, tta: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities and unfamiliarity distances for uint8 images at the input size.

        With `tta`, the probabilities are the mean over each image's 8 flips and right-angle
        turns (a cell has no up or left), at 8 times the work; the distance is the image's own."""
        features, probabilities = [], []
        for i in range(0, len(batch), batch_size):
            chunk = batch[i : i + batch_size]
            f, z = self._outputs(chunk)
            p = trust.calibrated(z.numpy(), self.temperature)
            if tta:
                turned = [self._outputs(view)[1].numpy() for view in dihedral(chunk)[1:]]
                p = np.mean([p] + [trust.calibrated(t, self.temperature) for t in turned], axis=0)
            features.append(f.numpy())
            probabilities.append(p)
        if not probabilities:
            return np.zeros((0, len(self.classes))), np.zeros(0)
        features = np.concatenate(features)
        distance = self.familiarity.distance(features) if self.familiarity else np.zeros(len(features))
        return np.concatenate(probabilities), distance

    def statuses(self, probabilities: np.ndarray, distance: np.ndarray) -> list[str]:
        familiar_below = self.familiarity.threshold if self.familiarity else math.inf
        return trust.status(probabilities, distance, self.review_below, familiar_below)

    def predict(self, sources: list[tuple[str, bytes | str | Path]]) -> list[Prediction]:
        """Answer each (name, image bytes or path); an unusable image gets its own error."""
        answers = [Prediction(name) for name, _ in sources]
        arrays, where = [], []
        for i, (_, source) in enumerate(sources):
            try:
                arrays.append(images.load(source, self.image_size))
                where.append(i)
            except images.UnusableImage as error:
                answers[i].error = str(error)
        if arrays:
            probabilities, distance = self.analyse(np.stack(arrays))
            for i, p, status in zip(
                where, probabilities, self.statuses(probabilities, distance), strict=True
            ):
                answers[i].label = self.classes[int(p.argmax())]
                answers[i].probabilities = {c: float(v) for c, v in zip(self.classes, p, strict=True)}
                answers[i].status = status
        return answers

    def heat_map(self, source: bytes | str | Path, class_name: str, display: int = 320) -> np.ndarray:
        """The image (at most `display` px) with a Grad-CAM heat map of `class_name` over it."""
        from bloodcell import saliency

        if self._grad_cam is None:
            self._grad_cam = saliency.GradCam(self.model)
        rgb = images.read_image(source)
        heat = self._grad_cam(images.resize(rgb, self.image_size), self.classes.index(class_name))
        scale = display / max(rgb.shape[:2])
        if scale < 1:
            rgb = images.resize_to(rgb, round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        return saliency.overlay(rgb, heat)
