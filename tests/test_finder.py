import numpy as np
import pytest
from PIL import Image, ImageDraw

from bloodcell import finder, images, noncells
from tests.conftest import POOL, needs_pool

BEIGE = (250, 226, 200)


def smear(
    size: int = 400, nucleus: tuple[int, int] = (200, 200), radius: int = 45, seed: int = 0
) -> np.ndarray:
    """A generated smear: pink red cells on a beige background and one white cell (pale
    cytoplasm, purple lobed nucleus) centred at `nucleus`, in a picture of `size` px."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), BEIGE)
    draw = ImageDraw.Draw(image)
    for _ in range(size // 20):
        x, y = rng.integers(0, size, 2)
        if np.hypot(x - nucleus[0], y - nucleus[1]) > 2.2 * radius:
            r = size // 16
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(225, 170, 175))
    cx, cy = nucleus
    draw.ellipse(
        (cx - 1.6 * radius, cy - 1.6 * radius, cx + 1.6 * radius, cy + 1.6 * radius), fill=(215, 190, 215)
    )
    for dx, dy in ((-0.45, -0.2), (0.35, -0.3), (0.1, 0.45)):  # three lobes
        lx, ly, r = cx + dx * radius, cy + dy * radius, 0.55 * radius
        draw.ellipse((lx - r, ly - r, lx + r, ly + r), fill=(95, 45, 150))
    noise = rng.integers(-5, 6, (size, size, 3))
    return np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)


def scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    side = round(rgb.shape[0] * factor)
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR))


def test_the_cell_is_found_where_it_is():
    picture = smear(nucleus=(120, 260))
    cell = finder.find(picture)
    x0, y0, x1, y1 = cell.box
    assert x0 < 120 < x1 and y0 < 260 < y1
    assert 40 <= x1 - x0 <= 110  # the lobes, not the whole picture
    fx0, fy0, fx1, fy1 = cell.frame
    assert fx1 - fx0 == fy1 - fy0  # square
    assert abs((fx0 + fx1) / 2 - (x0 + x1) / 2) <= 1


@pytest.mark.parametrize(
    "variant",
    [
        lambda p: p[100:300, 100:300],  # tight: the cell fills the picture
        lambda p: p,  # loose
        lambda p: p[40:360, 0:320],  # off-centre
        lambda p: scaled(p[60:340, 60:340], 224 / 280),  # a 224 px picture
        lambda p: scaled(p, 2.5),  # a 1 Mpx picture
    ],
    ids=["tight", "loose", "off-centre", "224px", "1Mpx"],
)
def test_every_framing_of_one_cell_comes_out_alike(variant):
    picture = smear()
    reference = images.prepare(picture, 64, framing=True)[0].astype(float)
    framed = images.prepare(variant(picture), 64, framing=True)[0].astype(float)
    assert np.abs(framed - reference).mean() < 12  # of 255: the same cell at the same size and place
    unframed = images.prepare(variant(picture), 64)[0].astype(float)
    if variant(picture).shape != picture.shape:
        assert np.abs(unframed - reference).mean() > np.abs(framed - reference).mean()


def test_a_picture_without_a_stained_cell_is_refused_in_a_sentence():
    red_cells_only = smear()
    red_cells_only[np.asarray(finder.stain(red_cells_only)) > 0.3] = BEIGE
    assert finder.find(red_cells_only) is None
    with pytest.raises(images.UnusableImage, match="No stained cell could be found"):
        images.prepare(red_cells_only, 64, framing=True)
    images.prepare(red_cells_only, 64)  # without framing, the picture is simply resized


def test_white_balance_gives_another_lamp_the_training_background():
    picture = smear()
    yellow_lamp = np.clip(picture * np.array([0.95, 0.9, 0.7]), 0, 255).astype(np.uint8)
    balanced = np.clip(yellow_lamp * finder.gain(yellow_lamp), 0, 255)
    background = np.percentile(balanced.reshape(-1, 3), 95, axis=0)
    np.testing.assert_allclose(background, finder.BACKGROUND, atol=3)


def test_frames_beyond_the_picture_are_filled_with_its_background():
    picture = smear(size=200, nucleus=(100, 100), radius=55)  # the frame reaches past every edge
    cell = finder.find(picture)
    assert cell.frame[0] < 0 and cell.frame[2] > 200
    framed = finder.crop(picture, cell.frame, 64)
    corner = framed[:4, :4].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(corner, np.percentile(picture.reshape(-1, 3), 95, axis=0), atol=6)


@needs_pool
@pytest.mark.parametrize("folder", sorted(p.name for p in POOL.iterdir()) if POOL.is_dir() else [])
def test_the_centred_cell_of_real_pbc_pictures_is_found(folder):
    for path in sorted((POOL / folder).iterdir())[:25]:
        rgb = images.read_image(path)
        cell = finder.find(rgb)
        assert cell is not None, path.name
        x0, y0, x1, y1 = cell.box
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        # the PBC pictures centre their cell
        assert np.abs(centre - np.array(rgb.shape[1::-1]) / 2).max() < 0.25 * max(rgb.shape), path.name


def field(width: int = 640, height: int = 480, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A generated microscope field: red cells, three white cells and a few platelets; and the
    white cells' centres."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), BEIGE)
    draw = ImageDraw.Draw(image)
    whites = [(130, 130), (470, 160), (300, 360)]
    for _ in range(60):
        x, y = rng.integers(0, width), rng.integers(0, height)
        if min(np.hypot(x - cx, y - cy) for cx, cy in whites) > 90:
            draw.ellipse((x - 32, y - 32, x + 32, y + 32), fill=(225, 170, 175))
    for cx, cy in whites:
        draw.ellipse((cx - 55, cy - 55, cx + 55, cy + 55), fill=(215, 190, 215))
        for dx, dy in ((-16, -7), (12, -10), (4, 16)):
            draw.ellipse((cx + dx - 19, cy + dy - 19, cx + dx + 19, cy + dy + 19), fill=(95, 45, 150))
    for x, y in ((40, 420), (600, 40), (560, 440)):
        draw.ellipse((x - 10, y - 10, x + 10, y + 10), fill=(150, 100, 190))
    noise = rng.integers(-5, 6, (height, width, 3))
    return np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8), whites


def test_a_field_gives_every_white_cell_and_counts_the_platelets_apart():
    picture, whites = field()
    found = finder.survey(picture)
    assert found.is_field and len(found.cells) == 3
    for cx, cy in whites:
        assert sum(c.box[0] <= cx <= c.box[2] and c.box[1] <= cy <= c.box[3] for c in found.cells) == 1
    assert found.platelets == 3
    crops = finder.frames(picture, found.cells, 48)
    assert crops.shape == (3, 48, 48, 3)


def test_a_single_cells_picture_is_not_a_field():
    found = finder.survey(smear())
    assert not found.is_field and len(found.cells) == 1
    # the same smear enlarged to a camera's 640x480 frame is one; a small 4:3 crop is not
    assert finder.survey(scaled(smear(), 1.6)[80:560, :]).is_field
    assert not finder.survey(smear()[50:350, :]).is_field


@pytest.mark.parametrize("kind, words", [("noise", "random grain"), ("shapes", "perfectly flat colours")])
def test_pictures_that_are_no_photograph_are_refused_in_a_sentence(kind, words):
    for picture in noncells.non_cells(seed=2, each=5)[kind]:
        for framing in (False, True):
            with pytest.raises(images.UnusableImage, match=words):
                images.prepare(picture, 64, framing=framing)


def test_a_generated_smear_has_a_photographs_grain():
    assert finder.MIN_GRAIN < finder.grain(smear()) < finder.MAX_GRAIN
    images.prepare(smear(), 64, framing=True)


@needs_pool
def test_real_cell_pictures_of_three_laboratories_have_a_photographs_grain():
    external = POOL.parent / "external-dev"
    pictures = sorted(POOL.glob("*/*"))[::50] + sorted(external.glob("*/*/*.jpg"))
    grains = [finder.grain(images.read_image(path)) for path in pictures]
    assert len(grains) > 200
    # well inside the limits
    assert min(grains) > 2.5 * finder.MIN_GRAIN and max(grains) < 0.5 * finder.MAX_GRAIN
