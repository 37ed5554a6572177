"""End to end in a real browser: Playwright drives Debian's chromium against `streamlit run app.py`."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bloodcell import runs
from bloodcell.classes import DISPLAY_NAMES
from tests.conftest import POOL, ROOT, cell_image

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt install chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(base: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free localhost port over the artifacts in `base`: its URL."""
    port = free_port()
    env = {
        **os.environ,
        "BLOODCELL_ARTIFACTS": str(base / "artifacts"),
        "BLOODCELL_CACHE": str(base / "cache"),
        "BLOODCELL_DATA": str(base / "tiny"),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def copy_default_run(base: Path) -> runs.Run:
    """The committed default run, copied into `base`'s artifacts as their default."""
    artifacts = base / "artifacts"
    default = runs.resolve(None)
    shutil.copytree(
        default.path, artifacts / "runs" / default.id, ignore=shutil.ignore_patterns("checkpoint*.keras")
    )
    (artifacts / "default").write_text(default.id + "\n")
    return default


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The dashboard on a free localhost port, over a copy of the committed default run."""
    base = tmp_path_factory.mktemp("browser")
    default = copy_default_run(base)
    data = base / "tiny"
    for k, name in enumerate(("lymphocyte", "platelet")):
        (data / name).mkdir(parents=True)
        for i in range(12):
            cell_image(k, seed=i).save(data / name / f"{i}.png")
    with dashboard(base) as url:
        yield url, default


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


def a_correct_test_image(run: runs.Run) -> tuple[Path, str] | None:
    """A pool image from the run's own test split that the run classified correctly."""
    if not POOL.is_dir():
        return None
    stored = run.predictions()
    right = np.flatnonzero(stored["logits"].argmax(axis=1) == stored["labels"])
    i = int(right[len(right) // 2])
    return POOL / str(stored["files"][i]), run.record["classes"][int(stored["labels"][i])]


def test_upload_a_real_image_and_read_its_class(served, page, tmp_path):
    url, default = served
    picked = a_correct_test_image(default)
    if picked is None:
        cell_image(0).save(tmp_path / "cell.png")
        picked = (tmp_path / "cell.png", None)
    image, expected = picked
    page.goto(url)
    page.get_by_text("Classify blood cells").first.wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(image))
    value = page.locator('[data-testid="stMetricValue"]').first
    value.wait_for(timeout=60_000)
    if expected:
        assert value.inner_text().strip() == DISPLAY_NAMES[expected]
    assert page.get_by_text("Status:").count() >= 1


FIELDS = ROOT.parent / "shared" / "data" / "fields-dev"


def test_a_slides_worth_of_fields_gets_boxes_tables_a_differential_and_a_csv(served, page, tmp_path):
    """20 fields of one slide (annotated fields of another lab where present, else generated)."""
    from PIL import Image

    from tests.test_finder import field

    pictures = sorted(FIELDS.glob("*.jpg"))[:20]
    if len(pictures) < 20:
        pictures = []
        for k in range(20):
            Image.fromarray(field(seed=k)[0]).save(tmp_path / f"field{k}.jpg", quality=92)
            pictures.append(tmp_path / f"field{k}.jpg")
    url, _ = served
    page.goto(url)
    page.get_by_text("Classify blood cells").first.wait_for(timeout=60_000)
    started = time.perf_counter()
    page.locator("input[type=file]").set_input_files([str(p) for p in pictures])
    page.get_by_text("Differential count").wait_for(timeout=120_000)
    page.get_by_text("Download all cells (CSV)").wait_for(timeout=60_000)
    seconds = time.perf_counter() - started
    print(f"20 fields answered in the browser in {seconds:.1f} s")  # the figure of issue #18, not a test
    assert page.get_by_text("as microscope fields: 20").count() == 1
    assert page.locator('[data-testid="stImage"]').count() >= 20  # each field drawn with its boxes
    with page.expect_download() as download:
        page.get_by_text("Download all cells (CSV)").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("file,class,confidence,status") and len(rows) > 20


def test_results_show_a_confusion_matrix(served, page):
    url, _ = served
    page.goto(f"{url}/results")
    page.get_by_text("Confusion matrices").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").nth(2).wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot text", has_text="predicted").count() >= 1


def test_a_training_job_finishes_and_appears_in_results(served, page):
    url, _ = served
    page.goto(f"{url}/train")
    page.get_by_text("Train a model").first.wait_for(timeout=60_000)
    for label, value in (("Image size", "32"), ("Epochs", "1"), ("Batch size", "8")):
        field = page.get_by_label(re.compile(f"^{label}"))
        field.fill(value)
        field.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Training started").wait_for(timeout=30_000)
    finished = page.get_by_text(re.compile(r"Finished: run \S+"))
    finished.wait_for(timeout=300_000)
    run_id = re.search(r"run (\S+),", finished.inner_text()).group(1)
    page.goto(f"{url}/results")
    page.get_by_text("Training results").wait_for(timeout=60_000)
    # the table draws on a canvas; its accessible grid cells carry the text
    page.locator('[role="gridcell"]', has_text=run_id).first.wait_for(state="attached", timeout=30_000)


def test_twenty_simultaneous_sessions_are_answered_by_one_model(served, browser, tmp_path):
    url, _ = served
    pages = []
    for i in range(20):
        cell_image(i % 8, seed=100 + i).save(tmp_path / f"cell{i}.png")
        page = browser.new_context().new_page()
        page.goto(url)
        page.get_by_text("Classify blood cells").first.wait_for(timeout=60_000)
        pages.append(page)
    for i, page in enumerate(pages):  # all 20 uploads go out before any answer is awaited
        page.locator("input[type=file]").set_input_files(str(tmp_path / f"cell{i}.png"))
    for page in pages:
        page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)
        assert page.get_by_text("Status:").count() >= 1
        assert page.locator('[data-testid="stException"]').count() == 0
    metrics = urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=30).read().decode()
    models = [
        line
        for line in metrics.splitlines()
        if line.startswith("cache_memory_bytes") and "st_cache_resource" in line and "classifier" in line
    ]
    assert len(models) == 1, metrics
    for page in pages:
        page.context.close()


NAVIGATION = ["Classify cells", "Review and sign", "Results", "Training", "About"]


@pytest.mark.parametrize(
    "path, title",
    [
        ("/results", "Training results"),
        ("/about", "About bloodcell"),
        ("/train", "Train a model"),
        ("/classify", "Classify blood cells"),  # the default page, whose address is /
    ],
)
def test_a_first_visit_by_link_lands_inside_the_navigation(tmp_path, browser, path, title):
    # a fresh server whose first visitor comes by a bookmark, before any visit to / has run app.py
    copy_default_run(tmp_path)
    with dashboard(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + path)
        page.get_by_role("heading", name=title).wait_for(timeout=60_000)
        links = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
        assert [text.split("\n")[-1].strip() for text in links] == NAVIGATION  # after each icon's name
        assert page.url == url + ("/" if path == "/classify" else path)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.close()
