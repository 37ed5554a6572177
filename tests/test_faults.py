"""Faults: a training process killed mid-epoch, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bloodcell import runs
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_sigkill_leaves_an_interrupted_run_that_resumes(tiny_dataset, artifacts):
    earlier = runs.create("earlier", {})
    earlier.update(status="finished")
    before = (earlier.path / "run.json").read_bytes()
    command = [
        sys.executable,
        "-m",
        "bloodcell",
        "train",
        "--arch",
        "cnn",
        "--data",
        str(tiny_dataset),
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "6",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    deadline = time.time() + 300
    run = None
    while time.time() < deadline:
        found = [r for r in runs.all_runs() if r.id != earlier.id]
        if found and found[0].record.get("checkpoint_epoch", 0) >= 1:
            run = found[0]
            break
        time.sleep(0.05)
    assert run is not None, "training never completed its first epoch"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert run.status == "interrupted" and run.checkpoint_path.is_file()  # the one its record names
    assert not (run.path / "metrics.json").exists() and not run.has_model
    assert (earlier.path / "run.json").read_bytes() == before
    listed = subprocess.run(
        [sys.executable, "-m", "bloodcell", "runs"], cwd=ROOT, capture_output=True, text=True
    )
    assert "interrupted" in listed.stdout

    resumed = subprocess.run(
        [sys.executable, "-m", "bloodcell", "resume", run.id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stdout and "epoch 1/6" not in resumed.stdout
    record = json.loads((run.path / "run.json").read_text())
    assert record["status"] == "finished" and record["epochs_run"] == 6
    assert len(run.history()) == 6 and run.has_model


def test_only_interrupted_runs_resume(artifacts):
    done = runs.create("done", {})
    done.update(status="finished")
    result = subprocess.run(
        [sys.executable, "-m", "bloodcell", "resume", done.id], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "only an interrupted run" in result.stderr
