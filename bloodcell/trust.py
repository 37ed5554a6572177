"""Honest answers: temperature scaling, a review threshold for a target error, and an
unfamiliarity score, all fitted on a run's own training and validation data.

Status of a prediction: `unfamiliar` when the image's features are far from every class seen in
training (Mahalanobis distance, tied covariance; Lee et al. 2018); else `review` when the
calibrated confidence is under the threshold that keeps the error among accepted validation
cells at or under the target; else `confident`.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, softmax

TARGET_ERROR = 0.005
FAMILIAR_QUANTILE = 0.995
BINS = 15


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar  # only when fitting: pages import this module

    logits = np.asarray(logits, np.float64)

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def scores(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Expected calibration error (equal-width bins), negative log-likelihood and Brier score."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1)
    n = len(labels)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    correct = predicted == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = sum(
        abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).sum() / n
        for b in range(bins)
        if (which == b).any()
    )
    onehot = np.eye(p.shape[1])[labels]
    return {
        "ece": float(ece),
        "nll": float(-np.log(p[np.arange(n), labels]).mean()),
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
    }


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin: mean confidence, accuracy and count (the reliability diagram)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
            "count": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict[str, list[float]]:
    """Error among accepted cells against the share accepted, accepting the most confident first."""
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(~correct[order])
    accepted = np.arange(1, len(order) + 1)
    return {
        "threshold": confidence[order].tolist(),
        "coverage": (accepted / len(order)).tolist(),
        "risk": (errors / accepted).tolist(),
    }


def review_threshold(confidence: np.ndarray, correct: np.ndarray, target: float = TARGET_ERROR) -> dict:
    """The lowest confidence threshold whose accepted cells have an error at or under `target`."""
    curve = risk_coverage(confidence, correct)
    risk, coverage, thresholds = (np.array(curve[k]) for k in ("risk", "coverage", "threshold"))
    ok = np.flatnonzero(risk <= target)
    if not len(ok):
        return {"threshold": 1.0, "coverage": 0.0, "risk": 0.0, "target": target}
    i = ok.max()
    return {
        "threshold": float(thresholds[i]),
        "coverage": float(coverage[i]),
        "risk": float(risk[i]),
        "target": target,
    }


@dataclass
class Familiarity:
    """Class means and a shared (Ledoit-Wolf) precision matrix of penultimate features."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float = np.inf

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> "Familiarity":
        features = np.asarray(features, np.float64)
        classes = np.unique(labels)
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        from sklearn.covariance import LedoitWolf  # half a second to import: only where it fits

        return cls(means, LedoitWolf().fit(centred).precision_)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the nearest class mean: larger is less familiar."""
        # Whitened once (precision = W W^T), the distances are plain Euclidean ones: a matrix
        # product, not one quadratic form per image and class.
        whiten = np.linalg.cholesky(self.precision)
        z, centres = np.asarray(features, np.float64) @ whiten, self.means @ whiten
        squared = (z**2).sum(axis=1)[:, None] - 2 * z @ centres.T + (centres**2).sum(axis=1)[None]
        return np.sqrt(np.maximum(squared.min(axis=1), 0))

    def calibrate(self, features: np.ndarray, quantile: float = FAMILIAR_QUANTILE) -> None:
        """Set the threshold so that `quantile` of these in-distribution images count as familiar."""
        self.threshold = float(np.quantile(self.distance(features), quantile))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "precision": self.precision, "threshold": np.array(self.threshold)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Familiarity":
        return cls(arrays["means"], arrays["precision"], float(arrays["threshold"]))


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def status(
    probabilities: np.ndarray, distance: np.ndarray, review_below: float, familiar_below: float
) -> list[str]:
    """confident / review / unfamiliar for each row."""
    confidence = probabilities.max(axis=1)
    return [
        "unfamiliar" if d > familiar_below else "review" if c < review_below else "confident"
        for c, d in zip(confidence, distance, strict=True)
    ]
