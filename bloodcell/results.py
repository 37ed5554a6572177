"""Tables and figures' data for comparing stored runs (no Streamlit, no TensorFlow)."""

import json

import numpy as np

from bloodcell import runs


def table() -> list[dict]:
    """One row per stored run, the columns researchers sort and filter on."""
    rows = []
    for run in runs.all_runs():
        record, metrics = run.record, run.metrics or {}
        cv = metrics.get("cross_validation")
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
                "CV accuracy": cv["accuracy"]["mean"] if cv else None,
                "training min": round(record["train_seconds"] / 60, 1) if "train_seconds" in record else None,
                "parameters": record.get("parameters"),
                "status": run.status,
            }
        )
    return rows


def confusion(run: runs.Run, normalize: bool = False) -> tuple[list[str], np.ndarray]:
    """Class labels and the confusion matrix (rows: true class), optionally as row fractions."""
    stored = run.confusion or {"labels": [], "matrix": []}
    matrix = np.asarray(stored["matrix"], dtype=float)
    if normalize and matrix.size:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return stored["labels"], matrix


def per_class(run: runs.Run, score: str = "recall") -> dict[str, float]:
    return {name: values[score] for name, values in (run.metrics or {}).get("per_class", {}).items()}


def record_json(run: runs.Run) -> str:
    """The run's record, metrics and confusion matrix as one JSON document for download."""
    return json.dumps(
        {"run": run.record, "metrics": run.metrics, "confusion": run.confusion, "history": run.history()},
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
    return f"{record['image_size']} px" + (f", central {crop:.0%}" if crop < 1 else "")


def markdown(prefix: str = "") -> str:
    """The finished runs whose id contains `prefix` as a Markdown table (the README's)."""
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
        if prefix not in run.id or run.status != "finished":
            continue
        record, metrics = run.record, run.metrics or {}
        cv = metrics.get("cross_validation")
        cells = [
            run.id,
            record["arch"],
            record.get("method", ""),
            pixels(record),
            record.get("epochs_run", ""),
            f"{metrics['accuracy']:.2%}",
            f"{metrics['balanced_accuracy']:.2%}",
            f"{metrics['macro_f1']:.2%}",
            f"{cv['accuracy']['mean']:.2%} ± {cv['accuracy']['std']:.2%}" if cv else "",
            f"{record['train_seconds'] / 60:.1f}",
            trained_on(record),
            f"{record['parameters']:,}",
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
        try:
            stored = run.predictions()
        except FileNotFoundError:
            raise ValueError(f"{run.id} has no stored test predictions.") from None
        order = np.argsort(stored["files"])
        tested.append(
            (stored["files"][order], stored["labels"][order], stored["logits"][order].argmax(axis=1))
        )
    files, labels, _ = tested[0]
    classes = chosen[0].record["classes"]
    for run, (other_files, other_labels, _) in zip(chosen, tested, strict=True):
        if run.record["classes"] != classes or not np.array_equal(other_files, files):
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
