"""The error taxonomy, the failure file and the shared CSV reader of the job scripts."""

from __future__ import annotations

import math
from pathlib import Path

import jobkit
import pytest
from jobkit import AlgorithmError, PlatformError, UserError


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UserError("column 'x' is missing"), "UserError: column 'x' is missing"),
        (AlgorithmError("did not converge"), "AlgorithmError: did not converge"),
        (PlatformError("disk full"), "PlatformError: disk full"),
        (KeyError("k"), "AlgorithmError: KeyError: 'k'"),
    ],
)
def test_failure_reason_says_whose_fault(error: Exception, reason: str) -> None:
    assert jobkit.failure_reason(error) == reason


def test_failure_reason_is_cut_to_sagemakers_limit() -> None:
    reason = jobkit.failure_reason(UserError("x" * 5000))
    assert len(reason) == 1024
    assert reason.startswith("UserError: xxx")


def test_run_job_writes_the_reason_file_and_returns_1(tmp_path: Path, capsys) -> None:
    failure = tmp_path / "output" / "failure"

    def body() -> None:
        raise UserError("target column 'rings' is not in the data")

    assert jobkit.run_job(body, reason_file=str(failure)) == 1
    assert failure.read_text() == "UserError: target column 'rings' is not in the data"
    assert "Traceback" in capsys.readouterr().err


def test_run_job_success_leaves_no_reason_file(tmp_path: Path) -> None:
    failure = tmp_path / "failure"
    assert jobkit.run_job(lambda: None, reason_file=str(failure)) == 0
    assert not failure.exists()


def test_each_job_type_reports_where_sagemaker_reads_it() -> None:
    # Training: FailureReason from /opt/ml/output/failure; processing: ExitMessage from
    # /opt/ml/output/message (SageMaker's "Save and Access Metadata Information About Your
    # Processing Job").
    assert jobkit.TRAINING_FAILURE_FILE == "/opt/ml/output/failure"
    assert jobkit.PROCESSING_MESSAGE_FILE == "/opt/ml/output/message"


def test_read_target_first_csv_reads_empty_fields_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("1,0.5,\n0,,2\n")
    y, x = jobkit.read_target_first_csv(str(path))
    assert y.tolist() == [1.0, 0.0]
    assert x.dtype.name == "float32"
    assert x[0, 0] == 0.5 and math.isnan(x[0, 1])
    assert math.isnan(x[1, 0]) and x[1, 1] == 2.0


def test_read_target_first_csv_rejects_text(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("1,abc\n0,def\n")
    with pytest.raises(UserError, match="column 2 is not numeric"):
        jobkit.read_target_first_csv(str(path))


def test_load_schema_names_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text('{"target": "rings", "problem_type": "regression"}')
    with pytest.raises(UserError, match=r"lacks key\(s\) \['features', 'categorical'\]"):
        jobkit.load_schema(str(path))


def test_find_file_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"no .csv file in {tmp_path}"):
        jobkit.find_file(str(tmp_path), ".csv", what="train channel")
