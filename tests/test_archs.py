"""Every registered architecture, built at its smallest input: a smoke test over the registry."""

import numpy as np
import pytest

from bloodcell import archs, networks, runs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# the large backbones take seconds each to build: the full suite builds every one
BACKBONES = {"resnet50", "densenet201", "vgg16", "mobilenetv2", "inceptionv3", "xception", "hybrid"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in BACKBONES else n for n in archs.REGISTRY]
)
def test_architecture_builds_predicts_and_round_trips(name, artifacts):
    arch = archs.get(name)
    model = archs.build(name, 8, input_size=arch.min_size)
    x = np.random.default_rng(0).integers(0, 256, (2, arch.min_size, arch.min_size, 3)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (2, 8) and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    run = runs.create(name, {})
    run.save_model(model)
    np.testing.assert_allclose(run.load_model().predict(x, verbose=0), p, atol=1e-5)


def test_unknown_architecture_and_too_small_input_fail_loudly():
    with pytest.raises(archs.UnknownArchitecture, match="choose one of: cnn"):
        archs.get("alexnet")
    with pytest.raises(ValueError, match="at least 75 px"):
        archs.build("inceptionv3", 8, input_size=64)
    with pytest.raises(ValueError, match="only to pretrained backbones"):
        archs.build("cnn", 8, weights="imagenet")


def test_preprocessing_modes_match_keras():
    from keras.applications import imagenet_utils

    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for mode in ("tf", "torch", "caffe"):
        expected = imagenet_utils.preprocess_input(x.copy(), mode=mode)
        np.testing.assert_allclose(np.asarray(networks.Preprocess(mode)(x)), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_local_weights_file_is_loaded(tmp_path):
    import keras

    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet.weights.h5"
    source.save_weights(path)
    model = archs.build("mobilenetv2", 8, input_size=32, weights=str(path))
    loaded = model.get_layer(source.name).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, source.get_weights(), strict=True))
    with pytest.raises(archs.WeightsUnavailable, match="no weights file"):
        archs.build("mobilenetv2", 8, input_size=32, weights=str(tmp_path / "missing.h5"))


def test_imagenet_without_internet_names_the_offline_way(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")  # what Keras raises without internet

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with pytest.raises(archs.WeightsUnavailable, match=r"~/.keras/models/.*--weights"):
        archs.build("mobilenetv2", 8, input_size=96, weights="imagenet")


def test_a_crop_shows_the_network_only_the_centre_of_the_image():
    model = archs.build("cnn", 8, input_size=64, crop=0.5)
    assert archs.crop_side(model) == 32 and archs.crop_side(archs.build("cnn", 8, 64)) is None
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 64, 64, 3)).astype("float32")
    border = x.copy()
    border[:, :16] = border[:, 48:] = border[:, :, :16] = border[:, :, 48:] = 0.0
    np.testing.assert_allclose(model.predict(border, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    centre = x.copy()
    centre[:, 16:48, 16:48] = 255.0 - centre[:, 16:48, 16:48]
    assert not np.allclose(model.predict(centre, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    assert archs.flops(model) < archs.flops(archs.build("cnn", 8, input_size=64)) / 3


def test_a_crop_out_of_range_or_too_small_for_the_network_is_refused():
    with pytest.raises(ValueError, match=r"from 0\.3 to 1"):
        archs.build("cnn", 8, input_size=64, crop=0.2)
    with pytest.raises(ValueError, match=r"from 0\.3 to 1"):
        archs.build("cnn", 8, input_size=64, crop=1.5)
    with pytest.raises(ValueError, match="at least 75 px; 60 was asked for"):
        archs.build("inceptionv3", 8, input_size=80, crop=0.75)
