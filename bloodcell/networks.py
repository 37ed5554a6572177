"""The networks of the architecture registry (bloodcell.archs): layers, builders and the head
every model shares. Imports Keras; `archs.build` imports this module when a model is wanted.

A builder maps the preprocessed input tensor to features (spatial or pooled); `build` adds the
input, the optional central crop, the preprocessing and the head around it.
"""

from pathlib import Path

import keras
from keras import layers, ops

from bloodcell import archs
from bloodcell.archs import BN_MOMENTUM, WeightsUnavailable


def build(
    arch: archs.Arch,
    num_classes: int,
    input_size: int | None = None,
    weights: str | None = None,
    crop: float = 1.0,
) -> keras.Model:
    """Build `arch` for `num_classes` classes at `input_size` (its default if None), seeing the
    central `crop` of the image."""
    if weights is not None and not arch.backbone:
        raise ValueError(
            f"{arch.name} is trained from scratch; --weights applies only to pretrained backbones."
        )
    image, x = inputs(arch, input_size or arch.input_size, crop)
    features = builder(arch)(x, weights=weights)
    if len(features.shape) == 4:
        features = feature_map(features)
    return keras.Model(image, head(features, num_classes), name=arch.name)


def builder(arch: archs.Arch):
    """The function that builds `arch`'s features."""
    return globals()[arch.builder]


def inputs(arch: archs.Arch, size: int, crop: float = 1.0):
    """The image input (size x size RGB, 0..255) and what the network proper receives: the
    central `crop` of the image's side, preprocessed as `arch` expects. A crop below 1 shows
    the cell, which the PBC pictures centre, at more pixels for the same work."""
    seen = archs.seen_side(arch, size, crop)
    image = keras.Input((size, size, 3), name=archs.IMAGE)
    x = image if seen == size else layers.CenterCrop(seen, seen, name=archs.CROP)(image)
    return image, Preprocess(arch.preprocessing, name=archs.PREPROCESS)(x)


def feature_map(x):
    """Mark the spatial features that heat maps explain (a named identity layer)."""
    return layers.Identity(name=archs.FEATURE_MAP)(x)


def pool(x):
    """Spatial features averaged to one vector per image; pooled features pass as they are."""
    return layers.GlobalAveragePooling2D(name="pool")(x) if len(x.shape) == 4 else x


def head(features, num_classes: int, dropout: float = 0.2):
    """Pooling, dropout and the float32 logits + softmax shared by every architecture."""
    x = layers.Dropout(dropout, name=archs.HEAD_DROPOUT)(pool(features))
    logits = layers.Dense(num_classes, dtype="float32", name=archs.LOGITS)(x)
    return layers.Activation("softmax", dtype="float32", name=archs.PROBABILITIES)(logits)


@keras.saving.register_keras_serializable(package="bloodcell")
class Preprocess(layers.Layer):
    """Maps 0..255 RGB to what a backbone expects: 'unit' (0..1), 'tf' (-1..1),
    'torch' (ImageNet mean/std) or 'caffe' (BGR, ImageNet mean subtracted)."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)
    CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in archs.PREPROCESSING:
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


def cnn(x, weights=None, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1), group: bool = False):
    x = _conv_bn(x, widths[0], strides=2, name="stem", group=group)
    for stage, (filters, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            strides = 2 if block == 0 and stage > 0 else 1
            x = _residual(x, filters, strides, name=f"s{stage}b{block}", group=group)
    return x


def cnn_gn(x, weights=None):
    return cnn(x, group=True)


def cnn_deep(x, weights=None):
    return cnn(x, blocks=(1, 2, 2, 2))


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


def _application(factory: str, notop_file: str, he_init: bool = False):
    """A builder over a keras.applications backbone without its top. Weights: 'imagenet'
    (Keras downloads and caches them), a local weights file, a folder holding Keras' own
    file `notop_file`, or None for random initialisation.

    `he_init`: from scratch, draw the convolutions' kernels for ReLU (He et al. 2015) instead of
    Keras' Glorot default. A deep plain stack without normalisation (VGG-16's 13 convolutions)
    otherwise halves its signal at every layer and never leaves the commonest class."""

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
        if he_init and weights is None:
            _he_kernels(backbone)
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


def _he_kernels(model, input_scale: float = 64.0) -> None:
    """He-initialised convolutions, the first divided by the spread of its caffe-preprocessed
    input (pixel values minus their mean, about 64), so the signal enters at unit scale."""
    convolutions = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    for seed, layer in enumerate(convolutions):  # a seeded initializer repeats its draw: one seed each
        kernel = keras.initializers.HeNormal(seed=seed)(layer.kernel.shape)
        layer.kernel.assign(kernel / input_scale if seed == 0 else kernel)


resnet50 = _application("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
densenet201 = _application("DenseNet201", "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5")
vgg16 = _application("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", he_init=True)
mobilenetv2 = _application("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
inceptionv3 = _application("InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5")
xception = _application("Xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")


def hybrid(x, weights=None):
    pooled = [
        layers.GlobalAveragePooling2D(name=f"{name}_pool")(features)
        for name, features in (
            ("inception", inceptionv3(x, weights=weights)),
            ("xception", feature_map(xception(x, weights=weights))),
        )
    ]
    return layers.Concatenate(name="features")(pooled)
