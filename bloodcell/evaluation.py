"""Evaluation metrics computed with scikit-learn from labels and class scores."""

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict:
    """Accuracy with its 95% (Wilson) interval, balanced accuracy, macro-F1, per-class scores
    and the confusion matrix.

    `probabilities` is (n, len(labels)); rows of the confusion matrix are true classes.
    Per-class and macro scores cover the classes present in `y_true`, so a folder holding a
    subset of the classes is scored fairly.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(probabilities).argmax(axis=1)
    everyone = np.arange(len(labels))
    present = np.unique(y_true)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=everyone, zero_division=0
    )
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": _wilson(int((y_true == y_pred).sum()), len(y_true)),
        "balanced_accuracy": float(recall[present].mean()) if len(present) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=everyone).tolist(),
    }


def _wilson(successes: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    interval = binomtest(successes, n).proportion_ci(0.95, method="wilson")
    return [float(interval.low), float(interval.high)]
