"""What a model sees in training: seeded, shuffled batches of the training images, and the
random augmentation layer in front of the model (never part of the served model)."""

import keras
import numpy as np
from keras import layers, ops


class Batches(keras.utils.PyDataset):
    """Batches of uint8 images and targets, reshuffled every epoch with a seeded generator.

    `views` repeats each batch (contrastive learning: the augmentation makes the copies
    differ); `weights` ({class: weight}) adds per-image loss weights from one-hot targets."""

    def __init__(
        self, x, y, batch_size: int, shuffle: bool = False, seed: int = 0, views: int = 1, weights=None
    ):
        super().__init__()
        self.x, self.y, self.batch_size, self.shuffle, self.views = x, y, batch_size, shuffle, views
        self.weights = (
            None if weights is None else np.array([weights[i] for i in sorted(weights)], np.float32)
        )
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(x))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i: int):
        chosen = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x, y = np.concatenate([self.x[chosen]] * self.views), np.concatenate([self.y[chosen]] * self.views)
        if self.weights is None:
            return x, y
        return x, y, self.weights[y.argmax(axis=1)]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


@keras.saving.register_keras_serializable(package="bloodcell")
class Augment(layers.Layer):
    """Random augmentation for stained smears, in training only: the 8 flips and right-angle
    turns, a rotation of up to 22.5 degrees with a zoom of up to 10% (one affine warp, edges
    reflected), and mild colour jitter. uint8-valued RGB in, float32 out. Written in Keras ops
    that compile (XLA), so it runs on any backend and on the accelerator inside the step.

    With `stain`, also what differs between laboratories: a random mixing of the stains in
    optical density (every stain's strength and hue), a wider zoom, stronger lamp colour and
    brightness, focus blur and camera noise; `spread` is how far the mixing matrix may stray
    from the identity in each entry, and `blur` the most passes of a 5-tap binomial filter a
    blurred picture gets (1 pass is about a Gaussian of 1 px, 4 passes of 2 px)."""

    def __init__(self, seed: int = 0, stain: bool = False, spread: float = 0.15, blur: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.stain, self.spread, self.blur = seed, stain, spread, blur
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        x = ops.cast(images, "float32")
        if not training:
            return x
        n, size = ops.shape(x)[0], x.shape[1]

        def uniform(shape, low=0.0, high=1.0):
            return keras.random.uniform(shape, low, high, seed=self.generator)

        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.transpose(x, (0, 2, 1, 3)), x)
        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.flip(x, axis=1), x)
        x = ops.where(uniform((n, 1, 1, 1)) < 0.5, ops.flip(x, axis=2), x)
        zoom = 0.2 if self.stain else 0.1
        angle, scale = uniform((n,), -np.pi / 8, np.pi / 8), uniform((n,), 1 - zoom, 1 + zoom)
        cos, sin, centre = ops.cos(angle) / scale, ops.sin(angle) / scale, (size - 1) / 2
        zero = ops.zeros_like(cos)
        # output pixel (col, row) samples the input at centre + R(angle) (p - centre) / scale
        transform = ops.stack(
            [cos, -sin, centre * (1 - cos + sin), sin, cos, centre * (1 - sin - cos), zero, zero], axis=1
        )
        x = ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="reflect")
        if self.stain:
            x = self._laboratory(x, n, uniform)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        spread = 0.06 if self.stain else 0.04
        contrast, tint = uniform((n, 1, 1, 1), 0.9, 1.1), uniform((n, 1, 1, 3), 1 - spread, 1 + spread)
        x = ((x - mean) * contrast + mean) * tint + uniform((n, 1, 1, 1), -12.0, 12.0)
        return ops.clip(x, 0.0, 255.0)

    def _laboratory(self, x, n, uniform):
        # optical density: each stain adds to it linearly (Beer-Lambert), so mixing the three
        # channels' densities by a random matrix near identity varies every stain's strength and hue
        density = -ops.log((x + 1.0) / 256.0)
        mixing = ops.eye(3) + uniform((n, 3, 3), -self.spread, self.spread)
        density = ops.einsum("nhwc,ncd->nhwd", density, mixing) * uniform((n, 1, 1, 1), 0.8, 1.2)
        x = 256.0 * ops.exp(-ops.maximum(density, 0.0)) - 1.0
        kernel = np.outer(*[np.array([1, 4, 6, 4, 1], np.float32) / 16] * 2)
        kernel = np.tile(kernel[:, :, None, None], (1, 1, 3, 1))
        passes = [ops.depthwise_conv(x, kernel, padding="same")]
        for _ in range(self.blur - 1):
            passes.append(ops.depthwise_conv(passes[-1], kernel, padding="same"))
        blurred = passes[0]
        if self.blur > 1:
            # as many passes as a random level: another lab's optics or an enlarged small picture
            level = ops.cast(uniform((n, 1, 1, 1)) * self.blur, "int32")
            for k in range(1, self.blur):
                blurred = ops.where(level == k, passes[k], blurred)
        blur = ops.where(uniform((n, 1, 1, 1)) < 0.3, uniform((n, 1, 1, 1)), 0.0)
        x = x + blur * (blurred - x)
        return x + keras.random.normal(ops.shape(x), seed=self.generator) * uniform((n, 1, 1, 1), 0.0, 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "seed": self.seed,
            "stain": self.stain,
            "spread": self.spread,
            "blur": self.blur,
        }
