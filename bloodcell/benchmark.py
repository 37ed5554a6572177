"""Serving speed of a stored model on this machine: load time, one image from file bytes to
answer (with and without its heat map) and batch throughput."""

import os
import platform
import time

import numpy as np

from bloodcell import images
from bloodcell.predictor import Classifier


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def serving(image_bytes: list[bytes], model: str | None = None, repeats: int = 50) -> dict:
    """Time the default (or named) model on `image_bytes`, after one warm-up answer."""
    started = time.perf_counter()
    classifier = Classifier.load(model)
    load_seconds = time.perf_counter() - started
    classifier.predict([("warm-up", image_bytes[0])])
    classifier.heat_map(image_bytes[0], classifier.classes[0])
    single, heat = [], []
    for i in range(repeats):
        data = image_bytes[i % len(image_bytes)]
        t = time.perf_counter()
        answer = classifier.predict([("cell", data)])[0]
        single.append(time.perf_counter() - t)
        t = time.perf_counter()
        classifier.heat_map(data, answer.label)
        heat.append(time.perf_counter() - t)
    batch = np.stack([images.load(b, classifier.image_size) for b in image_bytes])
    while len(batch) < 512:
        batch = np.concatenate([batch, batch])
    classifier.analyse(batch[:256])
    t = time.perf_counter()
    classifier.analyse(batch)
    throughput = len(batch) / (time.perf_counter() - t)
    return {
        "model": classifier.run.id,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_seconds": load_seconds,
        "one_image_from_bytes": _percentiles(single),
        "heat_map": _percentiles(heat),
        "batch_images_per_second": float(throughput),
    }
