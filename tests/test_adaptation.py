import json

import keras
import numpy as np
import pytest
from PIL import Image

from bloodcell import adaptation, archs, runs
from bloodcell.predictor import MIN_LAB_CELLS, Classifier
from tests.conftest import cell_image
from tests.test_cli import bloodcell


def lab_folder(root, per_class: dict[str, int], tint=(1.0, 0.85, 1.1)):
    """Generated cells of another 'laboratory' (another colour cast), one folder per class."""
    for k, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            rgb = np.asarray(cell_image(k * 2, size=64, seed=1000 * k + i), float) * tint
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(root / name / f"c{i}.png")
    return root


def batchnorm_means(model) -> list[np.ndarray]:
    return [
        layer.moving_mean.numpy().copy()
        for layer in archs.all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_label_free_adaptation_takes_the_labs_statistics_and_leaves_the_original(served_model):
    classifier = Classifier.load()
    cells = np.random.default_rng(0).integers(80, 200, (MIN_LAB_CELLS, 32, 32, 3)).astype(np.uint8)
    before = batchnorm_means(classifier.model)
    adapted = classifier.adapted(cells)
    after = batchnorm_means(adapted.model)
    assert all(np.array_equal(a, b) for a, b in zip(before, batchnorm_means(classifier.model), strict=True))
    assert not np.allclose(before[0], after[0])
    # the stem's statistics are now those of these cells
    stem = keras.Model(adapted.model.inputs, adapted.model.get_layer("stem_conv").output)
    np.testing.assert_allclose(after[0], stem(cells).numpy().mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
    assert adapted.adapted_to == MIN_LAB_CELLS
    with pytest.raises(ValueError, match=f"at least {MIN_LAB_CELLS}"):
        classifier.adapted(cells[:5])


def test_predict_with_adapt_answers_every_picture_of_the_batch(served_model):
    from tests.conftest import encode

    sources = [(f"c{i}.png", encode(cell_image(i % 8, size=48, seed=i))) for i in range(MIN_LAB_CELLS)]
    sources.append(("empty.png", b""))
    answers = Classifier.load().predict(sources, adapt=True)
    assert [a.error is None for a in answers] == [True] * MIN_LAB_CELLS + [False]
    assert all(abs(sum(a.probabilities.values()) - 1) < 1e-5 for a in answers[:-1])


def test_a_model_without_batchnorm_says_label_free_adaptation_would_change_nothing(groupnorm_model, tmp_path):
    from tests.conftest import encode

    classifier = Classifier(groupnorm_model)
    assert not classifier.adapts_without_labels
    sources = [(f"c{i}.png", encode(cell_image(i % 8, size=48, seed=i))) for i in range(MIN_LAB_CELLS)]
    with pytest.raises(ValueError, match="would change nothing"):
        classifier.predict(sources, adapt=True)
    # with labels it still adapts (its last layer), and cross-lab scoring leaves label-free out
    folder = lab_folder(tmp_path / "lab", {"eosinophil": 12, "monocyte": 12})
    lab = adaptation.read_lab(folder, classifier)
    adapted, _ = adaptation.fine_tuned(classifier, lab.x, lab.labels)
    assert adapted.adapted_to == 0 and adapted.model is not classifier.model
    row = adaptation.crosslab(classifier, [folder], shots=[5])["sets"]["lab"]
    assert "label_free" not in row and "5_labelled" in row


def test_fine_tuning_learns_the_labs_classes_and_stays_near_the_model(served_model, tmp_path):
    classifier = Classifier.load()
    lab = adaptation.read_lab(lab_folder(tmp_path / "lab", {"eosinophil": 10, "monocyte": 10}), classifier)
    before = adaptation.scores(classifier, lab)
    adapted, report = adaptation.fine_tuned(classifier, lab.x, lab.labels)
    after = adaptation.scores(adapted, lab)
    assert after["accuracy"] > before["accuracy"]
    assert after["accuracy"] >= 0.9  # two very different generated classes
    assert report["cells"] == {"fit": 12, "calibrate": 8}
    weights = adapted.model.get_layer("logits").get_weights()[0]
    original = classifier.model.get_layer("logits").get_weights()[0]
    absent = [i for i, c in enumerate(classifier.classes) if c not in ("eosinophil", "monocyte")]
    # classes the lab gave no cell of keep weights near the original ones
    assert np.abs(weights[:, absent] - original[:, absent]).mean() < np.abs(original[:, absent]).mean()


def test_scores_count_a_refused_picture_as_a_wrong_answer(served_model, tmp_path):
    classifier = Classifier.load()
    folder = lab_folder(tmp_path / "lab", {"eosinophil": 6})
    lab = adaptation.read_lab(folder, classifier)
    (folder / "eosinophil" / "blank.png").write_bytes(b"")
    with_refused = adaptation.read_lab(folder, classifier)
    assert len(with_refused.refused) == 1 and with_refused.refused_labels.tolist() == [1]
    plain, refused = adaptation.scores(classifier, lab), adaptation.scores(classifier, with_refused)
    assert refused["n"] == 7 and refused["refused"] == pytest.approx(1 / 7)
    assert refused["accuracy"] == pytest.approx(plain["accuracy"] * 6 / 7)


def test_take_shots_leaves_one_cell_of_every_class_to_score():
    labels = np.array([0] * 3 + [1] * 30)
    labelled, scored = adaptation._take_shots(labels, 5, seed=0)
    assert np.bincount(labels[labelled]).tolist() == [2, 5]
    assert sorted(np.concatenate([labelled, scored]).tolist()) == list(range(33))


@pytest.mark.slow
def test_adapt_command_stores_a_run_that_serves(served_model, tmp_path, env):
    lab = lab_folder(tmp_path / "Munich lab", {"eosinophil": 6, "lymphocyte": 6, "neutrophil": 6})
    done = bloodcell("adapt", "--data", str(lab), env=env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    assert run_id.endswith("Munich-lab")
    run = runs.get(run_id)
    assert run.record["adapted_from"] == served_model.id and run.status == "finished"
    assert run_id in bloodcell("runs", env=env).stdout
    answer = bloodcell(
        "predict", "--json", "--model", run_id, str(next((lab / "eosinophil").iterdir())), env=env
    )
    assert json.loads(answer.stdout)["label"] in run.record["classes"]


@pytest.mark.slow
def test_adapt_refuses_too_few_cells_with_the_number_needed(served_model, tmp_path, env):
    lab = lab_folder(tmp_path / "lab", {"eosinophil": 6, "lymphocyte": 3})
    done = bloodcell("adapt", "--data", str(lab), env=env)
    assert done.returncode == 2
    assert "at least 5" in done.stderr and "lymphocyte (3)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_crosslab_command_scores_each_set_in_each_setting(served_model, tmp_path, env):
    first = lab_folder(tmp_path / "lab_a", {"eosinophil": 12, "monocyte": 12})
    second = lab_folder(tmp_path / "lab_b", {"basophil": 4, "lymphocyte": 7}, tint=(0.9, 1.0, 0.8))
    out = tmp_path / "crosslab.json"
    done = bloodcell("crosslab", str(first), str(second), "--shots", "5", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["sets"]["lab_a"]) == {"zero_shot", "label_free", "5_labelled"}
    assert set(result["sets"]["lab_b"]) == {
        "zero_shot",
        "5_labelled",
    }  # too few cells to adapt without labels
    assert result["sets"]["lab_a"]["zero_shot"]["n"] == 24
    assert result["sets"]["lab_a"]["5_labelled"]["n"] == 14
    assert result["sets"]["lab_b"]["5_labelled"]["labelled"] == {"basophil": 3, "lymphocyte": 5}
    assert "| lab_a | label free | 24 |" in done.stdout
    # this model has no familiarity model and does not frame: of the four kinds of non-cells, it
    # refuses only the two that are no photograph (noise, drawn shapes)
    assert result["sets"]["lab_a"]["label_free"]["non_cells_flagged"] == 0.5
    assert served_model.read_json("crosslab.json") == result  # kept with the run
    compared = bloodcell("crosslab", "--compare", served_model.id, env=env)
    assert compared.returncode == 0, compared.stderr
    row = next(line for line in compared.stdout.splitlines() if line.startswith(f"| {served_model.id}"))
    zero_shot = result["sets"]["lab_a"]["zero_shot"]["balanced_accuracy"]
    assert f"| {zero_shot:.1%} |" in row


def test_crosslab_compare_says_which_run_was_never_measured(served_model, env):
    done = bloodcell("crosslab", "--compare", served_model.id, env=env)
    assert done.returncode == 2 and "no cross-lab record" in done.stderr


def test_an_adapted_familiarity_takes_in_the_labs_cells_but_never_a_non_cell(served_model, tmp_path):
    from bloodcell import noncells, trust

    classifier = Classifier.load()
    lab = adaptation.read_lab(lab_folder(tmp_path / "lab", {"eosinophil": 10, "monocyte": 10}), classifier)
    pool = np.stack([np.asarray(cell_image(k % 8, size=32, seed=500 + k)) for k in range(80)])
    features, _ = classifier.features_and_logits(pool)
    classifier.familiarity = trust.Familiarity.fit(features, np.arange(80) % 8)
    classifier.familiarity.calibrate(features)
    adapted, report = adaptation.fine_tuned(classifier, lab.x, lab.labels)
    assert adapted.familiarity.threshold >= classifier.familiarity.threshold
    assert report["familiar_below"] == adapted.familiarity.threshold
    others = [p for kind in noncells.non_cells(seed=adaptation.NON_CELL_SEED).values() for p in kind]
    x, _ = noncells.inputs(adapted, others)
    nearest = adapted.familiarity.distance(adapted.features_and_logits(x)[0]).min()
    assert adapted.familiarity.threshold <= max(classifier.familiarity.threshold, nearest)
