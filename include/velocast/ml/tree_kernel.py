"""A fitted ``HistGradientBoostingRegressor`` compiled to leaf bitmasks: exact, and fast at any size.

scikit-learn's own ``predict`` costs ~5 ms for one row (input validation, the column transformer
of the categorical counter, one Cython call per tree) and walks 150 trees row by row for a batch.
Here the trees are compiled once per model load, in the manner of QuickScorer (Lucchese et al.,
SIGIR 2015): a tree's leaves are numbered left to right and every split is a bitmask clearing
the leaves of its left subtree; the leaf a row reaches is the lowest bit left after AND-ing the
masks of the splits whose test the row fails. The features make that cheap:

* the counter (a categorical) takes ~100 values and ``hour`` / ``hour_day_off`` 48 pairs, so the
  AND of their splits' masks is one table row per counter and per (hour, day off?);
* the ten day features are constant within a local day: their masks are computed once per
  distinct day of the request (``FeatureArrays`` keeps them so);

so a row costs two or three table look-ups per tree and a trailing-zero count. The comparisons
are scikit-learn's own (``x <= threshold`` in float64; categories through its bitsets, negative or
unknown codes down the missing-value branch), and the leaf values are summed in the order
``_raw_predict`` sums them, so the predictions are bit-for-bit those of ``estimator.predict``
(``tests/unit/ml/test_tree_kernel.py``).

``CompiledBoosting.compile`` returns None for a model it cannot represent (more than 64 leaves
per tree, several outputs, another feature layout): its caller then uses ``estimator.predict``.
The scikit-learn internals read here (``_predictors``, ``_bin_mapper``, ``_preprocessor``,
``_baseline_prediction``, ``_loss``) are those of the pinned version; a test holds the two paths
equal on real data, so an upgrade that changes them fails there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from velocast.ml.calendar import DAY_FEATURES
from velocast.ml.features import FEATURE_NAMES, FeatureArrays

MAX_LEAVES: Final = 64
HOUR_KEYS: Final = 48  # hour + 24 × day off
# Up to this many rows, the trees' values are summed in Python: the same float64 additions in the
# same order, without one numpy call per tree.
PYTHON_SUM_ROWS: Final = 8

_COUNTER_COLUMN: Final = FEATURE_NAMES.index("counter_code")
_HOUR_COLUMN: Final = FEATURE_NAMES.index("hour")
_HOUR_DAY_OFF_COLUMN: Final = FEATURE_NAMES.index("hour_day_off")
_DAY_COLUMNS: Final = {FEATURE_NAMES.index(name): position for position, name in enumerate(DAY_FEATURES)}


@dataclass(frozen=True)
class CompiledBoosting:
    """Leaf bitmasks of every tree, by feature group; ``raw_predict`` is the estimator's prediction."""

    mask_dtype: type[np.unsignedinteger[Any]]
    baseline: float
    inverse_link: Any  # the loss's inverse link (identity for squared error, exp for Poisson)
    counter_masks: np.ndarray  # (trees, 1 + counters): column 0 is the unknown code -1
    hour_masks: np.ndarray  # (trees, 48)
    day_node_tree: np.ndarray  # the day splits, sorted by tree: their tree,
    day_node_feature: np.ndarray  # position in DAY_FEATURES,
    day_node_threshold: np.ndarray  # threshold (float64)
    day_node_mask: np.ndarray  # and mask
    day_tree_starts: np.ndarray  # first day split of each tree that has some
    leaf_values: np.ndarray  # (trees, leaves) float64, leaves left to right

    @property
    def n_trees(self) -> int:
        return int(self.leaf_values.shape[0])

    @classmethod
    def compile(cls, estimator: Any, n_codes: int) -> CompiledBoosting | None:
        """The compiled trees of a fitted estimator, or None where this representation does not fit.

        ``n_codes``: the counter encoder's size (codes 0..n_codes-1; -1 is an unknown counter).
        """
        layout_ok = (
            getattr(estimator, "n_trees_per_iteration_", None) == 1
            and tuple(getattr(estimator, "feature_names_in_", ())) == FEATURE_NAMES
            and getattr(estimator, "_preprocessor", None) is not None
            and list(estimator.is_categorical_) == [i == _COUNTER_COLUMN for i in range(len(FEATURE_NAMES))]
        )
        if not layout_ok:
            return None
        trees = [predictors[0] for predictors in estimator._predictors]
        n_leaves = max((int(tree.nodes["is_leaf"].sum()) for tree in trees), default=1)
        if n_leaves > MAX_LEAVES:
            return None
        dtype: type[np.unsignedinteger[Any]] = np.uint32 if n_leaves <= 32 else np.uint64
        ones = np.iinfo(dtype).max

        category_x = _category_values(estimator, n_codes)
        known_bitsets, feature_map = estimator._bin_mapper.make_known_categories_bitsets()
        counter_masks = np.full((len(trees), n_codes + 1), ones, dtype=dtype)
        hour_masks = np.full((len(trees), HOUR_KEYS), ones, dtype=dtype)
        hour_keys = np.arange(HOUR_KEYS)
        hour_values = {_HOUR_COLUMN: (hour_keys % 24).astype(np.float64), _HOUR_DAY_OFF_COLUMN: hour_keys}
        day_splits: list[tuple[int, int, float, int]] = []
        leaf_values = np.zeros((len(trees), n_leaves), dtype=np.float64)

        for t, tree in enumerate(trees):
            nodes = tree.nodes
            leaves, spans = _leaf_order(nodes)
            leaf_values[t, : len(leaves)] = nodes["value"][leaves]
            for node_index, (first, last) in spans.items():
                node = nodes[node_index]
                left_bits = ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)
                mask = dtype(ones ^ left_bits)
                feature = int(node["feature_idx"])
                if node["is_categorical"]:
                    goes_left = _categorical_goes_left(
                        node, category_x, tree.raw_left_cat_bitsets, known_bitsets[feature_map[feature]]
                    )
                    counter_masks[t, ~goes_left] &= mask
                elif feature in hour_values:
                    hour_masks[t, hour_values[feature] > node["num_threshold"]] &= mask
                else:
                    day_splits.append((t, _DAY_COLUMNS[feature], float(node["num_threshold"]), int(mask)))

        # Appended tree by tree: already grouped by tree, as ``reduceat`` needs.
        split_tree = np.array([split[0] for split in day_splits], dtype=np.intp)
        starts = np.flatnonzero(np.r_[True, split_tree[1:] != split_tree[:-1]]) if day_splits else split_tree
        return cls(
            mask_dtype=dtype,
            baseline=float(np.ravel(estimator._baseline_prediction)[0]),
            inverse_link=estimator._loss.link.inverse,
            counter_masks=counter_masks,
            hour_masks=hour_masks,
            day_node_tree=split_tree,
            day_node_feature=np.array([split[1] for split in day_splits], dtype=np.intp),
            day_node_threshold=np.array([split[2] for split in day_splits], dtype=np.float64),
            day_node_mask=np.array([split[3] for split in day_splits], dtype=dtype),
            day_tree_starts=starts,
            leaf_values=leaf_values,
        )

    def predict(self, features: FeatureArrays) -> np.ndarray:
        """What ``estimator.predict`` returns for these rows (before velocast's level factors)."""
        n_rows = len(features)
        if n_rows == 0:
            return np.zeros(0, dtype=np.float64)
        calendar = features.calendar
        day_masks = self._day_masks(calendar.day_table)  # (trees, days)
        hour_key = calendar.hour.astype(np.intp) + 24 * calendar.is_day_off().astype(np.intp)
        counter_key = features.codes.astype(np.intp) + 1
        n_days = day_masks.shape[1]
        if n_days * HOUR_KEYS <= n_rows:  # many rows a day: combine day and hour tables first
            day_hour = (day_masks[:, :, None] & self.hour_masks[:, None, :]).reshape(self.n_trees, -1)
            row_masks = np.take(day_hour, calendar.day_index * HOUR_KEYS + hour_key, axis=1)
        else:
            row_masks = np.take(self.hour_masks, hour_key, axis=1)
            row_masks &= np.take(day_masks, calendar.day_index, axis=1)
        masks = np.take(self.counter_masks, counter_key, axis=1)
        masks &= row_masks
        lowest = masks & (~masks + self.mask_dtype(1))
        leaves = np.bitwise_count(lowest - self.mask_dtype(1)).astype(np.intp)
        values = np.take_along_axis(self.leaf_values, leaves, axis=1)  # (trees, rows)
        return np.asarray(self.inverse_link(self._sum_in_order(values)))

    def _day_masks(self, day_table: Any) -> np.ndarray:
        days = np.stack([day_table[name] for name in DAY_FEATURES], axis=1).astype(np.float64)
        ones = np.iinfo(self.mask_dtype).max
        masks = np.full((self.n_trees, len(days)), ones, dtype=self.mask_dtype)
        if len(self.day_node_tree):
            fails = days[:, self.day_node_feature] > self.day_node_threshold  # (days, splits)
            split_masks = np.where(fails, self.day_node_mask, self.mask_dtype(ones))
            per_tree = np.bitwise_and.reduceat(split_masks, self.day_tree_starts, axis=1)
            masks[self.day_node_tree[self.day_tree_starts]] = per_tree.T
        return masks

    def _sum_in_order(self, values: np.ndarray) -> np.ndarray:
        # scikit-learn adds the trees one by one onto the baseline: the same order, the same bits.
        if values.shape[1] <= PYTHON_SUM_ROWS:
            sums = []
            for column in values.T.tolist():
                total = self.baseline
                for value in column:
                    total += value
                sums.append(total)
            return np.array(sums, dtype=np.float64)
        out = np.full(values.shape[1], self.baseline, dtype=np.float64)
        for row in values:
            out += row
        return out


def _leaf_order(nodes: np.ndarray) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """The leaves left to right, and the leaf span (first, last) of each split's left subtree."""
    leaves: list[int] = []
    spans: dict[int, tuple[int, int]] = {}

    def visit(index: int) -> tuple[int, int]:
        node = nodes[index]
        if node["is_leaf"]:
            leaves.append(index)
            return len(leaves) - 1, len(leaves) - 1
        left = visit(int(node["left"]))
        right = visit(int(node["right"]))
        spans[index] = left
        return left[0], right[1]

    visit(0)
    return leaves, spans


def _category_values(estimator: Any, n_codes: int) -> np.ndarray:
    """The value the trees see for each code -1..n_codes-1: its category index, NaN if unknown."""
    categories = np.asarray(estimator._preprocessor.named_transformers_["encoder"].categories_[0])
    codes = np.arange(-1, n_codes)
    positions = np.searchsorted(categories, codes)
    found = (positions < len(categories)) & (categories[np.minimum(positions, len(categories) - 1)] == codes)
    return np.where(found, positions, np.nan).astype(np.float64)


def _in_bitset(bitset: np.ndarray, values: np.ndarray) -> np.ndarray:
    words = bitset[values // 32].astype(np.uint64)
    bits: np.ndarray = ((words >> (values % 32).astype(np.uint64)) & np.uint64(1)).astype(bool)
    return bits


def _categorical_goes_left(
    node: Any, category_x: np.ndarray, raw_left_bitsets: np.ndarray, known_bitset: np.ndarray
) -> np.ndarray:
    """Whether each code goes left at this split: ``_predict_one_from_raw_data``'s rules."""
    missing_left = bool(node["missing_go_to_left"])
    goes_left = np.full(len(category_x), missing_left)  # NaN, negative, unknown: the missing branch
    valid = ~np.isnan(category_x) & (category_x >= 0)
    values = category_x[valid].astype(np.intp)
    in_left = _in_bitset(raw_left_bitsets[int(node["bitset_idx"])], values)
    known = _in_bitset(known_bitset, values)
    goes_left[valid] = np.where(in_left, True, np.where(known, False, missing_left))
    return goes_left


__all__ = ["MAX_LEAVES", "CompiledBoosting"]
