"""tf.distribute strategies and mixed precision: real workers, real numbers."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from bloodcell import archs, distribute, images, runs, training
from tests.conftest import ROOT, cell_image


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker(index: int) -> dict:
    return {"type": "worker", "index": index}


@pytest.mark.slow
def test_two_workers_on_one_cluster_end_with_the_same_weights_and_one_run(tiny_dataset, artifacts):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    command = [sys.executable, "-m", "bloodcell", "train", "--arch", "cnn", "--data", str(tiny_dataset)]
    command += ["--epochs", "1", "--image-size", "32", "--batch-size", "8", "--strategy", "multiworker"]
    workers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": _worker(i)})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
        assert "multiworker: 2 replicas" in log
    digests = [line.split()[-1] for log in logs for line in log.splitlines() if line.startswith("weights")]
    assert len(digests) == 2 and digests[0] == digests[1]

    (stored,) = runs.all_runs()
    assert stored.status == "finished"
    assert stored.record["distribution"] == {
        "strategy": "multiworker",
        "replicas": 2,
        "batch_size_per_replica": 8,
        "global_batch_size": 16,
    }
    assert "the chief worker keeps the run" in logs[1]


def test_strategies_are_checked_before_any_work(monkeypatch):
    with pytest.raises(ValueError, match="choose one of"):
        distribute.place("parameter-server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.place("multiworker")
    assert distribute._is_chief({"cluster": {"worker": ["a", "b"]}, "task": _worker(0)})
    assert not distribute._is_chief({"cluster": {"worker": ["a", "b"]}, "task": _worker(1)})
    assert not distribute._is_chief({"cluster": {"chief": ["c"], "worker": ["a"]}, "task": _worker(0)})


@pytest.mark.slow
def test_mirrored_strategy_trains_a_run_with_mixed_precision(tiny_dataset, artifacts):
    config = training.TrainConfig(
        arch="cnn",
        data=str(tiny_dataset),
        image_size=32,
        epochs=1,
        batch_size=16,
        strategy="mirrored",
        mixed_precision=True,
    )
    run = training.train(config, log=lambda line: None)
    assert run.status == "finished"
    assert run.record["distribution"]["strategy"] == "mirrored"
    assert run.record["precision"] == "mixed_bfloat16"
    model = run.load_model()
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the mixed policy does not leak out


# bfloat16 keeps 8 bits of mantissa: a cell's probabilities may move by this much, no more.
MIXED_TOLERANCE = 0.02


def test_mixed_precision_answers_like_float32():
    keras.utils.set_random_seed(0)
    full = archs.build("cnn", 8, 64)
    with distribute.precision(True) as policy:
        mixed = archs.build("cnn", 8, 64)
    assert policy == "mixed_bfloat16"
    mixed.set_weights(full.get_weights())
    cells = np.stack([images.load(_png(cell_image(k % 8, seed=k)), 64) for k in range(32)])
    expected, got = full.predict(cells, verbose=0), mixed.predict(cells, verbose=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got - expected).max() <= MIXED_TOLERANCE
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.9


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
