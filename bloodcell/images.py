"""The one image loader shared by training, evaluation and serving.

Every image, whatever its format or mode, becomes an RGB uint8 array here, or is refused with
`UnusableImage`, whose message is a sentence a clinician can act on.
"""

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bloodcell import finder

FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
MAX_PIXELS = 40_000_000
# Standard deviation of every channel's values (0..255) under which a picture is one flat colour;
# the flattest image of the PBC pool has about 24.
MIN_DETAIL = 4.0
MIN_SIDE = 32
MAX_BYTES = 50 * 1024 * 1024


class UnusableImage(ValueError):
    """An image that cannot be classified; the message says why in plain words."""


def read_image(source: bytes | str | Path) -> np.ndarray:
    """Decode image bytes or a file into an RGB uint8 array of shape (height, width, 3)."""
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
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            _check_size(image.size)
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
    except UnusableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnusableImage(_too_large_message()) from error
    except Image.UnidentifiedImageError as error:
        raise UnusableImage(
            "This file is not a picture the tool can read; use JPEG, PNG, TIFF, BMP, WebP or GIF."
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnusableImage(
            "The picture is damaged or incomplete (the file may have been cut short); please export it again."
        ) from error
    return _to_rgb(image)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB array to size x size with antialiasing: the model's input, in every path."""
    return resize_to(rgb, size, size)


def resize_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    resized = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def load(source: bytes | str | Path, size: int, framing: bool = False) -> np.ndarray:
    """Read an image and bring it to the model's input (see `prepare`)."""
    return prepare(read_image(source), size, framing)[0]


def prepare(rgb: np.ndarray, size: int, framing: bool = False) -> tuple[np.ndarray, finder.Cell | None]:
    """The model's input from a decoded picture, and where its cell was found.

    With `framing`, the cell of interest is found, framed at its own size and white-balanced
    (`bloodcell.finder`); else the whole picture is resized. A blank picture, or one where
    framing finds no stained cell, is refused."""
    found = (resize(rgb, size), None) if not framing else finder.framed(rgb, size)
    if found is None:
        raise UnusableImage(
            "No stained cell could be found in this picture; please upload a picture of a "
            "stained blood smear with the cell of interest in view."
        )
    if found[0].reshape(-1, 3).std(axis=0).max() < MIN_DETAIL:
        raise UnusableImage("The picture is blank (one flat colour): there is no cell to see in it.")
    return found


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
        f"The picture is too large (over {MAX_PIXELS // 1_000_000} million pixels); "
        "please upload an image of a single cell."
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
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _grey16_to_rgb(image)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 1.0 if values.max(initial=0) <= 1.0 else 65535.0
        grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _grey16_to_rgb(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float64)
    # 16-bit data is scaled into 8 bits over its full range, never clipped at 255.
    peak = 65535.0 if values.max(initial=0) > 255 or image.mode != "I" else 255.0
    grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
