import numpy as np
import pytest
from PIL import Image

from bloodcell import archs, finder, networks, saliency


@pytest.mark.parametrize(("name", "size"), [("cnn", 32), ("unet", 32), ("mobilenetv2", 32)])
def test_heat_map_covers_the_image_in_unit_range(name, size):
    model = archs.build(name, 8, input_size=size)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3)).astype(np.uint8)
    heat = saliency.GradCam(model)(image, 3)
    assert heat.shape == (size, size) and heat.min() >= 0 and heat.max() <= 1


def test_heat_map_follows_the_evidence():
    """Class 0 is 'how much red': the heat map must sit on the red patch, not elsewhere."""
    import keras

    image_in = keras.Input((32, 32, 3))
    red = keras.layers.Conv2D(1, 1, use_bias=False)
    features = networks.feature_map(red(image_in))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, name="logits", kernel_initializer="ones")(pooled)
    model = keras.Model(image_in, keras.layers.Softmax(name="probabilities")(logits))
    red.set_weights([np.array([1.0, 0, 0], "float32").reshape(1, 1, 3, 1)])
    image = np.zeros((32, 32, 3), np.uint8)
    image[4:14, 2:12, 0] = 255
    heat = saliency.GradCam(model)(image, 0)
    assert heat[6:12, 4:10].mean() > 0.9 and heat[18:, 18:].mean() < 0.05


def test_overlay_keeps_the_image_shape():
    image = np.zeros((40, 50, 3), np.uint8)
    out = saliency.overlay(image, np.linspace(0, 1, 40 * 50).reshape(40, 50))
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8 and out[-1, -1, 0] > out[0, 0, 0]


def test_heat_map_of_a_cropping_model_lies_within_its_crop():
    model = archs.build("cnn", 8, input_size=64, crop=0.5)
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    cam = saliency.GradCam(model)
    heats = [cam(image, k) for k in range(8)]  # an untrained model may have no evidence for one class
    assert all(heat.shape == (64, 64) for heat in heats) and max(heat.max() for heat in heats) > 0
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    assert not any(heat[outside].any() for heat in heats)


def test_a_heat_map_of_a_frame_lies_on_the_frame_in_the_picture():
    heat = np.ones((8, 8), np.float32)
    placed = saliency.place(heat, (-10, 20, 30, 60), (50, 40))  # reaches past the left and bottom
    assert placed.shape == (50, 40)
    assert placed[20:50, 0:30].min() > 0.99
    assert np.isnan(placed[:20]).all() and np.isnan(placed[:, 30:]).all()


def test_a_framing_model_draws_its_heat_map_on_the_original_picture(framed_model):
    from bloodcell.predictor import Classifier
    from tests.conftest import encode
    from tests.test_finder import smear

    picture = smear(size=300, nucleus=(90, 200), radius=30)
    classifier = Classifier.load()
    assert classifier.framing
    heats = [
        classifier.heat_map(encode(Image.fromarray(picture)), c, display=300) for c in classifier.classes
    ]
    assert all(h.shape == picture.shape for h in heats)
    x0, y0, x1, y1 = finder.find(picture).frame
    outside = np.ones(picture.shape[:2], bool)
    outside[max(0, y0) : y1, max(0, x0) : x1] = False
    # outside the frame the picture is shown as it is; inside, some class's heat colours it
    assert all(np.array_equal(h[outside], picture[outside]) for h in heats)
    assert any(not np.array_equal(h[~outside], picture[~outside]) for h in heats)
