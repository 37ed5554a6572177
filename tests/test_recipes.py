"""The Training page's recipes and the time a job is expected to take."""

import os

import pytest

from bloodcell import recipes, runs, storage
from bloodcell.config import TrainConfig


def record(arch="cnn", size=64, epochs=8, seconds=100.0, cpus=None, images=1000, **config) -> dict:
    """A finished run's record: `seconds` of training, 10 s of scoring afterwards."""
    return {
        "id": f"run-{arch}-{size}-{epochs}-{cpus}",
        "status": "finished",
        "config": {"arch": arch, "image_size": size, "epochs": epochs, "crop": 1.0, **config},
        "dataset": {"counts": {"a": images // 2, "b": images - images // 2}},
        "train_seconds": seconds,
        "started": 1000.0,
        "finished": 1000.0 + seconds + 10.0,
        "versions": {"cpus": str(cpus or os.cpu_count()), "accelerator": "none"},
    }


def test_the_estimate_scales_by_pixels_images_and_epochs():
    past = [record(), record(arch="unet", seconds=1.0), record(seconds=1.0, cpus=(os.cpu_count() or 1) + 8)]
    # twice the side, twice the images, half the epochs: 4 x 2 / 2 = 4 times the training time
    found = recipes.estimate(TrainConfig(arch="cnn", data="d", image_size=128, epochs=4), 2000, past)
    assert found.seconds == pytest.approx(4 * 100.0 + 10.0)
    assert found.based_on == ("run-cnn-64-8-None",)
    assert found.sentence.startswith("About 7 minutes on this machine")
    cropped = recipes.estimate(
        TrainConfig(arch="cnn", data="d", image_size=128, crop=0.5, epochs=8), 1000, past
    )
    assert cropped.seconds == pytest.approx(100.0 + 10.0)  # the network sees 64 px of the 128


def test_runs_trained_most_alike_are_preferred():
    past = [record(seconds=100.0), record(seconds=300.0, stain_augment=True)]
    plain = recipes.estimate(TrainConfig(arch="cnn", data="d", image_size=64, epochs=8), 1000, past)
    stained = TrainConfig(arch="cnn", data="d", image_size=64, epochs=8, stain_augment=True)
    assert plain.seconds == pytest.approx(110.0)
    assert recipes.estimate(stained, 1000, past).seconds == pytest.approx(310.0)


def test_without_a_comparable_run_the_estimate_says_so():
    found = recipes.estimate(TrainConfig(arch="vgg16", data="d"), 1000, [record()])
    assert found.seconds is None and "No vgg16 run has been trained on this machine" in found.sentence


def test_the_comparison_protocol_follows_the_readme():
    assert recipes.comparison("cnn") == {
        "arch": "cnn",
        "image_size": 64,
        "epochs": 8,
        "keep_model": False,
        "name": "cmp64-cnn",
    }
    assert recipes.comparison("inceptionv3")["image_size"] == 75
    assert recipes.comparison("xception")["name"] == "cmp75-xception-e4"
    assert recipes.comparison("densenet201")["epochs"] == 4


def test_every_preset_makes_a_valid_config(artifacts):
    run = runs.create(
        "recipe", {"config": {"arch": "cnn-deep", "data": "/elsewhere", "epochs": 48, "old": 1}}
    )
    storage.write_bytes(artifacts / "default", f"{run.id}\n".encode())
    for name in recipes.PRESETS:
        values = recipes.preset(name, "unet")
        assert "data" not in values and set(values) == set(recipes.defaults())
        TrainConfig(data="d", **values)
    assert recipes.preset(recipes.DEFAULT_RECIPE)["arch"] == "cnn-deep"
    assert recipes.preset(recipes.COMPARISON, "unet")["name"] == "cmp64-unet"
    with pytest.raises(ValueError, match="Unknown preset"):
        recipes.preset("a guess")
