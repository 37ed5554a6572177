"""Every page through Streamlit's AppTest, uploads included."""

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, cell_image, encode

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


def test_classify_without_models_says_so(artifacts):
    import streamlit as st

    st.cache_resource.clear()
    app = open_page("pages/classify.py")
    assert "No trained model" in app.error[0].value


@pytest.mark.parametrize("page", ["pages/about.py"])
def test_other_pages_render(served_model, page):
    app = open_page(page)
    assert app.title
