"""What a person is shown of a failed task's cause."""

from __future__ import annotations

import json

from sfn_mlops.follow import cause_summary


def test_failed_processing_job_shows_its_exit_message() -> None:
    cause = json.dumps(
        {
            "ProcessingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: script exited with code 1; see the log: job.log",
            "ExitMessage": "UserError: target column 'price' is not numeric",
        }
    )
    assert cause_summary(cause) == "UserError: target column 'price' is not numeric"


def test_failed_training_job_shows_its_failure_reason() -> None:
    cause = json.dumps({"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: x"})
    assert cause_summary(cause) == "AlgorithmError: x"


def test_lambda_error_shows_its_message_and_plain_text_is_cut() -> None:
    assert cause_summary(json.dumps({"errorMessage": "boom", "errorType": "E"})) == "boom"
    assert cause_summary("y" * 400, limit=5) == "yyyyy"
    assert cause_summary(None) == ""
