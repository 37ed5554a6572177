"""One inference path: what a model says of a batch of images, for every use alike.

Training-time calibration, evaluation, rescoring, serving, adaptation and heat maps all read a
model's outputs through `Inference`: the pooled features (the head's input, where familiarity
is measured), the float32 logits and the temperature-scaled probabilities. The layers are found
by the names in `bloodcell.archs`, here and nowhere else.
"""

from typing import NamedTuple

import keras
import numpy as np

from bloodcell import archs, datasets, trust


class Outputs(NamedTuple):
    """Per image: pooled features, logits, and probabilities at the temperature asked for."""

    features: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray


def features(model: keras.Model):
    """The pooled features every architecture's head starts from (the input of its dropout)."""
    return model.get_layer(archs.HEAD_DROPOUT).input


def logits(model: keras.Model):
    return model.get_layer(archs.LOGITS).output


class Inference:
    """A model's forward pass to `Outputs`, traced once and reused for every batch.

    Built once per model (tracing takes a moment); the model's weights may change in between
    calls (BatchNorm statistics, adaptation): every call reads them as they are then."""

    def __init__(self, model: keras.Model):
        self.model = model
        network = keras.Model(model.inputs, [features(model), logits(model)])
        self._forward = _compiled(network)

    def __call__(self, x, batch_size: int = 256, temperature: float = 1.0) -> Outputs:
        """Outputs for uint8 images at the model's input size: an array, or files
        (`datasets.ImageFiles`) decoded batch by batch."""
        parts = [self._forward(batch) for batch in _batches(x, batch_size)]
        if not parts:
            width = self.model.get_layer(archs.LOGITS).units
            empty = np.zeros((0, width), np.float32)
            return Outputs(np.zeros((0, features(self.model).shape[-1]), np.float32), empty, empty)
        found, scores = (np.concatenate([np.asarray(p[k], np.float32) for p in parts]) for k in (0, 1))
        return Outputs(found, scores, trust.calibrated(scores, temperature))


def outputs(model: keras.Model, x, batch_size: int = 256, temperature: float = 1.0) -> Outputs:
    """`Inference(model)(x)` for a single use of a model."""
    return Inference(model)(x, batch_size, temperature)


def _compiled(network: keras.Model):
    """`network` on one batch, inference mode, compiled: a tf.function on TensorFlow (a tenth
    of `predict`'s overhead on a single image), Keras' compiled predict step elsewhere."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: network(x, training=False), reduce_retracing=True)
    return network.predict_on_batch


def _batches(x, batch_size: int):
    if isinstance(x, datasets.ImageFiles):
        yield from x.stream(batch_size).as_numpy_iterator()
        return
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer whose spatial output heat maps explain: `archs.FEATURE_MAP`, else, for models
    saved before it existed, the last plain layer with a 4-D output."""
    if any(layer.name == archs.FEATURE_MAP for layer in model.layers):
        return model.get_layer(archs.FEATURE_MAP)
    for layer in reversed(model.layers):
        if not isinstance(layer, keras.Model) and len(layer.output.shape) == 4:
            return layer
    raise ValueError(f"{model.name} has no spatial feature map for a heat map.")


def spatial(model: keras.Model) -> keras.Model:
    """The model to its spatial feature map and its logits: what a heat map differentiates."""
    return keras.Model(model.inputs, [feature_layer(model).output, logits(model)])
