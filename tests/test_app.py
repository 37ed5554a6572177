"""Every page through Streamlit's AppTest, uploads included."""

from pathlib import Path

import pytest
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


@pytest.mark.slow
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


def test_classify_a_field_finds_draws_and_counts_every_cell(served_model):
    from PIL import Image

    from tests.test_finder import field, smear

    app = open_page("pages/classify.py")
    picture, _ = field()
    files = [
        ("field.png", encode(Image.fromarray(picture)), "image/png"),
        ("cell.png", encode(Image.fromarray(smear())), "image/png"),
    ]
    app.file_uploader[0].set_value(files)
    app.run()
    assert not app.exception
    assert any(
        "single cells: 1; as microscope fields: 1 (decided per picture" in c.value for c in app.caption
    )
    assert any(h.value.startswith("field.png: 3 cells, 3 platelets") for h in app.subheader)
    cells = app.dataframe[0].value
    assert list(cells["cell"]) == [1, 2, 3]
    assert app.get("image")  # the field drawn with its numbered boxes
    app.radio[0].set_value("single cells")  # the user overrides: the field is answered as one cell
    app.run()
    assert any("microscope field" in w.value for w in app.warning)
    assert not any(h.value.startswith("field.png:") for h in app.subheader)


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


@pytest.mark.slow
def test_train_page_starts_a_job_and_shows_it(tiny_dataset, artifacts, monkeypatch):
    import time

    from bloodcell import jobs

    monkeypatch.setenv("BLOODCELL_DATA", str(tiny_dataset))
    app = open_page("pages/train.py")
    assert app.selectbox(key="train.dataset").value == "tiny"
    app.number_input(key="train.image_size").set_value(32)
    app.number_input(key="train.epochs").set_value(1)
    app.number_input(key="train.batch_size").set_value(16)
    app.checkbox(key="train.framing").check()
    app.run()
    assert "No cnn run has been trained on this machine yet" in app.info[0].value
    next(b for b in app.button if b.label == "Start training").click()
    app.run()
    assert not app.exception and "started" in app.success[0].value
    job = jobs.all_jobs()[0]
    assert job.record["config"]["framing"] is True and job.record["config"]["stain_augment"] is False
    deadline = time.time() + 300
    while job.status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    assert job.status == "finished", job.log()
    app.run()
    assert any("Finished" in s.value for s in app.success)


def test_train_page_presets_fill_the_form_and_the_time_is_estimated(tiny_dataset, served_model, monkeypatch):
    from bloodcell import config, recipes

    monkeypatch.setenv("BLOODCELL_DATA", str(tiny_dataset))
    import os

    served_model.update(
        config={"arch": "cnn", "data": "elsewhere", "image_size": 32, "epochs": 48},
        train_seconds=60.0,
        finished=served_model.record["started"] + 70.0,
        dataset={"counts": {"basophil": 100}},
        versions={"cpus": str(os.cpu_count()), "accelerator": "none"},
    )
    app = open_page("pages/train.py")
    shown = {
        w.key.removeprefix("train.")
        for kind in ("number_input", "checkbox", "selectbox", "text_input")
        for w in app.get(kind)
    }
    assert shown >= {o.name for o in config.OPTIONS if o.page}  # the form offers every option

    def preset(name: str) -> None:
        next(b for b in app.button if b.label == name.capitalize()).click()
        app.run()
        assert not app.exception and not app.error, app.error

    preset(recipes.FIVE_MINUTES)
    assert app.number_input(key="train.image_size").value == 80
    assert (
        app.number_input(key="train.crop").value == 0.67 and app.number_input(key="train.epochs").value == 8
    )
    app.selectbox(key="train.arch").set_value("inceptionv3")
    app.run()
    preset(recipes.COMPARISON)
    assert (
        app.number_input(key="train.image_size").value == 75
        and not app.checkbox(key="train.keep_model").value
    )
    assert app.text_input(key="train.name").value == "cmp75-inceptionv3"
    preset(recipes.DEFAULT_RECIPE)
    assert app.selectbox(key="train.arch").value == "cnn" and app.number_input(key="train.epochs").value == 48
    assert app.number_input(key="train.crop").value == 1.0  # back to its default: a preset is whole
    # the served run: finished and timed on this machine, so it is what the estimate scales from
    assert "About" in app.info[0].value and served_model.id in app.info[0].value
    app.selectbox(key="train.arch").set_value("inceptionv3")  # 32 px: too small for it
    app.run()
    assert "at least 75 px" in app.error[0].value
    assert next(b for b in app.button if b.label == "Start training").disabled


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


def stored_model(name: str):
    """Another finished run with an untrained 32 px model, beside the served one."""
    from bloodcell import archs, runs
    from bloodcell.classes import CLASSES

    run = runs.create(name, {"arch": "cnn", "classes": list(CLASSES), "image_size": 32})
    run.save_model(archs.build("cnn", len(CLASSES), input_size=32))
    run.update(status="finished")
    return run


def bad_exif_jpeg() -> bytes:
    """A cell whose EXIF turns it and holds a tag Pillow cannot write back."""
    import struct

    fields = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x0128, 4, 1, struct.pack("<I", 100_000))]
    ifd = struct.pack("<H", 2) + b"".join(struct.pack("<HHI", *f[:3]) + f[3] for f in fields)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    return encode(cell_image(4), "JPEG", exif=exif)


def test_a_malformed_exif_block_costs_neither_the_picture_nor_the_batch(served_model):
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.jpg", encode(cell_image(i), "JPEG"), "image/jpeg") for i in range(3)]
    app.file_uploader[0].set_value([*files, ("camera.jpg", bad_exif_jpeg(), "image/jpeg")])
    app.run()
    assert not app.exception and not app.warning
    assert list(app.dataframe[0].value["file"]) == ["cell0.jpg", "cell1.jpg", "cell2.jpg", "camera.jpg"]


def test_reruns_decode_nothing_again(served_model, monkeypatch):
    import streamlit as st

    st.cache_data.clear()
    decoded = []
    read_image = images.read_image

    def counting(source, *args, **kwargs):
        decoded.append(source)
        return read_image(source, *args, **kwargs)

    monkeypatch.setattr(images, "read_image", counting)
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.png", encode(cell_image(i, seed=i)), "image/png") for i in range(4)]
    app.file_uploader[0].set_value(files)
    app.run()
    assert len(app.dataframe[0].value) == 4
    uploaded = {data for _, data, _ in files}  # not the warm-up's generated picture
    first = sum(source in uploaded for source in decoded)
    assert first == 2 * len(files)  # once for the model's answer, once for the thumbnail
    app.run()  # what a download button or any other click does
    app.run()
    assert not app.exception and sum(source in uploaded for source in decoded) == first
    assert len(app.dataframe[0].value) == 4


def test_a_batch_is_capped_with_a_sentence(served_model, monkeypatch):
    from bloodcell import ui

    monkeypatch.setattr(ui, "MAX_FILES", 3)
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.png", encode(cell_image(i, seed=i)), "image/png") for i in range(5)]
    app.file_uploader[0].set_value(files)
    app.run()
    assert not app.exception
    assert "at most 3 pictures" in app.warning[0].value and "other 2" in app.warning[0].value
    assert list(app.dataframe[0].value["file"]) == ["cell0.png", "cell1.png", "cell2.png"]


@pytest.mark.slow
def test_the_model_choice_survives_a_run_finishing_and_a_page_switch(served_model):
    second = stored_model("second")
    app = open_page("pages/classify.py")
    assert app.selectbox[0].options == [served_model.id, second.id]
    app.selectbox[0].set_value(second.id)
    app.run()
    stored_model("third")  # a training run finishes meanwhile
    app.run()
    assert len(app.selectbox[0].options) == 3 and app.selectbox[0].value == second.id
    app.switch_page("pages/about.py")
    app.run()
    app.switch_page("pages/classify.py")
    app.run()
    assert app.selectbox[0].value == second.id
    app.file_uploader[0].set_value(("cell.png", encode(cell_image(3)), "image/png"))
    app.run()
    assert not app.exception
    assert f"Answered by model run `{second.id}`." in [c.value for c in app.caption]


def test_a_16_bit_picture_is_shown_alone(served_model):
    import numpy as np
    from PIL import Image

    deep = Image.fromarray(np.asarray(cell_image(3).convert("L"), dtype=np.uint16) * 257)
    app = open_page("pages/classify.py")
    app.file_uploader[0].set_value(("deep.png", encode(deep), "image/png"))
    app.run()
    assert not app.exception
    assert app.metric[0].label == "Class"
    assert [image.caption for element in app.get("image") for image in element.proto.imgs][-1] == "Original"


def test_file_names_are_shown_as_text_not_markdown(served_model):
    name = "[see](http://e.vil) :red[x] $x$ **b**.jpg"
    app = open_page("pages/classify.py")
    app.file_uploader[0].set_value(
        [(name, b"not a picture", "image/jpeg"), ("cell.png", encode(cell_image(2)), "image/png")]
    )
    app.run()
    assert not app.exception
    escaped = r"\[see\]\(http\:\/\/e.vil\) \:red\[x\] \$x\$ \*\*b\*\*.jpg"
    assert app.warning[0].value.startswith(f"**{escaped}**: This file is not a picture")


def test_escaped_file_names_render_as_the_very_text():
    from markdown_it import MarkdownIt
    from markdown_it.common.utils import escapeHtml

    from bloodcell import ui

    markdown = MarkdownIt("commonmark").enable(["strikethrough", "table"])
    names = ["[a](http://x).png", "![t](http://x/i.png)", "<b>x</b>.jpg", "*a* _b_ ~~c~~ `d`.png"]
    names += ["&amp; \\ #1 +2 !x |y| {z}.tif", "cell-1.2_(copy).jpg"]
    for name in names:
        assert markdown.renderInline(ui.markdown_text(name)) == escapeHtml(name), name
    assert ui.markdown_text("two\nlines.png") == "two lines.png"
    assert ui.markdown_text("www.e.vil.png") == r"www\.e.vil.png"


def test_a_damaged_run_elsewhere_is_skipped_with_a_note(served_model):
    broken = stored_model("broken")
    (broken.path / "run.json").write_text('{"id": "broken", "sta')  # cut short
    app = open_page("pages/classify.py")
    assert app.selectbox[0].options == [served_model.id]
    assert any(broken.id in c.value and "left out" in c.value for c in app.caption)


def test_a_damaged_default_model_falls_back_to_the_newest_good_one(served_model):
    from bloodcell import runs

    newest = stored_model("newest")
    (served_model.path / runs.MODEL).write_bytes(b"damaged")
    app = open_page("pages/classify.py")
    app.file_uploader[0].set_value(("cell.png", encode(cell_image(3)), "image/png"))
    app.run()
    assert not app.exception
    assert "fails its checksum" in app.warning[0].value and newest.id in app.warning[0].value
    assert f"Answered by model run `{newest.id}`." in [c.value for c in app.caption]
    assert app.metric[0].label == "Class"


def test_a_default_naming_a_missing_run_falls_back_with_a_warning(served_model):
    from bloodcell import runs

    (runs.artifacts_dir() / "default").write_text("20200101-000000-gone\n")
    app = open_page("pages/classify.py")
    assert "20200101-000000-gone" in app.warning[0].value and "newest model serves" in app.warning[0].value
    assert app.selectbox[0].options == [served_model.id]
    app.file_uploader[0].set_value(("cell.png", encode(cell_image(3)), "image/png"))
    app.run()
    assert not app.exception and app.metric[0].label == "Class"


def test_a_damaged_only_model_is_a_sentence_not_a_traceback(served_model):
    from bloodcell import runs

    (served_model.path / runs.MODEL).write_bytes(b"damaged")
    app = open_page("pages/classify.py")
    app.file_uploader[0].set_value(("cell.png", encode(cell_image(3)), "image/png"))
    app.run()
    assert not app.exception and not app.metric
    assert "fails its checksum" in app.error[0].value and "No model can answer" in app.error[0].value


def test_classify_an_example_at_one_click(served_model, tmp_path, monkeypatch):
    from bloodcell import examples

    monkeypatch.setenv("BLOODCELL_EXAMPLES", str(tmp_path))
    for name, (folder, file, _) in examples.PICTURES.items():
        (tmp_path / folder / file).parent.mkdir(parents=True, exist_ok=True)
        k = list(examples.PICTURES).index(name)
        cell_image(k % 8, size=160).save(tmp_path / folder / file, format="JPEG")
    app = open_page("pages/classify.py")
    assert not app.metric and app.pills[0].options[0] == "basophil"
    app.pills[0].set_value("monocyte.jpg")
    app.run()
    assert not app.exception
    assert app.metric[0].label == "Class"
    assert any("Example monocyte.jpg: Acevedo" in c.value for c in app.caption)


def test_the_model_warms_in_a_thread_the_interpreter_waits_for():
    from bloodcell import ui

    ui.warm_up.clear()
    open_page("pages/about.py")  # app.py starts it from a script thread, itself a daemon
    warm = ui.warm_up()  # the thread it started, cached
    # a daemon thread still inside TensorFlow when the process exits aborts it (exit status 134)
    assert warm.name == "bloodcell-warm-up" and not warm.daemon
