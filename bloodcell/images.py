"""The one image loader shared by training, evaluation and serving.

Every image, whatever its format or mode, becomes an RGB uint8 array here, or is refused with
`UnusableImage`, whose message is a sentence a clinician can act on.
"""

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from bloodcell import finder

FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
# A 12-megapixel camera's whole field (4000x3000, or 4032x3024) fits; a larger picture costs
# hundreds of megabytes and seconds to decode while a cell needs a few hundred pixels.
MAX_PIXELS = 16_000_000
# Standard deviation of every channel's values (0..255) under which a picture is one flat colour;
# the flattest image of the PBC pool has about 24.
MIN_DETAIL = 4.0
MIN_SIDE = 32
MAX_BYTES = 50 * 1024 * 1024
# A JPEG needed only small is decoded at 1/2 or 1/4 scale from its DCT (Pillow's draft mode) where
# that keeps this many times the output's side, so the antialiased resize after it still sees
# several pixels per output pixel: within a few levels of a full decode, up to 10 times faster.
# Never 1/8: that scale decodes each 8x8 block from its mean alone and strays 20 levels at edges.
DRAFT_MARGIN = 4
# Full scales of the usual bit depths (float 0..1, 8, 10, 12, 14 and 16 bits): deep or float grey
# data is scaled from the smallest one that holds its brightest value.
FULL_SCALES = (1.0, 255.0, 1023.0, 4095.0, 16383.0, 65535.0)
ORIENTATION = 0x0112  # the EXIF tag of how the camera was held
# EXIF orientation -> the turn that shows the picture upright (as in Pillow's ImageOps.exif_transpose)
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
DAMAGED = "The picture is damaged or incomplete (the file may have been cut short); please export it again."


class UnusableImage(ValueError):
    """An image that cannot be classified; the message says why in plain words."""


def read_image(source: bytes | str | Path, at_least: int | None = None) -> np.ndarray:
    """Decode image bytes or a file into an RGB uint8 array of shape (height, width, 3), turned
    upright as its EXIF orientation says.

    With `at_least`, a large JPEG may be decoded at 1/2 or 1/4 of its size where that keeps at
    least `at_least` pixels on each side (see `DRAFT_MARGIN`). Whatever the bytes, nothing but
    `UnusableImage` is raised."""
    data = _read_bytes(source)
    if not data:
        raise UnusableImage("The file is empty: there is no picture in it.")
    if len(data) > MAX_BYTES:
        raise UnusableImage(
            f"The file is larger than {MAX_BYTES // 2**20} MB; please upload a single-cell image."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, at_least)
    except UnusableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnusableImage(_too_large_message()) from error
    except Image.UnidentifiedImageError as error:
        raise UnusableImage(
            "This file is not a picture the tool can read; use JPEG, PNG, TIFF, BMP, WebP or GIF."
        ) from error
    except Exception as error:  # Pillow's decoders fail in many ways on damaged bytes (struct.error, ...)
        raise UnusableImage(DAMAGED) from error


def _decode(data: bytes, at_least: int | None) -> np.ndarray:
    image = Image.open(io.BytesIO(data), formats=FORMATS)
    _check_size(image.size)
    image.seek(0)
    if at_least and image.format == "JPEG":
        width, height = image.size
        image.draft(None, (max(at_least, width // 4), max(at_least, height // 4)))
    image.load()
    rgb = _to_rgb(image)
    turn = UPRIGHT.get(_orientation(image))
    return rgb if turn is None else np.asarray(Image.fromarray(rgb).transpose(turn))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (as stored) where there is none or the EXIF block is malformed:
    a damaged EXIF block costs the turn, never the picture."""
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises many types on malformed blocks
        return 1
    return value if isinstance(value, int) else 1


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB array to size x size with antialiasing: the model's input, in every path."""
    return resize_to(rgb, size, size)


def resize_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    resized = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def load(source: bytes | str | Path, size: int, framing: bool = False) -> np.ndarray:
    """Read an image and bring it to the model's input (see `prepare`): the one path of training,
    evaluation and serving, so all of them see the same pixels."""
    return prepare(read_image(source, _at_least(size, framing)), size, framing)[0]


def load_served(source: bytes | str | Path, size: int, framing: bool = False) -> tuple[np.ndarray, bool]:
    """The model's input of a picture, the very array `load` gives training and evaluation, and
    whether the picture is a microscope field (as `finder.survey(...).is_field` of the decoded
    picture): one decode and one look by the finder serve both."""
    rgb = read_image(source, _at_least(size, framing))
    cell, is_field = finder.look(rgb)
    return _prepared(rgb, size, framing, cell if framing else None)[0], is_field


def _at_least(size: int, framing: bool) -> int | None:
    """A whole picture shrunk to the input may be decoded small; a framed cell needs the
    picture's own resolution around it."""
    return None if framing else DRAFT_MARGIN * size


def prepare(rgb: np.ndarray, size: int, framing: bool = False) -> tuple[np.ndarray, finder.Cell | None]:
    """The model's input from a decoded picture, and where its cell was found.

    With `framing`, the cell of interest is found, framed at its own size and white-balanced
    (`bloodcell.finder`); else the whole picture is resized. A blank picture, or one where
    framing finds no stained cell, is refused."""
    return _prepared(rgb, size, framing, finder.find(rgb) if framing else None)


def _prepared(
    rgb: np.ndarray, size: int, framing: bool, cell: finder.Cell | None
) -> tuple[np.ndarray, finder.Cell | None]:
    if framing and cell is None:
        raise UnusableImage(
            "No stained cell could be found in this picture; please upload a picture of a "
            "stained blood smear with the cell of interest in view."
        )
    x = finder.frames(rgb, (cell,), size)[0] if framing else resize(rgb, size)
    if x.reshape(-1, 3).std(axis=0).max() < MIN_DETAIL:
        raise UnusableImage("The picture is blank (one flat colour): there is no cell to see in it.")
    grainy = finder.grain(rgb)
    if grainy > finder.MAX_GRAIN:
        raise UnusableImage(
            "This picture is random grain, like noise, not a microscope photograph of a blood "
            "smear; please upload a photograph of a stained smear."
        )
    if grainy < finder.MIN_GRAIN:
        raise UnusableImage(
            "This picture is made of perfectly flat colours, like a drawing or a chart, not a "
            "microscope photograph of a blood smear; please upload a photograph of a stained smear."
        )
    return x, cell


def _read_bytes(source: bytes | str | Path) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except IsADirectoryError as error:
        raise UnusableImage(f"{Path(source).name} is a folder, not an image file.") from error
    except OSError as error:
        raise UnusableImage(f"The file {Path(source).name} could not be opened.") from error


def _too_large_message() -> str:
    return (
        f"The picture is too large (over {MAX_PIXELS // 1_000_000} million pixels, more than a "
        "12-megapixel camera takes); please upload a picture of one cell or one microscope field."
    )


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise UnusableImage(_too_large_message())
    if min(width, height) < MIN_SIDE:
        raise UnusableImage(
            f"The picture is too small ({width}x{height} pixels) to show a cell; "
            f"it needs at least {MIN_SIDE} pixels on each side."
        )


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _deep_grey_to_rgb(image)
    try:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
        # an RGB picture's pixels are read as they are: converting would only copy them
        return np.asarray(image if mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    except ValueError as error:  # a colour format Pillow cannot bring to RGB
        raise UnusableImage(
            f"The picture's colour format ({mode}) is not one the tool reads; "
            "please export it as an RGB JPEG, PNG or TIFF."
        ) from error


def _deep_grey_to_rgb(image: Image.Image) -> np.ndarray:
    """16-bit, 32-bit and float grey scaled into 8 bits from the full scale of the data's bit
    depth (a 12-bit camera's 4095 is white), never clipped at 255 nor crushed to black."""
    values = np.array(image, dtype=np.float32)
    np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max(initial=0.0))
    scale = next((s for s in FULL_SCALES if peak <= s), peak)
    # in place: a 16-million-pixel picture costs one float copy, not four
    values *= 255.0 / scale
    values += 0.5
    np.clip(values, 0, 255, out=values)
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)
