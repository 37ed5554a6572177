"""The example pictures of the Classify page: one per class and two fields, all present here,
each cell answered `confident` and right by the committed default model."""

import pytest

from bloodcell import examples
from bloodcell.classes import CLASSES
from tests.conftest import POOL, ROOT, needs_pool


def test_one_example_per_class_and_at_most_sixteen_in_all():
    names = list(examples.PICTURES)
    assert len(names) <= 16
    assert [n for n in names if not n.startswith("field-")] == [f"{c}.jpg" for c in CLASSES]
    assert all(folder in ("pbc-pool", "fields-dev") for folder, _, _ in examples.PICTURES.values())


def test_only_the_examples_present_are_offered(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOODCELL_EXAMPLES", str(tmp_path))
    assert examples.available() == []
    folder, file, _ = examples.PICTURES["monocyte.jpg"]
    (tmp_path / folder / file).parent.mkdir(parents=True)
    (tmp_path / folder / file).write_bytes(b"picture")
    (found,) = examples.available()
    assert found.name == "monocyte.jpg" and found.read() == b"picture" and "CC BY 4.0" in found.credit


@needs_pool
def test_every_example_is_on_this_machine(monkeypatch):
    monkeypatch.delenv("BLOODCELL_EXAMPLES", raising=False)
    found = [e.name for e in examples.available()]
    fields = (POOL.parent / "fields-dev").is_dir()
    assert found == [n for n in examples.PICTURES if fields or not n.startswith("field-")]


@needs_pool
@pytest.mark.slow
def test_the_default_model_answers_every_example_cell_confidently_and_right(monkeypatch):
    from bloodcell import runs
    from bloodcell.predictor import Classifier

    monkeypatch.setenv("BLOODCELL_ARTIFACTS", str(ROOT / "artifacts"))
    monkeypatch.delenv("BLOODCELL_EXAMPLES", raising=False)
    model = Classifier(runs.resolve(None))
    offered = examples.available()
    cells = [e for e in offered if not e.name.startswith("field-")]
    for example, answer in zip(cells, model.predict([(e.name, e.path) for e in cells]), strict=True):
        assert (answer.label, answer.status) == (example.name.removesuffix(".jpg"), "confident")
    fields = [e for e in offered if e.name.startswith("field-")]
    for field in model.predict_fields([(e.name, e.path) for e in fields]):
        assert len(field.cells) >= 2
