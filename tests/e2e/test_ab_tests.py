"""A/B tests that conclude, for real: the pipeline deploys a challenger beside the champion
(``deployment.strategy: ab``), traffic and ground truth reach both variants, and the
EventBridge schedule (on while a test runs; every 3 s at the tests' time scale) invokes the A/B
test function until it decides. One workspace, three tests one after the other on one endpoint:

- a win: the challenger is better on the abalone rows' true ages: the traffic moves to it in
  steps, the endpoint ends with one variant (the challenger), its version says why;
- a loss: the labels favour the champion: the challenger is retired at the first look and its
  version Rejected, the champion serves alone;
- out of time: neither is better and ``max_duration_hours`` passes: the test ends as
  ``on_timeout`` says (keep the champion), and says so;
- by hand: ``sfn-mlops endpoints ab-status`` while it runs, then ``end``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from waiting import until

from sfn_mlops.ab_demo import ab_call, example_rows, label, send_pairs
from sfn_mlops.intrinsics import physical_name

pytestmark = pytest.mark.e2e

BUCKET = physical_name("ArtifactBucket", "AWS::S3::Bucket")
ENDPOINT = "sfn-mlops"
GROUP = "sfn-mlops-models"
RULE = "sfn-mlops-ab-tests"
#: eta 0.1: more rounds fit better on abalone (each run must beat the model in production to
#: be deployed at all: the pipeline's champion gate). Every run trains and is judged on the
#: bundled data alone: the labelled A/B traffic of one test must not become the next run's
#: recent data (retraining.captured_data), or the next challenger is judged on 20 rows.
COMMON = (
    "--set", "clarify.enabled=false", "--set", "monitoring.enabled=false",
    "--set", "hyperparameters.eta=0.1", "--set", "gate.threshold=4",
    "--set", "retraining.captured_data=false",
)  # fmt: skip
AB = (
    "--set", "deployment.strategy=ab", "--set", "deployment.ab_challenger_share=0.2",
    "--set", "deployment.ab.min_samples=60", "--set", "deployment.ab.step_percent=40",
)  # fmt: skip



def _record(aws: Any) -> dict[str, Any]:
    return dict(aws.json_object(f"s3://{BUCKET}/ab-tests/{ENDPOINT}.json"))


def _concluded(aws: Any) -> dict[str, Any]:
    """The test's record once the schedule has ended it."""
    return until(lambda: (r := _record(aws))["phase"] == "done" and r, "the A/B test to end")


def _single_model(aws: Any) -> tuple[str, str]:
    """(variant, model) once the endpoint serves one variant: the test's record says "done"
    when the UpdateEndpoint is made, and the endpoint keeps its old config until the update
    ends (seen failing once when this read the endpoint at once)."""

    def serving() -> tuple[str, str] | None:
        endpoint = aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)
        config = aws.sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        variants = config["ProductionVariants"]
        if endpoint["EndpointStatus"] != "InService" or len(variants) != 1:
            return None
        return variants[0]["VariantName"], variants[0]["ModelName"]

    found: tuple[str, str] = until(serving, "the endpoint to serve one variant")
    return found


def _rule_state(aws: Any) -> str:
    return str(boto3.client("events").describe_rule(Name=RULE)["State"])


def _run(cli: Callable[..., Any], workspace: Path, name: str, *args: str) -> None:
    result = cli(workspace, "run", "--name", name, *COMMON, *args)
    assert result.code == 0, result.out + result.err
    assert f"Execution {name}: SUCCEEDED" in result.out


@pytest.fixture(scope="module")
def scenario(
    cli: Callable[..., Any], workspace: Path, open_aws: Callable[[Path], Any]
) -> Iterator[dict[str, Any]]:
    """The three tests in order; what each left behind."""
    seen: dict[str, Any] = {}
    rows = example_rows(workspace, 150, seed=5)
    _run(cli, workspace, "ab-base", "--set", "hyperparameters.num_round=1")
    with open_aws(workspace) as aws:
        runtime, lambdas = boto3.client("sagemaker-runtime"), boto3.client("lambda")
        # a win on the rows' true ages: 15 rounds against 1
        _run(cli, workspace, "ab-win", *AB, "--set", "hyperparameters.num_round=15")
        seen["win_rule"] = _rule_state(aws)
        label(aws.s3, BUCKET, send_pairs(runtime, rows, favour="truth", tag="win"))
        seen["win"] = _concluded(aws)
        seen["win_single"] = _single_model(aws)
        seen["win_status"] = cli(workspace, "endpoints", "ab-status", ENDPOINT)
        seen["win_rule_after"] = until(lambda: _rule_state(aws) == "DISABLED" and "DISABLED",
                                        "the schedule to be turned off")  # fmt: skip
        # a loss: labels that favour the champion (the ab-win model)
        _run(cli, workspace, "ab-loss", *AB, "--set", "hyperparameters.num_round=40")
        label(aws.s3, BUCKET, send_pairs(runtime, rows[:100], favour="Champion", tag="loss"))
        seen["loss"] = _concluded(aws)
        seen["loss_single"] = _single_model(aws)
        # out of time: neither is better, 18 s to decide (time enough to send the traffic on a
        # loaded machine: once the test has ended the Challenger variant is gone, and a
        # request aimed at it is refused)
        _run(cli, workspace, "ab-time", *AB, "--set", "hyperparameters.num_round=40",
             "--set", "deployment.ab.max_duration_hours=0.005")  # fmt: skip
        label(aws.s3, BUCKET, send_pairs(runtime, rows[:100], favour="neither", tag="time"))
        seen["time"] = _concluded(aws)
        seen["time_single"] = _single_model(aws)
        # decided by hand: the status while it runs, then `end`
        _run(cli, workspace, "ab-hand", *AB, "--set", "hyperparameters.num_round=40")
        seen["hand_status"] = cli(workspace, "endpoints", "ab-status", ENDPOINT)
        seen["hand_end"] = cli(workspace, "endpoints", "end", ENDPOINT)
        seen["hand"] = _record(aws)
        seen["hand_single"] = _single_model(aws)
        seen["packages"] = {
            p["ModelPackageVersion"]: aws.sagemaker.describe_model_package(
                ModelPackageName=p["ModelPackageArn"]
            )
            for p in aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)[
                "ModelPackageSummaryList"
            ]
        }
        seen["lambdas"] = lambdas
    yield seen


def test_a_better_challenger_takes_the_traffic_step_by_step_and_replaces_the_champion(
    scenario: dict[str, Any],
) -> None:
    assert scenario["win_rule"] == "ENABLED"  # DeployModel turned the schedule on
    record = scenario["win"]
    verdict = record["verdict"]
    assert (verdict["action"], verdict["by"], verdict["test"]) == (
        "promote", "evaluation", "Welch's t-test"
    )  # fmt: skip
    assert "the challenger is better: mae" in verdict["reason"]
    assert verdict["p_value"] < 0.05 / 5
    events = [item["event"] for item in record["history"]]
    assert "shifted: the challenger takes 60% of the traffic" in events
    assert events[-1].startswith("the challenger replaced the champion: one variant (ab-win-config")
    assert scenario["win_single"] == ("AllTraffic", "ab-win-model")
    assert record["final_config"] == "ab-win-config-ab-won"
    assert scenario["win_rule_after"] == "DISABLED"  # no test left: the schedule is off


def test_the_winner_s_version_records_why(scenario: dict[str, Any]) -> None:
    won = scenario["packages"][2]
    assert won["ModelApprovalStatus"] == "Approved"
    assert won["ApprovalDescription"].startswith("Won the A/B test on sfn-mlops: look ")
    metadata = won["CustomerMetadataProperties"]
    assert metadata["ab_verdict"] == "won"
    assert metadata["ab_endpoint"] == "sfn-mlops"
    assert metadata["ab_winner_model"] == "ab-win-model"
    assert "Welch s t-test" in metadata["ab_reason"]  # the apostrophe is not a value character
    assert float(metadata["ab_p_value"]) < 0.01
    replaced = scenario["packages"][1]  # the champion it replaced: still Approved, marked
    assert replaced["ModelApprovalStatus"] == "Approved"
    assert replaced["CustomerMetadataProperties"]["ab_champion_verdict"] == "replaced"
    assert replaced["CustomerMetadataProperties"]["ab_champion_reason"] == metadata["ab_reason"]
    # then champion of the three tests after: kept each time, the last one ended by hand
    assert metadata["ab_champion_verdict"] == "kept"
    assert metadata["ab_champion_reason"] == "ended by hand"


def test_ab_status_shows_the_tally_and_the_verdict(scenario: dict[str, Any]) -> None:
    status = scenario["win_status"]
    assert status.code == 0, status.err
    assert status.out.startswith("A/B test on sfn-mlops: done (started ")
    assert "Verdict (evaluation, " in status.out
    rows = [line.split() for line in status.out.splitlines()]
    (challenger,) = [row for row in rows if row[:1] == ["Challenger"]]
    assert challenger[1] == "ab-win-model" and int(challenger[3]) >= 120  # its last tally
    assert challenger[5] == "150"  # its invocations (CloudWatch): one per row
    assert "Next: the test has ended" in status.out


def test_a_worse_challenger_is_retired_and_rejected(scenario: dict[str, Any]) -> None:
    record = scenario["loss"]
    assert record["verdict"]["action"] == "retire"
    assert record["verdict"]["reason"].startswith("look 1 of 5: the challenger is worse: mae")
    assert scenario["loss_single"] == ("AllTraffic", "ab-win-model")  # the champion, alone
    assert record["final_config"] == "ab-loss-config-ab-kept"
    lost = scenario["packages"][3]
    assert lost["ModelApprovalStatus"] == "Rejected"
    assert lost["ApprovalDescription"].startswith("Retired in the A/B test on sfn-mlops: look 1")
    assert lost["CustomerMetadataProperties"]["ab_verdict"] == "retired"
    assert lost["CustomerMetadataProperties"]["ab_winner_model"] == "ab-win-model"  # the champion


def test_a_test_that_runs_out_of_time_keeps_the_champion_and_says_so(
    scenario: dict[str, Any],
) -> None:
    record = scenario["time"]
    reason = record["verdict"]["reason"]
    assert record["verdict"]["action"] == "retire"
    assert reason.startswith("ran out of time after ")
    assert reason.endswith(": on_timeout keeps the champion")
    assert scenario["time_single"] == ("AllTraffic", "ab-win-model")
    timed_out = scenario["packages"][4]
    assert timed_out["ModelApprovalStatus"] == "Rejected"
    assert "ran out of time" in timed_out["CustomerMetadataProperties"]["ab_reason"]


def test_a_test_ended_by_hand_retires_the_challenger(scenario: dict[str, Any]) -> None:
    status = scenario["hand_status"]
    assert status.code == 0, status.err
    assert status.out.startswith("A/B test on sfn-mlops: testing (started ")
    assert "Next: look 1 of 5 when both variants have 60 labelled requests" in status.out
    ended = scenario["hand_end"]
    assert ended.code == 0, ended.err
    assert "Next: the champion stays (endpoint config ab-hand-config-ab-kept)" in ended.out
    verdict = scenario["hand"]["verdict"]
    assert (verdict["action"], verdict["by"], verdict["reason"]) == (
        "retire", "hand", "ended by hand"
    )  # fmt: skip
    assert scenario["hand_single"] == ("AllTraffic", "ab-win-model")
    assert scenario["packages"][5]["ModelApprovalStatus"] == "Rejected"


def test_status_and_decisions_by_hand_refuse_an_ended_test(scenario: dict[str, Any]) -> None:
    result = ab_call(scenario["lambdas"], "status")
    assert result["phase"] == "done"
    with pytest.raises(Exception, match="has ended"):
        ab_call(scenario["lambdas"], "end")
    json.dumps(result)  # the answer is plain JSON
