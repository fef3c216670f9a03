"""prepare_clarify: analysis configs valid under the sagemaker package's Clarify schema, codes
for the data's own values, and the handler's S3 writes against moto."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sfn_mlops.config import load_config

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

SCHEMA = {
    "target": "rings",
    "problem_type": "regression",
    "features": ["sex", "length", "diameter"],
    "categorical": {"sex": ["F", "I", "M"]},
    "labels": None,
}
BINARY_SCHEMA = {**SCHEMA, "target": "old", "problem_type": "binary", "labels": ["no", "yes"]}
BUCKET = "artifacts"


@dataclass
class FakeLambdaContext:
    function_name: str = "PrepareClarifyFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:PrepareClarifyFunction"
    )
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def configs(load_lambda: Any) -> ModuleType:
    (module,) = load_lambda("prepare_clarify", "analysis_config")
    return module


def _abalone_clarify(*overrides: str) -> dict[str, Any]:
    return load_config(None, list(overrides)).clarify_input()


def _validate(config: dict[str, Any]) -> None:
    from sagemaker.clarify import ANALYSIS_CONFIG_SCHEMA_V1_0

    ANALYSIS_CONFIG_SCHEMA_V1_0.validate(config)


def test_bias_config_for_abalone_is_valid_and_uses_the_codes(configs: ModuleType) -> None:
    config = configs.bias_config(_abalone_clarify(), SCHEMA, "run-1-model", "ml.m5.xlarge")
    _validate(config)
    assert config == {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": ["rings", "sex", "length", "diameter"],
        "label": "rings",
        "label_values_or_threshold": [10.0],
        "facet": [{"name_or_index": "sex", "value_or_threshold": [0]}],
        "predictor": {
            "model_name": "run-1-model",
            "instance_type": "ml.m5.xlarge",
            "initial_instance_count": 1,
            "content_type": "text/csv",
            "accept_type": "text/csv",
        },
        "methods": {
            "pre_training_bias": {"methods": "all"},
            "post_training_bias": {"methods": "all"},
            "report": {"name": "report", "title": "Bias report"},
        },
    }


def test_explainability_config_is_valid(configs: ModuleType) -> None:
    clarify = _abalone_clarify("clarify.shap.num_clusters=5", "clarify.shap.num_samples=200")
    config = configs.explainability_config(clarify, SCHEMA, "m", "ml.m5.xlarge")
    _validate(config)
    assert config["methods"]["shap"] == {
        "num_clusters": 5,
        "num_samples": 200,
        "agg_method": "mean_abs",
        "save_local_shap_values": True,
        "use_logit": False,
    }
    rows = _abalone_clarify("clarify.shap.baseline=[[M, 0.5, 0.4]]")
    config = configs.explainability_config(rows, SCHEMA, "m", "ml.m5.xlarge")
    _validate(config)
    assert config["methods"]["shap"]["baseline"] == [[2, 0.5, 0.4]]


def test_binary_labels_group_variable_and_continuous_facet(configs: ModuleType) -> None:
    clarify = {
        "facets": [{"name_or_index": "length", "value_or_threshold": [0.5]}],
        "label_values_or_threshold": ["yes"],
        "group_variable": "sex",
        "shap": {"num_clusters": 3, "agg_method": "mean_abs", "max_records": 10},
    }
    config = configs.bias_config(clarify, BINARY_SCHEMA, "m", "ml.m5.xlarge")
    _validate(config)
    assert config["label_values_or_threshold"] == [1]
    assert config["facet"] == [{"name_or_index": "length", "value_or_threshold": [0.5]}]
    assert config["group_variable"] == "sex"
    assert config["probability_threshold"] == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"facets": [{"name_or_index": "sex", "value_or_threshold": ["X"]}]},
         "clarify facet 'sex' value 'X' is not in the data; it holds: F, I, M"),
        ({"facets": [{"name_or_index": "age", "value_or_threshold": [1]}]},
         "clarify facet 'age' is not a feature of the data; features: sex, length, diameter"),
        ({"group_variable": "zone"},
         "clarify.group_variable 'zone' is not a feature of the data"),
    ],
)  # fmt: skip
def test_settings_that_do_not_fit_the_data(
    configs: ModuleType, change: dict[str, Any], message: str
) -> None:
    clarify = {**_abalone_clarify(), **change}
    with pytest.raises(configs.ClarifyConfigError, match="^" + message.replace("(", r"\(")):
        configs.bias_config(clarify, SCHEMA, "m", "ml.m5.xlarge")


def test_binary_label_value_not_in_the_target(configs: ModuleType) -> None:
    clarify = {**_abalone_clarify(), "label_values_or_threshold": ["maybe"]}
    with pytest.raises(configs.ClarifyConfigError, match="target 'old' 'maybe' is not in"):
        configs.bias_config(clarify, BINARY_SCHEMA, "m", "ml.m5.xlarge")


def test_handler_writes_both_configs_and_the_records_to_explain(load_lambda: Any) -> None:
    (app,) = load_lambda("prepare_clarify", "app")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="runs/r/processing/schema/schema.json",
                      Body=json.dumps(SCHEMA))  # fmt: skip
        s3.put_object(Bucket=BUCKET, Key="runs/r/processing/test/test.csv",
                      Body=b"".join(b"%d,0,0.5,0.4\n" % i for i in range(5)))  # fmt: skip
        app.set_s3_client(s3)
        try:
            result = app.lambda_handler(
                {
                    "clarify": _abalone_clarify("clarify.shap.max_records=3"),
                    "schema_uri": f"s3://{BUCKET}/runs/r/processing/schema/schema.json",
                    "test_uri": f"s3://{BUCKET}/runs/r/processing/test/test.csv",
                    "output_prefix": f"s3://{BUCKET}/runs/r/clarify",
                    "model_name": "r-model",
                    "instance_type": "ml.m5.xlarge",
                },
                FakeLambdaContext(),
            )
        finally:
            app.set_s3_client(None)
        assert result == {
            "bias_config": f"s3://{BUCKET}/runs/r/clarify/bias/config/analysis_config.json",
            "explainability_config": (
                f"s3://{BUCKET}/runs/r/clarify/explainability/config/analysis_config.json"
            ),
            "explainability_data": f"s3://{BUCKET}/runs/r/clarify/explainability/data/test.csv",
        }
        for key in ("bias", "explainability"):
            body = s3.get_object(Bucket=BUCKET, Key=f"runs/r/clarify/{key}/config/"
                                 "analysis_config.json")["Body"].read()  # fmt: skip
            _validate(json.loads(body))
        data = s3.get_object(Bucket=BUCKET, Key="runs/r/clarify/explainability/data/test.csv")
        assert data["Body"].read() == b"0,0,0.5,0.4\n1,0,0.5,0.4\n2,0,0.5,0.4\n"
