"""Finding the cell of interest in any picture and framing it the way the model learnt to see it.

Romanowsky-type stains (May-Grünwald-Giemsa, Wright, Giemsa) colour nuclei and platelets
purple or blue: blue well above green. That purple-ness, thresholded per picture (Otsu), marks the
stained objects; the one nearest the centre (its lobes and granules grouped with it) is the cell
of interest, and platelets win only where no nucleus is stained more strongly. The frame is a
square around it whose side is a fixed multiple of the object's size, so a tight crop, a loose
crop, a 224 px or a 1 Mpx picture of the same cell all come out alike. A white balance maps the
picture's background to the training pictures' (CellaVision) background colour.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

# The finder works on a copy this many pixels on its longer side: a few milliseconds per picture.
WORK_SIDE = 128
# The frame's side over the stained object's longer side: a PBC white cell comes out about as
# large as in the centre two thirds of its picture, which the earlier models were trained on.
FRAME_FACTOR = 2.2
# Background of the PBC pictures, the 95th percentile of each channel (median over the pool).
BACKGROUND = (255.0, 230.0, 204.0)
# Purple-ness (see `stain`) that only a stained object reaches; a picture whose strongest
# pixels stay under it shows no cell.
MIN_STAIN = 0.15
# One object over this share of the picture is red cells and nuclei run together, not a cell.
MAX_SHARE = 0.4
MIN_AREA = 12  # work pixels: smaller specks are dust or noise, not a cell
VERSION = 2  # bump when framing changes: cached inputs and trained models depend on it


@dataclass(frozen=True)
class Cell:
    """The cell of interest: the box of its stained part and the square frame the model sees,
    both (x0, y0, x1, y1) in the picture's pixels; the frame may reach past the picture."""

    box: tuple[int, int, int, int]
    frame: tuple[int, int, int, int]


def stain(rgb: np.ndarray) -> np.ndarray:
    """Purple-ness of each pixel: blue minus green over the brightness. About 0.5 to 1.5 on a
    stained nucleus, whether violet or blue; near 0 on pink red cells (up to 0.3 on the blue-grey
    red cells of some labs' pictures: see the second threshold in `find`) and below 0 on a
    white or yellowish background."""
    x = rgb.astype(np.float32)
    return 3.0 * (x[..., 2] - x[..., 1]) / (x.sum(axis=-1) + 1.0)


def find(rgb: np.ndarray) -> Cell | None:
    """The cell of interest in an RGB picture, or None where no stained object is found."""
    small, scale = _work_copy(rgb)
    purple = ndimage.gaussian_filter(stain(small), 1.0)
    if np.percentile(purple, 99.5) < MIN_STAIN:
        return None
    threshold = max(threshold_otsu(purple), MIN_STAIN)
    for _ in range(2):
        # lobes of one nucleus and the granules around it are grouped; each group is one object
        mask = purple > threshold
        groups, count = ndimage.label(ndimage.binary_dilation(mask, iterations=3))
        if count == 0 or np.bincount(groups.ravel())[1:].max() < MAX_SHARE * groups.size:
            break
        # red cells stained nearly as strongly as nuclei (blue-grey or violet in some labs)
        # fell on the stained side: split the stained pixels again
        threshold = threshold_otsu(purple[mask])
    labels = np.where(mask, groups, 0)
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    if count == 0 or areas.max() < MIN_AREA:
        return None
    centres = np.array(ndimage.center_of_mass(mask, labels, index=np.arange(1, count + 1)))
    middle = np.array([(small.shape[0] - 1) / 2, (small.shape[1] - 1) / 2])
    distance = np.hypot(*(centres - middle).T)
    candidates = np.flatnonzero(areas >= max(MIN_AREA, 0.25 * areas.max()))
    chosen = candidates[np.argmin(distance[candidates])] + 1
    rows, cols = ndimage.find_objects(labels)[chosen - 1]
    box = (cols.start / scale, rows.start / scale, cols.stop / scale, rows.stop / scale)
    return Cell(tuple(round(v) for v in box), _frame(box))


def _work_copy(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Every n-th pixel of every n-th row, about `WORK_SIDE` on the longer side, and its scale:
    a view, no filtering (the stain map is smoothed afterwards)."""
    step = max(1, round(max(rgb.shape[:2]) / WORK_SIDE))
    return rgb[::step, ::step], 1 / step


def _frame(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    side = max(1, round(FRAME_FACTOR * max(x1 - x0, y1 - y0)))
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    return left, top, left + side, top + side


def crop(rgb: np.ndarray, frame: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The square `frame` of the picture at size x size; beyond the picture, its background."""
    x0, y0, x1, y1 = frame
    height, width = rgb.shape[:2]
    inside = rgb[max(0, y0) : max(0, min(y1, height)), max(0, x0) : max(0, min(x1, width))]
    if inside.shape[:2] != (y1 - y0, x1 - x0):
        window = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        window[:] = _background(rgb).astype(np.uint8)
        window[max(0, -y0) : max(0, -y0) + inside.shape[0], max(0, -x0) : max(0, -x0) + inside.shape[1]] = (
            inside
        )
        inside = window
    resized = Image.fromarray(np.ascontiguousarray(inside)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _background(rgb: np.ndarray) -> np.ndarray:
    """The picture's background colour: each channel's 95th percentile (over the work copy)."""
    return np.percentile(_work_copy(rgb)[0].reshape(-1, 3), 95, axis=0).astype(np.float32)


def white_balance(rgb: np.ndarray, picture: np.ndarray | None = None) -> np.ndarray:
    """Scale each channel of `rgb` so that the background of `picture` (default: `rgb`; its
    95th percentile) takes the training pictures' background colour: another lamp, camera or
    stain bath looks alike."""
    bright = _background(rgb if picture is None else picture)
    gain = np.array(BACKGROUND, np.float32) / np.maximum(bright, 1.0)
    return np.clip(rgb * gain + 0.5, 0, 255).astype(np.uint8)


def framed(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Cell] | None:
    """The cell of interest framed, white-balanced, at size x size, with where it was found;
    None where the picture shows no stained cell."""
    cell = find(rgb)
    if cell is None:
        return None
    return white_balance(crop(rgb, cell.frame, size), rgb), cell
