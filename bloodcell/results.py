"""Tables and figures' data for comparing stored runs (no Streamlit, no TensorFlow).

Each file of a run is read on its own, so a missing or damaged file costs only what it holds;
what a run lacks, and why, is said in one sentence (`Stored.note`)."""

import csv
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bloodcell import runs

# What reading a damaged file raises: truncated JSON, CSV or zip archives, an empty cell, a
# value of the wrong type, an archive without one of its arrays (RunError is a ValueError).
DAMAGE = (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile, csv.Error)
MISSING, DAMAGED, NONE = "is missing", "is damaged", "has none"
SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
PREDICTIONS = ("logits", "labels", "files")
CALIBRATION = ("temperature", "reliability", "test", "review", "test_status")


class Lack(NamedTuple):
    """Something a run lacks: what, the file that should hold it, and why."""

    what: str
    file: str
    why: str

    def __str__(self) -> str:
        return f"{self.what} ({self.file} {self.why})"


@dataclass
class Stored:
    """What could be read of one run: each part empty where its file is missing or damaged,
    and `lacks` saying which and why."""

    run: runs.Run
    record: dict
    status: str
    metrics: dict
    lacks: list[Lack]
    confusion: dict | None = None
    history: list[dict] = field(default_factory=list)
    calibration: dict | None = None

    @property
    def note(self) -> str:
        """One sentence: what of this run is missing or damaged ('' when nothing is)."""
        return sentence(self.run, self.lacks)

    @property
    def damaged(self) -> list[Lack]:
        """The lacks whose file is there but cannot be read."""
        return [lack for lack in self.lacks if lack.why == DAMAGED]


def sentence(run: runs.Run, lacks: list[Lack]) -> str:
    """'Run X lacks a (f is missing), b (g is damaged) and c (...).', or '' for no lacks."""
    if not lacks:
        return ""
    items = [str(lack) for lack in lacks]
    listed = items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
    return f"Run {run.id} lacks {listed}."


def summary(run: runs.Run) -> Stored:
    """The record, status and test scores of `run`, what a row of a table of runs needs.

    Runs still training, and adapted runs, have no test scores: only damaged scores are a lack."""
    lacks: list[Lack] = []
    try:
        record, status = run.record, run.status
        if not isinstance(record, dict):
            raise ValueError("run.json holds no object")
    except DAMAGE:
        record, status = {}, "damaged"
        lacks.append(Lack("its record", "run.json", DAMAGED))
    metrics = _json(lambda: run.metrics, "its test scores", "metrics.json", lacks, needed=False)
    return Stored(run, record, status, metrics or {}, lacks)


def read(run: runs.Run) -> Stored:
    """Everything the Results page shows of `run`, read file by file. A run with test scores
    should also hold its per-class scores, confusion matrix, curves and test predictions."""
    stored = summary(run)
    lacks, scored = stored.lacks, bool(stored.metrics)
    if scored and not isinstance(stored.metrics.get("per_class"), dict):
        lacks.append(Lack("its per-class scores", "metrics.json", NONE))
    stored.confusion = _confusion(run, lacks, scored)
    stored.history = _history(run, lacks, scored)
    stored.calibration = _json(
        lambda: run.calibration, "its calibration", "calibration.json", lacks, needed=False, keys=CALIBRATION
    )
    _predictions(run, lacks, scored)  # read only to say what it lacks: `misses` reads them itself
    try:
        run.familiarity()  # read only to say whether it is damaged; serving reads it itself
    except DAMAGE:
        lacks.append(Lack("its familiarity model", "trust.npz", DAMAGED))
    return stored


def _json(read_file: Callable, what: str, file: str, lacks: list[Lack], needed: bool, keys=()) -> dict | None:
    """The JSON object `read_file()` returns (None where the file is absent), or None with a
    lack added: missing (where `needed`), damaged, or without one of `keys`."""
    try:
        value = read_file()
    except DAMAGE:
        lacks.append(Lack(what, file, DAMAGED))
        return None
    if value is None:
        if needed:
            lacks.append(Lack(what, file, MISSING))
        return None
    if not isinstance(value, dict) or any(k not in value for k in keys):
        lacks.append(Lack(what, file, DAMAGED))
        return None
    return value


def _confusion(run: runs.Run, lacks: list[Lack], needed: bool) -> dict | None:
    stored = _json(lambda: run.confusion, "its confusion matrix", "confusion.json", lacks, needed)
    if stored is None:
        return None
    try:
        square = np.asarray(stored["matrix"], dtype=float).shape == (len(stored["labels"]),) * 2
    except DAMAGE:
        square = False
    if not square:
        lacks.append(Lack("its confusion matrix", "confusion.json", DAMAGED))
        return None
    return stored


def _history(run: runs.Run, lacks: list[Lack], needed: bool) -> list[dict]:
    try:
        rows = run.history()
        if not all("epoch" in row for row in rows):
            raise ValueError("history.csv has no epoch column")
    except DAMAGE:
        lacks.append(Lack("its training curves", "history.csv", DAMAGED))
        return []
    if not rows and needed:
        lacks.append(Lack("its training curves", "history.csv", "is missing or empty"))
    return rows


def _predictions(run: runs.Run, lacks: list[Lack], needed: bool) -> dict[str, np.ndarray] | None:
    try:
        stored = run.predictions()
        logits, labels, files = (stored[k] for k in PREDICTIONS)
        if logits.ndim != 2 or not len(logits) == len(labels) == len(files):
            raise ValueError("predictions.npz holds arrays of different lengths")
    except FileNotFoundError:
        if needed:
            lacks.append(Lack("its test predictions", "predictions.npz", MISSING))
        return None
    except DAMAGE:
        lacks.append(Lack("its test predictions", "predictions.npz", DAMAGED))
        return None
    return stored


def predictions(run: runs.Run) -> dict[str, np.ndarray]:
    """The test logits, labels and files of `run`; where they are missing or damaged, a
    ValueError that says so and what to do."""
    lacks: list[Lack] = []
    stored = _predictions(run, lacks, needed=True)
    if stored is None:
        raise ValueError(
            f"{sentence(run, lacks)[:-1]}; score it again with "
            f"`python -m bloodcell rescore --model {run.id}` or train it again."
        )
    return stored


def table() -> list[dict]:
    """One row per stored run: the columns researchers sort and filter on, and `note`, a
    sentence where the run's record or scores are damaged ('' otherwise)."""
    rows = []
    for run in runs.all_runs():
        stored = summary(run)
        record, metrics = stored.record, stored.metrics
        seconds = record.get("train_seconds")
        rows.append(
            {
                "run": run.id,
                "architecture": record.get("arch"),
                "method": record.get("method", ""),
                "image size": record.get("image_size"),
                "crop": record.get("crop", 1.0),
                "epochs": record.get("epochs_run", record.get("config", {}).get("epochs")),
                "accuracy": metrics.get("accuracy"),
                "balanced accuracy": metrics.get("balanced_accuracy"),
                "macro-F1": metrics.get("macro_f1"),
                "CV accuracy": cv_accuracy(metrics, "mean"),
                "training min": round(seconds / 60, 1) if seconds is not None else None,
                "parameters": record.get("parameters"),
                "status": stored.status,
                "note": stored.note,
            }
        )
    return rows


def cv_accuracy(metrics: dict, key: str):
    """The cross-validation accuracy's `key` (mean, std, per_fold), None where the run has none."""
    return ((metrics.get("cross_validation") or {}).get("accuracy") or {}).get(key)


def confusion(stored: Stored, normalize: bool = False) -> tuple[list[str], np.ndarray]:
    """Class labels and the confusion matrix (rows: true class), optionally as row fractions."""
    kept = stored.confusion or {"labels": [], "matrix": []}
    matrix = np.asarray(kept["matrix"], dtype=float)
    if normalize and matrix.size:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return kept["labels"], matrix


def per_class(stored: Stored, score: str = "recall") -> dict[str, float]:
    """Class -> `score` from the run's per-class test scores (empty where it has none)."""
    scores = stored.metrics.get("per_class")
    if not isinstance(scores, dict):
        return {}
    return {name: v[score] for name, v in scores.items() if isinstance(v, dict) and score in v}


def record_json(stored: Stored) -> str:
    """The run's record, metrics, confusion matrix and curves as one JSON document for download."""
    return json.dumps(
        {
            "run": stored.record,
            "metrics": stored.metrics,
            "confusion": stored.confusion,
            "history": stored.history,
            "lacks": [str(lack) for lack in stored.lacks],
        },
        indent=2,
    )


def trained_on(record: dict) -> str:
    """Where a run trained: Keras' backend and the CPUs and accelerator of its machine."""
    versions = record.get("versions", {})
    accelerator = versions.get("accelerator", "none")
    where = f"{versions.get('backend', '?')}, {versions.get('cpus', '?')} CPUs"
    return where if accelerator == "none" else f"{where}, {accelerator}"


def pixels(record: dict) -> str:
    """The input size of a run, and the central share the network saw if it cropped."""
    crop = record.get("crop", 1.0)
    return f"{record.get('image_size', '?')} px" + (f", central {crop:.0%}" if crop < 1 else "")


def markdown(prefix: str = "", skipped: Callable[[str], None] = lambda note: None) -> str:
    """The finished runs whose id contains `prefix` as a Markdown table (the README's). A run
    left out because a file of it is damaged, or because it has no test scores, is told to
    `skipped` in a sentence."""
    header = [
        "run",
        "architecture",
        "method",
        "input",
        "epochs",
        "test accuracy",
        "balanced acc.",
        "macro-F1",
        "CV accuracy (mean ± std)",
        "training min",
        "trained on",
        "parameters",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * (len(header) - 3)]
    for run in sorted(runs.all_runs(), key=lambda r: r.id):
        if prefix not in run.id:
            continue
        stored = summary(run)
        if stored.damaged:
            skipped(stored.note)
            continue
        if stored.status != "finished":
            continue
        record, metrics = stored.record, stored.metrics
        if not all(isinstance(metrics.get(k), int | float) for k in SCORES):
            skipped(f"Run {run.id} has no test scores (metrics.json is missing or lacks them).")
            continue
        mean, std = cv_accuracy(metrics, "mean"), cv_accuracy(metrics, "std")
        seconds, parameters = record.get("train_seconds"), record.get("parameters")
        cells = [
            run.id,
            record.get("arch", "?"),
            record.get("method", ""),
            pixels(record),
            record.get("epochs_run", ""),
            *(f"{metrics[k]:.2%}" for k in SCORES),
            f"{mean:.2%} ± {std:.2%}" if mean is not None and std is not None else "",
            f"{seconds / 60:.1f}" if seconds is not None else "",
            trained_on(record),
            f"{parameters:,}" if parameters is not None else "",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def misses(chosen: list[runs.Run]) -> dict:
    """The test images that `chosen` runs, all tested on one split, answer wrongly: each with
    its file, true class, every run's answer and how many runs missed it, most missed first.
    Images that every run misses are ones a vote among these runs gets wrong too."""
    if not chosen:
        raise ValueError("Choose at least one run.")
    tested = []
    for run in chosen:
        stored = predictions(run)
        order = np.argsort(stored["files"])
        tested.append(
            (stored["files"][order], stored["labels"][order], stored["logits"][order].argmax(axis=1))
        )
    files, labels, _ = tested[0]
    classes = chosen[0].record.get("classes")
    for run, (other_files, other_labels, _) in zip(chosen, tested, strict=True):
        names = run.record.get("classes")
        if not isinstance(names, list):
            raise ValueError(sentence(run, [Lack("its class names", "run.json", NONE)]))
        if names != classes or not np.array_equal(other_files, files):
            raise ValueError(
                f"{run.id} was tested on other images or classes than {chosen[0].id}; "
                "compare only runs that share a test split (the same data, test fraction and split seed)."
            )
        if not np.array_equal(other_labels, labels):
            raise ValueError(f"{run.id} labels its test images differently from {chosen[0].id}.")
    answers = np.stack([predicted for _, _, predicted in tested], axis=1)
    missed = (answers != labels[:, None]).sum(axis=1)
    images = [
        {
            "file": str(files[i]),
            "true": classes[labels[i]],
            "answers": {run.id: classes[k] for run, k in zip(chosen, answers[i], strict=True)},
            "missed_by": int(missed[i]),
        }
        for i in sorted(np.flatnonzero(missed), key=lambda i: (-missed[i], str(files[i])))
    ]
    return {
        "runs": [run.id for run in chosen],
        "n": len(files),
        "missed_by_all": int((missed == len(chosen)).sum()),
        "missed_by_any": int((missed > 0).sum()),
        "images": images,
    }


def missed_pictures(record: dict, found: dict, limit: int = 12) -> list[tuple[Path, dict]]:
    """Files of the images of `found` (from `misses`) that every chosen run misses, in the
    training data folder `record` names: at most `limit`, and only files inside that folder. A
    stored name that leads out of it (by '..', an absolute path or a link) is refused, since
    predictions files are data, not a licence to show any file of the server."""
    dataset = record.get("dataset")
    recorded = dataset.get("root") if isinstance(dataset, dict) else None
    if not isinstance(recorded, str) or not recorded:
        return []
    root = Path(recorded).resolve()
    everyone = found["images"][: found["missed_by_all"]]
    inside = ((_inside(root, image["file"]), image) for image in everyone)
    return list(islice(((path, image) for path, image in inside if path), limit))


def _inside(root: Path, name: str) -> Path | None:
    """`root / name` resolved, if it is a file within `root`; else None."""
    try:
        path = (root / name).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None
    except (OSError, ValueError):  # a name with a NUL byte, a link loop
        return None
