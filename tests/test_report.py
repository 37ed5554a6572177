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
    table = list(csv.reader(io.StringIO(differential_csv(report, "run-1"))))
    assert ["Neutrophil", "6", "60.0"] in table
    cells = list(csv.DictReader(io.StringIO(cells_csv(answers, "run-1"))))
    assert len(cells) == len(answers) and cells[-1]["status"] == "unusable"


def test_no_white_cells_gives_no_ratio():
    report = differential([answer("p", "platelet")])
    assert report["white_cells"] == 0 and report["erythroblasts_per_100_white"] is None


def test_every_export_names_the_model_run_that_answered():
    answers = [answer("n", "neutrophil"), Prediction("bad.jpg", error="The file is empty.")]
    cells = list(csv.DictReader(io.StringIO(cells_csv(answers, "20260101-000000-cnn"))))
    assert [row["model run"] for row in cells] == ["20260101-000000-cnn"] * 2
    table = list(csv.reader(io.StringIO(differential_csv(differential(answers), "20260101-000000-cnn"))))
    assert table[-1] == ["Model run", "20260101-000000-cnn", ""]


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tcell", "\rcell"])
def test_file_names_that_would_run_as_spreadsheet_formulas_stay_text(name):
    answers = [answer(name, "neutrophil"), Prediction(name, error="The file is empty.")]
    rows = list(csv.DictReader(io.StringIO(cells_csv(answers, "run"))))
    assert [row["file"] for row in rows] == ["'" + name] * 2
    plain = list(csv.DictReader(io.StringIO(cells_csv([answer("cell-1.png", "neutrophil")], "run"))))
    assert plain[0]["file"] == "cell-1.png" and plain[0]["confidence"] == "0.9700"
