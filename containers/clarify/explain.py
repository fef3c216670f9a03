"""Clarify's SHAP values for XGBoost models, computed exactly: interventional TreeSHAP.

SageMaker Clarify explains a model with Kernel SHAP against a baseline (the `baseline` of its
SHAP config; without one, K-means centroids of the data). Kernel SHAP estimates, by sampling
coalitions, the interventional Shapley values of the game

    v(S) = mean over baseline rows z of f(x_S, z_rest)

For a tree ensemble that game is exactly computable from the trees, without sampling: this
module does so (the interventional TreeSHAP of Lundberg et al. 2020), so the values are what
Kernel SHAP converges to, not XGBoost's path-dependent `pred_contribs` (a different game: it
weights each branch by the training cover instead of by the baseline).

How it stays fast (numpy only, no loop over records, baseline rows or trees):

* For one leaf, one record x and one baseline row z, the game "x_S, z_rest reaches the leaf"
  depends only on which of the leaf's path conditions x meets and which z meets, feature by
  feature: a feature whose conditions only x meets must be in S (set A), one whose conditions
  only z meets must be out of S (set B); a feature that neither meets makes the leaf
  unreachable. The Shapley value of such a game is closed-form:
  (|A|-1)! |B|! / (|A|+|B|)! for each feature of A and -|A|! (|B|-1)! / (|A|+|B|)! for each
  feature of B, times the leaf value.
* So a record matters to a leaf only through a bit code over the leaf's (at most `depth`)
  distinct path features. The mean over the baseline rows of each code's values is a table per
  leaf (`_leaf_tables`, one matrix product for all leaves); a record's SHAP values are then
  table look-ups summed per feature (`_accumulate`).

Model output: the margin (raw score), the sum of the leaves plus the base score. For
reg:squarederror that is the prediction itself, what Clarify explains. For binary:logistic the
margin is the log-odds: what Clarify explains with `use_logit: true`; with Clarify's default
(`use_logit: false`) it explains the probability, which is not additive over trees, and
`shap_values` does not compute that: the caller explains
the log-odds (Clarify's `use_logit: true`) and says so, or states the gap.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ubjson

METHOD = "interventional_tree_shap"
MAX_PATH_FEATURES = 10  # a leaf's table has 2**k rows: beyond this it outgrows memory
AGG_METHODS = ("mean_abs", "median", "mean_sq")  # Clarify's SHAPConfig.agg_method values
_CELLS_PER_CHUNK = 4_000_000  # records x leaves x slots held in memory at once


@dataclass(frozen=True)
class Explanation:
    """Per-record SHAP values of one model output, with what they are relative to.

    values[r] + expected_value equals the model's margin for records[r] (up to float32
    rounding of XGBoost's own sums).
    """

    values: np.ndarray  # [n_records, n_features]
    expected_value: float  # mean margin over the baseline rows
    feature_names: list[str]
    method: str = METHOD


@dataclass(frozen=True)
class Forest:
    """The leaves of an ensemble, flattened across trees, each with its path conditions.

    A leaf's path is padded to `depth` conditions and its distinct features to `slots`; a
    padded condition is always met and a padded slot holds no feature, so padding adds zero.
    """

    node_feature: np.ndarray  # [n_splits] feature index of each split node
    node_threshold: np.ndarray  # [n_splits] float32: x < threshold goes left
    node_default_left: np.ndarray  # [n_splits] bool: where a missing value goes
    leaf_value: np.ndarray  # [n_leaves] float64
    path_node: np.ndarray  # [n_leaves, depth] split node index (0 where padded)
    path_left: np.ndarray  # [n_leaves, depth] bool: the path takes the left branch
    path_slot: np.ndarray  # [n_leaves, depth] slot of the node's feature in the leaf
    path_valid: np.ndarray  # [n_leaves, depth] bool: a real condition, not padding
    slot_feature: np.ndarray  # [n_leaves, slots] feature of each slot (0 where padded)
    slots: int


# ------------------------------------------------------------------ reading the booster


def read_forest(booster: Any, output_group: int = 0) -> Forest:
    """Flatten the trees of `booster` that add to output `output_group` (0 unless multiclass).

    Reads the saved model (UBJSON, its node arrays straight into numpy) once: its thresholds
    and leaf values are the float32 numbers XGBoost predicts with, which the text dumps round.
    """
    model = ubjson.loads(booster.save_raw(raw_format="ubj"))
    booster_json = model["learner"]["gradient_booster"]
    if booster_json["name"] != "gbtree":
        raise ValueError(f"SHAP by tree paths needs a gbtree booster, got {booster_json['name']!r}")
    trees = booster_json["model"]["trees"]
    groups = booster_json["model"]["tree_info"]
    chosen = [tree for tree, group in zip(trees, groups, strict=True) if group == output_group]
    if not chosen:
        raise ValueError(f"the model has no trees for output {output_group}")
    if np.any(np.concatenate([tree["split_type"] for tree in chosen]) != 0):
        raise ValueError("categorical splits are not supported: encode categories as numbers")
    return _flatten(_concatenate(chosen))


def _concatenate(trees: list[dict]) -> dict[str, np.ndarray]:
    """All trees' node arrays end to end, child indices made global (-1 stays: a leaf)."""
    sizes = [len(tree["left_children"]) for tree in trees]
    offsets = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)

    def stack(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(tree[key], dtype) for tree in trees])

    left, right = stack("left_children", np.int64), stack("right_children", np.int64)
    is_leaf = left == -1
    return {
        "left": np.where(is_leaf, -1, left + offsets),
        "right": np.where(is_leaf, -1, right + offsets),
        "feature": stack("split_indices", np.int64),
        "value": stack("split_conditions", np.float32),  # threshold, or a leaf's value
        "default_left": stack("default_left", np.int64).astype(bool),
        "roots": np.cumsum([0, *sizes[:-1]]),
    }


def _flatten(nodes: dict[str, np.ndarray]) -> Forest:
    """Each leaf's path from its root, built one tree level at a time for all trees at once."""
    n_nodes = nodes["left"].size
    is_split = nodes["left"] != -1
    split_index = np.cumsum(is_split) - 1  # a split node's position among the split nodes
    parent = np.full(n_nodes, -1)
    went_left = np.zeros(n_nodes, bool)
    splits = is_split.nonzero()[0]
    parent[nodes["left"][splits]] = splits
    parent[nodes["right"][splits]] = splits
    went_left[nodes["left"][splits]] = True
    # ancestors[d][node]: the node's ancestor d levels up (-1 above its root).
    ancestors = [np.arange(n_nodes)]
    while True:
        up = parent[ancestors[-1]]
        up = np.where(ancestors[-1] == -1, -1, up)
        if np.all(up == -1):
            break
        ancestors.append(up)
    if len(ancestors) == 1:  # every tree is a single leaf: give the paths one padded step
        ancestors.append(np.full(n_nodes, -1))
    leaves = (~is_split).nonzero()[0]
    chain = np.stack([a[leaves] for a in ancestors], axis=1)  # [n_leaves, 1 + depth]: leaf, up
    child, above = chain[:, :-1], chain[:, 1:]  # each step of a path: (node, its parent split)
    valid = above != -1
    depth = max(1, int(valid.sum(axis=1).max()))
    child, above, valid = child[:, :depth], above[:, :depth], valid[:, :depth]
    safe_above = np.where(valid, above, splits[0] if splits.size else 0)
    path_node = np.where(valid, split_index[safe_above], 0)
    path_left = went_left[np.where(valid, child, 0)] & valid
    feature = np.where(valid, nodes["feature"][safe_above], -1)
    path_slot, slot_feature, slots = _slots(feature, valid)
    return Forest(
        node_feature=nodes["feature"][splits],
        node_threshold=nodes["value"][splits],
        node_default_left=nodes["default_left"][splits],
        leaf_value=nodes["value"][leaves].astype(np.float64),
        path_node=path_node,
        path_left=path_left,
        path_slot=path_slot,
        path_valid=valid,
        slot_feature=slot_feature,
        slots=slots,
    )


def _slots(feature: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Number each leaf's distinct path features 0, 1, ...: a feature split twice shares one."""
    same = (feature[:, :, None] == feature[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    first = np.argmax(same, axis=2)  # the first position with this position's feature
    is_first = (first == np.arange(feature.shape[1])) & valid
    slot_at_first = np.cumsum(is_first, axis=1) - 1
    path_slot = np.where(valid, np.take_along_axis(slot_at_first, first, axis=1), 0)
    slots = max(1, int(is_first.sum(axis=1).max()))
    if slots > MAX_PATH_FEATURES:
        raise ValueError(
            f"a leaf's path splits on {slots} distinct features; at most {MAX_PATH_FEATURES} "
            "are supported (lower max_depth)"
        )
    slot_feature = np.zeros((feature.shape[0], slots), np.int64)
    rows, positions = is_first.nonzero()
    slot_feature[rows, slot_at_first[rows, positions]] = feature[rows, positions]
    return path_slot, slot_feature, slots


# ------------------------------------------------------------------ the Shapley arithmetic


def _goes_left(forest: Forest, rows: np.ndarray) -> np.ndarray:
    """[n_rows, n_splits] bool: XGBoost's rule, float32 `x < threshold`, missing by default."""
    if forest.node_feature.size == 0:  # only single-leaf trees: one dummy, padded column
        return np.ones((rows.shape[0], 1), bool)
    values = rows[:, forest.node_feature]
    with np.errstate(invalid="ignore"):
        left = values < forest.node_threshold
    return np.where(np.isnan(values), forest.node_default_left, left)


def _leaf_codes(forest: Forest, goes_left: np.ndarray, leaves: slice) -> np.ndarray:
    """[n_rows, n_leaves] uint16: bit s set when the row meets every condition of slot s.

    A feature split on twice along a path has one slot: the row must meet both conditions.
    """
    path_node = forest.path_node[leaves]
    slot_bit = np.where(
        forest.path_valid[leaves], np.left_shift(1, forest.path_slot[leaves]), 0
    ).astype(np.uint16)
    failed = np.zeros((goes_left.shape[0], path_node.shape[0]), np.uint16)
    for position in range(path_node.shape[1]):
        misses = goes_left[:, path_node[:, position]] != forest.path_left[leaves, position]
        failed |= misses * slot_bit[:, position]
    return np.uint16((1 << forest.slots) - 1) & ~failed


def _shapley_kernel(slots: int) -> np.ndarray:
    """[2**slots (baseline code), 2**slots (record code), slots]: one leaf's Shapley values.

    For a leaf of value 1 where the record meets the slots of its code and the baseline row
    those of its own: A = slots only the record meets, B = slots only the baseline row meets;
    unreachable (0) when a slot is met by neither.
    """
    codes = np.arange(1 << slots)
    record, base = codes[None, :], codes[:, None]
    only_record, only_base = record & ~base, base & ~record
    reachable = (record | base) == (1 << slots) - 1
    a, b = _popcount(only_record), _popcount(only_base)
    fact = np.array([math.factorial(k) for k in range(2 * slots + 2)], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight_a = np.where(a > 0, fact[np.maximum(a - 1, 0)] * fact[b] / fact[a + b], 0.0)
        weight_b = np.where(b > 0, fact[a] * fact[np.maximum(b - 1, 0)] / fact[a + b], 0.0)
    bits = 1 << np.arange(slots)
    in_a = (only_record[..., None] & bits) > 0
    in_b = (only_base[..., None] & bits) > 0
    kernel = in_a * weight_a[..., None] - in_b * weight_b[..., None]
    return np.where(reachable[..., None], kernel, 0.0)


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values.astype(np.uint64)).astype(np.int64)


def _leaf_tables(
    forest: Forest,
    baseline_codes: np.ndarray,
    weights: np.ndarray,
    leaves: slice,
    n_features: int,
) -> np.ndarray:
    """[n_leaves * 2**slots, n_features]: each record code's SHAP values per feature in each
    leaf, averaged over the baseline.

    Counting the baseline rows per leaf and code turns the average into a matrix product with
    the kernel, one per slot, whatever the number of records; each leaf's slot goes to the
    feature it stands for (a leaf's slots are distinct features; padded slots add nothing).
    """
    n_codes = 1 << forest.slots
    n_leaves = baseline_codes.shape[1]
    share = np.zeros((n_leaves, n_codes))
    np.add.at(share, (np.arange(n_leaves)[None, :], baseline_codes), weights[:, None])
    share *= forest.leaf_value[leaves, None]
    kernel = _shapley_kernel(forest.slots)
    path_slot = np.where(forest.path_valid[leaves], forest.path_slot[leaves] + 1, 0)
    slot_count = path_slot.max(axis=1)
    tables = np.zeros((n_leaves, n_codes, n_features))
    for slot in range(forest.slots):
        real = np.flatnonzero(slot_count > slot)
        tables[real, :, forest.slot_feature[leaves][real, slot]] = share[real] @ kernel[:, :, slot]
    return tables.reshape(n_leaves * n_codes, n_features)


def _accumulate(tables: np.ndarray, record_codes: np.ndarray) -> np.ndarray:
    """[n_records, n_features]: each record's row of each leaf's table, summed: one sparse
    product, a record's row holding a 1 at each leaf's (leaf, code)."""
    from scipy.sparse import csr_matrix

    n_records, n_leaves = record_codes.shape
    n_codes = tables.shape[0] // n_leaves
    columns = record_codes.astype(np.int64) + (np.arange(n_leaves) * n_codes)[None, :]
    lookups = csr_matrix(
        (np.ones(columns.size), columns.ravel(), np.arange(0, columns.size + 1, n_leaves)),
        shape=(n_records, tables.shape[0]),
    )
    return np.asarray(lookups @ tables)


# ------------------------------------------------------------------ the API


def shap_values(
    booster: Any,
    records: np.ndarray,
    baseline: np.ndarray,
    feature_names: Sequence[str],
    baseline_weights: np.ndarray | None = None,
    output_group: int = 0,
) -> Explanation:
    """Interventional SHAP values of `booster`'s margin for `records` against `baseline`.

    The same quantity as Kernel SHAP with `baseline` as its background data (Clarify's
    method), computed exactly. `baseline_weights` weigh the baseline rows (uniform by default,
    as Clarify treats its baseline). `output_group` picks a class of a multiclass model.
    """
    records, baseline = _as_rows(records, "records"), _as_rows(baseline, "baseline")
    n_features = len(feature_names)
    for name, rows in (("records", records), ("baseline", baseline)):
        if rows.shape[1] != n_features:
            raise ValueError(
                f"{name} have {rows.shape[1]} columns but there are {n_features} feature names"
            )
    weights = _baseline_weights(baseline_weights, baseline.shape[0])
    forest = read_forest(booster, output_group)
    if forest.node_feature.size and forest.node_feature.max() >= n_features:
        raise ValueError(
            f"the model splits on feature {forest.node_feature.max()} but the data has "
            f"{n_features} columns"
        )
    values = np.zeros((records.shape[0], n_features))
    record_left, base_left = _goes_left(forest, records), _goes_left(forest, baseline)
    for leaves in _leaf_chunks(forest, n_features):
        base_codes = _leaf_codes(forest, base_left, leaves)
        tables = _leaf_tables(forest, base_codes, weights, leaves, n_features)
        for rows in _row_chunks(records.shape[0], leaves):
            values[rows] += _accumulate(tables, _leaf_codes(forest, record_left[rows], leaves))
    expected = float(weights @ _margin(booster, baseline, output_group))
    return Explanation(values=values, expected_value=expected, feature_names=list(feature_names))


def _as_rows(rows: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)  # XGBoost compares in float32
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    return array


def _baseline_weights(weights: np.ndarray | None, n_rows: int) -> np.ndarray:
    if weights is None:
        return np.full(n_rows, 1.0 / n_rows)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (n_rows,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"baseline_weights must be {n_rows} non-negative numbers, not all 0")
    return weights / weights.sum()


def _leaf_chunks(forest: Forest, n_features: int) -> list[slice]:
    """Leaves in groups whose [leaves, codes, features] tables stay under the memory budget."""
    per_leaf = (1 << forest.slots) * max(forest.slots, n_features)
    size = max(1, _CELLS_PER_CHUNK // per_leaf)
    n_leaves = forest.leaf_value.size
    return [slice(start, min(start + size, n_leaves)) for start in range(0, n_leaves, size)]


def _row_chunks(n_records: int, leaves: slice) -> list[slice]:
    """Records in groups whose [rows, leaves] codes and look-ups (about 24 bytes a cell, in a
    few arrays) stay under the memory budget."""
    n_leaves = leaves.stop - leaves.start
    size = max(1, _CELLS_PER_CHUNK // (2 * n_leaves))
    return [slice(start, min(start + size, n_records)) for start in range(0, n_records, size)]


def _margin(booster: Any, rows: np.ndarray, output_group: int) -> np.ndarray:
    """The booster's own margin for `rows` (one output), as XGBoost computes it.

    `inplace_predict` skips building a DMatrix (18 ms even for 10 rows, most of a 100-record
    explanation's time).
    """
    margin = booster.inplace_predict(rows, predict_type="margin")
    return np.asarray(margin, np.float64).reshape(rows.shape[0], -1)[:, output_group]


# ------------------------------------------------------------------ Clarify's outputs


def clarify_explanation(
    explanation: Explanation, label: str = "label0", agg_method: str = "mean_abs"
) -> dict:
    """The `analysis.json` document of a Clarify SHAP analysis for these values.

    Clarify's layout: explanations -> kernel_shap -> <label> -> global_shap_values (one number
    per feature, aggregated over the records by `agg_method`) and expected_value. Added: `method`,
    how the values were computed. Kept out, as Clarify keeps them out: the per-record values,
    which go to explanations_shap/out.csv (`local_shap_values_csv`).
    """
    if agg_method not in AGG_METHODS:
        raise ValueError(f"agg_method must be one of {list(AGG_METHODS)}, got {agg_method!r}")
    values = explanation.values
    aggregate = {
        "mean_abs": lambda: np.mean(np.abs(values), axis=0),
        "median": lambda: np.median(values, axis=0),
        "mean_sq": lambda: np.mean(values**2, axis=0),
    }[agg_method]()
    return {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                label: {
                    "global_shap_values": {
                        name: float(value)
                        for name, value in zip(explanation.feature_names, aggregate, strict=True)
                    },
                    "expected_value": explanation.expected_value,
                    "method": explanation.method,
                }
            }
        },
    }


def local_shap_values_csv(explanation: Explanation, label: str = "label0") -> str:
    """Clarify's explanations_shap/out.csv: a row per record, a `<feature>_<label>` column each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"{name}_{label}" for name in explanation.feature_names])
    writer.writerows(explanation.values.tolist())
    return out.getvalue()
