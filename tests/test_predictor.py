import numpy as np
import pytest

from bloodcell.predictor import Classifier, dihedral


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    batch = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    views = dihedral(batch)
    assert len(views) == 8 and np.array_equal(views[0], batch)
    assert len({v.tobytes() for v in views}) == 8  # all different
    assert any(np.array_equal(v, batch.transpose(0, 2, 1, 3)) for v in views)  # the mirror on the diagonal


def test_test_time_augmentation_averages_the_eight_views(served_model):
    classifier = Classifier.load()
    cells = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    plain, distance = classifier.analyse(cells)
    averaged, same_distance = classifier.analyse(cells, tta=True)
    each = [classifier.analyse(view)[0] for view in dihedral(cells)]
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), atol=1e-6)
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(distance, same_distance)
    assert not np.allclose(plain, averaged)  # the views do differ for an untrained model
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(each[0], each[1], atol=1e-9)


@pytest.mark.slow
def test_bfloat16_serving_computes_in_bfloat16_and_agrees_with_float32(served_model):
    cells = np.random.default_rng(3).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    exact = Classifier.load()
    fast = Classifier.load(bfloat16=True)
    assert fast.model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert fast.model.get_layer("logits").compute_dtype == "float32"
    assert exact.model.get_layer("stem_conv").compute_dtype == "float32"
    p_exact = exact.analyse(cells)[0]
    p_fast = fast.analyse(cells)[0]
    np.testing.assert_allclose(p_fast.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(p_fast - p_exact).max() <= 0.02
    assert not np.array_equal(p_fast, p_exact)  # it really computed in 16 bits


def test_a_model_framed_by_another_finder_version_is_not_served(framed_model):
    from bloodcell import finder, runs

    framed_model.update(framing=finder.VERSION - 1)
    with pytest.raises(runs.RunError, match="Train it again"):
        Classifier.load(framed_model.id)


def test_a_framing_model_answers_the_cell_it_finds_and_says_when_there_is_none(framed_model):
    from PIL import Image

    from tests.conftest import encode
    from tests.test_finder import BEIGE, smear

    classifier = Classifier.load()
    cell = smear(size=300, nucleus=(90, 200), radius=30)
    answers = classifier.predict(
        [
            ("cell.png", encode(Image.fromarray(cell))),
            ("empty-field.png", encode(Image.new("RGB", (300, 300), BEIGE))),
        ]
    )
    assert answers[0].error is None and answers[0].label in classifier.classes
    assert "No stained cell could be found" in answers[1].error or "blank" in answers[1].error
    # the answer is the framed cell's: the same cell cut loosely or tightly gets the same input
    tight = cell[150:250, 40:140]
    loose, framed = (classifier.inputs(encode(Image.fromarray(c))).astype(float) for c in (cell, tight))
    assert np.abs(loose - framed).mean() < 12


def test_a_field_answered_as_one_cell_is_never_confident(served_model):
    from PIL import Image

    from tests.conftest import encode
    from tests.test_finder import field, smear

    classifier = Classifier.load()
    classifier.review_below = 0.0  # every answer would be confident
    picture, _ = field()
    answers = classifier.predict(
        [("field.png", encode(Image.fromarray(picture))), ("cell.png", encode(Image.fromarray(smear())))]
    )
    assert answers[0].status == "review" and "microscope field" in answers[0].note
    assert answers[1].status == "confident" and answers[1].note is None
    assert "note" in answers[0].as_dict() and "note" not in answers[1].as_dict()


def test_field_mode_answers_every_cell_with_its_box(served_model):
    from PIL import Image

    from tests.conftest import encode
    from tests.test_finder import BEIGE, field

    picture, _ = field()
    fields = Classifier.load().predict_fields(
        [
            ("field.png", encode(Image.fromarray(picture))),
            ("empty.png", encode(Image.new("RGB", (640, 480), BEIGE))),
            ("notes.png", b"not a picture"),
        ]
    )
    cells = fields[0].cells
    assert len(cells) == 3 and fields[0].platelets == 3
    assert all(c.file == "field.png" and c.label and c.status and len(c.box) == 4 for c in cells)
    assert fields[1].cells == [] and fields[1].lines() == [{"file": "empty.png", "cells": 0}]
    assert fields[2].error and fields[2].lines() == [{"file": "notes.png", "error": fields[2].error}]


@pytest.mark.parametrize("model", ["served_model", "framed_model"])
def test_predict_answers_the_very_arrays_training_reads(model, request, monkeypatch):
    from bloodcell import images
    from tests.conftest import POOL

    if not POOL.is_dir():
        pytest.skip(f"the PBC image pool is not at {POOL} (a fresh machine)")
    request.getfixturevalue(model)
    classifier = Classifier.load()
    files = [sorted((POOL / c).glob("*.jpg"))[0] for c in classifier.classes]
    seen = []
    answer = Classifier._answer
    monkeypatch.setattr(Classifier, "_answer", lambda self, a, x: seen.append(x) or answer(self, a, x))
    answers = classifier.predict([(f.name, f.read_bytes()) for f in files])
    assert all(a.error is None for a in answers)
    trained = np.stack([images.load(f, classifier.image_size, classifier.framing) for f in files])
    assert np.concatenate(seen).tobytes() == trained.tobytes()
