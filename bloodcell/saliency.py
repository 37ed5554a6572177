"""Grad-CAM heat maps (Selvaraju et al. 2017): where in the image the predicted class came from."""

import keras
import numpy as np
import tensorflow as tf

from bloodcell import archs, inference

# Anchor colours of a perceptually ordered map (dark blue -> cyan -> yellow -> red).
_ANCHORS = np.array([[48, 18, 59], [40, 140, 230], [60, 220, 160], [250, 200, 40], [200, 30, 20]], float)


class GradCam:
    """Heat maps for one model, built once and reused for every image."""

    def __init__(self, model: keras.Model):
        self._model = inference.spatial(model)
        self._seen = archs.crop_side(model)
        # compiled once: a heat map per answer must not cost an eager gradient pass (3x slower)
        self._cam = tf.function(self._weighted_features, reduce_retracing=True)

    def _weighted_features(self, x, class_index):
        with tf.GradientTape() as tape:
            features, logits = self._model(x, training=False)
            score = tf.gather(logits, class_index, axis=1)
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0]

    def __call__(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """A heat map in 0..1 with the image's height and width, for one uint8 image at the
        model's input size; zero outside the central crop a model with one sees."""
        x = tf.convert_to_tensor(image[None].astype(np.float32))
        cam = self._cam(x, tf.constant(class_index, tf.int32)).numpy()
        cam = cam / cam.max() if cam.max() > 0 else cam
        side = image.shape[0]
        seen = self._seen or side
        resized = tf.image.resize(cam[..., None], (seen, seen), method="bilinear")[..., 0].numpy()
        start = (side - seen) // 2  # where keras.layers.CenterCrop starts
        heat = np.zeros(image.shape[:2], np.float32)
        heat[start : start + seen, start : start + seen] = np.clip(resized, 0.0, 1.0)
        return heat


def place(heat: np.ndarray, frame: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A heat map of the square `frame` (x0, y0, x1, y1, which may reach past the picture) laid
    on a picture of `shape` (height, width): NaN, no heat at all, outside the frame."""
    x0, y0, x1, y1 = frame
    resized = tf.image.resize(heat[..., None], (y1 - y0, x1 - x0), method="bilinear")[..., 0].numpy()
    placed = np.full(shape, np.nan, np.float32)
    top, left = max(0, y0), max(0, x0)
    bottom, right = min(shape[0], y1), min(shape[1], x1)
    if bottom > top and right > left:
        placed[top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return placed


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map coloured and blended over the RGB image (uint8); where the heat is NaN (the
    model did not see that part) the image shows as it is."""
    if heat.shape != image.shape[:2]:
        heat = tf.image.resize(heat[..., None], image.shape[:2])[..., 0].numpy()
    seen = ~np.isnan(heat)[..., None]
    position = np.nan_to_num(heat) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_ANCHORS) - 2)
    t = (position - low)[..., None]
    colours = _ANCHORS[low] * (1 - t) + _ANCHORS[low + 1] * t
    blended = np.where(seen, image.astype(float) * (1 - alpha) + colours * alpha, image)
    return blended.clip(0, 255).astype(np.uint8)
