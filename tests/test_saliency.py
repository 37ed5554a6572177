import numpy as np
import pytest

from bloodcell import archs, saliency


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
    features = archs.feature_map(red(image_in))
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
