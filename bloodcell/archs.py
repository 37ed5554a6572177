"""The architecture registry: one name -> builder table, with each architecture's input size
and preprocessing kept beside its builder.

Every model takes RGB values in 0..255 at its input size and ends in a float32 `logits` layer
followed by a `probabilities` softmax, so training, calibration and serving treat all alike.
"""

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers, ops


class UnknownArchitecture(ValueError):
    """An architecture name that is not in the registry."""


@dataclass(frozen=True)
class Arch:
    name: str
    description: str
    builder: Callable[..., keras.Model]
    input_size: int
    min_size: int
    preprocessing: str
    backbone: bool = False


REGISTRY: dict[str, Arch] = {}


def register(
    name: str, description: str, input_size: int, min_size: int, preprocessing: str, backbone: bool = False
):
    """Add a builder to the registry under `name`."""

    def add(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        REGISTRY[name] = Arch(name, description, builder, input_size, min_size, preprocessing, backbone)
        return builder

    return add


def get(name: str) -> Arch:
    """The registered architecture called `name`; fails loudly on an unknown name."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownArchitecture(
            f"Unknown architecture '{name}'; choose one of: {', '.join(REGISTRY)}."
        ) from None


def build(
    name: str, num_classes: int, input_size: int | None = None, weights: str | None = None
) -> keras.Model:
    """Build architecture `name` for `num_classes` classes at `input_size` (its default if None)."""
    arch = get(name)
    size = input_size or arch.input_size
    if size < arch.min_size:
        raise ValueError(f"{name} needs images of at least {arch.min_size} px; {size} was asked for.")
    if weights is not None and not arch.backbone:
        raise ValueError(f"{name} is trained from scratch; --weights applies only to pretrained backbones.")
    inputs = keras.Input((size, size, 3), name="image")
    x = Preprocess(arch.preprocessing, name="preprocess")(inputs)
    features = arch.builder(x, weights=weights)
    return keras.Model(inputs, head(features, num_classes), name=name)


def head(features, num_classes: int, dropout: float = 0.2):
    """Pooling, dropout and the float32 logits + softmax shared by every architecture."""
    x = features
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(logits)


@keras.saving.register_keras_serializable(package="bloodcell")
class Preprocess(layers.Layer):
    """Maps 0..255 RGB to what a backbone expects: 'unit' (0..1), 'tf' (-1..1),
    'torch' (ImageNet mean/std) or 'caffe' (BGR, ImageNet mean subtracted)."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)
    CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("unit", "tf", "torch", "caffe"):
            raise ValueError(f"Unknown preprocessing mode '{mode}'.")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - ops.array(self.MEAN, x.dtype)) / ops.array(self.STD, x.dtype)
        return ops.flip(x, axis=-1) - ops.array(self.CAFFE_MEAN_BGR, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual(x, filters: int, strides: int, name: str):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn(x, filters, strides=strides, name=f"{name}_a")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(gamma_initializer="zeros", name=f"{name}_b_bn")(y)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


@register("cnn", "Custom residual CNN trained from scratch (the default model's design)", 80, 32, "unit")
def cnn(x, weights=None, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1)):
    x = _conv_bn(x, widths[0], strides=2, name="stem")
    for stage, (filters, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            strides = 2 if block == 0 and stage > 0 else 1
            x = _residual(x, filters, strides, name=f"s{stage}b{block}")
    return x
