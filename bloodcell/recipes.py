"""Ready-made training recipes and the time a training job will take on this machine.

The Training page offers the recipes as presets that fill its form, and shows the estimate
before a job starts. No Keras here: the estimate scales the recorded timings of earlier runs.
"""

import os
import statistics
from dataclasses import dataclass

from bloodcell import archs, runs
from bloodcell.config import BY_NAME, OPTIONS, TrainConfig

DEFAULT_RECIPE = "the default model's recipe"
FIVE_MINUTES = "a five-minute look"
COMPARISON = "the comparison protocol"
PRESETS = (DEFAULT_RECIPE, FIVE_MINUTES, COMPARISON)

# The comparison protocol (README, "Comparisons"): 64 px, or 75 px for the networks that need
# more; 8 epochs, 4 for the three heaviest, whose 8 would take 40 to 70 minutes on 2 cores.
COMPARISON_SIZE, COMPARISON_LARGE_SIZE, COMPARISON_EPOCHS = 64, 75, 8
COMPARISON_SHORT = {"densenet201": 4, "xception": 4, "hybrid": 4}
# About five minutes on 2 cores: the residual CNN seeing the central 54 px of 80 px pictures
# (the cell, which the PBC pictures centre) for 8 epochs, plus decoding and calibration.
FIVE_MINUTE_LOOK = {"arch": "cnn", "image_size": 80, "crop": 0.67, "epochs": 8, "name": "look"}


def defaults() -> dict:
    """Every option the form shows at its declared default."""
    return {o.name: o.default for o in OPTIONS if o.page}


def preset(name: str, arch: str = "cnn") -> dict:
    """The form's values for preset `name`: every option at its default but those the recipe
    sets. The comparison protocol is the one for architecture `arch`."""
    if name == DEFAULT_RECIPE:
        record = runs.resolve(None).record
        chosen = {k: v for k, v in record.get("config", {}).items() if k in BY_NAME and BY_NAME[k].page}
    elif name == FIVE_MINUTES:
        chosen = dict(FIVE_MINUTE_LOOK)
    elif name == COMPARISON:
        chosen = comparison(arch)
    else:
        raise ValueError(f"Unknown preset '{name}'; choose one of: {', '.join(PRESETS)}.")
    return {**defaults(), **chosen}


def comparison(arch: str) -> dict:
    """The options of the comparison protocol's row for `arch`."""
    size = COMPARISON_SIZE if archs.get(arch).min_size <= COMPARISON_SIZE else COMPARISON_LARGE_SIZE
    epochs = COMPARISON_SHORT.get(arch, COMPARISON_EPOCHS)
    suffix = f"-e{epochs}" if epochs != COMPARISON_EPOCHS else ""
    return {
        "arch": arch,
        "image_size": size,
        "epochs": epochs,
        "keep_model": False,
        "name": f"cmp{size}-{arch}{suffix}",
    }


@dataclass(frozen=True)
class Estimate:
    """How long a job should take here (None: unknown), said in a sentence, and from which runs."""

    seconds: float | None
    sentence: str
    based_on: tuple[str, ...] = ()


def work(config: TrainConfig | dict, images: int) -> float:
    """Pixels the network sees, times training images, times epochs, over every fit: what a
    run's training time grows with. `images`: the pictures of the whole data folder."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    folds = get("folds", 0) or 0
    seen = round(get("image_size") * (get("crop", 1.0) or 1.0))
    rest = images * (1 - get("test_fraction", 0.3))
    fitted = rest * (folds - 1) if folds else rest * (1 - get("val_fraction", 0.2))
    return float(seen * seen * fitted * get("epochs"))


def this_machine(record: dict) -> bool:
    """Whether a run was trained on a machine like this one: as many CPUs, no accelerator."""
    versions = record.get("versions", {})
    return versions.get("cpus") == str(os.cpu_count()) and versions.get("accelerator") in (None, "none")


def _flags(config) -> tuple:
    """What changes the time of an epoch besides its work: options missing from an older record
    had their defaults."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return tuple(
        bool(get(k, BY_NAME[k].default)) for k in ("stain_augment", "mixed_precision", "stream", "augment")
    )


def estimate(config: TrainConfig, images: int, records: list[dict] | None = None) -> Estimate:
    """The time `config` should take on this machine for a data folder of `images` pictures,
    scaled from the finished runs of the same architecture trained here (`records`, default:
    every stored run), those trained most alike first."""
    if records is None:
        records = [run.record for run in runs.all_runs()]
    timed = []
    for record in records:
        done = record.get("config", {})
        if (
            record.get("status") != "finished"
            or done.get("arch") != config.arch
            or not record.get("train_seconds")
            or not this_machine(record)
        ):
            continue
        images_then = sum(record.get("dataset", {}).get("counts", {}).values())
        if images_then and done.get("image_size") and done.get("epochs"):
            epochs_run = record.get("epochs_run") or done["epochs"]
            effort = work({**done, "epochs": epochs_run}, images_then)
            timed.append((_flags(done) == _flags(config), record["train_seconds"] / effort, record))
    if not timed:
        return Estimate(
            None,
            f"No {config.arch} run has been trained on this machine yet, so there is nothing to "
            "estimate its time from; the first epoch's pace, shown once it starts, tells.",
        )
    alike = [t for t in timed if t[0]] or timed
    rate = statistics.median(rate for _, rate, _ in alike)
    # scoring and calibration after the last epoch: a few dozen seconds, whatever the epochs
    after = statistics.median(
        max(0.0, r.get("finished", 0.0) - r.get("started", 0.0) - r["train_seconds"]) for _, _, r in alike
    )
    seconds = rate * work(config, images) + after
    nearest = min(alike, key=lambda t: abs(t[2]["config"]["image_size"] - config.image_size))[2]
    example = (
        f"{nearest['id']}: {nearest['train_seconds'] / 60:.0f} min for {nearest['config']['epochs']} epochs "
        f"at {nearest['config']['image_size']} px"
    )
    sentence = (
        f"About {_duration(seconds)} on this machine ({os.cpu_count()} CPU cores), scaled by pixels, "
        f"images and epochs from {len(alike)} earlier {config.arch} run{'s' * (len(alike) > 1)} "
        f"trained here (such as {example})."
    )
    return Estimate(seconds, sentence, tuple(t[2]["id"] for t in alike))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"
