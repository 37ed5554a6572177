"""The training options' one declaration: limits, stored configs, and the form it generates."""

import dataclasses
import subprocess
import sys

import pytest

from bloodcell import config
from bloodcell.config import OPTIONS, TrainConfig
from tests.conftest import ROOT


def test_every_field_is_an_option_with_help_and_a_widget():
    assert [o.name for o in OPTIONS] == [f.name for f in dataclasses.fields(TrainConfig)]
    for option in OPTIONS:
        assert option.help and option.label and option.group in config.GROUPS, option.name
        kind, arguments = option.widget()
        assert kind in ("checkbox", "selectbox", "text_input", "number_input"), option.name
        if kind == "selectbox":
            assert option.default in (None, *arguments["options"]), option.name


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"optimizer": "adagrad"}, "Unknown optimizer 'adagrad'; choose one of: adam, sgd, rmsprop."),
        ({"strategy": "cloud"}, "Unknown strategy 'cloud'"),
        ({"epochs": 0}, "The epochs must be from 1 to 1000 (--epochs); 0 was given."),
        ({"crop": 0.1}, "The crop must be from 0.3 to 1.0 (--crop); 0.1 was given."),
        ({"folds": 1}, "at least 2 folds"),
        ({"arch": "alexnet"}, "Unknown architecture 'alexnet'"),
        ({"arch": "inceptionv3", "image_size": 64}, "at least 75 px"),
    ],
)
def test_a_value_out_of_its_limits_is_refused_with_its_flag(values, words):
    with pytest.raises(ValueError) as refused:
        TrainConfig(**{"arch": "cnn", "data": "d", **values})
    assert words in str(refused.value)


def test_derived_values_are_resolved_and_older_records_still_load():
    chosen = TrainConfig(arch="hybrid", data="d", seed=4, weights="none")
    assert chosen.image_size == 299 and chosen.split_seed == 4 and chosen.weights is None
    record = {**dataclasses.asdict(chosen), "retired_option": True}
    for older in ("stain_augment", "stain_spread", "focus_blur"):  # a run older than these options
        del record[older]
    assert config.stored(record) == chosen


def test_importing_the_configuration_loads_no_keras():
    code = "import sys\nimport bloodcell.config\nprint('keras' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False False"


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"image_size": 120, "crop": 0.67, "epochs": 48, "name": "a b"},
        {"framing": True, "stain_augment": True, "augment": False, "weights": "imagenet", "seed": 3},
        {"framing": True, "stain_augment": True, "stain_spread": 0.3, "focus_blur": 4},
    ],
)
def test_a_configs_command_line_gives_the_config_back(values):
    import argparse
    import shlex

    wanted = config.TrainConfig(arch="cnn", data="../pool with space", **values)
    words = shlex.split(config.command(wanted))
    assert words[:4] == ["python", "-m", "bloodcell", "train"]
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.from_arguments(parser.parse_args(words[4:])) == wanted


def test_the_learning_rate_defaults_to_the_architectures_and_a_given_one_stays():
    assert TrainConfig(arch="cnn", data=".").learning_rate == 2e-3
    assert TrainConfig(arch="vgg16", data=".", image_size=64).learning_rate == 5e-4
    assert TrainConfig(arch="vgg16", data=".", image_size=64, learning_rate=1e-3).learning_rate == 1e-3
    assert "--learning-rate" not in config.command(TrainConfig(arch="vgg16", data=".", image_size=64))
