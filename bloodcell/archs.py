"""The architecture registry: one name -> architecture table, each row with its input size,
smallest input and preprocessing beside the name of its builder in `bloodcell.networks`.

Importing this module loads no Keras: the command line lists the architectures and the
configuration checks a name, a size and a crop without waiting for TensorFlow. `build` imports
the builders when a model is really wanted.

Every model takes RGB values in 0..255 at its input size and ends in a float32 `LOGITS` layer
followed by a `PROBABILITIES` softmax, so training, calibration and serving treat all alike.
"""

from dataclasses import dataclass

# The layers other modules find by name: the one place their names are written
# (bloodcell.inference reads the outputs, bloodcell.networks names the layers).
IMAGE = "image"
CROP = "crop"
PREPROCESS = "preprocess"
FEATURE_MAP = "feature_map"  # the spatial features a heat map explains
HEAD_DROPOUT = "head_dropout"  # its input: the pooled features familiarity is measured on
LOGITS = "logits"
PROBABILITIES = "probabilities"
# Layers kept float32 under a mixed precision policy.
FLOAT32_LAYERS = (LOGITS, PROBABILITIES)

# Running statistics that follow the weights within a few dozen steps: with the default 0.99
# they lag behind fast early training and validation accuracy swings wildly between epochs.
BN_MOMENTUM = 0.9

PREPROCESSING = ("unit", "tf", "torch", "caffe")
STRATEGIES = ("supervised", "supcon")


class UnknownArchitecture(ValueError):
    """An architecture name that is not in the registry."""


class WeightsUnavailable(ValueError):
    """Pretrained weights that could not be downloaded, found or matched to the backbone."""


@dataclass(frozen=True)
class Arch:
    """One architecture: `builder` names its function in bloodcell.networks, which maps the
    preprocessed input tensor to features (`builder(x, weights=None)`)."""

    name: str
    description: str
    builder: str
    input_size: int
    min_size: int
    preprocessing: str
    backbone: bool = False
    strategy: str = "supervised"
    learning_rate: float = 2e-3  # the peak learning rate when the user names none


def _table(*rows: Arch) -> dict[str, Arch]:
    for row in rows:
        assert row.preprocessing in PREPROCESSING and row.strategy in STRATEGIES, row
    return {row.name: row for row in rows}


REGISTRY: dict[str, Arch] = _table(
    Arch(
        "cnn", "Custom residual CNN trained from scratch (the default model's design)", "cnn", 80, 32, "unit"
    ),
    Arch("cnn-gn", "The custom residual CNN with GroupNorm instead of BatchNorm", "cnn_gn", 80, 32, "unit"),
    Arch(
        "cnn-deep",
        "The custom residual CNN with a second block in its widest stage",
        "cnn_deep",
        80,
        32,
        "unit",
    ),
    Arch(
        "unet",
        "U-Net-style encoder-decoder with skip connections and a classification head",
        "unet",
        64,
        32,
        "unit",
    ),
    Arch("resnet50", "ResNet50 (ImageNet weights optional)", "resnet50", 224, 32, "caffe", backbone=True),
    Arch(
        "densenet201",
        "DenseNet-201 (ImageNet weights optional)",
        "densenet201",
        224,
        32,
        "torch",
        backbone=True,
    ),
    # 13 plain convolutions without normalisation: Adam at the others' 2e-3 swings its loss up
    # again after the warm-up and learns little in the comparison's 8 epochs
    Arch(
        "vgg16",
        "VGG-16 (ImageNet weights optional)",
        "vgg16",
        224,
        32,
        "caffe",
        backbone=True,
        learning_rate=5e-4,
    ),
    Arch(
        "mobilenetv2", "MobileNet-V2 (ImageNet weights optional)", "mobilenetv2", 224, 32, "tf", backbone=True
    ),
    Arch(
        "inceptionv3", "InceptionV3 (ImageNet weights optional)", "inceptionv3", 299, 75, "tf", backbone=True
    ),
    Arch("xception", "Xception (ImageNet weights optional)", "xception", 299, 71, "tf", backbone=True),
    Arch(
        "hybrid",
        "InceptionV3 + Xception on the same image, pooled features joined, one head",
        "hybrid",
        299,
        75,
        "tf",
        backbone=True,
    ),
    Arch(
        "supcon",
        "Supervised contrastive learning: the custom CNN encoder + projection head, then a classifier",
        "cnn",
        80,
        32,
        "unit",
        strategy="supcon",
    ),
)


def get(name: str) -> Arch:
    """The registered architecture called `name`; fails loudly on an unknown name."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownArchitecture(
            f"Unknown architecture '{name}'; choose one of: {', '.join(REGISTRY)}."
        ) from None


def seen_side(arch: Arch, size: int, crop: float = 1.0) -> int:
    """The side in pixels the network proper sees of a `size` px image cut to its central
    `crop`; refuses a crop or a size the architecture cannot take, in a sentence."""
    if not 0.3 <= crop <= 1.0:
        raise ValueError(f"crop is the central share of the image's side kept, from 0.3 to 1; not {crop}.")
    seen = round(size * crop)
    if seen < arch.min_size:
        raise ValueError(f"{arch.name} needs images of at least {arch.min_size} px; {seen} was asked for.")
    return seen


def build(
    name: str,
    num_classes: int,
    input_size: int | None = None,
    weights: str | None = None,
    crop: float = 1.0,
):
    """Build architecture `name` (a keras.Model) for `num_classes` classes at `input_size` (its
    default if None), seeing the central `crop` of the image (see `seen_side`)."""
    from bloodcell import networks

    return networks.build(get(name), num_classes, input_size, weights, crop)


def all_layers(model):
    """Every layer of `model`, those of nested models included."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def crop_side(model) -> int | None:
    """The side in pixels of the central crop `model` sees (see `seen_side`); None if it sees all."""
    crops = [layer for layer in all_layers(model) if layer.name == CROP]
    return crops[0].output.shape[1] if crops else None


def flops(model) -> int:
    """Floating-point operations (a multiply-add counts 2) of one image's forward pass through
    the convolutions and dense layers, which hold nearly all of a model's work."""
    import numpy as np
    from keras import layers

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
