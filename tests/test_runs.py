import os
import subprocess
import sys

import numpy as np
import pytest

from bloodcell import archs, runs, storage


def _model():
    return archs.build("cnn", 8, input_size=32)


def test_run_round_trip_gives_identical_predictions(artifacts):
    model = _model()
    run = runs.create("roundtrip", {"classes": ["a"] * 8, "image_size": 32})
    run.save_model(model)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    loaded = runs.get(run.id).load_model()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert run.record["model_sha256"] == (run.path / "model.keras.sha256").read_text().split()[0]


def test_tampered_model_is_refused(artifacts):
    run = runs.create("tampered", {"classes": [], "image_size": 32})
    run.save_model(_model())
    with (run.path / "model.keras").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(runs.RunError, match="checksum"):
        run.load_model()


def test_status_finished_running_and_interrupted(artifacts):
    run = runs.create("alive", {})
    assert run.status == "running"
    run.update(status="finished")
    assert runs.get(run.id).status == "finished"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    crashed = runs.create("crashed", {})
    crashed.update(pid=int(dead.stdout))
    assert crashed.status == "interrupted"
    assert [r.id for r in runs.all_runs()] == sorted([run.id, crashed.id], reverse=True)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "..", "x" * 200, "run id"])
def test_run_ids_cannot_escape_the_runs_folder(artifacts, bad):
    with pytest.raises(runs.RunError):
        runs.get(bad)


def test_default_run(artifacts):
    with pytest.raises(runs.RunError, match="No default model"):
        runs.default_id()
    run = runs.create("served", {})
    with pytest.raises(runs.RunError, match="kept no model"):
        runs.set_default(run.id)
    run.save_model(_model())
    runs.set_default(run.id)
    assert runs.resolve(None).id == run.id
    assert runs.resolve(str(run.path)).id == run.id


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    storage.write_json(target, {"accuracy": 0.9})

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(storage.StorageError, match="free disk space"):
        storage.write_json(target, {"accuracy": 0.1})
    assert storage.read_json(target) == {"accuracy": 0.9}
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_artifacts_folder_gives_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BLOODCELL_ARTIFACTS", str(blocker))
    with pytest.raises(storage.StorageError, match="writable"):
        runs.create("nowhere", {})
