"""Fast prediction of the boosted-trees member: every tree in flat arrays, walked with NumPy.

scikit-learn's ``HistGradientBoostingClassifier.predict_proba`` calls each tree's predictor in
a Python loop: for the shipped member (150 rounds x 7 classes = 1,050 trees) that is about
5 ms for one clip, most of the detector's prediction time. :class:`FlatTrees` copies the same
nodes (feature, threshold, missing-value direction, children, leaf values) into flat arrays
once, then walks all trees at once, one level per step (the shipped trees are at most 11 levels
deep): about 0.2 ms. The arithmetic is the same (``x <= threshold`` goes left, NaN follows the
node's missing-value direction, leaf values summed onto the baseline, softmax), so the
probabilities equal scikit-learn's to rounding (tested).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelLoadError


class FlatTrees:
    """The trees of a fitted ``HistGradientBoostingClassifier`` (numerical features) as arrays.

    Parameters
    ----------
    model : HistGradientBoostingClassifier
        Fitted (multiclass: one tree per class and round; two classes: one tree per round),
        without categorical features.
    """

    def __init__(self, model: Any) -> None:
        if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
            raise ModelLoadError("the boosted-trees member splits on categorical features, which the "
                                 "emotion detector's fast path does not handle; retrain it on numerical features.")
        rounds = model._predictors
        self.n_classes = int(model.n_trees_per_iteration_)
        feature, threshold, missing_left, left, right, leaf, value, roots, tree_class = ([] for _ in range(9))
        offset = 0
        for predictors in rounds:
            for k, predictor in enumerate(predictors):
                nodes = predictor.nodes
                roots.append(offset)
                tree_class.append(k)
                feature.append(nodes["feature_idx"])
                threshold.append(nodes["num_threshold"])
                missing_left.append(nodes["missing_go_to_left"].astype(bool))
                left.append(nodes["left"].astype(np.int64) + offset)
                right.append(nodes["right"].astype(np.int64) + offset)
                leaf.append(nodes["is_leaf"].astype(bool))
                value.append(nodes["value"])
                offset += len(nodes)
        self.feature = np.concatenate(feature).astype(np.int64)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        self.missing_left = np.concatenate(missing_left)
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.leaf = np.concatenate(leaf)
        self.value = np.concatenate(value).astype(np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.tree_class = np.asarray(tree_class, dtype=np.int64)
        self.baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw scores, shape (n, n_classes): the baseline plus each class's leaf values."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        inner = ~self.leaf[node]
        while inner.any():
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
            inner = ~self.leaf[node]
        out = np.empty((len(X), self.n_classes))
        leaves = self.value[node]
        for k in range(self.n_classes):
            out[:, k] = self.baseline[k] + leaves[:, self.tree_class == k].sum(axis=1)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in the model's class order: the softmax of :meth:`raw`
        (two classes: one tree per round, the logistic function of its score)."""
        raw = self.raw(X)
        if self.n_classes == 1:
            p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - p, p])
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
