"""Fuzzing the loader: mutated bytes of real JPEG, PNG and TIFF pictures (EXIF blocks, 16-bit,
float, palette and compressed variants, generated here), and pictures carrying generated EXIF
blocks of odd tag types, counts and offsets, give an RGB array or `UnusableImage`, never another
exception.

The fast lane tries a few hundred mutations; the slow test, at least 50,000
(`python -m pytest tests/test_fuzz.py -m slow`).
"""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bloodcell import images
from tests.conftest import cell_image, encode

SLOW_EXAMPLES = 50_000
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns of the damage it finds


def exif_block() -> bytes:
    """EXIF turning the picture, with the resolution, text and rational tags cameras write."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x011A] = 72.0
    exif[0x0128] = 2
    exif[0x010F] = "Microscope camera"
    exif[0x0132] = "2026:01:02 03:04:05"
    return exif.tobytes()


def seeds() -> dict[str, bytes]:
    """Small, valid pictures of every kind the loader handles specially."""
    cell = cell_image(2, size=64, seed=3)
    grey = np.asarray(cell.convert("L"), dtype=np.uint16)
    palette = cell.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    exif = exif_block()
    return {
        "jpeg-exif": encode(cell, "JPEG", quality=85, exif=exif),
        "jpeg-progressive": encode(cell, "JPEG", quality=70, progressive=True, subsampling=2),
        "jpeg-cmyk": encode(cell.convert("CMYK"), "JPEG", quality=80),
        # large enough to be decoded small (draft mode) when `load` shrinks it to 32 px
        "jpeg-draft": encode(cell_image(4, size=288, seed=5), "JPEG", quality=80, exif=exif),
        "png-exif": encode(cell, "PNG", exif=exif),
        "png-16bit": encode(Image.fromarray(grey * 16)),  # 12-bit data in a 16-bit container
        "png-palette": encode(palette, "PNG"),
        "png-rgba": encode(cell.convert("RGBA"), "PNG"),
        "tiff-exif": encode(cell, "TIFF", exif=exif),
        "tiff-lzw": encode(cell, "TIFF", compression="tiff_lzw"),
        "tiff-16bit": encode(Image.fromarray(grey * 257), "TIFF"),
        "tiff-float": encode(Image.fromarray(grey.astype(np.float32)), "TIFF"),
    }


SEEDS = seeds()
NAMES = sorted(SEEDS)
# values that sit on the edges of lengths, offsets and counts in image headers
EDGES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]

# A place in the file: the first 300 bytes (headers and EXIF) as often as anywhere.
places = st.one_of(st.integers(0, 300), st.floats(0, 1))
mutations = st.one_of(
    st.tuples(st.just("flip"), places, st.integers(0, 7)),
    st.tuples(st.just("byte"), places, st.integers(0, 255)),
    st.tuples(st.just("edge"), places, st.sampled_from(EDGES), st.sampled_from(["<H", ">H", "<I", ">I"])),
    st.tuples(st.just("insert"), places, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), places, st.integers(1, 64)),
    st.tuples(st.just("repeat"), places, st.integers(1, 64)),
    st.tuples(st.just("cut"), places),
)


# EXIF tags cameras write, of every type: text, short, long, rational, offsets to sub-blocks
EXIF_TAGS = [0x0100, 0x010F, 0x0112, 0x011A, 0x0128, 0x0132, 0x0213, 0x8769, 0x8825, 0x9286, 0x927C, 0xA002]
entries = st.lists(
    st.tuples(
        st.sampled_from(EXIF_TAGS) | st.integers(0, 0xFFFF),
        st.integers(0, 13),  # TIFF field types are 1..12
        st.sampled_from([0, 1, 2, 4, 8]) | st.sampled_from(EDGES),
        st.binary(min_size=4, max_size=4) | st.sampled_from(EDGES).map(lambda v: struct.pack("<I", v)),
    ),
    min_size=1,
    max_size=6,
)


def exif_ifd(orientation: int, fields: list[tuple], tail: bytes) -> bytes:
    """A little-endian TIFF structure of one IFD: an orientation, `fields` and `tail` bytes after."""
    fields = [(0x0112, 3, 1, struct.pack("<HH", orientation, 0)), *fields]
    ifd = struct.pack("<H", len(fields)) + b"".join(
        struct.pack("<HHI", tag, kind, count & 0xFFFFFFFF) + value for tag, kind, count, value in fields
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + tail


def with_exif(picture: bytes, exif: bytes) -> bytes:
    """A JPEG or PNG with `exif` spliced in: an APP1 segment after the JPEG's start, or an eXIf
    chunk after the PNG's header chunk."""
    if picture.startswith(b"\xff\xd8"):
        body = b"Exif\x00\x00" + exif
        return picture[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + picture[2:]
    chunk = b"eXIf" + exif
    header_end = 8 + 8 + 13 + 4  # signature, IHDR length and type, its 13 bytes, CRC
    spliced = struct.pack(">I", len(exif)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return picture[:header_end] + spliced + picture[header_end:]


WIDE = cell_image(5, size=64, seed=9).crop((0, 0, 64, 48))
PLAIN = {"jpeg": encode(WIDE, "JPEG"), "png": encode(WIDE)}
generated_exif = st.builds(
    with_exif,
    st.sampled_from(sorted(PLAIN)).map(PLAIN.get),
    st.builds(exif_ifd, st.integers(0, 9), entries, st.binary(max_size=64)),
)
pictures = st.one_of(st.sampled_from(NAMES).map(SEEDS.get), generated_exif)


def mutate(data: bytes, changes: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, place, *args in changes:
        if not out:
            break
        at = min(place, len(out) - 1) if isinstance(place, int) else int(place * (len(out) - 1))
        if kind == "flip":
            out[at] ^= 1 << args[0]
        elif kind == "byte":
            out[at] = args[0]
        elif kind == "edge":
            value, layout = args
            packed = struct.pack(layout, value & (0xFFFF if layout.endswith("H") else 0xFFFFFFFF))
            out[at : at + len(packed)] = packed
        elif kind == "insert":
            out[at:at] = args[0]
        elif kind == "delete":
            del out[at : at + args[0]]
        elif kind == "repeat":
            out[at:at] = out[at : at + args[0]]
        else:
            del out[at:]
    return bytes(out)


def only_unusable_escapes(data: bytes) -> None:
    """The decoded picture is RGB uint8 and the model input its size, or the refusal a sentence."""
    try:
        rgb = images.read_image(data)
    except images.UnusableImage as error:
        assert str(error).endswith(".")
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 1
    for framing in (False, True):
        try:
            x = images.load(data, 32, framing)
        except images.UnusableImage as error:
            assert str(error).endswith(".")
            continue
        assert x.shape == (32, 32, 3) and x.dtype == np.uint8


def fuzz(examples: int) -> int:
    """Run `examples` mutated pictures through the loader; return how many were tried."""
    tried = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(picture=pictures, changes=st.lists(mutations, max_size=6))
    def one(picture: bytes, changes: list[tuple]) -> None:
        nonlocal tried
        tried += 1
        only_unusable_escapes(mutate(picture, changes))

    one()
    return tried


def test_every_seed_is_a_usable_picture():
    for name, data in {**SEEDS, **PLAIN}.items():
        assert images.read_image(data).shape[2] == 3, name
    for data in PLAIN.values():
        assert images.read_image(with_exif(data, exif_ifd(6, [], b""))).shape == (64, 48, 3)


def test_mutated_pictures_give_a_picture_or_a_sentence():
    assert fuzz(400) >= 400


@pytest.mark.slow
def test_fifty_thousand_mutated_pictures_give_a_picture_or_a_sentence():
    tried = fuzz(SLOW_EXAMPLES)
    print(f"{tried} mutated pictures tried")
    assert tried >= SLOW_EXAMPLES
