"""Bad inputs end in a clear error that names what is wrong.

Problems the CLI can see (config keys, paths, the header) exit 2 before any execution starts;
problems only the processing job sees (no rows, the target's values) fail the execution early,
exit 1, and the message names the column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

EXIT_FAILED, EXIT_USAGE = 1, 2
BUCKET = "sfn-mlops-artifactbucket"  # the local stack's artifact bucket
COLUMNS = ["size", "weight", "price"]
STOPPED_IN_PREPROCESS = [
    *("PrepareRun", "FindChampion", "CollectData", "Preprocess", "NotifyFailure", "PipelineFailed")
]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def _numeric_rows(count: int = 40) -> list[list[Any]]:
    return [[i % 7 + 1, round(0.5 + i * 0.1, 2), 10 + 3 * i] for i in range(count)]


def _started(open_aws: Any, workspace: Path, name: str) -> bool:
    with open_aws(workspace) as aws:
        return name in aws.execution_names()


def _assert_rejected_before_start(
    result: Any, open_aws: Any, workspace: Path, name: str, *expected: str
) -> None:
    assert result.code == EXIT_USAGE, result.out + result.err
    assert result.err.startswith("sfn-mlops: error: "), result.err
    assert "Traceback" not in result.err
    for text in expected:
        assert text in result.err
    assert f"Execution {name} started" not in result.out
    assert not _started(open_aws, workspace, name)


# rejected by the CLI before an execution starts --------------------------------------------
def test_missing_target_column_is_named_with_the_columns_there(
    cli: Any, open_aws: Any, workspace: Path, data_dir: Path
) -> None:
    data = _write_csv(data_dir / "no_target.csv", ["size", "weight", "cost"], _numeric_rows())
    result = cli(workspace, "run", "--name", "no-target", "--data", str(data), "--target", "price")
    _assert_rejected_before_start(
        result, open_aws, workspace, "no-target", "'price'", str(data), "size, weight, cost"
    )


def test_empty_file_is_named(cli: Any, open_aws: Any, workspace: Path, data_dir: Path) -> None:
    data = data_dir / "empty.csv"
    data.write_bytes(b"")
    result = cli(workspace, "run", "--name", "empty", "--data", str(data), "--target", "price")
    _assert_rejected_before_start(result, open_aws, workspace, "empty", str(data), "empty")


def test_header_only_file_is_named(
    cli: Any, open_aws: Any, workspace: Path, data_dir: Path
) -> None:
    data = _write_csv(data_dir / "header_only.csv", COLUMNS, [])
    result = cli(
        workspace, "run", "--name", "header-only", "--data", str(data), "--target", "price"
    )
    _assert_rejected_before_start(
        result, open_aws, workspace, "header-only", str(data), "no data rows"
    )


def test_unknown_config_key_is_named_and_the_close_key_suggested(
    cli: Any, open_aws: Any, workspace: Path
) -> None:
    result = cli(workspace, "run", "--name", "unknown-key", "--set", "gat.threshold=1")
    _assert_rejected_before_start(result, open_aws, workspace, "unknown-key", "'gat'", "'gate'")


def test_misspelled_and_out_of_range_hyperparameters_are_named_together(
    cli: Any, open_aws: Any, workspace: Path
) -> None:
    result = cli(
        workspace, "run", "--name", "bad-hyperparameters",
        "--set", "hyperparameters.max_dept=2", "--set", "hyperparameters.eta=-0.1",
    )  # fmt: skip
    _assert_rejected_before_start(
        result, open_aws, workspace, "bad-hyperparameters",
        "hyperparameters.max_dept", "did you mean 'max_depth'?",
        "hyperparameters.eta: value -0.1 for Parameter learning_rate should be greater equal to 0",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://nope/x.csv", "data: no bucket 'nope' in the local object store"),
        (
            f"s3://{BUCKET}/nothing/here.csv",
            f"data: no objects under s3://{BUCKET}/nothing/here.csv",
        ),
    ],
)
def test_s3_data_that_is_not_there_is_one_line_and_exit_2(
    cli: Any, open_aws: Any, workspace: Path, uri: str, expected: str
) -> None:
    assert cli(workspace, "deploy").code == 0  # the artifact bucket exists
    result = cli(workspace, "run", "--name", "no-s3-data", "--data", uri, "--target", "price")
    _assert_rejected_before_start(result, open_aws, workspace, "no-s3-data", expected)
    assert result.err.count("\n") == 1, result.err


def test_data_path_that_does_not_exist_is_named(
    cli: Any, open_aws: Any, workspace: Path, data_dir: Path
) -> None:
    missing = data_dir / "nowhere" / "data.csv"
    result = cli(workspace, "run", "--name", "no-data", "--data", str(missing), "--target", "price")
    _assert_rejected_before_start(
        result, open_aws, workspace, "no-data", str(missing), "does not exist"
    )


def test_problems_in_the_data_itself_are_named_together_before_anything_starts(
    cli: Any, open_aws: Any, workspace: Path, data_dir: Path
) -> None:
    data = _write_csv(data_dir / "text_target_local.csv", COLUMNS, _text_target_rows())
    result = cli(workspace, "run", "--name", "text-local", "--data", str(data), "--target", "price")
    _assert_rejected_before_start(
        result, open_aws, workspace, "text-local",
        "the data does not fit the config:\n",
        "  - target: column 'price' must be numeric for regression; it holds 'cheap', 'dear', "
        "'steep' (use problem_type binary or multiclass)\n",
        "  - split.min_test_rows: the test split would hold 6 rows",
    )  # fmt: skip


# found by the processing job ----------------------------------------------------------------
def _text_target_rows() -> list[list[Any]]:
    return [[r[0], r[1], ("cheap", "dear", "steep")[i % 3]] for i, r in enumerate(_numeric_rows())]


@pytest.fixture(scope="module")
def text_target(cli: Any, open_aws: Any, workspace: Path, data_dir: Path) -> Any:
    """Data already in S3: the CLI cannot read it, so the processing job's own checks speak."""
    data = _write_csv(data_dir / "text_target.csv", COLUMNS, _text_target_rows())
    assert cli(workspace, "deploy").code == 0
    with open_aws(workspace) as aws:
        aws.s3.upload_file(str(data), BUCKET, "incoming/text_target.csv")
    uri = f"s3://{BUCKET}/incoming/text_target.csv"
    return cli(workspace, "run", "--name", "text-target", "--data", uri, "--target", "price")


def _preprocess_failure(aws: Any, name: str) -> str:
    """The job's own reason: a processing job reports it as ExitMessage (output/message)."""
    job = aws.sagemaker.describe_processing_job(ProcessingJobName=f"{name}-preprocess")
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: script exited with code 1; see the log")
    return str(job["ExitMessage"])


def test_non_numeric_regression_target_fails_in_preprocessing_naming_the_column(
    text_target: Any, aws: Any
) -> None:
    assert text_target.code == EXIT_FAILED, text_target.out + text_target.err
    assert aws.entered_states("text-target") == STOPPED_IN_PREPROCESS
    reason = _preprocess_failure(aws, "text-target")
    assert "'price'" in reason
    assert "numeric" in reason
    assert "cheap" in reason
    assert reason.splitlines()[0] in text_target.out


def test_failed_execution_and_summary_carry_the_preprocessing_reason(
    text_target: Any, aws: Any
) -> None:
    result, name = text_target, "text-target"
    reason = _preprocess_failure(aws, name)
    execution = aws.describe(name)
    assert execution["error"] == "States.TaskFailed"
    assert json.loads(execution["cause"])["ExitMessage"] == reason
    assert f"Cause: {reason}" in result.summary(name)


def test_clarify_facet_not_in_the_data_is_named_before_anything_starts(
    cli: Any, open_aws: Any, workspace: Path
) -> None:
    result = cli(workspace, "run", "--name", "bad-facet",
                 "--set", "clarify.facets=[{name: sex, values: [X]}]")  # fmt: skip
    _assert_rejected_before_start(
        result, open_aws, workspace, "bad-facet",
        "clarify.facets 'sex' value 'X' is not in the data; it holds: F, I, M",
    )  # fmt: skip
