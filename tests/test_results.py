"""Comparing stored runs: the test images that runs sharing a split answer wrongly."""

import json

import numpy as np
import pytest

from bloodcell import cli, results, runs

CLASSES = ["basophil", "eosinophil", "ig", "neutrophil"]
FILES = np.array(["ig/b.jpg", "basophil/a.jpg", "neutrophil/d.jpg", "eosinophil/c.jpg"])
LABELS = np.array([2, 0, 3, 1])


def scored_run(name: str, answers: list[int], files=FILES, labels=LABELS) -> runs.Run:
    """A finished run whose test split is `files` and whose model answered `answers`."""
    run = runs.create(name, {"arch": "cnn", "classes": CLASSES})
    run.write_predictions(logits=np.eye(len(CLASSES))[answers] * 5.0, labels=labels, files=files)
    run.update(status="finished")
    return run


def test_misses_lists_each_wrong_image_with_every_runs_answer_most_missed_first(artifacts):
    # image by image: ig/b, basophil/a, neutrophil/d, eosinophil/c
    first = scored_run("first", [3, 0, 2, 1])  # misses ig/b and neutrophil/d
    second = scored_run("second", [3, 0, 3, 0])  # misses ig/b and eosinophil/c
    found = results.misses([first, second])
    assert found["runs"] == [first.id, second.id] and found["n"] == 4
    assert (found["missed_by_all"], found["missed_by_any"]) == (1, 3)
    assert found["images"] == [
        {
            "file": "ig/b.jpg",
            "true": "ig",
            "answers": {first.id: "neutrophil", second.id: "neutrophil"},
            "missed_by": 2,
        },
        {
            "file": "eosinophil/c.jpg",
            "true": "eosinophil",
            "answers": {first.id: "eosinophil", second.id: "basophil"},
            "missed_by": 1,
        },
        {
            "file": "neutrophil/d.jpg",
            "true": "neutrophil",
            "answers": {first.id: "ig", second.id: "neutrophil"},
            "missed_by": 1,
        },
    ]


def test_misses_refuses_runs_tested_on_other_images(artifacts):
    first = scored_run("first", [2, 0, 3, 1])
    other = scored_run("other", [2, 0, 3, 1], files=np.array(["ig/x.jpg", *FILES[1:]]))
    with pytest.raises(ValueError, match="share a test split"):
        results.misses([first, other])
    with pytest.raises(ValueError, match="at least one run"):
        results.misses([])


def test_misses_command_prints_a_table_and_writes_json(artifacts, tmp_path, capsys):
    first, second = scored_run("first", [3, 0, 3, 1]), scored_run("second", [2, 0, 3, 0])
    out = tmp_path / "misses.json"
    assert cli.main(["misses", first.id, second.id, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "4 test images: 2 missed by at least one run, 0 by all 2"
    assert printed[3:] == [
        "| eosinophil/c.jpg | eosinophil | 1 | eosinophil | basophil |",
        "| ig/b.jpg | ig | 1 | neutrophil | ig |",
    ]
    assert json.loads(out.read_text()) == results.misses([first, second])


# The Results page over runs with a missing or damaged file: it shows what exists and says what
# is missing, per run, in a sentence (issue #17).


def scored_served_run(run: runs.Run, root) -> runs.Run:
    """`run` with every file the Results page draws from, its data folder at `root`."""
    from tests.test_app import metrics_for

    run.write_json("metrics.json", metrics_for(0.9))
    run.update(dataset={"root": str(root)})
    run.write_predictions(
        logits=np.eye(8)[[0, 6]],
        labels=np.array([0, 7]),
        files=np.array(["basophil/a.png", "platelet/missed.png"]),
    )
    run.write_json("confusion.json", {"labels": ["basophil", "platelet"], "matrix": [[9, 1], [0, 10]]})
    run.write_history({"accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]})
    return run


def without_per_class(run: runs.Run) -> None:
    metrics = run.metrics
    del metrics["per_class"]
    run.write_json("metrics.json", metrics)


def truncated(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGED_FILES = {
    "no confusion.json": (
        lambda run: (run.path / "confusion.json").unlink(),
        "its confusion matrix (confusion.json is missing)",
    ),
    "no per_class in metrics.json": (without_per_class, "its per-class scores (metrics.json has none)"),
    "an empty history.csv cell": (
        lambda run: (run.path / "history.csv").write_text("epoch,accuracy,val_accuracy\n1,0.5,\n2,0.8,0.7\n"),
        "its training curves (history.csv is damaged)",
    ),
    "a truncated predictions.npz": (
        lambda run: truncated(run.path / "predictions.npz"),
        "its test predictions (predictions.npz is damaged)",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGED_FILES))
def test_results_page_shows_what_a_damaged_run_holds_and_names_what_it_lacks(served_model, tmp_path, case):
    from tests.test_app import open_page

    run = scored_served_run(served_model, tmp_path)
    spoil, words = DAMAGED_FILES[case]
    spoil(run)
    app = open_page("pages/results.py")
    assert not app.exception, app.exception
    warnings = [w.value for w in app.warning]
    assert any(w.startswith(f"Run {run.id} lacks ") and words in w and w.endswith(".") for w in warnings)
    assert app.dataframe[0].value["accuracy"][0] == 0.9 and app.get("plotly_chart")  # what exists is shown


def test_results_page_lists_a_run_with_a_truncated_run_json_and_compares_the_others(served_model, tmp_path):
    from tests.test_app import open_page

    good = scored_served_run(served_model, tmp_path)
    broken = scored_run("broken", [0, 0, 0, 0])
    truncated(broken.path / "run.json")
    app = open_page("pages/results.py")
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert set(table["run"]) == {good.id, broken.id}
    assert list(table.loc[table["run"] == broken.id, "status"]) == ["damaged"]
    assert f"Run {broken.id} lacks its record (run.json is damaged)." in [w.value for w in app.warning]
    assert app.multiselect[2].value == [good.id] and len(app.get("plotly_chart")) >= 4


def test_results_page_shows_no_picture_from_outside_the_recorded_data_folder(served_model, tmp_path):
    from tests.conftest import cell_image
    from tests.test_app import open_page

    data, secret = tmp_path / "data", tmp_path / "secret"
    (data / "platelet").mkdir(parents=True)
    secret.mkdir()
    for path in (data / "platelet" / "missed.png", secret / "a.png", secret / "b.png"):
        cell_image(7).save(path)
    (data / "platelet" / "link.png").symlink_to(secret / "b.png")
    names = ["../secret/a.png", str(secret / "b.png"), "platelet/link.png", "platelet/missed.png"]
    scored_served_run(served_model, data).write_predictions(
        logits=np.eye(8)[[6] * 4], labels=np.array([7] * 4), files=np.array(names)
    )
    app = open_page("pages/results.py")
    assert not app.exception, app.exception
    shown = [image.caption for element in app.get("image") for image in element.proto.imgs]
    assert len(shown) == 1 and shown[0].startswith("platelet/missed.png: answered")


def test_missed_pictures_refuse_names_that_leave_the_recorded_folder(tmp_path):
    from tests.conftest import cell_image

    data, secret = tmp_path / "data", tmp_path / "secret"
    (data / "ig").mkdir(parents=True)
    secret.mkdir()
    cell_image(2).save(data / "ig" / "b.png")
    cell_image(2).save(secret / "x.png")
    names = ["../secret/x.png", str(secret / "x.png"), "ig/../../secret/x.png", "ig/missing.png", "ig/b.png"]
    found = {"missed_by_all": len(names), "images": [{"file": name} for name in names]}
    pictures = results.missed_pictures({"dataset": {"root": str(data)}}, found)
    assert [(path, image["file"]) for path, image in pictures] == [
        ((data / "ig" / "b.png").resolve(), "ig/b.png")
    ]
    assert results.missed_pictures({}, found) == []
