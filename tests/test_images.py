import io

import numpy as np
import pytest
from PIL import Image

from bloodcell import images
from bloodcell.images import UnusableImage, read_image
from tests.conftest import cell_image, encode


def test_reads_common_formats_as_rgb():
    picture = cell_image(2, size=64)
    for fmt in ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF"):
        rgb = read_image(encode(picture, fmt))
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8, fmt
        assert abs(int(rgb[0, 0, 0]) - 235) < 12, fmt


def test_animated_gif_gives_first_frame():
    red, blue = Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue])
    assert tuple(read_image(data)[5, 5]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    picture = Image.new("RGB", (60, 40), (255, 255, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 40))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rgb = read_image(encode(picture, "JPEG", exif=exif.tobytes(), quality=95))
    assert rgb.shape == (60, 40, 3)
    assert rgb[2, 20, 0] > 200 and rgb[2, 20, 1] < 60  # the stripe is now on top


def test_grayscale_and_16_bit_are_scaled_not_clipped():
    grey = read_image(encode(Image.new("L", (40, 40), 100)))
    assert tuple(grey[0, 0]) == (100, 100, 100)
    deep = Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16))
    rgb = read_image(encode(deep))
    assert tuple(rgb[0, 0]) == (156, 156, 156)  # 40000 / 65535 * 255, not 255


def test_rgba_and_palette_transparency_are_composited_on_white():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    assert tuple(read_image(encode(rgba))[0, 0]) == (255, 255, 255)
    half = Image.new("RGBA", (40, 40), (0, 0, 0, 128))
    assert 120 < read_image(encode(half))[0, 0, 0] < 135
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert tuple(read_image(encode(palette))[0, 0]) == (255, 255, 255)


def test_cmyk_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # pure red in CMYK
    rgb = read_image(encode(cmyk, "JPEG", quality=95))
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 60 and rgb[0, 0, 2] < 60


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"hello, this is text named cell.jpg\n", "not a picture"),
        (b"PK\x03\x04" + b"\x00" * 200, "not a picture"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="80"></svg>', "not a picture"),
    ],
    ids=["empty", "text", "zip", "svg"],
)
def test_non_images_are_refused(data, words):
    with pytest.raises(UnusableImage, match=words):
        read_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(cell_image(1, size=128), "JPEG")
    with pytest.raises(UnusableImage, match="damaged or incomplete"):
        read_image(data[: len(data) // 2])


def test_tiny_image_is_refused():
    with pytest.raises(UnusableImage, match="too small"):
        read_image(encode(Image.new("RGB", (1, 1))))


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("L", (10_000, 5_000)), optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(UnusableImage, match="too large"):
        read_image(bomb)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(UnusableImage, match="could not be opened"):
        read_image(tmp_path / "nowhere.png")


def test_resize_gives_the_model_input():
    rgb = read_image(encode(cell_image(0, size=100)))
    assert images.resize(rgb, 32).shape == (32, 32, 3)
    assert images.load(io.BytesIO(encode(cell_image(0))).getvalue(), 48).shape == (48, 48, 3)
