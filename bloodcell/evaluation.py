"""Evaluation metrics computed with scikit-learn from labels and class scores."""

import numpy as np
from scipy.stats import binomtest, bootstrap
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


def bootstrap_ci95(y_true: np.ndarray, y_pred: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """95% percentile-bootstrap intervals (test images resampled with replacement) of accuracy,
    balanced accuracy and macro-F1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = {
        "accuracy": lambda t, p: float(np.mean(t == p)),
        "balanced_accuracy": lambda t, p: float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)])),
        "macro_f1": lambda t, p: float(f1_score(t, p, average="macro", zero_division=0)),
    }
    intervals = {}
    for name, score in scores.items():
        result = bootstrap(
            (y_true, y_pred),
            score,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            confidence_level=0.95,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        interval = result.confidence_interval
        intervals[name] = {
            "value": score(y_true, y_pred),
            "ci95": [float(interval.low), float(interval.high)],
        }
    return intervals
