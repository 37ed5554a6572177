"""The training options, declared once: name, type, default, limits and help of each.

`TrainConfig` is the frozen job description saved with every run (its `config` in run.json).
The `train` command's options (`add_arguments`) and the Training page's form (`Option.widget`)
are both generated from its fields, so the two cannot drift. Importing this module loads no
Keras or TensorFlow.
"""

import argparse
import dataclasses
import shlex
import typing
from dataclasses import dataclass, field

from bloodcell import archs

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant")
STRATEGIES = ("default", "mirrored", "multiworker")
# Above every architecture's own size (299 px): decoded in memory, the PBC pool is 3.2 GB at
# 299 px and would be 9.4 GB at 512. Batches are per replica.
MAX_IMAGE_SIZE = 320
MAX_BATCH_SIZE = 256
MAX_EPOCHS = 1000
MAX_SEED = 2**31 - 1
GROUPS = ("Model and input", "Optimisation", "Data and augmentation", "Split and evaluation", "Compute")


@dataclass(frozen=True)
class Option:
    """How one field of TrainConfig is offered: its command-line flag and its form widget."""

    name: str
    type: type
    default: object
    help: str
    label: str
    group: str
    optional: bool = False  # None is allowed and means "derived" (see the help)
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None  # the only values accepted
    offer: tuple | None = None  # the values the form offers, where it offers fewer than accepted
    page: bool = True  # offered on the Training page (False: the page sets it itself)
    step: float | None = None

    @property
    def flag(self) -> str:
        """The command-line flag; an option on by default is turned off by `--no-...`."""
        words = self.name.replace("_", "-")
        return f"--no-{words}" if self.type is bool and self.default is True else f"--{words}"

    def check(self, value) -> None:
        """Refuse a value outside the option's choices or limits, in a sentence."""
        if value is None and (self.optional or self.type is bool):
            return
        if self.choices is not None and value not in self.choices:
            listed = ", ".join(map(str, self.choices))
            raise ValueError(f"Unknown {self.name.replace('_', ' ')} '{value}'; choose one of: {listed}.")
        too_low = self.low is not None and value < self.low
        if too_low or (self.high is not None and value > self.high):
            bounds = f"at most {self.high}" if self.low is None else f"from {self.low} to {self.high}"
            if self.high is None:
                bounds = f"at least {self.low}"
            words = self.name.replace("_", " ")
            raise ValueError(f"The {words} must be {bounds} ({self.flag}); {value} was given.")

    def widget(self) -> tuple[str, dict]:
        """The Streamlit widget that offers this option: its function's name and arguments
        (the value comes from the session state the page keeps under the option's name)."""
        if self.type is bool:
            return "checkbox", {"help": self.help}
        if self.choices or self.offer:
            return "selectbox", {"options": list(self.offer or self.choices), "help": self.help}
        if self.type is str:
            return "text_input", {"help": self.help}
        number = {"min_value": self.low, "max_value": self.high, "help": self.help}
        if self.type is float:
            number |= {"step": self.step or 0.0001, "format": "%.5g"}
        else:
            number |= {"step": int(self.step or 1)}
        return "number_input", {k: v for k, v in number.items() if v is not None}


def option(default=dataclasses.MISSING, *, help: str, label: str, group: str, **limits):
    """A field of TrainConfig with what the command line and the form show of it."""
    return field(default=default, metadata={"help": help, "label": label, "group": group, **limits})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training job; saved, resolved, with its run."""

    arch: str = option(
        help=f"one of: {', '.join(archs.REGISTRY)}",
        label="Architecture",
        group=GROUPS[0],
        required=True,
        offer=tuple(archs.REGISTRY),
    )
    data: str = option(
        help="folder with one sub-folder per class",
        label="Dataset",
        group=GROUPS[0],
        required=True,
        page=False,
    )
    image_size: int | None = option(
        None,
        help="square input size in pixels (default: the architecture's)",
        label="Image size (px; empty: the architecture's)",
        group=GROUPS[0],
        low=16,
        high=MAX_IMAGE_SIZE,
        step=8,
    )
    crop: float = option(
        1.0,
        help="central share of the image's side the network sees (default: 1, the whole image)",
        label="Central crop",
        group=GROUPS[0],
        low=0.3,
        high=1.0,
        step=0.01,
    )
    framing: bool = option(
        False,
        help="find the cell in each picture and frame it at its own size, white-balanced (bloodcell.finder)",
        label="Frame the cell",
        group=GROUPS[0],
    )
    stain_augment: bool = option(
        False,
        help="also augment what differs between laboratories: stain mixing, zoom, blur, noise",
        label="Other laboratories' stains",
        group=GROUPS[2],
    )
    stain_spread: float = option(
        0.15,
        help="with stain augmentation, how far the random stain mixing reaches (0.15 mild, 0.3 strong)",
        label="Stain mixing spread",
        group=GROUPS[2],
        low=0.0,
        high=0.5,
        step=0.05,
    )
    focus_blur: int = option(
        1,
        help="with stain augmentation, the most passes of focus blur (1 ~ 1 px; 4 ~ 2 px, as blurry optics)",
        label="Focus blur passes",
        group=GROUPS[2],
        low=1,
        high=6,
    )
    epochs: int = option(
        30, help="passes over the training images", label="Epochs", group=GROUPS[1], low=1, high=MAX_EPOCHS
    )
    batch_size: int = option(
        64,
        help="images a step on each replica",
        label="Batch size",
        group=GROUPS[1],
        low=1,
        high=MAX_BATCH_SIZE,
    )
    optimizer: str = option(
        "adam",
        help="adam (AdamW with weight decay), sgd (Nesterov momentum 0.9) or rmsprop",
        label="Optimizer",
        group=GROUPS[1],
        choices=OPTIMIZERS,
    )
    learning_rate: float | None = option(
        None,
        help="peak learning rate (default: the architecture's, 0.002 for most; see `archs`)",
        label="Learning rate (empty: the architecture's)",
        group=GROUPS[1],
        low=1e-7,
        high=10.0,
    )
    schedule: str = option(
        "cosine",
        help="cosine decay after a linear warm-up, or constant",
        label="Schedule",
        group=GROUPS[1],
        choices=SCHEDULES,
    )
    warmup_epochs: int = option(
        2,
        help="epochs of linear warm-up (cosine schedule)",
        label="Warm-up epochs",
        group=GROUPS[1],
        low=0,
        high=MAX_EPOCHS,
    )
    weight_decay: float = option(
        5e-4, help="decoupled weight decay (0: off)", label="Weight decay", group=GROUPS[1], low=0.0, high=1.0
    )
    label_smoothing: float = option(
        0.1, help="label smoothing of the loss", label="Label smoothing", group=GROUPS[1], low=0.0, high=0.9
    )
    augment: bool = option(
        True,
        help="augmentation in training: flips, turns, rotation, zoom, colour jitter",
        label="Augmentation",
        group=GROUPS[2],
    )
    shuffle: bool = option(
        True, help="a new seeded training order every epoch", label="Shuffle", group=GROUPS[2]
    )
    class_weights: bool = option(
        False, help="weight the loss by inverse class frequency", label="Class weights", group=GROUPS[2]
    )
    smote: bool = option(
        False,
        help="SMOTE oversampling of the training split (imbalanced-learn)",
        label="SMOTE",
        group=GROUPS[2],
    )
    folds: int = option(
        0,
        help="stratified K-fold cross-validation (0: off)",
        label="Cross-validation folds",
        group=GROUPS[3],
        low=0,
        high=20,
    )
    patience: int = option(
        0,
        help="early stopping patience (0: off)",
        label="Early-stopping patience",
        group=GROUPS[1],
        low=0,
        high=MAX_EPOCHS,
    )
    head_epochs: int = option(
        5,
        help="supcon: classifier epochs",
        label="SupCon classifier epochs",
        group=GROUPS[1],
        low=1,
        high=MAX_EPOCHS,
    )
    fine_tune: bool = option(
        False, help="supcon: fine-tune everything afterwards", label="SupCon fine-tuning", group=GROUPS[1]
    )
    test_fraction: float = option(
        0.3,
        help="share of the images held out for the test",
        label="Test fraction",
        group=GROUPS[3],
        low=0.05,
        high=0.9,
        step=0.05,
    )
    val_fraction: float = option(
        0.2,
        help="share of the rest held out for validation",
        label="Validation fraction",
        group=GROUPS[3],
        low=0.05,
        high=0.9,
        step=0.05,
    )
    seed: int = option(
        0,
        help="initial weights, training order and augmentation",
        label="Seed",
        group=GROUPS[3],
        low=0,
        high=MAX_SEED,
    )
    split_seed: int | None = option(
        None,
        help="seed of the train/validation/test split and the folds (default: --seed)",
        label="Split seed (empty: the seed)",
        group=GROUPS[3],
        low=0,
        high=MAX_SEED,
    )
    weights: str | None = option(
        None,
        help="backbones only: none, imagenet or a local weights file",
        label="Backbone weights",
        group=GROUPS[0],
        offer=("none", "imagenet"),
    )
    keep_model: bool = option(
        True,
        help="keep the model file, to serve it (metrics, curves and calibration are kept either way)",
        label="Keep the model",
        group=GROUPS[3],
    )
    name: str = option(
        "", help="a label for the run id (default: the architecture)", label="Run name", group=GROUPS[3]
    )
    strategy: str = option(
        "default",
        help="one device; every GPU of this host; or the hosts of TF_CONFIG (TensorFlow backend)",
        label="Devices",
        group=GROUPS[4],
        choices=STRATEGIES,
        offer=("default", "mirrored"),
    )
    mixed_precision: bool = option(
        False,
        help="compute in float16 on GPUs, bfloat16 on CPUs; weights, logits and softmax stay float32",
        label="Mixed precision",
        group=GROUPS[4],
    )
    stream: bool = option(
        False,
        help="read images from their files batch by batch (tf.data) instead of holding them in memory",
        label="Read images from their files",
        group=GROUPS[4],
    )

    def __post_init__(self):
        arch = archs.get(self.arch)
        if self.weights in ("none", ""):
            object.__setattr__(self, "weights", None)
        for declared in OPTIONS:
            declared.check(getattr(self, declared.name))
        if self.stream and (self.smote or arch.strategy != "supervised"):
            raise ValueError(
                "SMOTE and contrastive pre-training need the images in memory; train them without --stream."
            )
        if self.folds == 1:
            raise ValueError("cross-validation needs at least 2 folds (or 0 for none).")
        if self.image_size is None:
            object.__setattr__(self, "image_size", arch.input_size)
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", arch.learning_rate)
        archs.seen_side(arch, self.image_size, self.crop)  # a crop or size the network cannot take
        if self.split_seed is None:
            object.__setattr__(self, "split_seed", self.seed)


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(TrainConfig)
    declared = []
    for f in dataclasses.fields(TrainConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        default = None if f.default is dataclasses.MISSING else f.default
        meta = dict(f.metadata)
        declared.append(
            Option(f.name, args[0] if args else hints[f.name], default, optional=bool(args), **meta)
        )
    return tuple(declared)


OPTIONS: tuple[Option, ...] = _options()
BY_NAME = {o.name: o for o in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` command's options, one per field of TrainConfig. Values are checked by the
    config (a sentence, exit status 2), not by argparse."""
    for o in OPTIONS:
        if o.type is bool:
            action = "store_false" if o.default else "store_true"
            shown = f"turn off: {o.help}" if o.default else o.help
            parser.add_argument(o.flag, dest=o.name, action=action, help=shown)
            continue
        extra = {"metavar": "{" + ",".join(o.choices) + "}"} if o.choices else {}
        default = None if o.required else o.default
        parser.add_argument(
            o.flag, dest=o.name, type=o.type, default=default, required=o.required, help=o.help, **extra
        )


def from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `train` arguments (others in `args` are ignored)."""
    return TrainConfig(**{o.name: getattr(args, o.name) for o in OPTIONS})


def stored(values: dict) -> TrainConfig:
    """The TrainConfig of a run record's `config`: options the record predates get their
    defaults, and keys no option has any more are left out, so older runs still load."""
    return TrainConfig(**{k: v for k, v in values.items() if k in BY_NAME})


def command(config: TrainConfig) -> str:
    """The `train` command line that gives `config`: the required options and those off their
    default, so a recorded run says how to train it again."""
    words = ["python -m bloodcell train"]
    defaults = TrainConfig(**{o.name: getattr(config, o.name) for o in OPTIONS if o.required})
    for o in OPTIONS:
        value = getattr(config, o.name)
        if not o.required and value == getattr(defaults, o.name):
            continue
        if o.type is bool:
            words.append(o.flag)
        elif value is not None:
            text = str(value)
            words.append(f"{o.flag} {shlex.quote(text)}")
    return " ".join(words)
