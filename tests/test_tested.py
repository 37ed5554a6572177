"""One answer to "which images was this run tested on?": the files its predictions.npz records."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bloodcell import datasets, runs, tested


def with_predictions(run: runs.Run, files: list[str]) -> runs.Run:
    """`run` with stored test predictions for `files`."""
    run.write_predictions(
        logits=np.zeros((len(files), 8)), labels=np.zeros(len(files), dtype=np.int64), files=np.array(files)
    )
    return run


def test_the_tested_images_are_the_recorded_files_found_by_name_in_a_copy(artifacts, tiny_dataset, tmp_path):
    dataset = datasets.discover(tiny_dataset)
    run = with_predictions(runs.create("a", {}), ["monocyte/cell_3.png", "Basophil/cell_0.png"])
    chosen = tested.images(dataset, run)
    assert sorted(str(f.relative_to(tiny_dataset)) for f in chosen.files) == [
        "Basophil/cell_0.png",
        "monocyte/cell_3.png",
    ]
    assert list(tested.index(dataset, run)) == sorted(dataset.files.index(f) for f in chosen.files)

    copy = tmp_path / "copy"  # the same images in another format
    for name in ("Basophil", "monocyte"):
        (copy / name).mkdir(parents=True)
        for image in (tiny_dataset / name).glob("*.png"):
            Image.open(image).save(copy / name / f"{image.stem}.bmp")
    assert len(tested.images(datasets.discover(copy), run)) == 2


def test_a_folder_without_every_tested_image_or_a_run_without_predictions_is_refused(artifacts, tiny_dataset):
    dataset = datasets.discover(tiny_dataset)
    run = with_predictions(runs.create("a", {}), ["monocyte/cell_3.png", "monocyte/elsewhere.png"])
    with pytest.raises(ValueError, match="holds 1 of the 2 images run"):
        tested.index(dataset, run)
    other = with_predictions(runs.create("b", {}), ["monocyte/cell_3.png"])
    with pytest.raises(ValueError, match="tested on different images"):
        tested.index(dataset, other, run)
    bare = runs.create("bare", {})
    with pytest.raises(
        ValueError, match=r"lacks its test predictions \(predictions.npz is missing\); score it"
    ):
        tested.index(dataset, bare)


def test_robustness_damages_only_the_images_the_run_was_tested_on(served_model, tiny_dataset, monkeypatch):
    from bloodcell import images, robustness

    # trained from seed 1 on the split of seed 0 (--split-seed 0): its test images are split 0's
    dataset = datasets.discover(tiny_dataset)
    test = [str(dataset.files[i].relative_to(tiny_dataset)) for i in datasets.split(dataset, seed=0).test]
    served_model.update(config={"test_fraction": 0.3, "val_fraction": 0.2, "seed": 1, "split_seed": 0})
    with_predictions(served_model, test)
    read, original = [], images.read_image
    monkeypatch.setattr(images, "read_image", lambda source: read.append(Path(source)) or original(source))
    result = robustness.damaged(str(tiny_dataset), served_model.id, n=200)
    assert result["cells"] == len(test)
    assert sorted(str(path.relative_to(tiny_dataset)) for path in read) == sorted(test)
