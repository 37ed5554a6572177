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
# A nucleated cell's stained part covers at least this share of a red cell's area (as estimated
# by `red_cell_area`).
NUCLEUS_SHARE = 0.6
MIN_PLATELET = 2  # work pixels
# A field, not one cell's picture: a camera's frame (4:3 or wider, at least 640x480; cell
# pictures are cut square), or this many nucleated cells (a cell's picture may show a
# neighbour's edge as well).
FIELD_ASPECT = 1.2
FIELD_SIDE = 400
FIELD_CELLS = 3
# Grain of a photograph through a microscope (see `grain`): PBC, other labs' cells and BCCD
# fields measure 0.0047 to 0.037; random noise about 0.23 and a drawing's flat fills 0.
MAX_GRAIN = 0.1
MIN_GRAIN = 0.001
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
    objects = _stained_objects(small)
    return None if objects is None else _nearest(small, objects, scale)


def look(rgb: np.ndarray) -> tuple[Cell | None, bool]:
    """What serving asks of each picture, from one pass over it: the cell of interest (as
    `find`) and whether the picture is a microscope field (as `survey(rgb).is_field`)."""
    small, scale = _work_copy(rgb)
    objects = _stained_objects(small)
    wide = _wide(rgb)
    if objects is None:
        return None, wide
    return _nearest(small, objects, scale), wide or _many_cells(small, objects[2])


def _nearest(small: np.ndarray, objects: tuple[np.ndarray, np.ndarray, np.ndarray], scale: float) -> Cell:
    """The stained object nearest the centre among those at least a quarter of the largest."""
    mask, labels, areas = objects
    index = np.arange(1, len(areas) + 1)
    centres = np.array(ndimage.center_of_mass(mask, labels, index=index))
    middle = np.array([(small.shape[0] - 1) / 2, (small.shape[1] - 1) / 2])
    distance = np.hypot(*(centres - middle).T)
    candidates = np.flatnonzero(areas >= max(MIN_AREA, 0.25 * areas.max()))
    chosen = candidates[np.argmin(distance[candidates])]
    return _cell(ndimage.find_objects(labels)[chosen], scale)


@dataclass(frozen=True)
class Field:
    """What a picture holds: its nucleated cells (white cells and erythroblasts), the platelets
    counted apart, and whether it is a microscope field rather than one cell's picture."""

    cells: tuple[Cell, ...]
    platelets: int
    is_field: bool


def survey(rgb: np.ndarray) -> Field:
    """Every nucleated cell of a picture, told from platelets by size against the red cells
    around them (a white cell's nucleus covers most of a red cell's area; a platelet a tenth)."""
    small, scale = _work_copy(rgb)
    objects = _stained_objects(small)
    wide = _wide(rgb)
    if objects is None:
        return Field((), 0, wide)
    _, labels, areas = objects
    nucleated = _nucleated(small, areas)
    slices = ndimage.find_objects(labels)
    cells = tuple(_cell(slices[i], scale) for i in np.flatnonzero(nucleated))
    platelets = int(((areas >= MIN_PLATELET) & ~nucleated).sum())
    return Field(cells, platelets, wide or len(cells) >= FIELD_CELLS)


def _wide(rgb: np.ndarray) -> bool:
    """A camera's frame: 4:3 or wider, and large."""
    height, width = rgb.shape[:2]
    return max(height, width) >= FIELD_ASPECT * min(height, width) and min(height, width) >= FIELD_SIDE


def grain(rgb: np.ndarray) -> float:
    """How grainy a picture is at the pixel level against its contrast: the median distance of
    each pixel of the work copy's green channel from its smoothed neighbourhood, over the 5th to
    95th percentile spread. A microscope photograph has a little grain (camera noise, texture);
    random noise is all grain and a drawing's flat fills have none."""
    green = _work_copy(rgb)[0][..., 1].astype(np.float32)  # the channel with the most contrast
    low, high = np.percentile(green, [5, 95])
    return float(np.median(np.abs(green - ndimage.gaussian_filter(green, 1.0))) / max(high - low, 1.0))


def _nucleated(small: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Which stained objects are nucleated cells: at least `NUCLEUS_SHARE` of a red cell's area
    and, against a poor estimate of the red cells, at least a fifth of the largest nucleus."""
    return _large(areas) & (areas >= NUCLEUS_SHARE * red_cell_area(small))


def _large(areas: np.ndarray) -> np.ndarray:
    return areas >= max(MIN_AREA, 0.2 * areas.max())


def _many_cells(small: np.ndarray, areas: np.ndarray) -> bool:
    """Whether `FIELD_CELLS` or more objects are nucleated cells; the red cells (the costlier
    half of the work on a single cell's picture) are estimated only where enough objects are
    large enough to be."""
    return _large(areas).sum() >= FIELD_CELLS and _nucleated(small, areas).sum() >= FIELD_CELLS


def red_cell_area(small: np.ndarray) -> float:
    """The typical red cell's area in pixels of `small`: from the distance of each cell's
    centre to its edge (pale centres filled), the median over the cells."""
    grey = small.astype(np.float32).mean(axis=-1)
    cells = ndimage.binary_fill_holes(grey < threshold_otsu(grey))
    distance = ndimage.distance_transform_edt(cells)
    peaks = (distance == ndimage.maximum_filter(distance, size=5)) & (distance > 2)
    radius = float(np.median(distance[peaks])) if peaks.any() else min(small.shape[:2]) / 4
    return np.pi * radius**2


def _stained_objects(small: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(stained mask, object labels, object areas) of a work copy; None where nothing is stained."""
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
    return mask, labels, areas


def _cell(where: tuple[slice, slice], scale: float) -> Cell:
    rows, cols = where
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


def gain(picture: np.ndarray) -> np.ndarray:
    """Per-channel factors that give the picture's background (its 95th percentile) the
    training pictures' background colour: the white balance that makes another lamp, camera or
    stain bath look alike."""
    return np.array(BACKGROUND, np.float32) / np.maximum(_background(picture), 1.0)


def frames(rgb: np.ndarray, cells: tuple[Cell, ...], size: int) -> np.ndarray:
    """Each of `cells` of a picture framed and white-balanced at size x size (N, size, size, 3)."""
    if not cells:
        return np.zeros((0, size, size, 3), np.uint8)
    factors = gain(rgb)
    return np.stack(
        [np.clip(crop(rgb, cell.frame, size) * factors + 0.5, 0, 255).astype(np.uint8) for cell in cells]
    )


def framed(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Cell] | None:
    """The cell of interest framed, white-balanced, at size x size, with where it was found;
    None where the picture shows no stained cell."""
    cell = find(rgb)
    return None if cell is None else (frames(rgb, (cell,), size)[0], cell)
