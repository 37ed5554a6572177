import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bloodcell import runs
from tests.conftest import ROOT, awkward_inputs


def bloodcell(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "bloodcell", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_train_evaluate_predict_end_to_end(tiny_dataset, env, artifacts, tmp_path):
    trained = bloodcell(
        "train",
        "--arch",
        "cnn",
        "--data",
        str(tiny_dataset),
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--set-default",
        env=env,
    )
    assert trained.returncode == 0, trained.stderr
    assert "epoch 1/1" in trained.stdout and "test accuracy" in trained.stdout

    calibration = json.loads(next((artifacts / "runs").glob("*/calibration.json")).read_text())
    assert calibration["temperature"] > 0 and "after" in calibration["test"]

    # the same images in another format (as a compact copy for an accelerator would be) rescore it;
    # a folder whose split differs is refused
    copy, other = tmp_path / "copy", tmp_path / "other"
    for image in tiny_dataset.glob("*/*.png"):
        for root in (copy, other):
            (root / image.parent.name).mkdir(parents=True, exist_ok=True)
            Image.open(image).save(root / image.parent.name / f"{image.stem}.bmp")
    Image.open(image).save(other / image.parent.name / "one_more.bmp")
    rescored = bloodcell("rescore", "--data", str(copy), env=env)
    assert rescored.returncode == 0, rescored.stderr
    record = json.loads(next((artifacts / "runs").glob("*/run.json")).read_text())
    assert record["scored_on"]["root"] == str(copy.resolve()) and "test accuracy" in rescored.stdout
    refused = bloodcell("rescore", "--data", str(other), env=env)
    assert refused.returncode == 2 and "does not hold the images" in refused.stderr

    listed = bloodcell("runs", env=env)
    assert listed.returncode == 0 and "finished" in listed.stdout and listed.stdout.startswith("*")

    out = tmp_path / "metrics.json"
    evaluated = bloodcell("evaluate", "--data", str(tiny_dataset), "--out", str(out), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(out.read_text())
    assert result["n"] == 8 * 14
    assert {"accuracy", "balanced_accuracy", "macro_f1", "per_class", "labels", "confusion_matrix"} <= set(
        result
    )
    assert sum(map(sum, result["confusion_matrix"])) == 8 * 14

    # the run's own test images (rescored above, so their predictions are stored), with TTA
    tested = bloodcell("evaluate", "--data", str(tiny_dataset), "--test-split", "--tta", env=env)
    assert tested.returncode == 0, tested.stderr
    scored = json.loads(tested.stdout)
    assert scored["n"] == record["split"]["test"] and scored["test_time_augmentation"]
    for image in (copy / "monocyte").iterdir():
        image.unlink()
    refused = bloodcell("evaluate", "--data", str(copy), "--test-split", env=env)
    assert refused.returncode == 2 and "images run" in refused.stderr

    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    good = tiny_dataset / "monocyte" / "cell_0.png"
    predicted = bloodcell("predict", str(good), str(bad), "--json", env=env)
    assert predicted.returncode == 2
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert rows[0]["label"] in rows[0]["probabilities"]
    assert rows[0]["status"] in ("confident", "review", "unfamiliar")
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert rows[1]["file"].endswith("notes.jpg") and "not a picture" in rows[1]["error"]
    assert "Traceback" not in predicted.stderr


def test_archs_lists_the_registry(env):
    listed = bloodcell("archs", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[0] == "cnn"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["train", "--arch", "nonsense", "--data", "."], marks=pytest.mark.slow),
        ["evaluate", "--data", "/no/such/folder", "--model", "missing-run"],
        ["predict", "x.png", "--model", "../../etc"],
    ],
    ids=["unknown-arch", "missing-run", "path-escape"],
)
def test_bad_input_exits_2_with_a_sentence(env, args):
    result = bloodcell(*args, env=env)
    assert result.returncode == 2
    assert any(line.startswith("error: ") for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_predict_answers_every_awkward_input_or_refuses_it_in_words(served_model, env, tmp_path):
    inputs = awkward_inputs()
    for name, (data, _) in inputs.items():
        (tmp_path / name).write_bytes(data)
    result = bloodcell("predict", *(str(tmp_path / n) for n in inputs), "--json", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    rows = {Path(row["file"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == set(inputs)
    for name, (_, words) in inputs.items():
        if words is None:
            assert rows[name]["status"] in ("confident", "review", "unfamiliar"), name
        else:
            assert words in rows[name]["error"] and "label" not in rows[name], name


def test_every_training_option_is_on_the_command_line(env):
    from dataclasses import fields

    from bloodcell.config import TrainConfig

    shown = bloodcell("train", "--help", env=env).stdout
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool") and field.default:  # on by default: the flag turns it off
            flag = "--no-" + field.name.replace("_", "-")
        assert flag in shown, f"{flag} is missing from `train --help`"


@pytest.mark.slow
def test_evaluate_scores_an_ensemble_on_the_test_split_its_models_share(tiny_dataset, artifacts, capsys):
    import numpy as np

    from bloodcell import cli, datasets, evaluation, tested, training
    from bloodcell.predictor import Classifier

    def trained(size: int, seed: int):
        config = training.TrainConfig(
            arch="cnn", data=str(tiny_dataset), image_size=size, epochs=1, batch_size=16, seed=seed
        )
        return training.train(config, log=lambda line: None)

    small, large, other = trained(32, 0), trained(40, 0), trained(32, 1)
    args = ["evaluate", "--data", str(tiny_dataset), "--test-split", "--model", small.id, "--model", large.id]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == [small.id, large.id] and result["n"] == small.record["split"]["test"]
    assert result["model_ms_per_image"] > 0

    dataset = tested.images(datasets.discover(tiny_dataset), small)
    classifiers = [Classifier(run) for run in (small, large)]
    mean = np.mean(
        [c.analyse(np.stack([c.inputs(file) for file in dataset.files]))[0] for c in classifiers],
        axis=0,
    )
    classes = classifiers[0].classes
    labels = [classes.index(dataset.classes[y]) for y in dataset.labels]
    expected = evaluation.metrics(labels, mean, classes)
    assert result["confusion_matrix"] == expected["confusion_matrix"]
    assert result["accuracy"] == pytest.approx(expected["accuracy"])

    assert cli.main([*args[:-1], other.id]) == 2
    assert "tested on different images" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_fields_follows_the_contract(served_model, env, tmp_path):
    from tests.test_finder import BEIGE, field

    picture, whites = field()
    Image.fromarray(picture).save(tmp_path / "field.png")
    Image.new("RGB", (640, 480), BEIGE).save(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("not a picture")
    done = bloodcell(
        "predict",
        "--fields",
        "--json",
        *(str(tmp_path / n) for n in ("field.png", "empty.png", "notes.jpg")),
        env=env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    cells = [line for line in lines if line["file"].endswith("field.png")]
    assert len(cells) == 3
    for cell in cells:
        assert set(cell) >= {"file", "box", "label", "probabilities", "status"}
        x0, y0, x1, y1 = cell["box"]
        assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for cx, cy in whites)
    assert {"file": str(tmp_path / "empty.png"), "cells": 0} in lines
    assert any(line["file"].endswith("notes.jpg") and "error" in line for line in lines)


@pytest.mark.slow
def test_detect_measures_recall_precision_and_time_on_annotated_fields(served_model, env, tmp_path):
    from tests.test_finder import field

    picture, whites = field()
    Image.fromarray(picture).save(tmp_path / "f1.jpg", quality=95)
    boxes = "".join(
        f"<object><name>WBC</name><bndbox><xmin>{x - 60}</xmin><ymin>{y - 60}</ymin>"
        f"<xmax>{x + 60}</xmax><ymax>{y + 60}</ymax></bndbox></object>"
        for x, y in whites[:2]  # the third white cell is left unannotated: a false detection
    )
    (tmp_path / "f1.xml").write_text(
        f"<annotation>{boxes}<object><name>RBC</name><bndbox><xmin>0</xmin>"
        "<ymin>0</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    out = tmp_path / "detect.json"
    done = bloodcell("detect", "--data", str(tmp_path), "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["fields"] == 1 and result["white_cells"] == 2
    assert result["recall"] == 1.0 and result["found"] == 3 and result["precision"] == pytest.approx(2 / 3)
    assert result["class_right"] is None  # the annotations do not say which white cells they are
    assert result["ms_per_field"]["median"] > 0 and result["ms_12_megapixels"]["median"] > 0
    assert "| 2 | 100.0% | 3 | 66.7% | — (0) |" in done.stdout
    assert runs.get(served_model.id).read_json("detection.json") == result  # kept for docs/results.md


NO_MODEL_COMMANDS = [["--help"], ["archs"], ["runs"], ["table"], ["train", "--help"]]


@pytest.mark.parametrize("args", NO_MODEL_COMMANDS, ids=" ".join)
def test_commands_that_need_no_model_load_no_tensorflow(env, args):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['bloodcell', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('bloodcell', run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    assert end.code in (0, None), end.code\n"
    )
    assert heavy_modules_after(code, env) == "[]"


def test_every_command_module_imports_without_tensorflow(env):
    assert heavy_modules_after("from bloodcell import cli\ncli.parser()\n", env) == "[]"


def heavy_modules_after(code: str, env) -> str:
    """Which of TensorFlow, Keras and JAX a fresh interpreter has loaded after running `code`."""
    code = (
        "import sys\n"
        + code
        + "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_train_options_parse_into_the_config_they_declare():
    from bloodcell import cli
    from bloodcell.config import TrainConfig, from_arguments

    args = cli.parser("train").parse_args(
        ["train", "--arch", "cnn", "--data", "d", "--no-augment", "--epochs", "3", "--weights", "none"]
    )
    assert from_arguments(args) == TrainConfig(arch="cnn", data="d", augment=False, epochs=3)
    assert args.set_default is False


def test_evaluate_feeds_a_framing_model_the_cells_it_finds(framed_model, tiny_dataset, capsys):
    import numpy as np

    from bloodcell import cli, datasets, evaluation, images
    from bloodcell.predictor import Classifier

    assert cli.main(["evaluate", "--data", str(tiny_dataset)]) == 0
    result = json.loads(capsys.readouterr().out)

    classifier = Classifier(framed_model)
    dataset = datasets.discover(tiny_dataset)
    framed, labels = [], []
    for file, y in zip(dataset.files, dataset.labels, strict=True):
        try:
            framed.append(classifier.inputs(file))
        except images.UnusableImage:  # no stained cell found: `evaluate` skips it too
            continue
        labels.append(classifier.classes.index(dataset.classes[y]))
    assert len(labels) == result["n"] > 0
    framed = np.stack(framed)
    expected = evaluation.metrics(labels, classifier.analyse(framed)[0], classifier.classes)
    assert result["confusion_matrix"] == expected["confusion_matrix"]
