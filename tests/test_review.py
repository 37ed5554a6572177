"""The review page, the classify page's "Save as case" and the Results page's agreement table,
through Streamlit's AppTest, each over a private cases database."""

import pytest

from bloodcell import cases
from bloodcell.classes import CLASSES
from tests.conftest import cell_image, encode
from tests.test_app import open_page


@pytest.fixture
def store(tmp_path, monkeypatch) -> cases.Store:
    monkeypatch.setenv("BLOODCELL_CASES", str(tmp_path / "cases.sqlite3"))
    return cases.Store()


def a_case(store: cases.Store, run_id: str, statuses=("confident",) * 4 + ("review", "unfamiliar")) -> int:
    pictures = []
    for k, status in enumerate(statuses):
        label = CLASSES[(k * 3) % 8]
        p = {c: (0.6 if c == label else 0.4 / 7) for c in CLASSES}
        cell = cases.NewCell(f"cell{k}.png", run_id, "abc", label, p, status)
        pictures.append(cases.NewPicture(f"cell{k}.png", encode(cell_image(k, seed=k)), "cell", (cell,)))
    return store.create("sample 1", pictures)


def labels(store: cases.Store, case_id: int) -> list[str]:
    return [c.label for c in store.get(case_id).cells]


def test_no_case_yet_says_where_cases_come_from(store, served_model):
    app = open_page("pages/review.py")
    assert "save them as a case" in app.info[0].value


def test_review_reclassify_by_click_and_key_sign_and_download(store, served_model):
    case_id = a_case(store, served_model.id)
    before = labels(store, case_id)
    app = open_page("pages/review.py")
    assert app.title[0].value == "Review and sign a case"
    assert any("Type your name or initials" in i.value for i in app.info)
    assert all(control.disabled for control in app.segmented_control)
    # the cells to check come first: the unfamiliar one, then the unsure one
    groups = [m.value for m in app.markdown if m.value.startswith("#### ")]
    assert groups[0].startswith("#### To check (2)") and len(groups) >= 2
    assert "unfamiliar" in app.markdown[0].value  # the cursor starts on the unfamiliar cell
    assert app.get("image")  # pictures and the cursor cell's heat map

    app.text_input[0].set_value("AB").run()
    assert not app.exception
    first = store.get(case_id).cells[0]
    app.segmented_control(key=f"cell-{case_id}-{first.id}-1").set_value("ig").run()  # one click
    assert not app.exception
    assert labels(store, case_id)[0] == "ig"
    differential = app.dataframe[0].value
    assert differential.set_index("cell type").loc["Immature granulocyte", "count"] == 1 + before.count("ig")

    cursor = store.get(case_id).cells[5]  # the unfamiliar cell is first in the gallery: the cursor's
    app.button(key="key-lymphocyte").click().run()  # key 5
    assert not app.exception
    case = store.get(case_id)
    assert case.cell(cursor.id).label == "lymphocyte" and case.cell(cursor.id).decided_by == "AB"
    assert [d.reviewer for d in case.decisions] == ["AB", "AB"]
    assert app.session_state["review_cursor"] == case.cells[4].id  # moved on to the next cell to check

    app.button(key="key-keep").click().run()  # the unsure cell keeps the model's answer
    case = store.get(case_id)
    assert not any(c.to_check for c in case.cells) and case.revision == 4

    [sign] = [b for b in app.button if b.label == "Sign as AB"]
    sign.click().run()
    assert not app.exception
    case = store.get(case_id)
    assert case.signed and case.signed_by == "AB"
    assert any("read-only" in s.value for s in app.success)
    assert all(control.disabled for control in app.segmented_control)
    downloads = {d.label for d in app.get("download_button")}
    assert downloads == {"Download the report (CSV)", "Download the print view (HTML)"}

    [again] = [b for b in app.button if b.label == "Start a new version"]
    again.click().run()
    assert not app.exception
    newest = store.summaries()[0]
    assert newest["version"] == 2 and app.selectbox[0].value == newest["id"]
    assert not any(control.disabled for control in app.segmented_control)


def test_a_change_from_a_stale_tab_is_refused_with_a_sentence(store, served_model):
    case_id = a_case(store, served_model.id)
    app = open_page("pages/review.py")
    app.text_input[0].set_value("AB").run()
    cell = store.get(case_id).cells[0]
    store.decide(case_id, cell.id, "monocyte", "CD", 1)  # another tab, meanwhile
    app.segmented_control(key=f"cell-{case_id}-{cell.id}-1").set_value("ig").run()
    assert not app.exception
    assert "changed by someone else" in app.error[0].value
    assert labels(store, case_id)[0] == "monocyte"  # the other tab's decision stands
    assert app.segmented_control(key=f"cell-{case_id}-{cell.id}-2").value == "monocyte"  # now shown


def test_classify_then_save_as_case_keeps_the_answers_and_pictures(store, served_model):
    app = open_page("pages/classify.py")
    files = [(f"cell{i}.png", encode(cell_image(i, seed=i)), "image/png") for i in range(3)]
    files.append(("notes.jpg", b"this is text", "image/jpeg"))
    app.file_uploader[0].set_value(files).run()
    assert any("Nothing you upload is kept unless you save it" in c.value for c in app.caption)
    assert any("Never a patient's name" in c.value for c in app.caption)
    [save] = [b for b in app.button if b.label == "Save as case"]
    assert save.disabled
    [name] = [t for t in app.text_input if t.label == "Sample name or number"]
    name.set_value("2025-0412").run()
    [save] = [b for b in app.button if b.label == "Save as case"]
    save.click().run()
    assert not app.exception
    [summary] = store.summaries()
    assert summary["name"] == "2025-0412" and summary["cells"] == 3
    case = store.get(summary["id"])
    shown = app.dataframe[0].value
    assert [c.file for c in case.cells] == list(shown["file"])
    assert all(c.run_id == served_model.id for c in case.cells)
    assert store.picture(case.cells[1].id) == files[1][1]
    assert any(f"Saved as case {case.id}" in s.value for s in app.success)
    app.run()  # a rerun does not save the batch twice
    assert len(store.summaries()) == 1


def test_results_show_how_often_reviewers_changed_the_model(store, served_model):
    from tests.test_app import metrics_for

    served_model.write_json("metrics.json", metrics_for(0.9))  # a scored run: the page compares it
    app = open_page("pages/results.py")
    assert any("No signed case yet" in c.value for c in app.caption)
    case_id = a_case(store, served_model.id)
    case = store.decide(case_id, store.get(case_id).cells[0].id, "ig", "AB", 1)
    store.sign(case_id, "AB", case.revision)
    app = open_page("pages/results.py")
    [table] = [d.value for d in app.dataframe if "agreement" in d.value.columns]
    row = table.set_index("model's class").loc["Basophil"]
    assert row["changed by a reviewer"] == 1 and row["agreement"] == 0.0
