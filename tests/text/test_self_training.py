"""Self-training's choice of pseudo labels: per class, the most confident predictions, within a
quota and above a threshold."""

import numpy as np

from ulmfit.text.transformers.self_training import pick_confident


def test_pick_confident_takes_the_top_of_each_class_within_quota_and_threshold():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.95, 0.05], [0.3, 0.7]])
    rows, labels = pick_confident(probs, {0: 2, 1: 2}, min_confidence=0.6)
    assert rows.tolist() == [4, 0, 2, 5]   # class 0 by confidence (0.95, 0.9; 0.6 over quota), then class 1
    assert labels.tolist() == [0, 0, 1, 1]
    rows, labels = pick_confident(probs, {1: 5}, min_confidence=0.75)
    assert rows.tolist() == [2] and labels.tolist() == [1]  # 0.7 and 0.55 are under the threshold
    rows, labels = pick_confident(probs, {}, 0.5)
    assert len(rows) == 0 and len(labels) == 0
