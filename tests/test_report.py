import csv
import io

import pytest

from bloodcell.predictor import Prediction
from bloodcell.report import cells_csv, differential, differential_csv


def answer(name, label, status="confident", p=0.97):
    return Prediction(
        name, label, {label: p, "platelet" if label != "platelet" else "basophil": 1 - p}, status
    )


def test_differential_counts_white_cells_apart_from_erythroblasts_and_platelets():
    answers = (
        [answer(f"n{i}", "neutrophil") for i in range(6)]
        + [answer(f"l{i}", "lymphocyte") for i in range(3)]
        + [answer("m", "monocyte"), answer("e1", "erythroblast"), answer("e2", "erythroblast")]
        + [answer("p", "platelet"), answer("doubt", "basophil", status="review", p=0.6)]
        + [Prediction("bad.jpg", error="The file is empty.")]
    )
    report = differential(answers)
    assert report["white_cells"] == 10
    assert report["white_percent"]["neutrophil"] == pytest.approx(60.0)
    assert report["white_percent"]["basophil"] == 0.0
    assert report["erythroblasts_per_100_white"] == pytest.approx(20.0)
    assert report["platelets"] == 1
    assert report["for_review"] == ["doubt"] and report["unusable"] == ["bad.jpg"]
    table = list(csv.reader(io.StringIO(differential_csv(report))))
    assert ["Neutrophil", "6", "60.0"] in table
    cells = list(csv.DictReader(io.StringIO(cells_csv(answers))))
    assert len(cells) == len(answers) and cells[-1]["status"] == "unusable"


def test_no_white_cells_gives_no_ratio():
    report = differential([answer("p", "platelet")])
    assert report["white_cells"] == 0 and report["erythroblasts_per_100_white"] is None
