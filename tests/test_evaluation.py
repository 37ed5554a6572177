import numpy as np
import pytest

from bloodcell.evaluation import metrics


def test_metrics_match_hand_computed_values():
    # true: a a a b b c ; predicted: a a b b c c
    y = [0, 0, 0, 1, 1, 2]
    p = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.8 + 0.2 / 3
    m = metrics(y, p, ("a", "b", "c"))
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["accuracy_ci95"] == pytest.approx([0.3000, 0.9032], abs=1e-3)  # Wilson, by hand
    # recalls: a 2/3, b 1/2, c 1/1
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions: a 2/2, b 1/2, c 1/2 ; F1: a 0.8, b 0.5, c 2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["labels"] == ["a", "b", "c"]


def test_a_subset_of_classes_is_scored_over_the_classes_present():
    m = metrics([2, 2, 0], np.eye(3)[[2, 1, 0]], ("a", "b", "c"))
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert m["per_class"]["b"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
