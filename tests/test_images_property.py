"""Property: whatever bytes arrive, the loader returns an RGB array or raises UnusableImage."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bloodcell.images import UnusableImage, read_image
from tests.conftest import cell_image, encode

VALID = {fmt: encode(cell_image(1, size=48), fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")}


def only_unusable_escapes(data: bytes) -> None:
    try:
        rgb = read_image(data)
    except UnusableImage as error:
        assert str(error)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    only_unusable_escapes(data)


@pytest.mark.parametrize("fmt", list(VALID))
@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0, 1))
def test_truncations(fmt, cut):
    data = VALID[fmt]
    only_unusable_escapes(data[: int(len(data) * cut)])


@pytest.mark.parametrize("fmt", list(VALID))
@settings(max_examples=80, deadline=None)
@given(flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=12))
def test_bit_flips(fmt, flips):
    data = bytearray(VALID[fmt])
    for where, bit in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    only_unusable_escapes(bytes(data))
