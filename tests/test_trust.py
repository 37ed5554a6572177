import numpy as np
import pytest
from scipy.special import softmax

from bloodcell import trust


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 4000)
    true_logits = rng.normal(0, 1, (4000, 4))
    true_logits[np.arange(4000), labels] += 2.0
    sampled = np.array([rng.choice(4, p=p) for p in softmax(true_logits, axis=1)])
    overconfident = true_logits * 3.0  # the model is three times too sure
    t = trust.fit_temperature(overconfident, sampled)
    assert t == pytest.approx(3.0, rel=0.1)
    before = trust.scores(trust.calibrated(overconfident, 1.0), sampled)
    after = trust.scores(trust.calibrated(overconfident, t), sampled)
    assert after["ece"] < before["ece"] and after["nll"] < before["nll"]


def test_scores_match_hand_computed_values():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])
    s = trust.scores(p, labels, bins=2)
    # bin (0.5, 1]: all three, confidence mean (0.9+0.6+0.7)/3, accuracy 2/3
    assert s["ece"] == pytest.approx(abs(2 / 3 - 2.2 / 3))
    assert s["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.4) + np.log(0.7)) / 3)
    assert s["brier"] == pytest.approx((0.02 + 0.72 + 0.18) / 3)


def test_review_threshold_meets_the_target_error():
    confidence = np.array([0.99, 0.98, 0.97, 0.96, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, True, True, True, False, True, False])
    r = trust.review_threshold(confidence, correct, target=0.0)
    assert r["threshold"] == 0.8 and r["coverage"] == pytest.approx(5 / 8) and r["risk"] == 0
    r = trust.review_threshold(confidence, correct, target=0.2)
    assert r["threshold"] == 0.6 and r["risk"] == pytest.approx(1 / 7)


def test_familiarity_flags_features_far_from_every_class():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 300)
    centres = rng.normal(0, 5, (3, 16))
    features = centres[labels] + rng.normal(0, 1, (900, 16))
    model = trust.Familiarity.fit(features, labels)
    model.calibrate(centres[labels] + rng.normal(0, 1, (900, 16)), quantile=0.99)
    near = centres[[0, 1, 2]] + rng.normal(0, 1, (3, 16))
    far = rng.normal(0, 1, (3, 16)) * 20
    assert (model.distance(near) <= model.threshold).all() and (model.distance(far) > model.threshold).all()
    restored = trust.Familiarity.from_arrays(model.arrays())
    assert np.allclose(restored.distance(far), model.distance(far)) and restored.threshold == model.threshold


def test_status_order_unfamiliar_then_review_then_confident():
    p = np.array([[0.99, 0.01], [0.6, 0.4], [0.99, 0.01]])
    assert trust.status(p, np.array([1.0, 1.0, 9.0]), 0.9, 5.0) == ["confident", "review", "unfamiliar"]
