"""The committed default model on real pool images it was not trained on."""

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


def test_default_model_classifies_each_class_of_its_test_split(classifier):
    config = classifier.run.record["config"]
    data = datasets.discover(POOL)
    assert data.fingerprint == classifier.run.record["dataset"]["fingerprint"]
    test = datasets.split(data, config["test_fraction"], config["val_fraction"], config["seed"]).test
    rng = np.random.default_rng(0)
    for k, name in enumerate(data.classes):
        sample = rng.choice(test[data.labels[test] == k], 25, replace=False)
        answers = classifier.predict([(str(data.files[i]), data.files[i]) for i in sample])
        recall = np.mean([a.label == name for a in answers])
        assert recall >= 0.92, f"{name}: {recall:.0%} of 25 test images right"


def test_default_model_record_is_complete(classifier):
    run = classifier.run
    assert run.status == "finished"
    assert run.metrics["accuracy"] >= 0.985
    assert set(run.confusion) == {"labels", "matrix"}
    assert len(run.history()) == run.record["epochs_run"]
    stored = run.predictions()
    assert stored["logits"].shape == (run.metrics["n"], 8)


def test_command_line_contract():
    result = subprocess.run(
        [sys.executable, "../shared/tools/check-contract.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert runs.default_id()
