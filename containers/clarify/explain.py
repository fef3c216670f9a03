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
  distinct path features: bit s set when the record misses the conditions of slot s. The mean
  over the baseline rows of each code's values is a small table per leaf (`_leaf_tables`: the
  baseline codes counted, then one matrix product per slot); a record's SHAP values are table
  look-ups, summed per feature (`_accumulate`).

How the time splits for 100 records of a 150-tree model (what issue 12 measures against Kernel
SHAP, which takes about 7 ms a record there): the model bytes come out of XGBoost (1.6 ms),
the node arrays are found in them by one numpy scan (`ubjson.typed_arrays`) instead of a
Python step per UBJSON value (8 ms), and every later step is a few numpy passes over
[leaves, records] arrays of bits and bytes: which way each record goes at each split, the
codes packed from those bits (`np.packbits`), one gather from each slot's table and a small
matrix product that adds it to its feature.

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
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ubjson

METHOD = "interventional_tree_shap"
MAX_PATH_FEATURES = 10  # a leaf's table has 2**k rows: beyond this it outgrows memory
AGG_METHODS = ("mean_abs", "median", "mean_sq")  # Clarify's SHAPConfig.agg_method values
_TABLE_CELLS = 4_000_000  # leaves x codes x slots of tables held at once (float64: 32 MB)
_LOOKUP_CELLS = 1_000_000  # leaves x records per pass (about 30 bytes each, in a few arrays)
_NODE_KEYS = (  # the node arrays read, in the order XGBoost writes a tree's keys (sorted)
    "default_left",
    "left_children",
    "right_children",
    "split_conditions",
    "split_indices",
    "split_type",
)


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
    """The leaves of an ensemble, flattened across trees, each with one condition per slot.

    A slot is one distinct feature of the leaf's path; its condition is the path's split on
    that feature, or all of them when the path splits on it more than once ("merged"). A
    condition is a row of the miss matrix that `_misses` builds for a batch of records: rows
    [0, n_splits) say a record misses the left branch of a split, [n_splits, 2 n_splits) the
    right branch, row 2 n_splits is never missed (a padded slot) and the rest are the merged
    conditions, each missed when any of its `merged_rows` is. Leaves are sorted by slot count,
    most first, so the leaves with more than s slots are a prefix.
    """

    node_feature: np.ndarray  # [n_splits] feature index of each split node
    node_threshold: np.ndarray  # [n_splits, 1] float32: x < threshold goes left
    node_default_left: np.ndarray  # [n_splits, 1] bool: where a missing value goes
    merged_rows: np.ndarray  # [n_merged, k] miss-matrix rows a merged condition needs
    leaf_value: np.ndarray  # [n_leaves] float64
    slot_rows: np.ndarray  # [slots, n_leaves] miss-matrix row of each slot's condition
    slot_feature: np.ndarray  # [slots, n_leaves] feature of each slot (0 where padded)
    slot_count: np.ndarray  # [n_leaves] slots in use, descending
    slots: int


# ------------------------------------------------------------------ reading the booster


def read_forest(booster: Any, output_group: int = 0) -> Forest:
    """Flatten the trees of `booster` that add to output `output_group` (0 unless multiclass).

    Reads the saved model (UBJSON): its thresholds and leaf values are the float32 numbers
    XGBoost predicts with, which the text dumps round. Only the node arrays are needed: they
    are found by a scan of the bytes, checked against the document's structure, and the
    whole document is parsed only when that check fails.
    """
    booster_name = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
    if booster_name != "gbtree":
        raise ValueError(f"SHAP by tree paths needs a gbtree booster, got {booster_name!r}")
    raw = booster.save_raw(raw_format="ubj")
    nodes = _scan_nodes(raw) or _parse_nodes(raw)
    chosen = nodes.pop("tree_group") == output_group
    if not chosen.any():
        raise ValueError(f"the model has no trees for output {output_group}")
    sizes = nodes.pop("sizes")
    if not chosen.all():
        in_chosen_tree = np.repeat(chosen, sizes)
        nodes = {key: value[in_chosen_tree] for key, value in nodes.items()}
        sizes = sizes[chosen]
    if np.any(nodes["split_type"] != 0):
        raise ValueError("categorical splits are not supported: encode categories as numbers")
    return _flatten(nodes, sizes)


def _scan_nodes(raw: bytearray) -> dict[str, np.ndarray] | None:
    """The node arrays of every tree, all trees end to end, found by `ubjson.typed_arrays`.

    None (read the whole document instead) unless what the scan found is laid out as XGBoost
    writes trees: one array per key per tree, in key order, tree after tree, node counts
    agreeing, as many trees as `tree_info` (each tree's output group) has entries.
    """
    try:
        tree_group = np.asarray(ubjson.value_after(raw, "tree_info"), np.int64)
    except (KeyError, ValueError):
        return None
    found = ubjson.typed_arrays(raw, _NODE_KEYS)
    arrays = [found[key] for key in _NODE_KEYS]
    if tree_group.ndim != 1 or any(a is None or a.counts.size != tree_group.size for a in arrays):
        return None
    sizes = arrays[0].counts
    # Each array starts after the previous one ends: key after key, then the next tree.
    starts = np.stack([a.offsets for a in arrays], axis=1).ravel()
    ends = np.stack([a.ends for a in arrays], axis=1).ravel()
    if any(np.any(a.counts != sizes) for a in arrays) or np.any(starts[1:] < ends[:-1]):
        return None
    nodes = {key: a.values for key, a in zip(_NODE_KEYS, arrays, strict=True)}
    return {**nodes, "sizes": sizes, "tree_group": tree_group}


def _parse_nodes(raw: bytearray) -> dict[str, np.ndarray]:
    """The same arrays as `_scan_nodes`, from the whole document parsed by `ubjson.loads`."""
    model = ubjson.loads(raw)["learner"]["gradient_booster"]["model"]
    trees = model["trees"]
    return {
        **{key: np.concatenate([np.asarray(tree[key]) for tree in trees]) for key in _NODE_KEYS},
        "sizes": np.array([len(tree["left_children"]) for tree in trees], np.int64),
        "tree_group": np.asarray(model["tree_info"], np.int64),
    }


def _flatten(nodes: dict[str, np.ndarray], sizes: np.ndarray) -> Forest:
    """Each leaf's path from its root, built one tree level at a time for all trees at once."""
    n_nodes = sizes.sum()
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)  # each node's tree's first node
    is_split = nodes["left_children"] != -1
    splits, leaves = is_split.nonzero()[0], (~is_split).nonzero()[0]
    left = nodes["left_children"][splits] + first[splits]
    right = nodes["right_children"][splits] + first[splits]
    split_index = np.cumsum(is_split) - 1  # a split node's position among the split nodes
    parent = np.full(n_nodes + 1, -1)  # parent[-1] is -1: above a root stays above it
    parent[left], parent[right] = splits, splits
    went_left = np.zeros(n_nodes + 1, bool)
    went_left[left] = True
    chain = [leaves]  # chain[d]: each leaf's ancestor d levels up (-1 above its root)
    while np.any((up := parent[chain[-1]]) != -1):
        chain.append(up)
    if len(chain) == 1:  # every tree is a single leaf: give the paths one padded step
        chain.append(np.full(leaves.size, -1))
    path = np.stack(chain)  # [1 + depth, n_leaves]: the leaves, then up (position-major)
    node, valid = path[1:], path[1:] != -1  # each step: the split passed through
    n_splits = splits.size
    rows = np.where(
        valid, split_index[node] + n_splits * ~went_left[path[:-1]], 2 * n_splits
    )  # the miss-matrix row of each step's condition
    feature = np.where(valid, nodes["split_indices"][node], -1)
    slots = _slots(path, rows, feature, valid, n_splits)
    order = np.argsort(-slots.count, kind="stable")
    return Forest(
        node_feature=nodes["split_indices"][splits].astype(np.intp),
        node_threshold=nodes["split_conditions"][splits, None],
        node_default_left=nodes["default_left"][splits, None].astype(bool),
        merged_rows=slots.merged_rows,
        leaf_value=nodes["split_conditions"][leaves[order]].astype(np.float64),
        slot_rows=slots.rows[:, order],
        slot_feature=slots.feature[:, order],
        slot_count=slots.count[order],
        slots=slots.rows.shape[0],
    )


@dataclass(frozen=True)
class _Slots:
    rows: np.ndarray  # [slots, n_leaves] miss-matrix row of each slot's condition
    merged_rows: np.ndarray  # [n_merged, k]
    feature: np.ndarray  # [slots, n_leaves] (0 where padded)
    count: np.ndarray  # [n_leaves]


def _slots(
    path: np.ndarray, rows: np.ndarray, feature: np.ndarray, valid: np.ndarray, n_splits: int
) -> _Slots:
    """Number each leaf's distinct path features 0, 1, ... from the leaf up, and give each
    slot its condition (see `Forest`). Arrays are [position or slot, leaf].

    A slot split on once is that split's row. One split on several times needs all of them:
    a merged condition, shared by every leaf below the child of the slot's deepest split (the
    same conditions on that feature lie above it), so the merged conditions are numbered by
    that node: about one per node, whatever the number of leaves. One numpy step per pair of
    path positions (depth is small), over all leaves at once.
    """
    depth, n_leaves = feature.shape
    never_missed = 2 * n_splits
    slot = np.full((depth, n_leaves), -1)  # each position's slot
    slot_rows = np.full((depth, n_leaves), never_missed)
    slot_feature = np.zeros((depth, n_leaves), feature.dtype)
    deepest = np.zeros((depth, n_leaves), np.intp)  # each slot's first position from the leaf
    merged = np.zeros((depth, n_leaves), bool)
    count = np.zeros(n_leaves, np.intp)
    for position in range(depth):
        earlier = np.full(n_leaves, -1)  # the slot of an earlier position on the same feature
        for before in range(position):
            np.copyto(earlier, slot[before], where=feature[before] == feature[position])
        new = (valid[position] & (earlier < 0)).nonzero()[0]
        slot[position] = earlier
        at = count[new]
        slot[position, new] = at
        slot_rows[at, new] = rows[position, new]
        slot_feature[at, new] = feature[position, new]
        deepest[at, new] = position
        count[new] += 1
        again = (earlier >= 0).nonzero()[0]
        merged[earlier[again], again] = True
    n_slots = max(1, int(count.max()))
    if n_slots > MAX_PATH_FEATURES:
        raise ValueError(
            f"a leaf's path splits on {n_slots} distinct features; at most {MAX_PATH_FEATURES} "
            "are supported (lower max_depth)"
        )
    merged_slot, leaf = merged.nonzero()
    below = path[deepest[merged_slot, leaf], leaf]  # the child of the slot's deepest split
    _, first, number = np.unique(below, return_index=True, return_inverse=True)
    slot_rows[merged_slot, leaf] = never_missed + 1 + number
    chosen, chosen_slot = leaf[first], merged_slot[first]
    needed = np.where(slot[:, chosen] == chosen_slot, rows[:, chosen], never_missed)
    needed = np.sort(needed.T, axis=1)  # [n_merged, depth]: the padding sorts last
    width = max(1, int((needed < never_missed).sum(axis=1).max(initial=0)))
    return _Slots(
        rows=slot_rows[:n_slots],
        merged_rows=needed[:, :width],
        feature=slot_feature[:n_slots],
        count=count,
    )


# ------------------------------------------------------------------ the Shapley arithmetic


def _misses(forest: Forest, rows: np.ndarray) -> np.ndarray:
    """[miss-matrix rows, n_rows rounded up to 8] bool: which conditions each row misses (see
    `Forest`); the rounding lets `_leaf_codes` work on 8 rows per machine word.

    XGBoost's rule: float32 `x < threshold` goes left, a missing value goes the default way.
    """
    n_splits, n_merged = forest.node_feature.size, forest.merged_rows.shape[0]
    width = -(-rows.shape[0] // 8) * 8
    misses = np.zeros((2 * n_splits + 1 + n_merged, width), bool)
    goes_left = misses[n_splits : 2 * n_splits, : rows.shape[0]]  # misses the right branch
    values = np.ascontiguousarray(rows.T)[forest.node_feature]
    np.less(values, forest.node_threshold, out=goes_left)
    if np.isnan(rows).any():
        np.copyto(goes_left, forest.node_default_left, where=np.isnan(values))
    np.logical_not(misses[n_splits : 2 * n_splits], out=misses[:n_splits])
    words = misses.view(np.uint64)  # 8 rows a word: an OR of words is an OR of 8 misses
    merged = words[2 * n_splits + 1 :]
    for needed in forest.merged_rows.T:
        merged |= words.take(needed, axis=0)
    return misses


def _leaf_codes(forest: Forest, misses: np.ndarray, leaves: slice, n_rows: int) -> np.ndarray:
    """[n_leaves, n_rows]: bit s set when the row misses the condition of the leaf's slot s.

    Each miss is a byte holding 0 or 1, so a 64-bit word holds 8 rows and one shift-and-or
    sets a slot's bit for all 8 (`np.packbits` along the slot axis is ~10x slower).
    """
    words = misses.view(np.uint64)
    slot_rows = forest.slot_rows[:, leaves]
    codes = np.zeros((slot_rows.shape[1], words.shape[1]), np.uint64)
    high = np.zeros_like(codes) if forest.slots > 8 else codes  # slots 8, 9: a second byte
    for slot in range(forest.slots):
        target = codes if slot < 8 else high
        target |= words.take(slot_rows[slot], axis=0) << np.uint64(slot % 8)
    low = codes.view(np.uint8)[:, :n_rows]
    if forest.slots <= 8:
        return low
    return low | high.view(np.uint8)[:, :n_rows].astype(np.uint16) << 8


def _shapley_kernel(slots: int) -> np.ndarray:
    """[slots, 2**slots (baseline code), 2**slots (record code)]: one leaf's Shapley values.

    For a leaf of value 1 where the record misses the slots of its code and the baseline row
    those of its own: A = slots only the baseline row misses (the record's value reaches the
    leaf), B = slots only the record misses; unreachable (0) when a slot is missed by both.
    """
    codes = np.arange(1 << slots)
    record, base = codes[None, :], codes[:, None]
    in_a_only, in_b_only = base & ~record, record & ~base
    reachable = (record & base) == 0
    a, b = _popcount(in_a_only), _popcount(in_b_only)
    fact = np.array([math.factorial(k) for k in range(2 * slots + 2)], np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight_a = np.where(a > 0, fact[np.maximum(a - 1, 0)] * fact[b] / fact[a + b], 0.0)
        weight_b = np.where(b > 0, fact[a] * fact[np.maximum(b - 1, 0)] / fact[a + b], 0.0)
    bits = (1 << np.arange(slots))[:, None, None]
    kernel = ((in_a_only & bits) > 0) * weight_a - ((in_b_only & bits) > 0) * weight_b
    return np.where(reachable, kernel, 0.0)


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values.astype(np.uint64)).astype(np.int64)


def _leaf_tables(
    forest: Forest, baseline_codes: np.ndarray, weights: np.ndarray, leaves: slice
) -> np.ndarray:
    """[slots, n_leaves, 2**slots]: each record code's SHAP value for each slot of each leaf,
    averaged over the baseline (a slot's table is one block: one gather per slot).

    Counting the baseline rows per leaf and code (weighted) turns the average into a matrix
    product with the kernel, whatever the number of records. Leaves are grouped by their slot
    count k (the leaves are sorted by it) and each group's product uses the kernel of k slots
    only: its codes are below 2**k, so a k-slot leaf never reads past its part of the table.
    """
    n_codes = 1 << forest.slots
    n_leaves = baseline_codes.shape[0]
    cells = np.add(baseline_codes, (np.arange(n_leaves) * n_codes)[:, None], dtype=np.intp)
    share = np.bincount(cells.ravel(), np.tile(weights, n_leaves), n_leaves * n_codes)
    share = share.reshape(n_leaves, n_codes) * forest.leaf_value[leaves, None]
    kernel = _shapley_kernel(forest.slots)
    tables = np.zeros((forest.slots, n_leaves, n_codes), np.float32)  # see `_accumulate`
    slot_count = forest.slot_count[leaves]
    starts = np.searchsorted(-slot_count, -np.arange(forest.slots + 1))  # slot counts descend
    for slots in range(1, forest.slots + 1):
        group, codes = slice(starts[slots], starts[slots - 1]), 1 << slots
        if group.start == group.stop:
            continue
        kernel_k = kernel[:slots, :codes, :codes].transpose(1, 0, 2).reshape(codes, -1)
        product = (share[group, :codes] @ kernel_k).reshape(-1, slots, codes)
        tables[:slots, group, :codes] = product.transpose(1, 0, 2)
    return tables


def _feature_sums(forest: Forest, leaves: slice, n_features: int) -> np.ndarray:
    """[slots, n_features, n_leaves]: 1 where the leaf's slot stands for the feature, so that
    a product sums a slot's look-ups per feature."""
    slot, leaf = (np.arange(forest.slots)[:, None] < forest.slot_count[leaves]).nonzero()
    one_hot = np.zeros((forest.slots, n_features, leaves.stop - leaves.start), np.float32)
    one_hot[slot, forest.slot_feature[:, leaves][slot, leaf], leaf] = 1.0
    return one_hot


def _accumulate(
    forest: Forest,
    tables: np.ndarray,
    feature_sums: np.ndarray,
    record_codes: np.ndarray,
    leaves: slice,
) -> np.ndarray:
    """[n_features, n_records]: each record's entry of each leaf's table, summed per feature.

    Per slot: one gather from the slot's table (one index serves every slot; the leaves with
    more than s slots are a prefix), then a product with the slot's [features, leaves]
    one-hot, which sums each feature's leaves. The tables are float32, the precision of the
    leaf values themselves: the gathers and products, most of the time, move half the bytes
    (about 2x faster), and each product's sum over a few thousand leaves stays within 1e-5 of
    the float64 one; the per-slot sums are added in float64.
    """
    n_leaves, n_records = record_codes.shape
    n_codes = tables.shape[2]
    looked_up = np.add(record_codes, (np.arange(n_leaves) * n_codes)[:, None], dtype=np.intp)
    slot_count = forest.slot_count[leaves]
    values = np.zeros((feature_sums.shape[1], n_records))
    for slot in range(forest.slots):
        used = int(np.searchsorted(-slot_count, -slot, side="left"))  # leaves with > slot slots
        values += feature_sums[slot, :, :used] @ tables[slot].take(looked_up[:used])
    return values


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
    values = np.zeros((n_features, records.shape[0]))
    base_misses = _misses(forest, baseline)
    for leaves in _leaf_chunks(forest):
        base_codes = _leaf_codes(forest, base_misses, leaves, baseline.shape[0])
        tables = _leaf_tables(forest, base_codes, weights, leaves)
        feature_sums = _feature_sums(forest, leaves, n_features)
        for rows in _row_chunks(records.shape[0], leaves):
            misses = _misses(forest, records[rows])
            codes = _leaf_codes(forest, misses, leaves, rows.stop - rows.start)
            values[:, rows] += _accumulate(forest, tables, feature_sums, codes, leaves)
    expected = float(weights @ _margin(booster, baseline, output_group))
    return Explanation(values=values.T, expected_value=expected, feature_names=list(feature_names))


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


def _leaf_chunks(forest: Forest) -> list[slice]:
    """Leaves in groups whose [slots, leaves, codes] tables stay under the memory budget."""
    size = max(1, _TABLE_CELLS // ((1 << forest.slots) * forest.slots))
    n_leaves = forest.leaf_value.size
    return [slice(start, min(start + size, n_leaves)) for start in range(0, n_leaves, size)]


def _row_chunks(n_records: int, leaves: slice) -> list[slice]:
    """Records in groups whose [leaves, records] look-ups stay under the memory budget."""
    size = max(1, _LOOKUP_CELLS // (leaves.stop - leaves.start))
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
