"""Training and serving read real pictures into the very same arrays, byte for byte."""

import numpy as np
import pytest

from bloodcell import datasets, finder, images
from tests.conftest import POOL, needs_pool

FIELDS = POOL.parent / "fields-dev"


@pytest.fixture(scope="module")
def pool_sample(tmp_path_factory):
    """Three real PBC pictures of each class, linked into a folder of the pool's layout."""
    root = tmp_path_factory.mktemp("pool")
    for folder in sorted(p for p in POOL.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for picture in sorted(folder.glob("*.jpg"))[:3]:
            (root / folder.name / picture.name).symlink_to(picture)
    return datasets.discover(root)


@needs_pool
@pytest.mark.parametrize(("size", "framing"), [(32, False), (120, False), (80, True)])
def test_training_and_serving_see_the_same_pixels(pool_sample, artifacts, size, framing):
    trained, readable = datasets.load_arrays(pool_sample, size, cache=False, framing=framing)
    assert readable.all()
    for file, x in zip(pool_sample.files, trained, strict=True):
        from_path, _ = images.load_served(file, size, framing)
        from_upload, _ = images.load_served(file.read_bytes(), size, framing)
        assert from_path.tobytes() == x.tobytes() == from_upload.tobytes(), file


@needs_pool
def test_one_look_of_the_finder_answers_what_find_and_survey_do(pool_sample):
    pictures = [images.read_image(f) for f in pool_sample.files]
    if FIELDS.is_dir():
        pictures += [images.read_image(f) for f in sorted(FIELDS.glob("*.jpg"))[:12]]
    looks = [finder.look(rgb) for rgb in pictures]
    assert [cell for cell, _ in looks] == [finder.find(rgb) for rgb in pictures]
    assert [field for _, field in looks] == [finder.survey(rgb).is_field for rgb in pictures]
    assert not any(field for _, field in looks[: len(pool_sample)])
    assert all(field for _, field in looks[len(pool_sample) :])  # every camera field is one


def test_the_look_of_a_generated_field_and_a_blank_picture():
    from tests.test_finder import BEIGE, field, smear

    picture, _ = field()
    assert finder.look(picture) == (finder.find(picture), True)
    assert finder.look(smear()) == (finder.find(smear()), False)
    blank = np.full((300, 300, 3), BEIGE, np.uint8)
    assert finder.look(blank) == (None, False)
