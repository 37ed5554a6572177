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
