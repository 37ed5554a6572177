"""The committed default model flags images that are not blood cells as unfamiliar."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bloodcell import images, robustness
from bloodcell.predictor import Classifier
from tests.conftest import POOL, encode, needs_pool


def non_cells(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    def text(i):
        picture = Image.new("RGB", (200, 200), "white")
        draw = ImageDraw.Draw(picture)
        for line in range(10):
            draw.text((5, 5 + 18 * line), f"Specimen {i} line {line}: lorem ipsum", fill=(0, 0, 0))
        return np.asarray(picture)

    def shapes(i):
        picture = Image.new("RGB", (200, 200), tuple(rng.integers(0, 256, 3).tolist()))
        draw = ImageDraw.Draw(picture)
        for _ in range(5):
            x0, x1 = sorted(rng.integers(0, 200, 2).tolist())
            y0, y1 = sorted(rng.integers(0, 200, 2).tolist())
            draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.integers(0, 256, 3).tolist()))
        return np.asarray(picture)

    ramp = np.tile(np.linspace(0, 255, 200), (200, 1))
    return {
        "noise": [rng.integers(0, 256, (200, 200, 3), dtype=np.uint8) for _ in range(20)],
        "gradient": [np.dstack([np.rot90(ramp, i % 4)] * 3).astype(np.uint8) for i in range(20)],
        "text": [text(i) for i in range(20)],
        "shapes": [shapes(i) for i in range(20)],
    }


@pytest.fixture(scope="module")
def classifier():
    mp = pytest.MonkeyPatch()
    mp.delenv("BLOODCELL_ARTIFACTS", raising=False)
    yield Classifier.load()
    mp.undo()


def test_clearly_non_cell_images_are_flagged(classifier):
    flagged = total = 0
    for kind, pictures in non_cells(np.random.default_rng(0)).items():
        p, distance = classifier.analyse(
            np.stack([images.resize(a, classifier.image_size) for a in pictures])
        )
        statuses = classifier.statuses(p, distance)
        flagged += statuses.count("unfamiliar")
        total += len(statuses)
        assert statuses.count("unfamiliar") >= len(statuses) - 1, kind
    assert flagged / total >= 0.99


@pytest.mark.parametrize("value", np.linspace(0, 255, 20).astype(int))
def test_blank_pictures_are_refused_before_the_model(value):
    with pytest.raises(images.UnusableImage, match="blank"):
        images.load(encode(Image.fromarray(np.full((200, 200, 3), value, np.uint8))), 64)


@needs_pool
def test_damaged_cells_are_measured_and_swapped_colours_flagged():
    result = robustness.damaged(str(POOL), n=40)
    assert result["cells"] == 40 and set(robustness.DAMAGES) <= set(result)
    for name in robustness.DAMAGES:
        shares = result[name]
        assert sum(shares[s] for s in ("confident", "review", "unfamiliar")) == pytest.approx(1)
        assert shares["confident_but_wrong"] <= 1 - shares["accuracy"] + 1e-9
    assert result["none"]["accuracy"] >= 0.9 and result["none"]["confident_but_wrong"] <= 0.05
    assert result["swapped colour channels"]["unfamiliar"] >= 0.9
