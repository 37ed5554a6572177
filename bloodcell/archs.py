"""The architecture registry: one name -> builder table, with each architecture's input size
and preprocessing kept beside its builder.

Every model takes RGB values in 0..255 at its input size and ends in a float32 `logits` layer
followed by a `probabilities` softmax, so training, calibration and serving treat all alike.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
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
    strategy: str = "supervised"


REGISTRY: dict[str, Arch] = {}


def register(name: str, description: str, input_size: int, min_size: int, preprocessing: str, **options):
    """Add a builder to the registry under `name`; options: backbone=True, strategy="supcon"."""

    def add(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        REGISTRY[name] = Arch(name, description, builder, input_size, min_size, preprocessing, **options)
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
    name: str,
    num_classes: int,
    input_size: int | None = None,
    weights: str | None = None,
    crop: float = 1.0,
) -> keras.Model:
    """Build architecture `name` for `num_classes` classes at `input_size` (its default if None),
    seeing the central `crop` of the image (see `inputs`)."""
    arch = get(name)
    if weights is not None and not arch.backbone:
        raise ValueError(f"{name} is trained from scratch; --weights applies only to pretrained backbones.")
    image, x = inputs(arch, input_size or arch.input_size, crop)
    features = arch.builder(x, weights=weights)
    if len(features.shape) == 4:
        features = feature_map(features)
    return keras.Model(image, head(features, num_classes), name=name)


def inputs(arch: Arch, size: int, crop: float = 1.0):
    """The image input (size x size RGB, 0..255) and what the network proper receives: the
    central `crop` of the image's side, preprocessed as `arch` expects. A crop below 1 shows
    the cell, which the PBC pictures centre, at more pixels for the same work."""
    if not 0.3 <= crop <= 1.0:
        raise ValueError(f"crop is the central share of the image's side kept, from 0.3 to 1; not {crop}.")
    seen = round(size * crop)
    if seen < arch.min_size:
        raise ValueError(f"{arch.name} needs images of at least {arch.min_size} px; {seen} was asked for.")
    image = keras.Input((size, size, 3), name="image")
    x = image if seen == size else layers.CenterCrop(seen, seen, name="crop")(image)
    return image, Preprocess(arch.preprocessing, name="preprocess")(x)


def feature_map(x):
    """Mark the spatial features that heat maps explain (a named identity layer)."""
    return layers.Identity(name="feature_map")(x)


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


# Running statistics that follow the weights within a few dozen steps: with the default 0.99
# they lag behind fast early training and validation accuracy swings wildly between epochs.
BN_MOMENTUM = 0.9


def _norm(name: str, group: bool = False, zero: bool = False):
    """BatchNorm, or GroupNorm (8 groups), which keeps no statistics of the training pictures."""
    gamma = "zeros" if zero else "ones"
    if group:
        return layers.GroupNormalization(8, gamma_initializer=gamma, name=name)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, gamma_initializer=gamma, name=name)


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = "", group: bool = False):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = _norm(f"{name}_bn", group)(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual(x, filters: int, strides: int, name: str, group: bool = False):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _norm(f"{name}_proj_bn", group)(shortcut)
    y = _conv_bn(x, filters, strides=strides, name=f"{name}_a", group=group)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = _norm(f"{name}_b_bn", group, zero=True)(y)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


@register("cnn", "Custom residual CNN trained from scratch (the default model's design)", 80, 32, "unit")
def cnn(x, weights=None, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1), group: bool = False):
    x = _conv_bn(x, widths[0], strides=2, name="stem", group=group)
    for stage, (filters, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            strides = 2 if block == 0 and stage > 0 else 1
            x = _residual(x, filters, strides, name=f"s{stage}b{block}", group=group)
    return x


@register("cnn-gn", "The custom residual CNN with GroupNorm instead of BatchNorm", 80, 32, "unit")
def cnn_gn(x, weights=None):
    return cnn(x, group=True)


@register("cnn-deep", "The custom residual CNN with a second block in its widest stage", 80, 32, "unit")
def cnn_deep(x, weights=None):
    return cnn(x, blocks=(1, 2, 2, 2))


@register(
    "unet", "U-Net-style encoder-decoder with skip connections and a classification head", 64, 32, "unit"
)
def unet(x, weights=None, widths=(32, 64, 128, 256)):
    skips = []
    for level, filters in enumerate(widths[:-1]):
        x = _conv_bn(_conv_bn(x, filters, name=f"enc{level}a"), filters, name=f"enc{level}b")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"enc{level}_pool")(x)
    x = _conv_bn(_conv_bn(x, widths[-1], name="bottom_a"), widths[-1], name="bottom_b")
    bottom = layers.GlobalAveragePooling2D(name="bottom_pool")(x)
    for level, skip in reversed(list(enumerate(skips))):
        x = layers.Conv2DTranspose(widths[level], 2, strides=2, padding="same", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_skip")([x, skip])
        x = _conv_bn(x, widths[level], name=f"dec{level}")
    x = feature_map(x)
    decoded = layers.GlobalAveragePooling2D(name="decoder_pool")(x)
    return layers.Concatenate(name="features")([bottom, decoded])


def _application(factory: str, notop_file: str):
    """A builder over a keras.applications backbone without its top. Weights: 'imagenet'
    (Keras downloads and caches them), a local weights file, a folder holding Keras' own
    file `notop_file`, or None for random initialisation."""

    def builder(x, weights=None):
        from keras import applications

        create = getattr(applications, factory)
        shape = tuple(x.shape[1:])
        if weights == "imagenet":
            try:
                backbone = create(include_top=False, weights="imagenet", input_shape=shape)
            except Exception as error:  # any download failure gets the same advice
                raise WeightsUnavailable(
                    f"ImageNet weights for {factory} could not be downloaded ({type(error).__name__}). "
                    f"Without internet, copy Keras' file {notop_file} into ~/.keras/models/ "
                    "or pass --weights with the path to that file."
                ) from error
            return backbone(x)
        backbone = create(include_top=False, weights=None, input_shape=shape)
        if weights is not None:
            path = Path(weights) / notop_file if Path(weights).is_dir() else Path(weights)
            if not path.is_file():
                raise WeightsUnavailable(f"There is no weights file at {path}.")
            try:
                backbone.load_weights(path)
            except (ValueError, OSError, KeyError) as error:
                raise WeightsUnavailable(f"{path} does not hold {factory} weights ({error}).") from error
        return backbone(x)

    return builder


class WeightsUnavailable(ValueError):
    """Pretrained weights that could not be downloaded, found or matched to the backbone."""


_BACKBONES = {
    # name: (keras.applications factory, Keras' weights file, preprocessing, min size, description)
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "caffe", 32, "ResNet50"),
    "densenet201": (
        "DenseNet201",
        "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "torch",
        32,
        "DenseNet-201",
    ),
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "caffe", 32, "VGG-16"),
    "mobilenetv2": (
        "MobileNetV2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        "tf",
        32,
        "MobileNet-V2",
    ),
    "inceptionv3": (
        "InceptionV3",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "tf",
        75,
        "InceptionV3",
    ),
    "xception": ("Xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "tf", 71, "Xception"),
}
for _name, (_factory, _file, _mode, _min, _text) in _BACKBONES.items():
    register(
        _name, f"{_text} (ImageNet weights optional)", 299 if _min > 32 else 224, _min, _mode, backbone=True
    )(_application(_factory, _file))


@register(
    "hybrid",
    "InceptionV3 + Xception on the same image, pooled features joined, one head",
    299,
    75,
    "tf",
    backbone=True,
)
def hybrid(x, weights=None):
    inception = REGISTRY["inceptionv3"].builder(x, weights=weights)
    xception = feature_map(REGISTRY["xception"].builder(x, weights=weights))
    pooled = [
        layers.GlobalAveragePooling2D(name=f"{n}_pool")(f)
        for n, f in (("inception", inception), ("xception", xception))
    ]
    return layers.Concatenate(name="features")(pooled)


register(
    "supcon",
    "Supervised contrastive learning: the custom CNN encoder + projection head, then a classifier",
    80,
    32,
    "unit",
    strategy="supcon",
)(cnn)


def flops(model: keras.Model) -> int:
    """Floating-point operations (a multiply-add counts 2) of one image's forward pass through
    the convolutions and dense layers, which hold nearly all of a model's work."""
    total = 0
    for layer in all_layers(model):
        if not isinstance(
            layer, layers.Conv2D | layers.DepthwiseConv2D | layers.SeparableConv2D | layers.Dense
        ):
            continue
        inputs, outputs = layer.input.shape, layer.output.shape
        positions = int(np.prod(outputs[1:-1])) if len(outputs) > 2 else 1
        if isinstance(layer, layers.Dense):
            total += 2 * positions * inputs[-1] * outputs[-1]
            continue
        window = int(np.prod(layer.kernel_size))
        if isinstance(layer, layers.Conv2DTranspose):
            total += 2 * int(np.prod(inputs[1:-1])) * window * inputs[-1] * outputs[-1]
        elif isinstance(layer, layers.DepthwiseConv2D):
            total += 2 * positions * window * outputs[-1]
        elif isinstance(layer, layers.SeparableConv2D):
            total += 2 * positions * (window * inputs[-1] + inputs[-1] * layer.depth_multiplier * outputs[-1])
        else:
            total += 2 * positions * window * (inputs[-1] // layer.groups) * outputs[-1]
    return int(total)


def crop_side(model: keras.Model) -> int | None:
    """The side in pixels of the central crop `model` sees (see `inputs`); None if it sees all."""
    crops = [layer for layer in all_layers(model) if layer.name == "crop"]
    return crops[0].output.shape[1] if crops else None


def all_layers(model: keras.Model):
    """Every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
