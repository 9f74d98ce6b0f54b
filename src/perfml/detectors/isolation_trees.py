"""An isolation forest as plain arrays, scored by NumPy exactly as scikit-learn scores it.

scikit-learn keeps a fitted forest as Python objects that only pickle can save, and pickle
runs code when it loads. Its trees are nothing but arrays, though: :class:`IsolationTrees`
takes them out of a fitted ``IsolationForest`` and scores with them, so a model is saved as
numbers (see :mod:`.artifact`) and scored the same after loading, without scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from perfml.detectors.frames import Floats

TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "n_node_samples")
"""The arrays of the trees: what a saved forest consists of."""


def average_path_length(n: npt.NDArray[Any]) -> Floats:
    """``c(n)``: the mean path length of an unsuccessful search in a binary tree of ``n``."""
    n = np.asarray(n, dtype=np.float64)
    inner = np.maximum(n, 3.0)  # where the formula applies; the other cases are set below
    length = 2.0 * (np.log(inner - 1.0) + np.euler_gamma) - 2.0 * (inner - 1.0) / inner
    result: Floats = np.where(n <= 1, 0.0, np.where(n == 2, 1.0, length))
    return result


class IsolationTrees:
    """An isolation forest as arrays, scored in NumPy exactly as scikit-learn scores it.

    Each array is ``(trees, nodes)``, shorter trees padded; ``feature`` indexes the columns of
    the whole feature matrix; a leaf has children ``-1``.

    >>> from sklearn.ensemble import IsolationForest
    >>> x = np.random.default_rng(1).normal(size=(500, 3))
    >>> model = IsolationForest(n_estimators=20, random_state=0).fit(x)
    >>> trees = IsolationTrees.from_sklearn(model)
    >>> bool(np.allclose(trees.anomaly_scores(x), -model.score_samples(x), rtol=0, atol=1e-12))
    True
    """

    def __init__(self, arrays: dict[str, npt.NDArray[Any]], max_samples: int, features: int):
        left, right = arrays["children_left"], arrays["children_right"]
        feature, threshold = arrays["feature"], arrays["threshold"]
        samples = arrays["n_node_samples"]
        if not left.ndim == 2 or any(a.shape != left.shape for a in arrays.values()):
            raise ValueError("tree arrays must share one (trees, nodes) shape")
        nodes = left.shape[1]
        leaf = left < 0
        if not (
            np.array_equal(leaf, right < 0)
            and np.all(left < nodes)
            and np.all(right < nodes)
            and np.all((left >= -1) & (right >= -1))
            and np.all(leaf | ((feature >= 0) & (feature < features)))
            and max_samples >= 1
        ):
            raise ValueError("tree arrays do not describe trees over these features")
        self.arrays = {name: np.ascontiguousarray(arrays[name]) for name in TREE_ARRAYS}
        self.max_samples = max_samples
        self.features = features
        self._left = left.astype(np.intp)
        self._right = right.astype(np.intp)
        self._feature = np.where(leaf, 0, feature).astype(np.intp)
        self._threshold = threshold.astype(np.float64)
        depth = self._depths()
        # What a row ending in a node adds to its summed path length, as scikit-learn sums it.
        self._leaf_length = depth + average_path_length(samples) - 1.0
        self._height = int(depth.max()) - 1
        self._denominator = float(left.shape[0] * average_path_length(np.array(max_samples)))

    @classmethod
    def from_sklearn(cls, model: Any) -> IsolationTrees:
        """The trees of a fitted ``sklearn.ensemble.IsolationForest``."""
        trees = [estimator.tree_ for estimator in model.estimators_]
        width = max(tree.node_count for tree in trees)
        arrays = {
            "children_left": np.full((len(trees), width), -1, dtype=np.int32),
            "children_right": np.full((len(trees), width), -1, dtype=np.int32),
            "feature": np.zeros((len(trees), width), dtype=np.int32),
            "threshold": np.zeros((len(trees), width)),
            "n_node_samples": np.zeros((len(trees), width), dtype=np.int32),
        }
        for row, (tree, columns) in enumerate(zip(trees, model.estimators_features_, strict=True)):
            count = tree.node_count
            for name in TREE_ARRAYS:
                arrays[name][row, :count] = getattr(tree, name)
            # A tree trained on a subset of the features names them by their place in it.
            internal = tree.children_left >= 0
            arrays["feature"][row, :count] = np.where(
                internal, np.asarray(columns)[np.where(internal, tree.feature, 0)], 0
            )
        return cls(arrays, int(model.max_samples_), int(model.n_features_in_))

    def anomaly_scores(self, x: Floats) -> Floats:
        """``2^(−E[h(x)] / c(max_samples))`` per row: near 1 anomalous, about 0.5 and below not.

        Equals ``-IsolationForest.score_samples(x)``; like scikit-learn, compares ``x`` as
        float32. A row's score does not depend on the other rows scored with it.
        """
        x32 = np.asarray(x, dtype=np.float32)
        rows = np.arange(len(x32))[:, None]
        trees = np.arange(self._left.shape[0])
        node = np.zeros((len(x32), len(trees)), dtype=np.intp)
        for _ in range(self._height):
            left = self._left[trees, node]
            goes_left = x32[rows, self._feature[trees, node]] <= self._threshold[trees, node]
            node = np.where(left < 0, node, np.where(goes_left, left, self._right[trees, node]))
        lengths = self._leaf_length[trees, node].T
        total = np.zeros(len(x32))
        for tree_lengths in lengths:  # tree by tree, in scikit-learn's order of summation
            total += tree_lengths
        scores: Floats = 2.0 ** -(total / self._denominator)
        return scores

    def _depths(self) -> Floats:
        """Every node's depth, the root's being 1 (scikit-learn's ``compute_node_depths``)."""
        depth = np.zeros(self._left.shape)
        tree, node = np.arange(self._left.shape[0]), np.zeros(self._left.shape[0], dtype=np.intp)
        level = 1
        while tree.size:
            if np.any(depth[tree, node] > 0):
                raise ValueError("tree arrays reach a node twice: not trees")
            depth[tree, node] = level
            inner = self._left[tree, node] >= 0
            tree, node = (
                np.tile(tree[inner], 2),
                np.concatenate(
                    [self._left[tree[inner], node[inner]], self._right[tree[inner], node[inner]]]
                ),
            )
            level += 1
        return depth
