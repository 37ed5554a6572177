import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
POOL = ROOT.parent / "shared" / "data" / "pbc-pool"
needs_pool = pytest.mark.skipif(
    not POOL.is_dir(), reason=f"the PBC image pool is not at {POOL} (a fresh machine)"
)


@pytest.fixture(autouse=True)
def private_cases(tmp_path, monkeypatch):
    """Every test keeps its cases in its own database, never the user's."""
    monkeypatch.setenv("BLOODCELL_CASES", str(tmp_path / "cases.sqlite3"))


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    """A private artifacts and cache folder, so tests never touch the committed runs."""
    monkeypatch.setenv("BLOODCELL_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("BLOODCELL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "artifacts"


@pytest.fixture
def env(artifacts):
    """The environment of a command run in a subprocess, with the private artifacts folder."""
    return {**os.environ}


def cell_image(class_index: int, size: int = 96, seed: int = 0) -> Image.Image:
    """A generated 'cell': a disc whose colour and size depend on the class, at a random spot."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (235, 225, 230))
    draw = ImageDraw.Draw(image)
    hue = [
        (120, 40, 160),
        (230, 120, 60),
        (60, 20, 90),
        (150, 80, 200),
        (80, 60, 190),
        (170, 140, 210),
        (200, 90, 150),
        (110, 30, 120),
    ][class_index % 8]
    radius = size // 6 + (class_index % 4) * size // 16
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, 2))
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=hue)
    noise = rng.integers(-6, 7, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Eight class folders of generated cells, with aliased folder names and one stray file."""
    root = tmp_path / "tiny"
    names = [
        "Basophil",
        "eosinophils",
        "erythroblast",
        "immature_granulocytes",
        "LYMPHOCYTE",
        "monocyte",
        "neutrophil",
        "platelets",
    ]
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(14):
            cell_image(k, seed=100 * k + i).save(folder / f"cell_{i}.png")
    (root / "neutrophil" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "neutrophil" / "notes.txt").write_text("not an image")
    return root


def _serve(arch: str = "cnn", **record):
    """An untrained 32 px model stored as a finished default run in the private artifacts."""
    import streamlit as st

    from bloodcell import archs, runs
    from bloodcell.classes import CLASSES

    run = runs.create(
        "served",
        {
            "arch": arch,
            "classes": list(CLASSES),
            "image_size": 32,
            "split": {"train": 1, "val": 1, "test": 1},
            **record,
        },
    )
    run.save_model(archs.build(arch, len(CLASSES), input_size=32))
    run.update(status="finished")
    runs.set_default(run.id)
    st.cache_resource.clear()
    return run


@pytest.fixture
def served_model(artifacts):
    """An untrained 32 px model of whole pictures, the default run in the private artifacts."""
    return _serve()


@pytest.fixture
def framed_model(artifacts):
    """An untrained 32 px model that frames the cell it finds (bloodcell.finder), the default run."""
    from bloodcell import finder

    return _serve(framing=finder.VERSION)


@pytest.fixture
def groupnorm_model(artifacts):
    """An untrained 32 px GroupNorm model (no BatchNorm statistics), the default run."""
    return _serve("cnn-gn")


def awkward_inputs() -> dict[str, tuple[bytes, str | None]]:
    """File name -> (bytes, None if it must be classified, else words its refusal must hold):
    every kind of awkward or bad input of the trust issue, generated."""
    cell = cell_image(2, size=96, seed=7)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees
    jpeg = encode(cell, "JPEG", quality=90)
    deep = Image.fromarray(np.asarray(cell.convert("L"), dtype=np.uint16) * 257)
    rgba = cell.convert("RGBA")
    rgba.putalpha(200)
    palette = cell.convert("P", palette=Image.Palette.ADAPTIVE)
    frames = [cell, cell_image(5, size=96, seed=8)]
    return {
        "grayscale.png": (encode(cell.convert("L")), None),
        "sixteen-bit.png": (encode(deep), None),
        "rgba.png": (encode(rgba), None),
        "palette.png": (encode(palette), None),
        "cmyk.jpg": (encode(cell.convert("CMYK"), "JPEG", quality=90), None),
        "animated.gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), None),
        "scan.tiff": (encode(cell, "TIFF"), None),
        "cell.webp": (encode(cell, "WEBP"), None),
        "rotated.jpg": (encode(cell.crop((0, 0, 96, 64)), "JPEG", exif=exif.tobytes()), None),
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (b"hello, this is text\n", "not a picture"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "damaged or incomplete"),
        "archive.png": (b"PK\x03\x04" + b"\x00" * 200, "not a picture"),
        "drawing.svg": (
            b'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="80"></svg>',
            "not a picture",
        ),
        "bomb.png": (encode(Image.new("L", (10_000, 5_000)), optimize=True), "too large"),
        "one-pixel.png": (encode(Image.new("RGB", (1, 1))), "too small"),
        "huge.png": (encode(Image.new("L", (70_000, 700)), optimize=True), "too large"),
        "blank.png": (encode(Image.new("RGB", (96, 96), (230, 220, 225))), "blank"),
    }
