"""The clinician's workflow in a real browser: upload, save as a case, reclassify one cell with the
mouse and one with the keyboard, sign, and download the report (Playwright, Debian's chromium)."""

import csv
import time
from collections import Counter
from pathlib import Path

import pytest

from bloodcell import cases
from bloodcell.classes import DISPLAY_NAMES, WHITE_CELLS
from tests.conftest import POOL, cell_image
from tests.test_browser import CHROMIUM, copy_default_run, dashboard

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt install chromium)"
    ),
]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        browser.close()


def pictures(folder: Path) -> list[Path]:
    """One pool picture of each of six classes, else six generated cells."""
    if POOL.is_dir():
        wanted = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "erythroblast", "platelet")
        return [sorted((POOL / c).glob("*.jpg"))[0] for c in wanted]
    for k in range(6):
        cell_image(k, seed=k).save(folder / f"cell{k}.png")
    return sorted(folder.glob("cell*.png"))


def until(check, seconds: float = 30):
    deadline = time.time() + seconds
    while not (found := check()) and time.time() < deadline:
        time.sleep(0.25)
    return found


def test_upload_save_review_by_mouse_and_key_sign_and_download_the_report(tmp_path, monkeypatch, page):
    monkeypatch.setenv("BLOODCELL_CASES", str(tmp_path / "cases.sqlite3"))
    store = cases.Store()
    copy_default_run(tmp_path)
    with dashboard(tmp_path) as url:
        page.goto(url)
        page.get_by_text("Classify blood cells").first.wait_for(timeout=60_000)
        page.locator("input[type=file]").set_input_files([str(p) for p in pictures(tmp_path)])
        name = page.get_by_label("Sample name or number", exact=True).and_(page.get_by_role("textbox"))
        name.wait_for(timeout=120_000)
        name.fill("browser 1")
        name.press("Enter")
        page.get_by_role("button", name="Save as case").click()
        page.get_by_text("Saved as case").wait_for(timeout=30_000)
        [summary] = store.summaries()
        assert summary["cells"] == 6

        page.get_by_text("Review and sign it").click()
        page.get_by_role("heading", name="Review and sign a case").wait_for(timeout=60_000)
        reviewer = page.get_by_label("Your name or initials", exact=True).and_(page.get_by_role("textbox"))
        reviewer.fill("QA")
        reviewer.press("Enter")
        case = store.get(summary["id"])
        gallery = [c for _, members in cases.gallery(case) for c in members]

        # the mouse: one click on another class in the last cell's card
        clicked = gallery[-1]
        target = "Ly" if clicked.label != "lymphocyte" else "Mo"
        card = page.locator(f".st-key-cell-{case.id}-{clicked.id}-{case.revision}")
        card.get_by_role("radio", name=target, exact=True).click()
        assert until(lambda: store.get(case.id).cell(clicked.id).decided_by == "QA")

        # the keyboard: the cursor is on the gallery's first cell; key 0 marks it not a cell
        keyed = gallery[0]
        page.get_by_role("heading", name="Cell under review").wait_for()
        page.wait_for_timeout(1_000)  # the rerun after the click has drawn the page again
        page.get_by_role("heading", name="Review and sign a case").click()  # focus out of the text box
        page.keyboard.press("0")
        assert until(lambda: store.get(case.id).cell(keyed.id).label == cases.NOT_A_CELL)

        page.get_by_role("button", name="Sign as QA").click()
        page.get_by_text("This case is read-only").wait_for(timeout=30_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the report (CSV)").click()
        rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))

    case = store.get(case.id)
    assert case.signed and case.signed_by == "QA"
    assert [d.reviewer for d in case.decisions] == ["QA", "QA", "QA"]
    found = Counter(c.label for c in case.cells)
    white = sum(found[c] for c in WHITE_CELLS)
    table = {row[0]: row[1:] for row in rows if row}
    for c in WHITE_CELLS:
        assert int(table[DISPLAY_NAMES[c]][0]) == found[c]
        assert float(table[DISPLAY_NAMES[c]][1]) == pytest.approx(100 * found[c] / white, abs=0.051)
    assert int(table["Cells excluded (not a cell / unusable)"][0]) == 1
    assert int(table["Cells counted"][0]) == 5
    assert table["Reviewed and signed by"][0] == "QA"
    assert int(table["Corrections made"][0]) == sum(c.changed for c in case.cells) >= 1
