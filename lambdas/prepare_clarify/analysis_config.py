"""Clarify's analysis configs from the pipeline's Clarify settings and the run's schema.

Plain functions, no AWS at import. The processing job encodes the data (schema.json): the
target first, then the features; categorical columns as codes 0..k-1 over their sorted
categories, class labels likewise. The test split is headerless CSV in that order, which is
what Clarify reads with ``headers``. So facet values, label values and baseline rows the user
gave as the data's own values become the codes the data now holds.

The configs follow ``ANALYSIS_CONFIG_SCHEMA_V1_0`` of the sagemaker package's ``clarify.py``
(a unit test validates them against it).
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/csv"
#: Clarify's cut-off for turning a binary model's probability into a predicted label.
PROBABILITY_THRESHOLD = 0.5


class ClarifyConfigError(ValueError):
    """A Clarify setting does not fit the data (the user's fault); the message names it."""


def _code(value: Any, categories: list[Any], what: str) -> int:
    """The code of ``value`` among ``categories`` (compared as text, as a CSV holds them)."""
    texts = [_text(category) for category in categories]
    text = _text(value)
    if text not in texts:
        raise ClarifyConfigError(
            f"{what} {value!r} is not in the data; it holds: {', '.join(texts[:20])}"
        )
    return texts.index(text)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _facets(clarify: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    features, categorical = schema["features"], schema.get("categorical") or {}
    facets = []
    for facet in clarify["facets"]:
        name = facet["name_or_index"]
        if name not in features:
            raise ClarifyConfigError(
                f"clarify facet {name!r} is not a feature of the data; features: "
                f"{', '.join(features)}"
            )
        values = facet["value_or_threshold"]
        if name in categorical:
            values = [_code(v, categorical[name], f"clarify facet {name!r} value") for v in values]
        facets.append({"name_or_index": name, "value_or_threshold": values})
    return facets


def _label_values(clarify: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    values = list(clarify["label_values_or_threshold"])
    if schema["problem_type"] == "regression":
        return values
    labels = schema.get("labels") or []
    what = f"clarify label value of target {schema['target']!r}"
    return [_code(value, labels, what) for value in values]


def _predictor(schema: dict[str, Any], model_name: str, instance_type: str) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "model_name": model_name,
        "instance_type": instance_type,
        "initial_instance_count": 1,
        "content_type": CONTENT_TYPE,
        "accept_type": CONTENT_TYPE,
    }
    if schema["problem_type"] == "multiclass":
        # multi:softprob answers one probability per class, in code order.
        predictor["label_headers"] = list(range(len(schema.get("labels") or [])))
    return predictor


def _common(
    clarify: dict[str, Any], schema: dict[str, Any], model_name: str, instance_type: str
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": "1.0",
        "dataset_type": CONTENT_TYPE,
        "headers": [schema["target"], *schema["features"]],
        "label": schema["target"],
        "predictor": _predictor(schema, model_name, instance_type),
    }
    if schema["problem_type"] == "binary":
        config["probability_threshold"] = PROBABILITY_THRESHOLD
    return config


def _baseline(shap: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    rows = shap.get("baseline")
    if rows is None:
        return {"num_clusters": int(shap["num_clusters"])}
    features, categorical = schema["features"], schema.get("categorical") or {}
    encoded = []
    for number, row in enumerate(rows, start=1):
        if len(row) != len(features):
            raise ClarifyConfigError(
                f"clarify.shap.baseline row {number} has {len(row)} value(s); it needs one per "
                f"feature ({len(features)}: {', '.join(features)})"
            )
        encoded.append(
            [
                _code(value, categorical[name], f"clarify.shap.baseline {name!r} value")
                if name in categorical and value is not None
                else value
                for name, value in zip(features, row, strict=True)
            ]
        )
    return {"baseline": encoded}


def bias_config(
    clarify: dict[str, Any], schema: dict[str, Any], model_name: str, instance_type: str
) -> dict[str, Any]:
    """The bias job's analysis config: every pre- and post-training metric."""
    config = _common(clarify, schema, model_name, instance_type)
    config["label_values_or_threshold"] = _label_values(clarify, schema)
    config["facet"] = _facets(clarify, schema)
    group = clarify.get("group_variable")
    if group is not None:
        if group not in schema["features"]:
            raise ClarifyConfigError(
                f"clarify.group_variable {group!r} is not a feature of the data; features: "
                f"{', '.join(schema['features'])}"
            )
        config["group_variable"] = group
    config["methods"] = {
        "pre_training_bias": {"methods": "all"},
        "post_training_bias": {"methods": "all"},
        "report": {"name": "report", "title": "Bias report"},
    }
    return config


def explainability_config(
    clarify: dict[str, Any], schema: dict[str, Any], model_name: str, instance_type: str
) -> dict[str, Any]:
    """The explainability job's analysis config: SHAP against the configured baseline."""
    shap = clarify["shap"]
    config = _common(clarify, schema, model_name, instance_type)
    method: dict[str, Any] = {
        **_baseline(shap, schema),
        "agg_method": shap["agg_method"],
        "save_local_shap_values": True,
        # The local runtime's TreeSHAP explains the margin: the log-odds for binary:logistic,
        # which Clarify explains with use_logit.
        "use_logit": schema["problem_type"] == "binary",
    }
    if shap.get("num_samples") is not None:
        method["num_samples"] = int(shap["num_samples"])
    config["methods"] = {
        "shap": method,
        "report": {"name": "report", "title": "Explainability report"},
    }
    return config
