"""The committed default model flags images that are not blood cells as unfamiliar."""

import numpy as np
import pytest
from PIL import Image

from bloodcell import images, noncells, robustness
from bloodcell.predictor import Classifier
from tests.conftest import POOL, encode, needs_pool


@pytest.fixture(scope="module")
def classifier():
    mp = pytest.MonkeyPatch()
    mp.delenv("BLOODCELL_ARTIFACTS", raising=False)
    yield Classifier.load()
    mp.undo()


def test_clearly_non_cell_images_are_flagged(classifier):
    caught = total = 0
    for kind, pictures in noncells.non_cells(seed=0).items():
        flags = noncells.flagged(classifier, pictures)
        caught += sum(flags)
        total += len(flags)
        assert sum(flags) >= len(flags) - 1, kind
    assert caught / total >= 0.99


@pytest.mark.parametrize("value", np.linspace(0, 255, 20).astype(int))
def test_blank_pictures_are_refused_before_the_model(value):
    with pytest.raises(images.UnusableImage, match="blank"):
        images.load(encode(Image.fromarray(np.full((200, 200, 3), value, np.uint8))), 64)


@pytest.mark.slow
@needs_pool
def test_damaged_cells_are_measured_and_swapped_colours_flagged():
    result = robustness.damaged(str(POOL), n=40)
    assert result["cells"] == 40 and set(robustness.DAMAGES) <= set(result)
    for name in robustness.DAMAGES:
        shares = result[name]
        assert sum(shares[s] for s in ("confident", "review", "unfamiliar", "refused")) == pytest.approx(1)
        assert shares["confident_but_wrong"] <= 1 - shares["accuracy"] + 1e-9
    assert result["none"]["accuracy"] >= 0.9 and result["none"]["confident_but_wrong"] <= 0.05
    assert result["swapped colour channels"]["unfamiliar"] >= 0.9
