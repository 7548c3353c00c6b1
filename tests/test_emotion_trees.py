"""The boosted-trees member's fast path (:mod:`personalization_engine.emotion._trees`): the same
probabilities as scikit-learn's own prediction, missing values included, and the detector's vote
equal to the ``VotingClassifier``'s."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from personalization_engine.emotion._trees import FlatTrees
from personalization_engine.emotion.detector import EmotionDetector
from personalization_engine.errors import ModelLoadError
from personalization_engine.schema import EMOTION_LABELS


def _data(rng: np.random.Generator, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((600, 12))
    y = (X[:, 0] * 2 + X[:, 1] * X[:, 2] + rng.standard_normal(600) * 0.5 > 0).astype(int)
    if n_classes > 2:
        y = np.digitize(X[:, 0] + X[:, 3] * X[:, 4], np.quantile(X[:, 0], np.linspace(0, 1, n_classes + 1)[1:-1]))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values: each node's learned direction
    return X, y


@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_flat_trees_equal_sklearn_including_missing_values(rng, n_classes):
    X, y = _data(rng, n_classes)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0).fit(X, y)
    flat = FlatTrees(model)
    test = X[::3]
    np.testing.assert_allclose(flat.predict_proba(test), model.predict_proba(test), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flat.raw(test[:1]).ravel(), model._raw_predict(test[:1]).ravel(), rtol=1e-12)
    assert flat.predict_proba(test).shape == (len(test), n_classes)


def test_categorical_splits_are_refused(rng):
    X = np.column_stack([rng.integers(0, 4, 300), rng.standard_normal(300)])
    y = (X[:, 0] % 2 == 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features=[0], random_state=0).fit(X, y)
    with pytest.raises(ModelLoadError, match="categorical"):
        FlatTrees(model)


def test_the_detector_vote_equals_the_voting_classifier(rng):
    """A small three-member detector (both SVMs and the trees): its fast vote is scikit-learn's."""
    from personalization_engine.emotion.features import FEATURE_NAMES

    n = 420
    y = np.array(EMOTION_LABELS)[np.arange(n) % 7]
    X = rng.standard_normal((n, len(FEATURE_NAMES))) + (np.arange(n) % 7)[:, None] * 0.05
    det = EmotionDetector(C=0.01, C_compact=None, C_kernel=1.0, kernel_components=50, calibration_folds=3,
                          boosted_trees=True).fit(X, y, groups=np.arange(n) % 12)
    vc = det.pipeline_
    want = np.zeros((n, 7))
    for j, label in enumerate(vc.classes_):
        want[:, EMOTION_LABELS.index(str(label))] = vc.predict_proba(X)[:, j]
    np.testing.assert_allclose(det.predict_proba(X), want, rtol=1e-12, atol=1e-14)
    assert det._flat_trees is not None and len(det._flat_trees) == 1
