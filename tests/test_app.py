"""Every page through Streamlit's AppTest, uploads included."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from bloodcell import images
from tests.conftest import ROOT, awkward_inputs, cell_image, encode

APP = str(ROOT / "app.py")


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    if page != "pages/classify.py":
        app.switch_page(page)
        app.run()
    assert not app.exception, app.exception
    return app


def test_classify_one_image(served_model):
    app = open_page("pages/classify.py")
    assert app.selectbox[0].value == served_model.id
    app.file_uploader[0].set_value(("cell.png", encode(cell_image(3)), "image/png"))
    app.run()
    assert not app.exception
    assert app.metric[0].label == "Class"
    assert app.get("plotly_chart")


def test_classify_batch_with_an_unusable_file(served_model):
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.jpg", encode(cell_image(i), "JPEG"), "image/jpeg") for i in range(5)]
    files.append(("notes.jpg", b"this is text", "image/jpeg"))
    app.file_uploader[0].set_value(files)
    app.run()
    assert not app.exception
    assert "notes.jpg" in app.warning[0].value and "not a picture" in app.warning[0].value
    assert len(app.dataframe[0].value) == 5


def test_classify_a_labs_batch_adapted_to_it(served_model):
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.png", encode(cell_image(i, size=48, seed=i)), "image/png") for i in range(24)]
    app.file_uploader[0].set_value(files[:5])
    app.run()
    assert app.toggle[0].disabled  # too few cells to stand for a laboratory
    app.file_uploader[0].set_value(files)
    app.run()
    plain = [row["confidence"] for row in app.dataframe[0].value.to_dict("records")]
    app.toggle[0].set_value(True)
    app.run()
    assert not app.exception
    assert any("Adapted to this batch of 24 pictures" in c.value for c in app.caption)
    adapted = [row["confidence"] for row in app.dataframe[0].value.to_dict("records")]
    assert len(adapted) == 24 and adapted != plain


def test_classify_without_models_says_so(artifacts):
    import streamlit as st

    st.cache_resource.clear()
    app = open_page("pages/classify.py")
    assert "No trained model" in app.error[0].value


def test_about_page_shows_the_model_card(served_model):
    app = open_page("pages/about.py")
    assert app.title[0].value == "About bloodcell"
    assert [m.label for m in app.metric] == ["Architecture", "Input size", "Test accuracy", "Macro-F1"]


def test_results_page_compares_runs(served_model, tmp_path):
    import numpy as np

    served_model.write_json("metrics.json", metrics_for(0.9))
    (tmp_path / "platelet").mkdir()
    cell_image(7).save(tmp_path / "platelet" / "missed.png")
    served_model.update(dataset={"root": str(tmp_path)})
    served_model.write_predictions(
        logits=np.eye(8)[[0, 6]],
        labels=np.array([0, 7]),
        files=np.array(["basophil/a.png", "platelet/missed.png"]),
    )
    served_model.write_json(
        "confusion.json", {"labels": ["basophil", "platelet"], "matrix": [[9, 1], [0, 10]]}
    )
    served_model.write_history({"accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]})
    app = open_page("pages/results.py")
    table = app.dataframe[0].value
    assert list(table["run"]) == [served_model.id] and table["accuracy"][0] == 0.9
    assert app.multiselect[2].value == [served_model.id]
    charts = app.get("plotly_chart")
    assert len(charts) >= 4
    assert any("predicted" in chart.proto.spec for chart in charts)
    assert app.get("download_button")
    missed = app.dataframe[1].value
    assert list(missed["image"]) == ["platelet/missed.png"] and list(missed["missed by"]) == [1]
    assert app.caption[0].value == "1 of 2 test images are answered wrongly."
    assert "platelet/missed.png: answered neutrophil" in app.get("image")[0].proto.imgs[0].caption


def test_train_page_starts_a_job_and_shows_it(tiny_dataset, artifacts, monkeypatch):
    import time

    from bloodcell import jobs

    monkeypatch.setenv("BLOODCELL_DATA", str(tiny_dataset))
    app = open_page("pages/train.py")
    assert app.selectbox[0].value == "tiny"
    app.number_input[0].set_value(32)
    app.number_input[1].set_value(1)
    app.number_input[2].set_value(16)
    app.button[0].click()
    app.run()
    assert not app.exception and "started" in app.success[0].value
    job = jobs.all_jobs()[0]
    deadline = time.time() + 300
    while job.status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    assert job.status == "finished", job.log()
    app.run()
    assert any("Finished" in s.value for s in app.success)


def metrics_for(accuracy: float) -> dict:
    per_class = {
        c: {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": 10}
        for c in ("basophil", "platelet")
    }
    return {
        "n": 20,
        "accuracy": accuracy,
        "balanced_accuracy": accuracy,
        "macro_f1": accuracy,
        "per_class": per_class,
    }


def test_upload_of_every_awkward_input_answers_the_usable_and_names_the_rest(served_model):
    # the uploader offers image extensions only, so an .svg never reaches the page
    inputs = {n: v for n, v in awkward_inputs().items() if Path(n).suffix in images.EXTENSIONS}
    assert "drawing.svg" not in inputs and len(inputs) == len(awkward_inputs()) - 1
    app = open_page("pages/classify.py")
    app.file_uploader[0].set_value(
        [(name, data, "application/octet-stream") for name, (data, _) in inputs.items()]
    )
    app.run()
    assert not app.exception
    warnings = " ".join(w.value for w in app.warning)
    for name, (_, words) in inputs.items():
        if words is not None:
            assert name in warnings and words in warnings, name
    assert len(app.dataframe[0].value) == sum(words is None for _, words in inputs.values())
