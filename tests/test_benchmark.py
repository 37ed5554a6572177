from bloodcell import benchmark
from tests.conftest import cell_image, encode


def test_serving_benchmark_reports_every_figure(served_model):
    result = benchmark.serving([encode(cell_image(k)) for k in range(3)], repeats=3)
    assert result["model"] == served_model.id
    assert result["one_image_from_bytes"]["median_ms"] > 0 and result["heat_map"]["p95_ms"] > 0
    assert result["batch_images_per_second"] > 0 and result["load_seconds"] > 0
