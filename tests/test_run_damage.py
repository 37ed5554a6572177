"""A run directory with any one file removed, truncated or emptied: every command answers with
a sentence (exit 0 or 2), never a traceback, and `runs`/`table` skip the damaged run with a note."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bloodcell import cli, runs
from bloodcell.classes import CLASSES
from tests.conftest import ROOT, cell_image

# Every file a finished training run writes; `test_the_damage_matrix_covers_every_file` fails
# when a run gains a file, so that the new file is damaged here too.
FILES = (
    "run.json",
    "metrics.json",
    "confusion.json",
    "history.csv",
    "predictions.npz",
    "calibration.json",
    "trust.npz",
    "progress.json",
    "model.keras",
    "model.keras.sha256",
)
DAMAGES = ("removed", "truncated", "emptied")
IMAGE = "basophil/c0.png"
COMMANDS = {
    "runs": ["runs"],
    "table": ["table"],
    "predict": ["predict", "{data}/" + IMAGE, "--model", "{run}", "--json"],
    "evaluate": ["evaluate", "--data", "{data}", "--model", "{run}", "--test-split"],
    "rescore": ["rescore", "--model", "{run}"],
    "misses": ["misses", "{run}"],
    "robustness": ["robustness", "--data", "{data}", "--model", "{run}", "--cells", "8"],
}
ERROR = re.compile(r"error: \S.*\.")
NOTE = re.compile(r"skipped: Run \S+ .*\.")


def damage(path: Path, how: str) -> None:
    """Remove `path`, cut it to half its bytes, or leave it well-formed but empty."""
    if how == "removed":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif path.suffix == ".json":
        path.write_text("{}")
    elif path.suffix == ".npz":
        np.savez(path)
    elif path.suffix == ".csv":
        path.write_text("epoch,accuracy\n1,\n")
    else:
        path.write_bytes(b"")


def assert_answered_in_words(code: int, out: str, err: str) -> None:
    """Exit 0 with an answer, or exit 2 with an error sentence; notes are sentences too."""
    assert "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("skipped")]
    assert all(NOTE.fullmatch(line) for line in notes), notes
    if code == 2:
        assert ERROR.fullmatch(err.strip().splitlines()[-1]), err
    else:
        assert code == 0 and (out.strip() or notes or err.strip()), (code, out, err)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, str]:
    """(artifacts, data, run id): a finished 32 px run of one epoch on 80 generated cells."""
    base = tmp_path_factory.mktemp("damage")
    data = base / "data"
    for k, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        for i in range(10):
            cell_image(k, size=48, seed=100 * k + i).save(data / name / f"c{i}.png")
    private = {"BLOODCELL_ARTIFACTS": str(base / "artifacts"), "BLOODCELL_CACHE": str(base / "cache")}
    command = ["train", "--arch", "cnn", "--data", str(data), "--image-size", "32", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bloodcell", *command, "--batch-size", "16", "--set-default"],
        cwd=ROOT,
        env={**os.environ, **private},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return base / "artifacts", data, (base / "artifacts" / "default").read_text().strip()


@pytest.fixture
def copy(trained, tmp_path, monkeypatch) -> tuple[Path, Path, str]:
    """A private copy of the trained run's artifacts, which the test may damage."""
    artifacts, data, run_id = trained
    shutil.copytree(artifacts, tmp_path / "artifacts")
    monkeypatch.setenv("BLOODCELL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("BLOODCELL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "artifacts" / "runs" / run_id, data, run_id


@pytest.mark.slow
def test_the_damage_matrix_covers_every_file(trained):
    artifacts, _, run_id = trained
    assert sorted(p.name for p in (artifacts / "runs" / run_id).iterdir()) == sorted(FILES)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("file", FILES)
def test_every_command_answers_a_damaged_run_in_words(copy, capsys, file, how, command):
    run_dir, data, run_id = copy
    damage(run_dir / file, how)
    args = [a.format(data=data, run=run_id) for a in COMMANDS[command]]
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert_answered_in_words(code, out, err)
    if command in ("runs", "table") and file in ("run.json", "metrics.json") and how == "truncated":
        assert f"skipped: Run {run_id} lacks" in err and run_id not in out


# The defects of issue #17, each on a small run without training (not slow).


def served_copy(served_model) -> runs.Run:
    """`served_model` with test predictions and a familiarity model, as a trained run has."""
    served_model.write_predictions(logits=np.zeros((1, 8)), labels=np.array([0]), files=np.array([IMAGE]))
    served_model.write_json("metrics.json", {"accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5})
    return served_model


@pytest.mark.parametrize(
    "file, how, words",
    [
        ("trust.npz", "truncated", "its familiarity model (trust.npz is damaged)"),
        ("run.json", "emptied", "its 'classes' entry (run.json has none)"),
        ("run.json", "truncated", "has no readable run.json"),
    ],
)
def test_predict_names_the_damaged_file_and_exits_2(served_model, tmp_path, capsys, file, how, words):
    np.savez(served_model.path / "trust.npz", mean=np.zeros(4), precision=np.eye(4))
    cell_image(0).save(tmp_path / "cell.png")
    damage(served_model.path / file, how)
    assert cli.main(["predict", str(tmp_path / "cell.png"), "--model", served_model.id]) == 2
    err = capsys.readouterr().err
    assert words in err and ERROR.fullmatch(err.strip().splitlines()[-1]), err


def test_evaluate_on_the_test_split_of_a_run_with_truncated_predictions_says_so(
    served_model, tiny_dataset, capsys
):
    run = served_copy(served_model)
    damage(run.path / "predictions.npz", "truncated")
    code = cli.main(["evaluate", "--data", str(tiny_dataset), "--model", run.id, "--test-split"])
    err = capsys.readouterr().err
    assert code == 2 and "its test predictions (predictions.npz is damaged)" in err
    assert ERROR.fullmatch(err.strip().splitlines()[-1]), err


def test_runs_and_table_skip_a_damaged_run_with_a_note(served_model, capsys):
    good = served_copy(served_model)
    broken = runs.create("broken", {"arch": "cnn"})
    broken.update(status="finished")
    damage(broken.path / "run.json", "truncated")
    for command in (["runs"], ["table"]):
        assert cli.main(command) == 0
        out, err = capsys.readouterr()
        assert good.id in out and broken.id not in out
        assert f"skipped: Run {broken.id} lacks its record (run.json is damaged)." in err.splitlines()


def test_a_damaged_run_costs_a_subprocess_no_traceback(served_model, env, tmp_path):
    np.savez(served_model.path / "trust.npz", mean=np.zeros(4), precision=np.eye(4))
    damage(served_model.path / "trust.npz", "truncated")
    cell_image(0).save(tmp_path / "cell.png")
    done = subprocess.run(
        [sys.executable, "-m", "bloodcell", "predict", str(tmp_path / "cell.png"), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "trust.npz is damaged" in done.stderr.strip().splitlines()[-1]


def test_a_run_with_one_unreadable_entry_keeps_its_record_json_downloadable(served_model):
    from bloodcell import results

    served_copy(served_model)
    damage(served_model.path / "metrics.json", "truncated")
    stored = results.read(served_model)
    assert stored.metrics == {} and stored.record["arch"] == "cnn"
    assert json.loads(results.record_json(stored))["lacks"] == ["its test scores (metrics.json is damaged)"]
