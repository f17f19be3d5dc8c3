"""Vectorised prediction for a fitted HistGradientBoostingRegressor.

sklearn evaluates one tree per Python call, and that per-tree overhead (~40 µs)
dominates a single-row request (~11 ms for 300 trees).  Here every tree is
walked at once with numpy, giving the same numbers (tested against sklearn) in
about a millisecond.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class FastTrees:
    def __init__(self, model):
        self.baseline = float(np.ravel(model._baseline_prediction)[0])
        predictors = [p[0] for p in model._predictors]
        self.known_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
        self.f_idx_map = np.asarray(f_idx_map)
        offsets, bit_offsets = [], []
        nodes, bitsets = [], []
        n, nb = 0, 0
        for p in predictors:
            offsets.append(n)
            bit_offsets.append(nb)
            nodes.append(p.nodes)
            bitsets.append(p.raw_left_cat_bitsets)
            n += len(p.nodes)
            nb += len(p.raw_left_cat_bitsets)
        all_nodes = np.concatenate(nodes)
        node_offset = np.repeat(offsets, [len(x) for x in nodes])
        bit_offset = np.repeat(bit_offsets, [len(x) for x in nodes])
        self.roots = np.asarray(offsets)
        self.feature = all_nodes["feature_idx"].astype(np.intp)
        self.threshold = all_nodes["num_threshold"].astype(np.float64)
        self.missing_left = all_nodes["missing_go_to_left"].astype(bool)
        self.left = all_nodes["left"].astype(np.intp) + node_offset
        self.right = all_nodes["right"].astype(np.intp) + node_offset
        self.is_leaf = all_nodes["is_leaf"].astype(bool)
        self.value = all_nodes["value"].astype(np.float64)
        self.is_cat = all_nodes["is_categorical"].astype(bool)
        self.bitset = all_nodes["bitset_idx"].astype(np.intp) + bit_offset
        self.left_bitsets = np.concatenate(bitsets) if nb else np.zeros((1, 8), np.uint32)

    def encode(self, X) -> np.ndarray:
        """Categorical columns as their category codes (NaN when missing or unknown), numbers as floats.

        sklearn's own OrdinalEncoder, built from the same pandas categories, gives the same codes; the
        direct route skips ~5 ms of ColumnTransformer overhead per call.
        """
        cols = []
        for name in X.columns:
            col = X[name]
            if isinstance(col.dtype, pd.CategoricalDtype):
                codes = col.cat.codes.to_numpy().astype(np.float64)
                codes[codes < 0] = np.nan
                cols.append(codes)
            else:
                cols.append(col.to_numpy(dtype=np.float64))
        return np.column_stack(cols)

    def predict(self, X) -> np.ndarray:
        x = self.encode(X)
        n, n_trees = len(x), len(self.roots)
        node = np.tile(self.roots, n)
        row = np.repeat(np.arange(n), n_trees)
        active = np.nonzero(~self.is_leaf[node])[0]
        while active.size:  # only the (row, tree) pairs not yet at a leaf
            nd, r = node[active], row[active]
            f = self.feature[nd]
            v = x[r, f]
            missing = np.isnan(v)
            cat = self.is_cat[nd]
            code = np.where(missing | ~cat, 0, v).astype(np.int64).clip(0, 255)
            word, bit = code // 32, (code % 32).astype(np.uint32)
            known = ((self.known_bitsets[self.f_idx_map[f], word] >> bit) & 1).astype(bool) \
                if self.known_bitsets.size else np.zeros(len(nd), bool)
            in_left = ((self.left_bitsets[self.bitset[nd], word] >> bit) & 1).astype(bool)
            go_left = np.where(missing | (cat & ~known), self.missing_left[nd],
                               np.where(cat, in_left, v <= self.threshold[nd]))
            node[active] = np.where(go_left, self.left[nd], self.right[nd])
            active = active[~self.is_leaf[node[active]]]
        return self.value[node].reshape(n, n_trees).sum(axis=1) + self.baseline
