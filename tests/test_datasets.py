import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bloodcell import datasets, images, storage
from bloodcell.classes import CLASSES, canonical_class
from tests.conftest import POOL, cell_image, needs_pool


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("NEUTROPHIL", "neutrophil"),
        ("neutrophils", "neutrophil"),
        ("immature_granulocytes", "ig"),
        ("Immature Granulocyte", "ig"),
        ("IG", "ig"),
        ("platelets", "platelet"),
        ("Thrombocytes", "platelet"),
        ("erythroblast", "erythroblast"),
        ("macrophage", None),
    ],
)
def test_class_aliases(folder, expected):
    assert canonical_class(folder) == expected


def test_discovery_maps_aliases_and_skips_stray_files(tiny_dataset):
    data = datasets.discover(tiny_dataset)
    assert data.classes == CLASSES
    assert len(data) == 8 * 14
    assert np.bincount(data.labels).tolist() == [14] * 8
    assert not any(f.name.startswith(".") or f.suffix == ".txt" for f in data.files)


def test_discovery_accepts_a_subset_and_refuses_unknown_folders(tmp_path):
    for name in ("platelet", "monocyte"):
        (tmp_path / name).mkdir()
        cell_image(0).save(tmp_path / name / "a.png")
    assert datasets.discover(tmp_path).classes == ("monocyte", "platelet")
    (tmp_path / "macrophage").mkdir()
    with pytest.raises(datasets.DatasetError, match="macrophage"):
        datasets.discover(tmp_path)
    with pytest.raises(datasets.DatasetError, match="does not exist"):
        datasets.discover(tmp_path / "missing")


def _with_duplicates(root):
    """Copy some files across and within classes: exact duplicates, one with a conflicting label."""
    shutil.copy(root / "Basophil" / "cell_0.png", root / "Basophil" / "cell_copy.png")
    shutil.copy(root / "monocyte" / "cell_3.png", root / "neutrophil" / "mislabelled.png")
    (root / "platelets" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return datasets.discover(root)


def test_audit_reports_counts_sizes_unreadable_and_duplicates(tiny_dataset):
    report = datasets.audit(_with_duplicates(tiny_dataset))
    assert report["counts"]["basophil"] == 15 and report["counts"]["platelet"] == 15
    assert report["sizes"] == {"96x96": 8 * 14 + 2}
    assert [p.endswith("broken.png") for p in report["unreadable"]] == [True]
    assert len(report["duplicate_groups"]) == 2
    assert report["label_conflicts"] == [["monocyte/cell_3.png", "neutrophil/mislabelled.png"]]


def test_split_is_stratified_deterministic_and_keeps_duplicates_together(tiny_dataset):
    data = _with_duplicates(tiny_dataset)
    first = datasets.split(data, seed=3)
    again = datasets.split(data, seed=3)
    other = datasets.split(data, seed=4)
    for a, b in zip((first.train, first.val, first.test), (again.train, again.val, again.test), strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.test, other.test)
    parts = [set(first.train), set(first.val), set(first.test)]
    assert sum(map(len, parts)) == len(data) and not (
        parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]
    )
    where = {}
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        where.update({data.digests[i]: where.get(data.digests[i], set()) | {name} for i in part})
    assert all(len(places) == 1 for places in where.values())
    test_share = np.bincount(data.labels[first.test], minlength=8) / np.bincount(data.labels, minlength=8)
    assert np.all(np.abs(test_share - 0.3) < 0.1)


def test_folds_cover_the_index_once(tiny_dataset):
    data = datasets.discover(tiny_dataset)
    index = np.arange(len(data))
    held = np.concatenate([h for _, h in datasets.folds(data, index, k=5)])
    assert sorted(held.tolist()) == index.tolist()


def test_arrays_are_cached_on_disk(tiny_dataset, artifacts, monkeypatch):
    data = datasets.discover(tiny_dataset)
    x, ok = datasets.load_arrays(data, 32)
    assert x.shape == (len(data), 32, 32, 3) and ok.all()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(datasets.images, "load", no_decoding)
    cached, _ = datasets.load_arrays(data, 32)
    assert np.array_equal(x, cached)


@needs_pool
def test_pool_split_sizes():
    data = datasets.discover(POOL)
    assert data.classes == CLASSES and len(data) == 11967
    split = datasets.split(data)
    assert len(split.test) == pytest.approx(0.3 * len(data), abs=10)
    assert len(split.val) == pytest.approx(0.2 * 0.7 * len(data), abs=10)


def test_streamed_images_are_the_in_memory_images(tiny_dataset, artifacts):
    dataset = datasets.discover(tiny_dataset)
    arrays, ok = datasets.load_arrays(dataset, 48)
    files = datasets.ImageFiles(tuple(map(str, dataset.files)), 48)
    assert ok.all() and datasets.readable(dataset, 48).all()
    streamed = np.concatenate(list(files.stream(32).as_numpy_iterator()))
    np.testing.assert_array_equal(streamed, arrays)

    targets = np.eye(8, dtype="float32")[dataset.labels]
    batches = list(files.stream(32, targets, shuffle=True, seed=3).as_numpy_iterator())
    shuffled = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([t for _, t in batches]).argmax(axis=1)
    order = [int(np.flatnonzero((arrays == image).all(axis=(1, 2, 3)))[0]) for image in shuffled]
    assert sorted(order) == list(range(len(arrays))) and order != list(range(len(arrays)))
    np.testing.assert_array_equal(labels, dataset.labels[order])  # each image keeps its label


def test_the_array_cache_is_built_without_holding_the_images_twice(tiny_dataset, artifacts, monkeypatch):
    import tracemalloc

    data = datasets.discover(tiny_dataset)
    unusable = data.files[5]

    def decoded(file, size, framing):  # what the loader allocates for a picture, and nothing else
        if file == unusable:
            raise datasets.images.UnusableImage("damaged")
        return np.full((size, size, 3), data.files.index(file) % 251, np.uint8)

    monkeypatch.setattr(datasets.images, "load", decoded)
    monkeypatch.setattr(datasets, "DECODE_CHUNK", 16, raising=False)
    tracemalloc.start()
    try:
        x, ok = datasets.load_arrays(data, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 2  # a chunk of decoded images, not a list of them stacked and zipped
    assert x.shape == (len(data), 64, 64, 3) and ok.tolist() == [f != unusable for f in data.files]
    assert all((x[i] == (i % 251 if ok[i] else 0)).all() for i in range(len(data)))
    assert not [p for p in storage.cache_dir().iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_array_cache_keeps_the_most_recently_used_within_its_budget(tiny_dataset, artifacts, monkeypatch):
    data = datasets.discover(tiny_dataset)
    sizes = {size: len(data) * size * size * 3 for size in (32, 40, 48)}
    monkeypatch.setattr(datasets, "CACHE_BYTES", sizes[40] + sizes[48] + 1000, raising=False)

    def cached() -> set[int]:
        return {int(p.stem.split("-")[-1]) for p in storage.cache_dir().glob("arrays-*")}

    for size in (32, 40, 48):
        datasets.load_arrays(data, size)
    assert cached() == {40, 48}
    datasets.load_arrays(data, 40)  # used again: now the most recent
    datasets.load_arrays(data, 32)
    assert cached() == {32, 40}
    with pytest.raises(datasets.DatasetError, match="free"):
        monkeypatch.setattr(datasets.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
        datasets.load_arrays(data, 56)


def test_a_compact_copy_keeps_names_split_and_the_loaders_pixels(tiny_dataset, tmp_path):
    from bloodcell import cli

    original = datasets.discover(tiny_dataset)
    out = tmp_path / "compact"
    assert cli.main(["compact", "--data", str(tiny_dataset), "--out", str(out), "--image-size", "32"]) == 0
    copy = datasets.discover(out)
    assert [f.stem for f in copy.files] == [f.stem for f in original.files]
    assert all(f.suffix == ".webp" for f in copy.files)
    assert np.array_equal(copy.labels, original.labels)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(datasets.split(copy), part), getattr(datasets.split(original), part))
    first = np.asarray(Image.open(copy.files[0]).convert("RGB"), dtype=int)
    assert first.shape == (32, 32, 3)
    assert np.abs(first - images.load(original.files[0], 32)).mean() < 4  # WebP keeps the loader's pixels
    made = datasets.compacted(out)  # kept for the records of runs trained on the copy
    assert made == {
        "from": str(original.root.resolve()),
        "fingerprint": original.fingerprint,
        "image_size": 32,
        "framing": None,
        "quality": 90,
    }
    assert datasets.compacted(tiny_dataset) is None
