"""Serving: a stored run's model answering images with class, probabilities and a status."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bloodcell import images, runs

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


class Classifier:
    """A loaded run: its model, class names, input size and status threshold."""

    def __init__(self, run: runs.Run):
        import tensorflow as tf

        self.run = run
        record = run.record
        self.classes: tuple[str, ...] = tuple(record["classes"])
        self.image_size: int = int(record["image_size"])
        self.review_below: float = float(record.get("review_below", REVIEW_BELOW))
        self.model = run.load_model()
        self._grad_cam = None
        logits_model = tf.keras.Model(self.model.inputs, self.model.get_layer("logits").output)
        self._logits = tf.function(
            lambda x: logits_model(x, training=False), reduce_retracing=True, jit_compile=False
        )

    @classmethod
    def load(cls, ref: str | None = None) -> "Classifier":
        """The classifier of run `ref` (an id or a run directory), or of the default run."""
        return cls(runs.resolve(ref))

    def logits(self, batch: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits for a batch of uint8 images at the model's input size."""
        out = [self._logits(batch[i : i + batch_size]).numpy() for i in range(0, len(batch), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        logits = self.logits(batch).astype(np.float64)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def heat_map(self, source: bytes | str | Path, class_name: str, display: int = 320) -> np.ndarray:
        """The image (at most `display` px) with a Grad-CAM heat map of `class_name` over it."""
        from bloodcell import saliency

        if self._grad_cam is None:
            self._grad_cam = saliency.GradCam(self.model)
        rgb = images.read_image(source)
        heat = self._grad_cam(images.resize(rgb, self.image_size), self.classes.index(class_name))
        scale = display / max(rgb.shape[:2])
        shown = (
            rgb
            if scale >= 1
            else images.resize_to(rgb, round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        )
        return saliency.overlay(shown, heat)

    def status(self, probabilities: np.ndarray) -> str:
        return "confident" if float(probabilities.max()) >= self.review_below else "review"

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
            for i, p in zip(where, self.probabilities(np.stack(arrays)), strict=True):
                answers[i].label = self.classes[int(p.argmax())]
                answers[i].probabilities = {c: float(v) for c, v in zip(self.classes, p, strict=True)}
                answers[i].status = self.status(p)
        return answers
