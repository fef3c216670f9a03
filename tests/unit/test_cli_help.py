"""`sfn-mlops run --help` lists the config keys, an example and the exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from sfn_mlops.cli import build_parser, main
from sfn_mlops.config import config_keys


def test_config_keys_are_the_models_dotted_fields() -> None:
    keys = config_keys()

    assert keys[:4] == ["data", "target", "problem_type", "categorical_columns"]
    assert {"split.seed", "gate.threshold", "clarify.shap.max_records"} <= set(keys)
    assert "hyperparameters" not in keys and "split" not in keys


def test_run_help_lists_keys_example_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])

    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "\n  split.validation\n" in out
    assert "hyperparameters.<name>   any XGBoost parameter" in out
    assert "sfn-mlops run --data data/churn.csv --target churned" in out
    assert "\n  2    the input is wrong (config, data, name); nothing was started\n" in out


def test_global_options_parse_before_and_after_the_subcommand() -> None:
    parser = build_parser()

    after = parser.parse_args(["executions", "list", "--workspace", "/tmp/w"])
    before = parser.parse_args(["--workspace", "/tmp/w", "executions", "list"])
    neither = parser.parse_args(["executions", "list"])

    assert after.workspace == before.workspace == "/tmp/w"
    assert neither.workspace is None


def test_a_run_shows_only_its_own_notifications(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another run's or a batch's notification sent while this run went is not this run's."""
    from sfn_mlops.cli import _show_notifications
    from sfn_mlops.local.metadata import MetadataStore
    from sfn_mlops.local.services.sns import MESSAGES

    arn = "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:"
    started = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    store = MetadataStore(tmp_path / "metadata.db")
    for name, subject in (("mine", "pipeline failed"), ("other", "batch failed")):
        store.append(
            MESSAGES,
            {
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:FailureTopic",
                "Subject": subject,
                "Message": json.dumps({"execution": arn + name, "error": "E", "cause": "c"}),
                "Timestamp": started.timestamp() + 1,
            },
        )
    _show_notifications(tmp_path, {"executionArn": arn + "mine", "startDate": started})
    assert capsys.readouterr().out == "Notification sent to FailureTopic: pipeline failed\n"
