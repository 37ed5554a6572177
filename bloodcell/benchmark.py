"""Speed and accuracy of stored models on this machine: serving (load time, one image from file
bytes to answer, with and without its heat map, `predict` on many files end to end, batch
throughput), the dashboard in a real browser, and, for the default model and the best run of
each architecture, test scores with bootstrap intervals, training speed and the share of this
CPU's attainable peak that training used. Importing it loads no TensorFlow."""

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bloodcell import datasets, evaluation, images, results, runs
from bloodcell.predictor import Classifier

# The goals of issue 19, checked by the figures below.
PREDICT_GOAL_MS = 2.0  # `predict` on many files, per image, end to end
FIRST_PAGE_GOAL_S = 2.0  # after the server is up
FIRST_ANSWER_GOAL_S = 3.0  # after the first upload on a fresh server
LATER_ANSWER_GOAL_S = 0.3
CHROMIUM = "/usr/bin/chromium"
RECORD = "benchmark.json"  # serving speed, kept in the measured run
DASHBOARD_RECORD = "dashboard.json"  # kept in the default run
ROOT = Path(__file__).resolve().parent.parent


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def serving(
    image_bytes: list[bytes | str | Path], model: str | None = None, repeats: int = 50, bfloat16: bool = False
) -> dict:
    """Time the default (or named) model on `image_bytes` (pictures' bytes or files), after one
    warm-up answer; `predict` is `predict_speed` on all of them."""
    started = time.perf_counter()
    classifier = Classifier.load(model, bfloat16)
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
    batch = np.stack([classifier.inputs(b) for b in image_bytes])
    while len(batch) < 512:
        batch = np.concatenate([batch, batch])
    classifier.analyse(batch[:256])
    t = time.perf_counter()
    classifier.analyse(batch)
    throughput = len(batch) / (time.perf_counter() - t)
    one = batch[:1]
    model_only = []
    for _ in range(repeats):
        t = time.perf_counter()
        classifier.analyse(one)
        model_only.append(time.perf_counter() - t)
    return {
        "model": classifier.run.id,
        "machine": _machine(),
        "bfloat16": bfloat16,
        "framing": classifier.framing,
        "finder": finder_speed(image_bytes, repeats),
        "load_seconds": load_seconds,
        "one_image_model_only": _percentiles(model_only),
        "one_image_from_bytes": _percentiles(single),
        "heat_map": _percentiles(heat),
        "batch_images_per_second": float(throughput),
        "predict": predict_speed(classifier, image_bytes),
    }


def predict_speed(classifier: Classifier, pictures: list[bytes | str | Path]) -> dict:
    """`Classifier.predict` on all `pictures` at once, end to end (reading, decoding, finding
    the cell, the model, the answers), per picture: wall time, and the processor time this
    process used (every thread's; the model and the readers share the cores). The model's own
    share is timed apart on the same inputs, and the load average says how busy the machine was."""
    sources = [(str(i), p) for i, p in enumerate(pictures)]
    classifier.predict(sources[:8])
    load_average = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    answers = classifier.predict(sources)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    x = np.stack([classifier.inputs(p) for p, a in zip(pictures, answers, strict=True) if not a.error])
    model_wall, model_cpu = time.perf_counter(), time.process_time()
    classifier.analyse(x)
    model_wall, model_cpu = time.perf_counter() - model_wall, time.process_time() - model_cpu
    n = len(pictures)
    return {
        "images": n,
        "ms_per_image": 1000 * wall / n,
        "cpu_ms_per_image": 1000 * cpu / n,
        "model_ms_per_image": 1000 * model_wall / len(x),
        "model_cpu_ms_per_image": 1000 * model_cpu / len(x),
        "goal_ms_per_image": PREDICT_GOAL_MS,
        "load_average_before": load_average,
        "cpus": os.cpu_count(),
    }


def finder_speed(image_bytes: list[bytes], repeats: int = 50) -> dict:
    """What finding and framing the cell adds to each picture, beyond decoding it: the time of
    preparing it framed (find, frame, white balance and the photograph checks) against a plain
    resize of the same decoded picture."""
    pictures = [images.read_image(b) for b in image_bytes]
    framed, plain = [], []
    for i in range(max(repeats, len(pictures))):
        rgb = pictures[i % len(pictures)]
        t = time.perf_counter()
        with contextlib.suppress(images.UnusableImage):  # a refusal costs the finder's time too
            images.prepare(rgb, 80, framing=True)
        framed.append(time.perf_counter() - t)
        t = time.perf_counter()
        images.resize(rgb, 80)
        plain.append(time.perf_counter() - t)
    return {"framed": _percentiles(framed), "resized": _percentiles(plain)}


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs"


def peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """This CPU's attainable float32 peak: the best rate of a large matrix product (BLAS), the
    densest work a CPU does. FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def best_runs() -> list[runs.Run]:
    """The default run and the most accurate finished run of each architecture."""
    finished = [
        r for r in runs.all_runs() if r.status == "finished" and (r.path / "predictions.npz").is_file()
    ]
    best: dict[str, runs.Run] = {}
    for run in finished:
        arch = run.record["arch"]
        if arch not in best or run.metrics["accuracy"] > best[arch].metrics["accuracy"]:
            best[arch] = run
    chosen = [runs.resolve(None)] if runs.default_id() else []
    return chosen + [r for r in best.values() if r.id not in {c.id for c in chosen}]


def models(image_bytes: list[bytes]) -> dict:
    """Scores, training speed and (where the model is kept) serving speed of `best_runs()`."""
    from bloodcell import archs

    peak = peak_flops()
    rows = []
    for run in best_runs():
        record, stored = run.record, run.predictions()
        predicted = stored["logits"].argmax(axis=1)
        size = int(record["image_size"])
        crop = record.get("crop", 1.0)
        flop = archs.flops(archs.build(record["arch"], len(record["classes"]), size, crop=crop))
        row = {
            "run": run.id,
            "arch": record["arch"],
            "image_size": size,
            "crop": crop,
            "default": run.id == runs.default_id(),
            "test": evaluation.bootstrap_ci95(stored["labels"], predicted),
            "n_test": len(predicted),
            "gflop_per_image": flop / 1e9,
            "training": _training(record, flop, peak),
        }
        if run.has_model:
            row["serving"] = serving(image_bytes, run.id, repeats=30)
        rows.append(row)
    return {"machine": _machine(), "peak_gflops": peak / 1e9, "runs": rows}


def _training(record: dict, flop: int, peak: float) -> dict:
    """Training images a second, and (on this kind of machine: no accelerator, as many CPUs)
    the achieved FLOP/s as a share of `peak`; a training step costs about 3 forward passes."""
    seconds, epochs = record.get("train_seconds"), record.get("epochs_run")
    if not seconds or not epochs:
        return {}
    images_per_second = epochs * record["split"]["train"] / seconds
    versions = record.get("versions", {})
    here = versions.get("cpus") == str(os.cpu_count()) and versions.get("accelerator", "none") == "none"
    return {
        "minutes": seconds / 60,
        "images_per_second": images_per_second,
        "trained_on": results.trained_on(record),
        "share_of_peak": 3 * flop * images_per_second / peak if here else None,
    }


def markdown(result: dict) -> str:
    """The README table of `models()`."""

    def ci(score: dict) -> str:
        low, high = score["ci95"]
        return f"{score['value']:.2%} ({low:.2%}–{high:.2%})"

    lines = [
        f"Measured on {result['machine']}; attainable peak {result['peak_gflops']:.0f} GFLOP/s "
        "(best float32 2048² matrix product). Intervals: 95% bootstrap over the test images.",
        "",
        "| run | arch | input | accuracy | balanced acc. | macro-F1 | GFLOP/image | trained on | train min "
        "| train img/s | share of peak | one image, model (ms) | one image, bytes (ms) | batch img/s |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["runs"]:
        t, s = row["training"], row.get("serving")
        share = t.get("share_of_peak")
        lines.append(
            "| "
            + " | ".join(
                [
                    row["run"] + (" (default)" if row["default"] else ""),
                    row["arch"],
                    results.pixels(row),
                    ci(row["test"]["accuracy"]),
                    ci(row["test"]["balanced_accuracy"]),
                    ci(row["test"]["macro_f1"]),
                    f"{row['gflop_per_image']:.2f}",
                    t.get("trained_on", ""),
                    f"{t['minutes']:.1f}" if t else "",
                    f"{t['images_per_second']:.0f}" if t else "",
                    f"{share:.1%}" if share is not None else "—",
                    f"{s['one_image_model_only']['median_ms']:.1f}" if s else "—",
                    f"{s['one_image_from_bytes']['median_ms']:.1f}" if s else "—",
                    f"{s['batch_images_per_second']:.0f}" if s else "—",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def training_speed(data: str, arch: str = "cnn", size: int = 64, batch_size: int = 64, n: int = 1024) -> dict:
    """Images a second on this machine of the two input paths (decoded arrays in memory, files
    streamed through tf.data) and of training steps in float32 and in mixed precision, on `n`
    images of `data` (a seeded sample)."""
    import keras

    from bloodcell import archs, augment, config, distribute, fit

    dataset = datasets.discover(data)
    chosen = np.sort(np.random.default_rng(0).permutation(len(dataset))[:n])
    sample = dataset.subset(chosen)
    targets = np.eye(len(dataset.classes), dtype="float32")[sample.labels]
    t = time.perf_counter()
    x, _ = datasets.load_arrays(sample, size, cache=False)
    decode_seconds = time.perf_counter() - t

    def rate(batches) -> float:
        t = time.perf_counter()
        seen = sum(len(b[0]) for b in batches)
        return seen / (time.perf_counter() - t)

    in_memory = augment.Batches(x, targets, batch_size, shuffle=True)
    streamed = datasets.ImageFiles(tuple(map(str, sample.files)), size).stream(
        batch_size, targets, shuffle=True
    )
    result = {
        "machine": _machine(),
        "images": len(x),
        "image_size": size,
        "input_images_per_second": {
            "decode_into_memory": len(x) / decode_seconds,
            "in_memory_batches": rate(in_memory[i] for i in range(len(in_memory))),
            "streamed_from_files": rate(streamed.as_numpy_iterator()),
        },
        "training_images_per_second": {},
        "predict_images_per_second": {},
    }
    for mixed in (False, True):
        with distribute.precision(mixed) as policy:
            model = archs.build(arch, len(dataset.classes), size)
            settings = config.TrainConfig(arch=arch, data=data, image_size=size)
            trainer = fit.with_augmentation(model, settings)
            trainer.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy())
        trainer.fit(x[: 2 * batch_size], targets[: 2 * batch_size], batch_size=batch_size, verbose=0)
        t = time.perf_counter()
        trainer.fit(x, targets, batch_size=batch_size, verbose=0)
        result["training_images_per_second"][policy] = len(x) / (time.perf_counter() - t)
        model.predict(x[:256], batch_size=256, verbose=0)
        t = time.perf_counter()
        model.predict(x, batch_size=256, verbose=0)
        result["predict_images_per_second"][policy] = len(x) / (time.perf_counter() - t)
    return result


def dashboard(pictures: list[Path], pause: float = 0.0) -> dict:
    """The dashboard as a clinician meets it, in Debian's chromium driven by Playwright, on a
    fresh `streamlit run app.py` over this project's runs: seconds from the server answering to
    the first page drawn, from the first upload to its answer (`pause` seconds after the page
    drew: a person takes a few to pick a file), and from each later upload in the same session
    to its answer (median), and the same for a later visitor's first upload (a new session).
    `pictures`: at least two single-cell pictures."""
    from playwright.sync_api import sync_playwright

    if len(pictures) < 2:
        raise ValueError("Name at least two single-cell pictures: the first upload and a later one.")
    if not Path(CHROMIUM).exists():
        raise ValueError(f"The dashboard benchmark drives {CHROMIUM}; install it (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        with _server() as (url, up):
            page = _classify_page(browser, url)
            first_page = time.perf_counter() - up
            time.sleep(pause)
            answers = [_answer_seconds(page, n, picture) for n, picture in enumerate(pictures)]
            page.close()
            visitor = _classify_page(browser, url)
            new_session = _answer_seconds(visitor, len(pictures), pictures[0])
        browser.close()
    return {
        "first_page_seconds": first_page,
        "first_answer_seconds": answers[0],
        "later_answer_seconds": float(np.median(answers[1:])),
        "new_session_answer_seconds": new_session,
        "pause_before_first_upload": pause,
        "goals_seconds": {
            "first_page": FIRST_PAGE_GOAL_S,
            "first_answer": FIRST_ANSWER_GOAL_S,
            "later_answer": LATER_ANSWER_GOAL_S,
        },
        "load_average": os.getloadavg()[0],
        "machine": _machine(),
    }


def _classify_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_role("heading", name="Classify blood cells").wait_for(timeout=60_000)
    return page


def _answer_seconds(page, n: int, picture: Path) -> float:
    """Seconds from handing the page `picture` (as upload `n`) to its answer on screen."""
    name = f"upload{n}{picture.suffix}"
    earlier = page.locator('button[aria-label^="Remove "]')
    while earlier.count():  # the clinician's next cell replaces the last one
        earlier.first.click()
        page.wait_for_timeout(50)
    page.get_by_text(": heat map").first.wait_for(state="detached", timeout=30_000)
    started = time.perf_counter()
    page.locator("input[type=file]").set_input_files(
        {"name": name, "mimeType": "image/jpeg", "buffer": picture.read_bytes()}
    )
    page.get_by_text(f"{name}: heat map").wait_for(timeout=120_000)
    return time.perf_counter() - started


@contextlib.contextmanager
def _server() -> Iterator[tuple[str, float]]:
    """`streamlit run app.py` on a free local port: its URL and the moment it first answered."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    server = subprocess.Popen(
        [*command, "--server.headless", "true"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            if time.time() > deadline or server.poll() is not None:
                raise OSError("The dashboard did not start; run `streamlit run app.py` to see why.")
            time.sleep(0.05)
        yield url, time.perf_counter()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
