from pathlib import Path

import keras
import numpy as np
import pytest

from bloodcell import archs, benchmark, evaluation
from tests.conftest import cell_image, encode


def test_serving_benchmark_reports_every_figure(served_model):
    result = benchmark.serving([encode(cell_image(k)) for k in range(3)], repeats=3)
    assert result["model"] == served_model.id
    assert result["one_image_from_bytes"]["median_ms"] > 0 and result["heat_map"]["p95_ms"] > 0
    for figure in ("one_image_from_bytes", "one_image_model_only", "heat_map"):  # order, not speed
        assert 0 < result[figure]["median_ms"] <= result[figure]["p95_ms"]
    assert result["batch_images_per_second"] > 0 and result["load_seconds"] > 0
    assert set(result["finder"]) == {"framed", "resized"} and result["framing"] is False


def test_flops_count_convolutions_and_dense_layers_by_hand():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)  # 8x8 outputs
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    assert archs.flops(model) == 2 * (8 * 8 * 9 * 3 * 8 + 8 * 8 * 9 * 8 + 8 * 4)
    # published figures: ResNet50 ~4.1 G multiply-adds at 224 px, MobileNet-V2 ~0.3 G
    assert archs.flops(archs.build("resnet50", 8, 224)) / 2e9 == pytest.approx(3.9, rel=0.05)
    assert archs.flops(archs.build("mobilenetv2", 8, 224)) / 2e9 == pytest.approx(0.3, rel=0.05)


def test_bootstrap_intervals_hold_the_score_and_shrink_with_more_images():
    rng = np.random.default_rng(0)

    def width(n):
        truth = rng.integers(0, 8, n)
        predicted = np.where(rng.random(n) < 0.9, truth, (truth + 1) % 8)
        scores = evaluation.bootstrap_ci95(truth, predicted, resamples=300)
        for score in scores.values():
            assert score["ci95"][0] <= score["value"] <= score["ci95"][1]
        low, high = scores["accuracy"]["ci95"]
        return high - low

    assert width(4000) < width(250) / 2


@pytest.mark.slow
def test_models_table_scores_and_times_the_default(served_model):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 200)
    served_model.write_predictions(
        logits=np.eye(8)[labels] * 5 + rng.normal(size=(200, 8)), labels=labels, files=np.array(["x"] * 200)
    )
    served_model.update(train_seconds=60.0, epochs_run=2, versions={"cpus": "1", "backend": "tensorflow"})
    result = benchmark.models([encode(cell_image(k)) for k in range(2)])
    (row,) = result["runs"]
    assert row["default"] and row["gflop_per_image"] > 0 and row["serving"]["batch_images_per_second"] > 0
    assert row["training"]["images_per_second"] == pytest.approx(2 * 1 / 60.0)
    assert row["training"]["share_of_peak"] is None  # trained on another kind of machine
    (line,) = [line for line in benchmark.markdown(result).splitlines() if served_model.id in line]
    serving = line.strip("| ").split(" | ")[-3:]  # a kept model: every serving column measured
    assert "(default)" in line and "—" not in serving and all(float(v) > 0 for v in serving)


@pytest.mark.slow
def test_training_benchmark_times_both_input_paths_and_both_precisions(tiny_dataset, artifacts):
    result = benchmark.training_speed(str(tiny_dataset), size=32, batch_size=16, n=64)
    assert result["images"] == 64
    assert set(result["input_images_per_second"]) == {
        "decode_into_memory",
        "in_memory_batches",
        "streamed_from_files",
    }
    assert all(rate > 0 for rate in result["input_images_per_second"].values())
    assert set(result["training_images_per_second"]) == {"float32", "mixed_bfloat16"}
    assert all(rate > 0 for rate in result["predict_images_per_second"].values())


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(benchmark.CHROMIUM).exists(), reason="the dashboard benchmark drives Debian's chromium"
)
def test_dashboard_benchmark_times_the_first_page_and_each_answer(tmp_path):
    pictures = []
    for k in range(3):
        pictures.append(tmp_path / f"cell{k}.jpg")
        cell_image(k, size=96, seed=k).save(pictures[-1], quality=92)
    result = benchmark.dashboard(pictures)
    assert 0 < result["first_page_seconds"] < 60
    assert 0 < result["later_answer_seconds"] < result["first_answer_seconds"] + 30
    assert result["new_session_answer_seconds"] > 0 and result["goals_seconds"]["later_answer"] == 0.3
