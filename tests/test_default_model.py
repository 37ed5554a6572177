"""The committed default model on real pool images it was not trained on."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bloodcell import datasets, runs
from bloodcell.predictor import Classifier
from tests.conftest import POOL, ROOT, needs_pool

pytestmark = needs_pool


@pytest.fixture(scope="module")
def classifier(request):
    mp = pytest.MonkeyPatch()
    mp.delenv("BLOODCELL_ARTIFACTS", raising=False)
    request.addfinalizer(mp.undo)
    return Classifier.load()


@pytest.mark.slow
def test_default_model_classifies_each_class_of_its_test_split(classifier):
    record = classifier.run.record
    config = record["config"]
    data = datasets.discover(POOL)
    # trained on this pool, or on a copy of it and then scored on this pool (`rescore`)
    assert data.fingerprint == record.get("scored_on", record["dataset"])["fingerprint"]
    test = datasets.split(data, config["test_fraction"], config["val_fraction"], config["seed"]).test
    rng = np.random.default_rng(0)
    right = 0
    for k, name in enumerate(data.classes):
        sample = rng.choice(test[data.labels[test] == k], 25, replace=False)
        answers = classifier.predict([(str(data.files[i]), data.files[i]) for i in sample])
        hits = sum(a.label == name for a in answers)
        assert hits >= 22, f"{name}: only {hits} of 25 test images right"
        right += hits
    assert right / (25 * len(data.classes)) >= 0.97


def test_default_model_is_calibrated_and_mostly_confident(classifier):
    calibration = classifier.run.calibration
    assert calibration["test"]["after"]["ece"] < calibration["test"]["before"]["ece"]
    assert calibration["test_status"]["unfamiliar"] <= 0.02
    assert classifier.familiarity is not None and classifier.temperature == calibration["temperature"]


def test_default_model_record_is_complete(classifier):
    run = classifier.run
    assert run.status == "finished"
    assert run.metrics["accuracy"] >= 0.985
    assert set(run.confusion) == {"labels", "matrix"}
    assert len(run.history()) == run.record["epochs_run"]
    stored = run.predictions()
    assert stored["logits"].shape == (run.metrics["n"], 8)


@pytest.mark.slow
def test_command_line_contract(tmp_path):
    # a private artifacts folder holding the default run, so that `adapt` stores its run there
    artifacts = tmp_path / "artifacts"
    default = runs.default_id()
    shutil.copytree(ROOT / "artifacts" / "runs" / default, artifacts / "runs" / default)
    shutil.copy(ROOT / "artifacts" / "default", artifacts / "default")
    result = subprocess.run(
        [sys.executable, "../shared/tools/check-contract.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BLOODCELL_ARTIFACTS": str(artifacts)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adapt stored" in result.stdout
    assert sorted(p.name for p in (ROOT / "artifacts" / "runs").iterdir()) == sorted(
        p.name for p in (ROOT / "artifacts" / "runs").iterdir() if "contract-check" not in p.name
    )
