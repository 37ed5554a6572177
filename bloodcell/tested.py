"""One answer to "which images was this run tested on?" for every command: the files its
`predictions.npz` records, matched in a data folder by path without extension (so another copy
of the same images, in another format, still matches). Never a split rebuilt from a seed."""

import numpy as np

from bloodcell import datasets, results, runs


def keys(run: runs.Run) -> set[str]:
    """The images `run` was tested on, by path (relative to its data folder) without extension."""
    return set(map(datasets.name_key, results.predictions(run)["files"]))


def index(dataset: datasets.Dataset, run: runs.Run, *others: runs.Run) -> np.ndarray:
    """Indices, in `dataset` order, of the images that `run` (and every one of `others`) was
    tested on; all of them must be in `dataset`."""
    tested = keys(run)
    for other in others:
        if keys(other) != tested:
            raise ValueError(
                f"Runs {run.id} and {other.id} were tested on different images; "
                "an ensemble is scored only on a test split its models share."
            )
    names = (datasets.name_key(f.relative_to(dataset.root)) for f in dataset.files)
    found = [i for i, name in enumerate(names) if name in tested]
    if len(found) != len(tested):
        raise ValueError(
            f"{dataset.root} holds {len(found)} of the {len(tested)} images run {run.id} was tested on."
        )
    return np.array(found, dtype=np.int64)


def images(dataset: datasets.Dataset, run: runs.Run, *others: runs.Run) -> datasets.Dataset:
    """The part of `dataset` that `run` (and every one of `others`) was tested on."""
    return dataset.subset(index(dataset, run, *others))
