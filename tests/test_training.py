"""Training options on generated data: SMOTE, class weights, SupCon, cross-validation."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bloodcell import archs, augment, config, datasets, fit, progress, runs, scoring, training
from bloodcell.config import TrainConfig
from bloodcell.fit import SupConLoss, oversample
from tests.conftest import cell_image


@pytest.fixture
def imbalanced(tmp_path):
    root = tmp_path / "imbalanced"
    for k, (name, count) in enumerate({"lymphocyte": 24, "basophil": 8, "platelet": 12}.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            cell_image(k, size=64, seed=1000 * k + i).save(root / name / f"{i}.png")
    return root


def on_a_segment(sample: np.ndarray, pool: np.ndarray) -> bool:
    """True when `sample` lies (up to rounding) between two images of `pool`."""
    s, t = sample.reshape(-1).astype(float), pool.reshape(len(pool), -1).astype(float)
    tolerance = 0.6 * np.sqrt(s.size)
    for a in t:
        d, v = s - a, t - a
        lengths = (v * v).sum(axis=1)
        lam = np.clip((v @ d) / np.maximum(lengths, 1e-9), 0, 1)
        if np.min(np.linalg.norm(d - lam[:, None] * v, axis=1)) <= tolerance:
            return True
    return False


def test_smote_balances_and_every_synthetic_image_comes_from_training_images(imbalanced):
    data = datasets.discover(imbalanced)
    x, _ = datasets.load_arrays(data, 32, cache=False)
    split = datasets.split(data, seed=0)
    x_train, y_train = x[split.train], data.labels[split.train]
    x_new, y_new = oversample(x_train, y_train, seed=0)
    counts = np.bincount(y_new)
    assert (counts == counts.max()).all() and len(y_new) > len(y_train)
    assert np.array_equal(x_new[: len(x_train)], x_train)
    for image, label in zip(x_new[len(x_train) :], y_new[len(x_train) :], strict=True):
        assert on_a_segment(image, x_train[y_train == label])


@pytest.mark.slow
def test_train_applies_smote_to_the_training_split_only(imbalanced, artifacts, monkeypatch):
    seen = []

    def spy(x, y, seed):
        seen.append(x.copy())
        return oversample(x, y, seed)

    monkeypatch.setattr(fit, "oversample", spy)
    config = TrainConfig(arch="cnn", data=str(imbalanced), image_size=32, epochs=1, batch_size=16, smote=True)
    training.train(config, log=lambda line: None)
    data = datasets.discover(imbalanced)
    x, _ = datasets.load_arrays(data, 32)
    split = datasets.split(data)
    assert len(seen) == 1 and np.array_equal(seen[0], x[split.train])


def test_class_weights_are_inverse_frequency():
    weights = fit.class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[0] == pytest.approx(4 / 9) and weights[1] == pytest.approx(4 / 3) and weights[2] == 0.0


def test_supcon_loss_prefers_embeddings_grouped_by_class():
    loss = SupConLoss(temperature=0.5)
    labels = np.array([0, 0, 1, 1])
    grouped = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype="float32")
    mixed = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]], dtype="float32")
    assert float(loss(labels, grouped)) < float(loss(labels, mixed))
    # hand-computed for two orthogonal pairs: -log(e^2 / (e^2 + 2 e^0)) at temperature 0.5
    exact = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype="float32")
    assert float(loss(labels, exact)) == pytest.approx(-np.log(np.e**2 / (np.e**2 + 2)), rel=1e-4)
    assert SupConLoss.from_config(loss.get_config()).temperature == 0.5


@pytest.mark.slow
def test_supcon_trains_and_serves_with_a_central_crop(tiny_dataset, artifacts):
    from bloodcell import results
    from bloodcell.predictor import Classifier

    config = TrainConfig(
        arch="supcon",
        data=str(tiny_dataset),
        image_size=48,
        crop=0.67,
        epochs=1,
        head_epochs=1,
        batch_size=16,
        fine_tune=True,
    )
    run = training.train(config, log=lambda line: None)
    assert run.status == "finished" and run.has_model
    assert "contrastive_loss" in run.history()[0]
    assert run.record["crop"] == 0.67 and results.pixels(run.record) == "48 px, central 67%"
    model = run.load_model()
    assert archs.crop_side(model) == 32
    assert model.predict(np.zeros((1, 48, 48, 3)), verbose=0).shape == (1, 8)
    cell = next(tiny_dataset.glob("*/*.png"))
    answer = Classifier(run).predict([("cell", cell)])[0]
    assert answer.error is None and abs(sum(answer.probabilities.values()) - 1) < 1e-5


@pytest.mark.slow
def test_cross_validation_records_mean_and_spread(tiny_dataset, artifacts):
    config = TrainConfig(
        arch="cnn",
        data=str(tiny_dataset),
        image_size=32,
        epochs=1,
        batch_size=16,
        folds=3,
        shuffle=False,
        augment=False,
        optimizer="sgd",
        schedule="constant",
    )
    run = training.train(config, log=lambda line: None)
    cv = run.metrics["cross_validation"]
    assert cv["folds"] == 3 and len(cv["accuracy"]["per_fold"]) == 3
    assert cv["accuracy"]["mean"] == pytest.approx(np.mean(cv["accuracy"]["per_fold"]))
    assert not run.has_model and "3-fold-cv" in run.record["method"]
    assert json.loads((run.path / "run.json").read_text())["config"]["optimizer"] == "sgd"
    assert runs.get(run.id).status == "finished"


def test_augment_changes_training_batches_only_and_keeps_pixels_in_range():
    images = np.stack([np.asarray(cell_image(k % 8, size=48, seed=k)) for k in range(6)])
    layer = augment.Augment(seed=3)
    served = np.asarray(layer(images, training=False))
    assert served.dtype == np.float32 and np.array_equal(served, images.astype(np.float32))
    seen = np.asarray(layer(images, training=True))
    assert seen.shape == images.shape and seen.min() >= 0 and seen.max() <= 255
    assert not np.allclose(seen, images)
    again = np.asarray(layer(images, training=True))
    assert not np.allclose(seen, again), "two draws gave the same augmentation"


def test_more_focus_blur_passes_take_more_detail_from_the_blurred_pictures():
    """Blurry optics (another lab's, or a small picture enlarged) must be seen in training, or
    the model learns blur as a class: a framed platelet is an enlarged, blurred picture."""
    from scipy import ndimage

    texture = np.random.default_rng(0).integers(0, 256, (512, 24, 24, 3)).astype(np.uint8)

    def detail(blur):
        seen = np.asarray(augment.Augment(seed=5, stain=True, blur=blur)(texture, training=True))
        return np.sort([ndimage.laplace(grey).std() for grey in seen.mean(axis=-1)])[:16].mean()

    one, two, four = detail(1), detail(2), detail(4)
    assert four < two < one and four < 0.88 * one, (one, two, four)  # camera noise sets a floor


def test_batches_cover_every_image_once_per_epoch_in_a_new_order():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    y = np.eye(2, dtype=np.float32)[np.array([0] * 7 + [1] * 3)]
    batches = augment.Batches(x, y, batch_size=4, shuffle=True, seed=1, weights={0: 0.5, 1: 2.0})
    assert len(batches) == 3

    def epoch():
        parts = [batches[i] for i in range(len(batches))]
        return np.concatenate([p[0][:, 0, 0, 0] for p in parts]), parts

    first, parts = epoch()
    assert sorted(first) == list(range(10))
    for images, targets, weights in parts:  # each image keeps its own label and class weight
        assert np.array_equal(targets.argmax(axis=1), (images[:, 0, 0, 0] >= 7).astype(int))
        assert np.array_equal(weights, np.where(targets.argmax(axis=1) == 1, 2.0, 0.5))
    batches.on_epoch_end()
    second, _ = epoch()
    assert sorted(second) == list(range(10)) and not np.array_equal(first, second)
    images, labels = augment.Batches(x, y[:, 1], batch_size=4, views=2)[0]
    assert len(images) == 8 and np.array_equal(images[:4], images[4:])
    assert np.array_equal(labels[:4], labels[4:])


def test_precise_batchnorm_sets_running_statistics_to_those_of_clean_images():
    import keras

    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(outputs)))
    x = np.random.default_rng(0).uniform(100, 200, (64, 4, 4, 3)).astype(np.float32)
    fit.precise_batchnorm(model, x, None, batch_size=16, seed=0)
    bn = model.get_layer("bn")
    assert np.allclose(np.asarray(bn.moving_mean), x.mean(axis=(0, 1, 2)), rtol=1e-4)
    assert bn.momentum == 0.99


@pytest.mark.slow
def test_training_from_streamed_files(tiny_dataset, artifacts):
    (tiny_dataset / "neutrophil" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    config = training.TrainConfig(
        arch="cnn",
        data=str(tiny_dataset),
        image_size=32,
        epochs=2,
        batch_size=16,
        stream=True,
        keep_model=False,
    )
    lines = []
    run = training.train(config, log=lines.append)
    assert run.status == "finished" and run.record["config"]["stream"]
    assert "skipped 1 unreadable images" in lines
    metrics = run.metrics
    stored = run.predictions()
    assert metrics["n"] == run.record["split"]["test"] == len(stored["labels"])
    right = (stored["logits"].argmax(axis=1) == stored["labels"]).mean()
    assert metrics["accuracy"] == pytest.approx(right)  # scored on the streamed test files' logits
    # without the model, calibration is kept for the record but not the familiarity matrix
    assert not run.has_model and run.calibration is not None and run.familiarity() is None
    with pytest.raises(ValueError, match="in memory"):
        training.TrainConfig(arch="cnn", data=str(tiny_dataset), stream=True, smote=True)


@pytest.mark.slow
def test_split_seed_keeps_the_split_while_the_seed_changes_the_model(tiny_dataset, artifacts):
    def trained(**seeds):
        config = TrainConfig(
            arch="cnn",
            data=str(tiny_dataset),
            image_size=32,
            epochs=1,
            batch_size=16,
            keep_model=False,
            **seeds,
        )
        return training.train(config, log=lambda line: None)

    first, same_split, other_split = trained(seed=0), trained(seed=1, split_seed=0), trained(seed=1)
    files = [list(run.predictions()["files"]) for run in (first, same_split, other_split)]
    assert files[0] == files[1] and sorted(files[0]) != sorted(files[2])
    assert same_split.record["config"]["split_seed"] == 0 and other_split.record["config"]["split_seed"] == 1
    logits = [run.predictions()["logits"] for run in (first, same_split)]
    assert not np.allclose(*logits)


def test_training_options_are_bounded_to_what_the_machine_holds():
    with pytest.raises(ValueError, match=r"image size must be from 16 to 320 \(--image-size\); 512"):
        TrainConfig(arch="cnn", data="data", image_size=512)
    with pytest.raises(ValueError, match=r"batch size must be from 1 to 256"):
        TrainConfig(arch="cnn", data="data", batch_size=1024)
    assert max(arch.input_size for arch in archs.REGISTRY.values()) <= config.MAX_IMAGE_SIZE
    assert TrainConfig(arch="hybrid", data="data").image_size == 299


def test_the_time_left_is_estimated_after_warm_up_only(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(time=lambda: clock[0]))
    written = []
    run = SimpleNamespace(write_json=lambda name, value: written.append(value))
    tracker = progress.Progress(run, steps=10, epochs=5, log=lambda line: None)
    tracker.on_epoch_begin(0)
    clock[0] = 120.0  # the first batch traces and compiles the model
    tracker.on_train_batch_end(0)
    assert written[-1]["remaining"] is None  # not 120 s for a fiftieth of the run: 98 min
    for epoch, batch in [(0, b) for b in range(1, 10)] + [(1, b) for b in range(4)]:
        tracker.on_epoch_begin(epoch)
        clock[0] += 1.0  # then a second a batch
        tracker.on_train_batch_end(batch)
    done = written[-1]["epoch"] - 1 + written[-1]["batch"] / 10
    assert written[-1]["remaining"] == pytest.approx((5 - done) * 10 * 1.0)  # batches left x 1 s
    assert [w["remaining"] for w in written[:-1]].count(None) >= 3


@pytest.fixture
def stored_run(tiny_dataset, artifacts):
    """A finished, served 32 px run on the tiny dataset, with a placeholder calibration."""
    dataset = datasets.discover(tiny_dataset)
    config = TrainConfig(arch="cnn", data=str(tiny_dataset), image_size=32, batch_size=16)
    split = datasets.split(dataset, config.test_fraction, config.val_fraction, config.split_seed)
    run = runs.create(
        "stored",
        {
            "config": dataclasses.asdict(config),
            "classes": list(dataset.classes),
            "image_size": 32,
            "split": {k: len(v) for k, v in dataclasses.asdict(split).items()},
        },
    )
    run.save_model(archs.build("cnn", len(dataset.classes), input_size=32))
    run.write_predictions(
        files=np.array([str(dataset.files[i].relative_to(dataset.root)) for i in split.test])
    )
    run.write_trust({"temperature": 7.0}, {"placeholder": np.zeros(1)})
    run.update(status="finished", temperature=7.0)
    return run


def test_rescore_switches_the_model_and_its_calibration_at_once(stored_run, monkeypatch):
    run = stored_run
    before = {
        name: (run.path / name).read_bytes() for name in ("model.keras", "calibration.json", "trust.npz")
    }

    def better_statistics(model, *args):
        model.set_weights([w * 1.1 for w in model.get_weights()])
        return 0.5, 0.6  # validation accuracy rose: the new weights are kept

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process is killed after the new weights, before their calibration

    monkeypatch.setattr(fit, "precise_batchnorm", better_statistics)
    with monkeypatch.context() as patch:
        patch.setattr(scoring, "fit_trust", killed)
        with pytest.raises(KeyboardInterrupt):
            scoring.rescore(run, log=lambda line: None)
    assert {name: (run.path / name).read_bytes() for name in before} == before
    assert run.record["temperature"] == 7.0 and run.metrics is None
    served = run.serving_digest()
    assert not list(run.path.glob(".staged-*"))

    replace = os.replace

    def killed_while_moving(source, target):
        if Path(source).name.startswith(runs.STAGED):
            raise KeyboardInterrupt  # killed after the switch was recorded, with its files half moved
        replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed_while_moving)
        with pytest.raises(KeyboardInterrupt):
            scoring.rescore(run, log=lambda line: None)
    reader = runs.get(run.id)  # what a page or the command line loads now: the new set, whole
    record = reader.record
    assert record["model_sha256"] != hashlib.sha256(before["model.keras"]).hexdigest()
    assert reader.load_model() is not None  # its checksum matches the record
    assert reader.calibration["temperature"] == record["temperature"] != 7.0
    assert "placeholder" not in reader.familiarity() and reader.metrics["n"] == record["split"]["test"]
    switched = reader.serving_digest()
    assert switched != served

    with reader.staged():  # the next writer finishes the switch
        pass
    assert "switching" not in reader.record and not list(run.path.glob(".staged-*"))
    assert reader.serving_digest() == switched and reader.load_model() is not None
