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
