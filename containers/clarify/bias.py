"""SageMaker Clarify's bias metrics, computed the way Clarify computes them, vectorized.

Clarify's bias metrics are those of AWS's open-source `smclarify` (0.5), which the tests use as
the oracle: every value here equals smclarify's on the same data. What Clarify does, and so what
this module does:

- **The positive outcome.** The label (and the predicted label) collapses to a boolean: a
  categorical label is positive when it is one of `label_values_or_threshold`; a continuous label
  when it is above the threshold. Which of the two a column is, Clarify decides from the data
  (`column_kind`): a float column is continuous; an integer (or integer-text) column is
  continuous only when at least 5 % of its values are distinct; anything else, or more than one
  value given, is categorical. So an integer regression target with few distinct values (abalone's
  `rings`: 28 values in 4,177 rows) is categorical: `[10]` then means "rings == 10". Pass such a
  target as float to threshold it; the predicted label must be of the same kind as the label.
- **The sensitive group d.** A categorical facet's d is the rows holding one of the given values
  (no values: each value in turn against the rest); a continuous facet's d is the rows above the
  threshold, reported as the interval `(threshold, max]`.
- **The distribution metrics** (KL, JS, LP, TVD, KS) compare the distributions of the collapsed
  (positive / not positive) label in a and in d, over the outcomes both sides have.
- **Metrics that cannot be computed** carry Clarify's error text (`"error"`, with `"value":
  null`), never a number. Infinite values are written as "Infinity" / "-Infinity".
- **FT** (flip test) fits a k-nearest-neighbours classifier (scikit-learn's, as smclarify) on
  a's rows of every other column (all numeric, or FT reports an error) and their predicted
  labels, and counts d's rows whose predicted label it flips; the neighbour search, the costly
  part, goes through scipy's k-d tree where that gives scikit-learn's answer for certain.

The output is what Clarify writes under `pre_training_bias_metrics` and
`post_training_bias_metrics` in analysis.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PRE_TRAINING_METRICS = ("CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD")
POST_TRAINING_METRICS = (
    "AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "FT", "GE", "RD", "SD", "TE",
)  # fmt: skip
DESCRIPTIONS = {
    "CDDL": "Conditional Demographic Disparity in Labels (CDDL)",
    "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)",
    "JS": "Jensen-Shannon Divergence (JS)",
    "KL": "Kullback-Liebler Divergence (KL)",  # sic: Clarify's spelling
    "KS": "Kolmogorov-Smirnov Distance (KS)",
    "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
    "AD": "Accuracy Difference (AD)",
    "CDDPL": "Conditional Demographic Disparity in Predicted Labels (CDDPL)",
    "DAR": "Difference in Acceptance Rates (DAR)",
    "DCA": "Difference in Conditional Acceptance (DCA)",
    "DCR": "Difference in Conditional Rejection (DCR)",
    "DI": "Disparate Impact (DI)",
    "DPPL": "Difference in Positive Proportions in Predicted Labels (DPPL)",
    "DRR": "Difference in Rejection Rates (DRR)",
    "FT": "Flip Test (FT)",
    "GE": "Generalized Entropy (GE)",
    "RD": "Recall Difference (RD)",
    "SD": "Specificity Difference (SD)",
    "TE": "Treatment Equality (TE)",
}
UNIQUENESS_THRESHOLD = 0.05  # distinct/rows at or above which an integer column is continuous
FT_NEIGHBORS = 5
FT_MIN_NEIGHBORS = 1  # when a has at most FT_SMALL_SIDE rows
FT_SMALL_SIDE = 9
# Relative gap between the k-th and (k+1)-th neighbour distances beyond which the k nearest
# are certain: rounding moves a float64 distance of a few columns by about 1e-15.
NEIGHBOUR_TIE_MARGIN = 1e-9
TIE_CANDIDATES = 16  # neighbours fetched past the k-th to settle a tie
FT_SEARCH_THREADS = -1  # scipy's k-d tree search threads (-1: every core); same answer
INFINITY = math.inf


class BiasAnalysisError(ValueError):
    """The whole analysis cannot run (a missing column, a bad value or threshold): the user's."""


class MetricError(Exception):
    """One metric cannot be computed on this data; the message is Clarify's error text."""


def bias_report(
    frame: pd.DataFrame,
    *,
    label: str,
    label_values_or_threshold: Sequence[Any],
    facets: Sequence[Mapping[str, Any]],
    group_variable: str | None = None,
    predicted_label: str | None = None,
    pre_training_methods: str | Sequence[str] | None = "all",
    post_training_methods: str | Sequence[str] | None = "all",
) -> dict[str, Any]:
    """Clarify's bias sections of analysis.json for `frame`.

    `facets` as in Clarify's analysis config: `[{"name_or_index": "sex", "value_or_threshold":
    ["F"]}]` (`value_or_threshold` optional). Methods: "all", a list of metric names, or None to
    skip a stage; the post-training stage runs only with a `predicted_label` column. Every column
    other than the facet, the label and the predicted label is a feature for FT.
    """
    label_series = _column(frame, label, "Label")
    values = list(label_values_or_threshold)
    if not values:
        raise BiasAnalysisError("Positive label values or thresholds are empty for Label column")
    label_kind, label_series, values = _typed(label_series, values)
    positive_label, label_text = _positive_index(label_series, label_kind, values)
    positive_predicted = None
    if predicted_label is not None and post_training_methods is not None:
        positive_predicted = _positive_predicted_index(
            _column(frame, predicted_label, "Predicted label"), label_series, label_kind, values
        )
    groups = _group_codes(_column(frame, group_variable, "Group variable"))
    stages = [("pre_training_bias_metrics", _methods(pre_training_methods, PRE_TRAINING_METRICS))]
    if positive_predicted is not None:
        stages.append(
            ("post_training_bias_metrics", _methods(post_training_methods, POST_TRAINING_METRICS))
        )
    report: dict[str, Any] = {}
    for key, methods in stages:
        if methods:
            report[key] = {"label": label, "facets": {}, "label_value_or_threshold": label_text}
    for facet in facets:
        name = _facet_name(frame, facet)
        features = frame.drop(columns=[c for c in (name, label, predicted_label) if c in frame])
        for value_text, sensitive in _sensitive_groups(
            frame[name], facet.get("value_or_threshold")
        ):
            sides = Sides(sensitive, positive_label, positive_predicted, groups, features)
            for key, methods in stages:
                if methods:
                    report[key]["facets"].setdefault(name, []).append(
                        {"value_or_threshold": value_text, "metrics": _metrics(methods, sides)}
                    )
    return report


# ----------------------------------------------------------------- column types and indexes


def column_kind(series: pd.Series, values: Sequence[Any] | None) -> str:
    """Either "categorical" or "continuous", by Clarify's rule (smclarify's series_datatype)."""
    if series.dtype.name == "category" or (values is not None and len(values) > 1):
        return "categorical"
    distinct_share = _divide(series.nunique(), series.count())
    if series.dtype.name in ("str", "string", "object"):
        try:
            series.astype("int64")
        except (ValueError, TypeError):
            return "categorical"
        return "continuous" if distinct_share >= UNIQUENESS_THRESHOLD else "categorical"
    if pd.api.types.is_float_dtype(series.dtype):
        return "continuous"
    if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        return "continuous" if distinct_share >= UNIQUENESS_THRESHOLD else "categorical"
    return "categorical"


def _typed(series: pd.Series, values: list[Any] | None) -> tuple[str, pd.Series, list[Any] | None]:
    """The column's kind, the column as that kind, and the values (a numeric threshold)."""
    kind = column_kind(series, values)
    if kind == "categorical":
        return kind, series.astype("category"), values
    if values and not isinstance(values[0], int | float):
        try:
            values = [float(values[0]), *values[1:]]
        except ValueError:
            raise BiasAnalysisError(
                "Facet/label value provided must be a single numeric threshold for continuous data"
            ) from None
    return kind, pd.to_numeric(series), values


def _positive_index(series: pd.Series, kind: str, values: list[Any]) -> tuple[np.ndarray, str]:
    """The rows in the positive (or sensitive) set, and Clarify's text for the set."""
    if kind == "continuous":
        intervals = _threshold_intervals(series, values)
        return _in_intervals(series, intervals), ",".join(map(str, intervals))
    return _categorical_index(series, values), ",".join(map(str, values))


def _positive_predicted_index(
    predicted: pd.Series, label_series: pd.Series, label_kind: str, values: list[Any]
) -> np.ndarray:
    predicted_kind, predicted, _ = _typed(predicted, list(values))
    if predicted_kind != label_kind:
        raise BiasAnalysisError(
            "Predicted Label Column series datatype is not the same as Label Column series"
        )
    if label_kind == "continuous":
        predicted = predicted.astype(label_series.dtype)
        both = pd.concat([label_series, predicted])
        index = _in_intervals(predicted, _threshold_intervals(both, values))
    else:
        index = _categorical_index(predicted, values)
    if not index.any():
        raise BiasAnalysisError(
            "No Label values are present in the predicted Label Column,"
            "Positive Predicted Index Series contains all False values"
        )
    return index


def _threshold_intervals(data: pd.Series, thresholds: list[Any] | None) -> pd.IntervalIndex:
    """Clarify's intervals: the thresholds and the column's maximum as breaks, `(t, max]`."""
    if not thresholds:
        raise BiasAnalysisError("Threshold values must be provided for continuous features")
    maximum = data.max()
    breaks = list(thresholds)
    if abs(maximum) not in thresholds:
        breaks.append(maximum)
    return pd.IntervalIndex.from_breaks(sorted(breaks))


def _in_intervals(series: pd.Series, intervals: pd.IntervalIndex) -> np.ndarray:
    x = series.to_numpy()
    inside = np.zeros(len(x), dtype=bool)
    for interval in intervals:
        inside |= (x > interval.left) & (x <= interval.right)
    return inside


def _categorical_index(series: pd.Series, values: list[Any]) -> np.ndarray:
    """Rows equal to one of `values`; if none is, the values converted to the column's type."""
    categories = series.cat.categories
    codes = series.cat.codes.to_numpy()

    def rows_equal_to(candidates: list[Any]) -> np.ndarray:
        hit = np.zeros(len(categories) + 1, dtype=bool)  # the last slot: missing (code -1)
        for value in candidates:
            hit[:-1] |= np.asarray(categories == value, dtype=bool)
        return hit[codes]

    index = rows_equal_to(values)
    if len(series) == 0 or index.any():
        return index
    return rows_equal_to(_converted(series.iloc[0], values))


def _converted(example: Any, values: list[Any]) -> list[Any]:
    """The values as the column's type, as Clarify converts them when none matched."""
    if isinstance(values[0], type(example)):
        return values
    try:
        return [type(example)(value) for value in values]
    except ValueError as error:
        if "invalid literal for int() with base 10" not in str(error):
            raise BiasAnalysisError(
                "'label' has not positive elements. Double-check if 'label' and "
                "'positive_label_values'have correct data-types or values."
            ) from None
    try:
        return [float(value) for value in values]
    except ValueError as error:
        raise BiasAnalysisError(str(error)) from None


def _sensitive_groups(series: pd.Series, values: Any) -> list[tuple[str, np.ndarray]]:
    """(Clarify's value_or_threshold text, the rows of d) for each group the facet reports."""
    values = None if values is None else list(values)
    kind, typed, values = _typed(series, values)
    if kind == "continuous":
        intervals = _threshold_intervals(typed, values)
        return [(",".join(map(str, intervals)), _in_intervals(typed, intervals))]
    value_sets = [values] if values else [[value] for value in typed.unique()]
    return [
        (",".join(map(str, value_set)), _categorical_index(typed, value_set))
        for value_set in value_sets
    ]


def _group_codes(series: pd.Series | None) -> np.ndarray | None:
    """Each row's group as 0..G-1 in sorted group order (-1: missing); None without a group."""
    if series is None:
        return None
    codes, _ = pd.factorize(series, sort=True)
    return codes


def _column(frame: pd.DataFrame, name: str | None, role: str) -> Any:
    if name is None:
        return None
    if name not in frame.columns:
        raise BiasAnalysisError(f"{role} column {name} is not present in the dataset")
    return frame[name]


def _facet_name(frame: pd.DataFrame, facet: Mapping[str, Any]) -> str:
    name = facet["name_or_index"]
    if isinstance(name, int) and name not in frame.columns:
        if not 0 <= name < len(frame.columns):
            raise BiasAnalysisError(f"Facet column {name} is not present in the dataset")
        name = frame.columns[name]
    if name not in frame.columns:
        raise BiasAnalysisError(f"Facet column {name} is not present in the dataset")
    return str(name)


def _methods(methods: str | Sequence[str] | None, known: tuple[str, ...]) -> list[str]:
    if methods is None:
        return []
    if methods == "all" or list(methods) == ["all"]:
        return list(known)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BiasAnalysisError(
            f"Invalid metric_name: metrics should be one of the registered metrics{list(known)}"
        )
    return sorted(set(methods))


# ------------------------------------------------------------------------------ the metrics


@dataclass
class Sides:
    """The data one facet group's metrics read: masks, counts, groups and FT's features."""

    sensitive: np.ndarray  # d
    label: np.ndarray  # positive label
    predicted: np.ndarray | None  # positive predicted label
    groups: np.ndarray | None
    features: pd.DataFrame

    def __post_init__(self) -> None:
        # n[d, y, ŷ]: rows by side (0: a, 1: d), label and predicted label.
        predicted = self.label if self.predicted is None else self.predicted
        cell = self.sensitive.astype(np.intp) * 4 + self.label * 2 + predicted
        self.n = np.bincount(cell, minlength=8).reshape(2, 2, 2)

    @property
    def n_label(self) -> np.ndarray:
        """n[d, y]"""
        return self.n.sum(axis=2)

    @property
    def n_predicted(self) -> np.ndarray:
        """n[d, ŷ]"""
        return self.n.sum(axis=1)

    def require_both_sides(self, prefix: str = "") -> None:
        if self.n[1].sum() == 0:
            raise MetricError(f"{prefix}Facet set is empty")
        if self.n[0].sum() == 0:
            raise MetricError(f"{prefix}Negated Facet set is empty")


def _divide(a: float, b: float) -> float:
    """Clarify's division: 0/0 is 0, x/0 is ±infinity."""
    if b == 0:
        return 0.0 if a == 0 else math.copysign(INFINITY, a)
    return a / b


def class_imbalance(s: Sides) -> float:
    """CI = (na - nd) / n."""
    na, nd = int(s.n[0].sum()), int(s.n[1].sum())
    if na == 0:
        raise MetricError(
            "CI: negated facet set is empty. Check that x[~facet] has non-zero length."
        )
    if nd == 0:
        raise MetricError("CI: facet set is empty. Check that x[facet] has non-zero length.")
    return float(na - nd) / (na + nd)


def positive_proportion_difference(n: np.ndarray) -> float:
    """DPL / DPPL from n[d, outcome]: qa - qd, the shares of positive outcomes."""
    na, nd = int(n[0].sum()), int(n[1].sum())
    if na == 0:
        raise MetricError("Negative facet set is empty.")
    if nd == 0:
        raise MetricError("Facet set is empty.")
    return n[0, 1] / na - n[1, 1] / nd


def label_distributions(s: Sides) -> tuple[np.ndarray, np.ndarray]:
    """Pa, Pd: the label's distributions in a and d over the outcomes both sides have."""
    n = s.n_label
    common = (n[0] > 0) & (n[1] > 0)
    if not common.any():
        raise MetricError("No instance of common facet found, dataset may be too small")
    return n[0][common] / n[0].sum(), n[1][common] / n[1].sum()


def kl_divergence(s: Sides) -> float:
    pa, pd_ = label_distributions(s)
    return float(np.sum(pa * np.log(pa / pd_)))


def js_divergence(s: Sides) -> float:
    pa, pd_ = label_distributions(s)
    p = 1 / 2 * (pa + pd_)
    return float(0.5 * (np.sum(pa * np.log(pa / p)) + np.sum(pd_ * np.log(pd_ / p))))


def lp_norm(s: Sides, order: float = 2) -> float:
    pa, pd_ = label_distributions(s)
    return float(np.linalg.norm(pa - pd_, order))


def conditional_demographic_disparity(s: Sides, outcome: np.ndarray) -> float:
    """CDDL / CDDPL: the group-size weighted mean over groups of DD = d's share of the
    rejected minus d's share of the accepted (a share is 0 where a group has none)."""
    if s.groups is None or len(s.groups) == 0:
        raise MetricError("Group variable is empty or not provided")
    if not outcome.any():
        raise MetricError("No positive labels in set")
    if outcome.all():
        raise MetricError("No negative labels in set")
    present = s.groups >= 0
    group_count = int(s.groups.max()) + 1 if present.any() else 0
    cell = s.groups[present] * 4 + s.sensitive[present] * 2 + outcome[present]
    n = np.bincount(cell, minlength=4 * group_count).reshape(group_count, 2, 2)  # [g, d, y]
    rejected, accepted = n[:, :, 0], n[:, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share_accepted = np.where(accepted.sum(1) > 0, accepted[:, 1] / accepted.sum(1), 0)
        share_rejected = np.where(rejected.sum(1) > 0, rejected[:, 1] / rejected.sum(1), 0)
    counts = n.sum(axis=(1, 2)).astype(np.float64)
    return _divide(np.sum(counts * (share_rejected - share_accepted)), np.sum(counts))


def disparate_impact(s: Sides) -> float:
    """DI = qd / qa on predicted labels."""
    n = s.n_predicted
    na, nd = int(n[0].sum()), int(n[1].sum())
    if na == 0:
        raise MetricError("Negated facet set is empty")
    if nd == 0:
        raise MetricError("Facet set is empty")
    return _divide(n[1, 1] / nd, n[0, 1] / na)


def _difference(first: float, second: float) -> float:
    """first - second, 0 where both are infinite (as Clarify)."""
    if first == second == INFINITY:
        return 0.0
    return first - second


def conditional_outcomes(s: Sides) -> tuple[float, float]:
    """DCA = ca - cd with c = n(y=1) / n(ŷ=1); DCR = rd - ra with r = n(y=0) / n(ŷ=0)."""
    s.require_both_sides("DCO: ")
    by_label, by_predicted = s.n_label, s.n_predicted
    ca, cd = (_divide(by_label[side, 1], by_predicted[side, 1]) for side in (0, 1))
    ra, rd = (_divide(by_label[side, 0], by_predicted[side, 0]) for side in (0, 1))
    return _difference(ca, cd), _difference(rd, ra)


def label_rates(s: Sides) -> tuple[float, float]:
    """DAR = TPa/n(ŷa=1) - TPd/n(ŷd=1); DRR = TNd/n(ŷd=0) - TNa/n(ŷa=0)."""
    s.require_both_sides("DLR: ")
    n, by_predicted = s.n, s.n_predicted
    ar_a, ar_d = (_divide(n[side, 1, 1], by_predicted[side, 1]) for side in (0, 1))
    rr_a, rr_d = (_divide(n[side, 0, 0], by_predicted[side, 0]) for side in (0, 1))
    return _difference(ar_a, ar_d), _difference(rr_d, rr_a)


def label_accuracy(s: Sides) -> tuple[float, float]:
    """RD = recall a - recall d; SD = specificity d - specificity a."""
    s.require_both_sides("DLA: ")
    n = s.n
    rec_a, rec_d = (_divide(n[side, 1, 1], n[side, 1, 1] + n[side, 1, 0]) for side in (0, 1))
    sp_a, sp_d = (_divide(n[side, 0, 0], n[side, 0, 0] + n[side, 0, 1]) for side in (0, 1))
    return _difference(rec_a, rec_d), _difference(sp_d, sp_a)


def accuracy_difference(s: Sides) -> float:
    """AD = accuracy a - accuracy d."""
    s.require_both_sides()
    n = s.n
    acc_a, acc_d = (_divide(n[side, 1, 1] + n[side, 0, 0], n[side].sum()) for side in (0, 1))
    return _difference(acc_a, acc_d)


def treatment_equality(s: Sides) -> float:
    """TE = FNd/FPd - FNa/FPa."""
    s.require_both_sides()
    n = s.n
    tau_a, tau_d = (_divide(n[side, 1, 0], n[side, 0, 1]) for side in (0, 1))
    return _difference(tau_d, tau_a)


def generalized_entropy(s: Sides) -> float:
    """GE with alpha 2 over benefit b = ŷ - y + 1: sum((b/mean b)^2 - 1) / (2 N)."""
    n = s.n.sum(axis=0)  # [y, ŷ]
    total = int(n.sum())
    if total == 0:
        raise MetricError("dataset must be non-empty")
    benefit_count = np.array([n[1, 0], n[0, 0] + n[1, 1], n[0, 1]], dtype=np.float64)  # b=0,1,2
    mean_benefit = (benefit_count[1] + 2 * benefit_count[2]) / total
    if mean_benefit == 0:
        raise MetricError(
            "All predicted labels are false negatives. There should be at least one prediction "
            "that is not false negative."
        )
    ratio = np.array([0.0, 1.0, 2.0]) / mean_benefit
    return float(np.sum(benefit_count * (ratio**2 - 1)) / (total * 2 * (2 - 1)))


def flip_test(s: Sides) -> float:
    """FT = (flips to positive - flips to negative) / nd: d's predicted labels against those a
    k-NN classifier fitted on a's rows and predicted labels gives d's rows."""
    s.require_both_sides()
    features = s.features
    if len(features.columns) != len(features.select_dtypes([np.number, bool]).columns):
        raise MetricError("FlipTest does not support non-numeric columns")
    predicted = _predicted(s)
    rows = features.to_numpy(dtype=np.float64)
    a, d = ~s.sensitive, s.sensitive
    neighbours = FT_NEIGHBORS if int(a.sum()) > FT_SMALL_SIDE else FT_MIN_NEIGHBORS
    try:
        if_in_a = nearest_neighbours_vote(
            rows[a], predicted[a], rows[d], neighbours, FT_SEARCH_THREADS
        )
    except ValueError as error:  # scikit-learn's own words, e.g. on missing values
        raise MetricError(str(error)) from None
    model = predicted[d]
    flips = int(np.sum(model & ~if_in_a)) - int(np.sum(~model & if_in_a))
    return _divide(flips, int(d.sum()))


def nearest_neighbours_vote(
    fit_rows: np.ndarray,
    fit_labels: np.ndarray,
    query_rows: np.ndarray,
    k: int,
    workers: int = -1,
) -> np.ndarray:
    """What scikit-learn's KNeighborsClassifier(k), fitted on the rows and boolean labels,
    predicts for the query rows (as smclarify's FT calls it), 2-4x sooner.

    Where scikit-learn searches a k-d tree (at most 15 columns, as its "auto" picks), scipy's
    faster k-d tree finds k + 1 neighbours. Where the k-th and (k+1)-th distances lie further
    apart than rounding can move them, every exact search finds the same k nearest, so their
    majority is scikit-learn's answer. Where they tie, the vote is still certain when every way
    of taking the tied neighbours gives the same majority; scikit-learn itself answers the rest
    (it breaks ties by its own tree's order). `workers`: threads of the search (-1: every
    core; the answer is the same).
    """
    from scipy.spatial import cKDTree
    from sklearn.neighbors import KNeighborsClassifier

    def scikit_learn(queries: np.ndarray) -> np.ndarray:
        knn = KNeighborsClassifier(n_neighbors=k).fit(fit_rows, fit_labels)
        return np.asarray(knn.predict(queries), dtype=bool)

    kd_tree = fit_rows.shape[1] <= 15 and k < len(fit_rows) // 2
    finite = np.isfinite(fit_rows).all() and np.isfinite(query_rows).all()
    if not (kd_tree and finite and len(fit_rows) > k + TIE_CANDIDATES):
        return scikit_learn(query_rows)
    tree = cKDTree(fit_rows, leafsize=32, balanced_tree=False, compact_nodes=False)
    order = _locality_order(query_rows)
    distances, nearest = tree.query(query_rows[order], k=k + 1, workers=workers)
    votes = np.empty(len(query_rows), dtype=bool)
    votes[order] = fit_labels[nearest[:, :k]].sum(axis=1) * 2 > k
    kth_is_tied = ~(distances[:, k] > distances[:, k - 1] * (1 + NEIGHBOUR_TIE_MARGIN))
    tied = np.sort(order[kth_is_tied])
    if tied.size:
        certain, votes[tied] = _vote_across_ties(tree, fit_labels, query_rows[tied], k)
        unsure = tied[~certain]
        if unsure.size:
            votes[unsure] = scikit_learn(query_rows[unsure])
    return votes


def _locality_order(rows: np.ndarray) -> np.ndarray:
    """The rows in the leaf order of a k-d tree of their own: neighbouring queries then walk
    the same branches of the fitted tree, which halves the search on large data (cache)."""
    from scipy.spatial import cKDTree

    if len(rows) < 10_000:
        return np.arange(len(rows))
    return cKDTree(rows, leafsize=64, balanced_tree=False, compact_nodes=False).indices


def _vote_across_ties(
    tree: Any, fit_labels: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(certain, vote) per query whose k-th neighbour ties: the k nearest are the neighbours
    certainly closer than the k-th plus some of those tied with it (all found among the
    nearest k + TIE_CANDIDATES); certain when every choice of the tied gives one majority."""
    distances, nearest = tree.query(queries, k=k + TIE_CANDIDATES)
    kth = distances[:, k - 1 : k]
    inside = distances < kth * (1 - NEIGHBOUR_TIE_MARGIN)
    tied = ~inside & (distances <= kth * (1 + NEIGHBOUR_TIE_MARGIN))
    complete = ~tied[:, -1]  # the furthest found is past the tie: every tied one was found
    positive = fit_labels[nearest]
    seats = k - inside.sum(axis=1)  # left for tied neighbours
    positives_inside = (positive & inside).sum(axis=1)
    fewest = positives_inside + np.maximum(0, seats - (~positive & tied).sum(axis=1))
    most = positives_inside + np.minimum(seats, (positive & tied).sum(axis=1))
    certain = complete & ((fewest * 2 > k) == (most * 2 > k))
    return certain, most * 2 > k


METRICS: dict[str, Callable[[Sides], float]] = {
    "CI": class_imbalance,
    "DPL": lambda s: positive_proportion_difference(s.n_label),
    "KL": kl_divergence,
    "JS": js_divergence,
    "LP": lp_norm,
    "TVD": lambda s: 0.5 * lp_norm(s, 1),
    "KS": lambda s: lp_norm(s, np.inf),
    "CDDL": lambda s: conditional_demographic_disparity(s, s.label),
    "DPPL": lambda s: positive_proportion_difference(s.n_predicted),
    "DI": disparate_impact,
    "DCA": lambda s: conditional_outcomes(s)[0],
    "DCR": lambda s: conditional_outcomes(s)[1],
    "RD": lambda s: label_accuracy(s)[0],
    "SD": lambda s: label_accuracy(s)[1],
    "DAR": lambda s: label_rates(s)[0],
    "DRR": lambda s: label_rates(s)[1],
    "AD": accuracy_difference,
    "TE": treatment_equality,
    "CDDPL": lambda s: conditional_demographic_disparity(s, _predicted(s)),
    "FT": flip_test,
    "GE": generalized_entropy,
}


def _predicted(s: Sides) -> np.ndarray:
    assert s.predicted is not None
    return s.predicted


def _metrics(names: list[str], sides: Sides) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for name in names:
        entry: dict[str, Any] = {"name": name, "description": DESCRIPTIONS[name]}
        try:
            entry["value"] = _json_number(METRICS[name](sides))
        except MetricError as error:
            entry["value"] = None
            entry["error"] = str(error)
        results.append(entry)
    return results


def _json_number(value: float) -> float | str:
    """A float, or Clarify's text for an infinite one."""
    value = float(value)
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
