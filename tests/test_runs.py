import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from bloodcell import archs, processes, runs, storage


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


def test_a_reused_pid_does_not_keep_a_run_running(artifacts):
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        run = runs.create("crashed", {})
        assert run.status == "running"  # this process, as recorded by create
        # the record of a process that died an hour ago; its pid is now another process's
        run.update(pid=stranger.pid, pid_start=None, started=time.time() - 3600)
        assert run.status == "interrupted"
        identity = processes.process_identity(stranger.pid)
        run.update(**{**identity, "pid_start": identity["pid_start"] + 1})
        assert run.status == "interrupted"
        run.update(**identity)
        assert run.status == "running"
        run.update(boot_id="another-boot")
        assert run.status == "interrupted"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_long_name_still_gives_valid_ids_when_suffixed(artifacts, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-120000")
    name = "x" * (120 - len("20260101-120000-"))  # the longest id that passes, before any suffix
    made = [runs.create(name, {}) for _ in range(3)]
    assert sorted(run.id for run in runs.all_runs()) == sorted(run.id for run in made)
    made.append(runs.create("y" * 300, {}))  # cut to fit, not refused
    assert len({run.id for run in made}) == 4 and len(runs.all_runs()) == 4
    assert all(runs.get(run.id).path == run.path for run in made)


def test_an_interrupted_checkpoint_leaves_the_previous_one_resumable(artifacts, monkeypatch):
    model = _model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    run = runs.create("checkpointed", {})
    run.save_checkpoint(model, 1, [{"epoch": 1, "loss": 2.0}], 10.0)
    first = model.get_weights()
    model.set_weights([w + 1 for w in first])

    def killed(self, **fields):
        raise KeyboardInterrupt  # the process is killed between saving the file and recording it

    with monkeypatch.context() as patch:
        patch.setattr(runs.Run, "update", killed)
        with pytest.raises(KeyboardInterrupt):
            run.save_checkpoint(model, 2, [], 20.0)
    loaded, epoch, curves = run.load_checkpoint()
    assert epoch == 1 and curves == [{"epoch": 1, "loss": 2.0}]
    for saved, original in zip(loaded.get_weights(), first, strict=True):
        np.testing.assert_array_equal(saved, original)

    run.save_checkpoint(model, 3, [], 30.0)
    assert run.load_checkpoint()[1] == 3
    assert [p.name for p in run.path.glob("checkpoint*.keras")] == [run.checkpoint_path.name]
    assert isinstance(run.load_checkpoint()[0].optimizer, keras.optimizers.Adam)
