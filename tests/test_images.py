import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageFile

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


def exif_with(*fields: tuple[int, int, int, bytes]) -> bytes:
    """Raw EXIF (little-endian TIFF structure, one IFD) holding exactly `fields`, however odd."""
    ifd = struct.pack("<H", len(fields)) + b"".join(struct.pack("<HHI", *f[:3]) + f[3] for f in fields)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def test_malformed_exif_costs_the_turn_never_the_picture():
    picture = Image.new("RGB", (60, 40), (255, 255, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 40))  # red stripe on the left
    turn = (0x0112, 3, 1, struct.pack("<HH", 6, 0))
    # a short tag stored as a long too large for it: Pillow cannot write this EXIF back
    unit_too_large = (0x0128, 4, 1, struct.pack("<I", 100_000))
    rgb = read_image(encode(picture, "JPEG", exif=exif_with(turn, unit_too_large), quality=95))
    assert rgb.shape == (60, 40, 3) and rgb[2, 20, 0] > 200 and rgb[2, 20, 1] < 60
    garbage = b"Exif\x00\x00MM\x00*" + bytes(range(200))
    assert read_image(encode(picture, "JPEG", exif=garbage)).shape == (40, 60, 3)


def test_any_decoder_failure_is_a_sentence(monkeypatch):
    def broken(self):
        raise TypeError("a decoder bug")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken)
    with pytest.raises(UnusableImage, match="damaged or incomplete"):
        read_image(encode(cell_image(1, size=64)))


def test_float_pictures_in_8_bit_range_keep_their_values():
    values = np.asarray(cell_image(3, size=64).convert("L"), dtype=np.float32)
    rgb = read_image(encode(Image.fromarray(values), "TIFF"))
    assert np.array_equal(rgb[..., 0], values.astype(np.uint8))
    unit = read_image(encode(Image.fromarray(values / 255.0), "TIFF"))
    assert np.abs(unit[..., 0].astype(int) - values).max() <= 1


@pytest.mark.parametrize(("bits", "fmt"), [(12, "PNG"), (12, "TIFF"), (10, "PNG"), (14, "TIFF")])
def test_deep_grey_is_scaled_from_its_bit_depth(bits, fmt):
    top = 2**bits - 1
    values = np.zeros((40, 40), np.uint16)
    values[:, 20:] = top
    values[:, 10:20] = top // 2
    rgb = read_image(encode(Image.fromarray(values), fmt))
    assert tuple(rgb[0, [0, 15, 30], 0]) == (0, 127, 255)


def test_a_12_megapixel_field_is_read_and_a_larger_picture_refused():
    field = encode(Image.new("L", (4032, 3024), 128), "JPEG")
    assert read_image(field).shape == (3024, 4032, 3)
    with pytest.raises(UnusableImage, match=r"too large .*12-megapixel camera"):
        read_image(encode(Image.new("L", (4100, 4100)), optimize=True))


def test_large_jpeg_decoded_small_only_where_the_model_input_is_small():
    big = encode(cell_image(4, size=1200, seed=2), "JPEG", quality=92)
    full = read_image(big)
    half = read_image(big, at_least=500)
    assert full.shape == (1200, 1200, 3) and half.shape == (600, 600, 3)
    quarter = read_image(big, at_least=100)
    assert quarter.shape == (300, 300, 3)  # never 1/8: its colours stray at edges
    x = images.load(big, 64)
    assert np.array_equal(x, images.resize(quarter, 64))
    assert np.abs(x.astype(int) - images.resize(full, 64)).max() <= 4
    # a framed cell is cut from the picture at its own resolution: no reduced decoding
    assert np.array_equal(images.load(big, 64, framing=True), images.prepare(full, 64, framing=True)[0])
    small = encode(cell_image(4, size=360), "JPEG")
    assert np.array_equal(images.load(small, 120), images.resize(read_image(small), 120))
