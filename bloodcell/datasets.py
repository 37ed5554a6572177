"""Dataset discovery, audit, duplicate-aware stratified splits and the decoded-array cache."""

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from bloodcell import finder, images, storage
from bloodcell.classes import CLASSES, canonical_class


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the folder and the fix."""


@dataclass(frozen=True)
class Dataset:
    """Image files with labels indexing `classes` (a subset of CLASSES, in its order)."""

    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    digests: tuple[str, ...] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """A short hash of the file contents and labels: equal data, equal fingerprint."""
        h = hashlib.sha256()
        for digest, label in zip(self.digests, self.labels, strict=True):
            h.update(f"{digest}:{self.classes[label]}\n".encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, index: np.ndarray) -> "Dataset":
        return Dataset(
            self.root,
            tuple(self.files[i] for i in index),
            self.labels[index],
            self.classes,
            tuple(self.digests[i] for i in index),
        )


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def discover(root: str | Path) -> Dataset:
    """Find the class folders of `root` (PBC names or common aliases) and their image files.

    Hidden files and files without an image extension are ignored; folders that name no PBC
    class are refused, so a typo is never silently dropped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"The data folder {root} does not exist or is not a folder.")
    found: dict[str, list[Path]] = defaultdict(list)
    unknown = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = canonical_class(folder.name)
        if name is None:
            unknown.append(folder.name)
            continue
        found[name].extend(_image_files(folder))
    if unknown:
        raise DatasetError(
            f"The folders {', '.join(unknown)} in {root} name no known cell class; "
            f"rename them to one of: {', '.join(CLASSES)}."
        )
    classes = tuple(c for c in CLASSES if found.get(c))
    if not classes:
        raise DatasetError(
            f"{root} holds no class folders with images (expected e.g. {root}/neutrophil/*.jpg)."
        )
    files = [f for c in classes for f in found[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in found[c]], dtype=np.int64)
    digests = _parallel(_digest, files)
    return Dataset(root, tuple(files), labels, classes, tuple(digests))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in images.EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parallel(function, items):
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(function, items))


def audit(dataset: Dataset) -> dict:
    """Counts per class, image sizes, unreadable files, exact duplicates and label conflicts."""
    sizes: Counter = Counter()
    unreadable = []
    for path in dataset.files:
        try:
            with Image.open(path) as image:
                sizes[f"{image.width}x{image.height}"] += 1
        except Exception:  # noqa: BLE001 - any failure to open means unreadable
            unreadable.append(str(path))
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(dataset.digests):
        by_digest[digest].append(i)
    groups = [members for members in by_digest.values() if len(members) > 1]
    conflicts = [g for g in groups if len({int(dataset.labels[i]) for i in g}) > 1]
    describe = [[f"{dataset.classes[dataset.labels[i]]}/{dataset.files[i].name}" for i in g] for g in groups]
    return {
        "root": str(dataset.root),
        "n": len(dataset),
        "classes": list(dataset.classes),
        "counts": {c: int((dataset.labels == i).sum()) for i, c in enumerate(dataset.classes)},
        "sizes": dict(sizes.most_common()),
        "unreadable": unreadable,
        "duplicate_groups": describe,
        "label_conflicts": [describe[groups.index(g)] for g in conflicts],
        "fingerprint": dataset.fingerprint,
    }


def name_key(path: str | Path) -> str:
    """A path without its extension: the same image in another format keeps its key."""
    return str(Path(path).with_suffix(""))


def _groups(dataset: Dataset) -> np.ndarray:
    """One group id per distinct file content, so duplicates always land in one split."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(d, len(ids)) for d in dataset.digests])


def split(dataset: Dataset, test_fraction: float = 0.3, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Stratified, seeded train/validation/test indices; duplicates never cross splits.

    `val_fraction` is a fraction of what remains after the test split (the source work's
    70/30 split with 20% of training kept for validation).
    """
    groups = _groups(dataset)
    first = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    unique = np.array(sorted(first.values()))
    rest, test = train_test_split(
        unique, test_size=test_fraction, stratify=dataset.labels[unique], random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=val_fraction, stratify=dataset.labels[rest], random_state=seed
    )

    def expand(members: np.ndarray) -> np.ndarray:
        chosen = set(groups[members].tolist())
        return np.array([i for i, g in enumerate(groups) if g in chosen], dtype=np.int64)

    return Split(expand(train), expand(val), expand(test))


def folds(dataset: Dataset, index: np.ndarray, k: int = 5, seed: int = 0):
    """Stratified k-fold (train, held-out) index pairs within `index`, duplicates kept together."""
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    groups = _groups(dataset)[index]
    for train, held in cv.split(index, dataset.labels[index], groups):
        yield index[train], index[held]


# The decoded-array cache keeps its most recently used files within this many bytes (the PBC
# pool is 0.23 GB at 80 px, 3.2 GB at 299 px); a dataset larger than that is decoded in memory
# each time. Images are decoded a chunk at a time, straight into the cache file.
CACHE_BYTES = 8 * 2**30
DECODE_CHUNK = 256


def load_arrays(
    dataset: Dataset, size: int, cache: bool = True, framing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded uint8 model inputs (N, size, size, 3; see `images.prepare`) and a mask of the
    readable ones.

    Arrays are cached on disk by content (the most recently used within CACHE_BYTES), so a
    second run decodes nothing again; a cached array is memory-mapped, read-only."""
    folder = storage.cache_dir()
    name = f"{dataset.fingerprint}-{size}{_FRAMED[framing]}"
    path, readable_path = folder / f"arrays-{name}.npy", folder / f"readable-{name}.npz"
    if cache and path.exists() and readable_path.exists():
        _touch(path)
        with np.load(readable_path) as stored:
            return np.load(path, mmap_mode="r"), stored["ok"]
    shape = (len(dataset), size, size, 3)
    nbytes = int(np.prod(shape))
    if not cache or nbytes > CACHE_BYTES:
        x = np.empty(shape, np.uint8)
        return x, _decode_into(x, dataset.files, framing)
    _evict(folder, CACHE_BYTES - nbytes)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise DatasetError(
            f"Decoding {len(dataset)} images at {size} px needs {nbytes / 2**30:.1f} GB in the cache "
            f"folder {folder}, which has {free / 2**30:.1f} GB free; free some space there, choose a "
            "smaller image size, or read the images from their files (--stream)."
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".arrays-{name}.", suffix=".tmp")
    os.close(fd)
    try:
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        ok = _decode_into(x, dataset.files, framing)
        x.flush()
        del x
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())  # the header too: a power cut must not leave a renamed empty file
        storage.write_npz(readable_path, ok=ok)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _touch(path)
    return np.load(path, mmap_mode="r"), ok


def _decode_into(x: np.ndarray, files: tuple[Path, ...], framing: bool) -> np.ndarray:
    """Decode `files` into the rows of `x` (zeros where unusable), one chunk at a time, so that
    besides `x` only one chunk of images is held; returns which were usable."""
    size = x.shape[1]

    def decode(file: Path) -> np.ndarray | None:
        try:
            return images.load(file, size, framing)
        except images.UnusableImage:
            return None

    ok = np.zeros(len(files), bool)
    for start in range(0, len(files), DECODE_CHUNK):
        for i, image in enumerate(_parallel(decode, files[start : start + DECODE_CHUNK]), start):
            ok[i] = image is not None
            x[i] = image if ok[i] else 0
    return ok


def _touch(path: Path) -> None:
    """Mark a cache file as just used (eviction goes by modification time)."""
    now = time.time_ns()
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path, ns=(now, now))


def _evict(folder: Path, budget: int) -> None:
    """Delete the least recently used decoded arrays beyond `budget` bytes, and what builds that
    were killed left (temporary files untouched for an hour)."""
    found = []
    for path in folder.glob("arrays-*"):
        with contextlib.suppress(FileNotFoundError):  # another process evicted it meanwhile
            found.append((path.stat(), path))
    kept = 0
    for stat, path in sorted(found, key=lambda item: item[0].st_mtime_ns, reverse=True):
        kept += stat.st_size
        if kept > budget:
            path.unlink(missing_ok=True)
    for path in folder.glob(".arrays-*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - path.stat().st_mtime > 3600:
                path.unlink()


# cache names: framed inputs (bloodcell.finder) are other arrays than whole resized pictures
_FRAMED = {False: "", True: f"-framed{finder.VERSION}"}


def readable(dataset: Dataset, size: int, framing: bool = False) -> np.ndarray:
    """Which files the loader can use (decoded once, nothing kept but the answer, cached)."""
    path = storage.cache_dir() / f"readable-{dataset.fingerprint}-{size}{_FRAMED[framing]}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["ok"]

    def usable(file: Path) -> bool:
        try:
            images.load(file, size, framing)
        except images.UnusableImage:
            return False
        return True

    ok = np.array(_parallel(usable, dataset.files), dtype=bool)
    storage.write_npz(path, ok=ok)
    return ok


@dataclass(frozen=True)
class ImageFiles:
    """Images left on disk and decoded batch by batch as a tf.data pipeline, by the very loader
    (and so the very pixels) of the in-memory path; for data larger than memory. Indexing with
    an index array selects files, as it selects rows of an image array."""

    paths: tuple[str, ...]
    size: int
    framing: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> "ImageFiles":
        return ImageFiles(tuple(self.paths[i] for i in np.atleast_1d(index)), self.size, self.framing)

    def stream(self, batch_size: int, targets=None, weights=None, shuffle: bool = False, seed: int = 0):
        """Batches of uint8 images (with `targets` and per-image `weights` if given), decoded in
        parallel and prefetched; with `shuffle`, a new seeded order every pass."""
        import tensorflow as tf

        size, framing = self.size, self.framing

        def decode(path):
            return images.load(path.decode(), size, framing)

        def load(path):
            image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
            return tf.ensure_shape(image, (size, size, 3))

        columns = [np.array(self.paths)] + [np.asarray(c) for c in (targets, weights) if c is not None]
        data = tf.data.Dataset.from_tensor_slices(tuple(columns))
        if shuffle:
            data = data.shuffle(len(self.paths), seed=seed, reshuffle_each_iteration=True)
        data = data.map(
            lambda path, *rest: (load(path), *rest) if rest else load(path),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def configured() -> dict[str, Path]:
    """The data folders the dashboard may train on, by name: those listed in BLOODCELL_DATA
    (separated by the system path separator) and the PBC pool beside the project if present.
    The browser only ever picks one of these names, never types a path."""
    candidates = [Path(p) for p in os.environ.get("BLOODCELL_DATA", "").split(os.pathsep) if p]
    candidates.append(Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pbc-pool")
    found: dict[str, Path] = {}
    for path in candidates:
        if path.is_dir():
            name = path.name if path.name not in found else f"{path.parent.name}/{path.name}"
            found.setdefault(name, path.resolve())
    return found


COMPACT = "compact.json"


def compacted(root: str | Path) -> dict | None:
    """How a compact copy at `root` was made (see `compact_copy`), or None for original pictures."""
    return storage.read_optional(Path(root) / COMPACT)


def compact_copy(
    dataset: Dataset, out: str | Path, size: int, framing: bool = False, quality: int = 90
) -> int:
    """Write every image as the loader brings it to `size` px (framed when `framing`), as WebP,
    under the same class folders and names: a copy small enough to send to a lent accelerator.

    Same names and, for equal originals, equal bytes, hence the same split; `rescore --data`
    scores a run trained on the copy on the originals. How the copy was made is kept beside
    its class folders (`COMPACT`), for the records of runs trained on it. Returns the bytes
    written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = {"from": str(dataset.root.resolve()), "fingerprint": dataset.fingerprint, "image_size": size}
    made |= {"framing": finder.VERSION if framing else None, "quality": quality}
    storage.write_json(out / COMPACT, made)

    def write(i: int) -> int:
        file = dataset.files[i]
        try:
            x = images.load(file, size, framing)
        except images.UnusableImage:
            return 0
        target = out / dataset.classes[dataset.labels[i]] / file.with_suffix(".webp").name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(target, "WEBP", quality=quality, method=6)
        return target.stat().st_size

    return sum(_parallel(write, range(len(dataset))))
