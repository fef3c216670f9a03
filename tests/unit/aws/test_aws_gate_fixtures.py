"""The gate passes the real template and fails each deliberately broken copy with the right message.

See tests/fixtures/broken/README.md for the breaks.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sfn_mlops.aws import checks
from sfn_mlops.aws.checks import Problem

ROOT = Path(__file__).resolve().parents[3]
BROKEN = ROOT / "tests" / "fixtures" / "broken"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def lay_out(destination: Path, case: str | None = None) -> Path:
    """The real template, definitions and Lambdas under `destination`, the case's files on top."""
    shutil.copy2(ROOT / "template.yaml", destination / "template.yaml")
    shutil.copytree(ROOT / "state_machines", destination / "state_machines", ignore=_IGNORED)
    shutil.copytree(ROOT / "lambdas", destination / "lambdas", ignore=_IGNORED)
    if case is not None:
        shutil.copytree(BROKEN / case, destination, dirs_exist_ok=True)
    return destination / "template.yaml"


def test_the_real_template_passes_every_check() -> None:
    assert [str(p) for p in checks.run_all(ROOT / "template.yaml")] == []


def test_a_faithful_copy_passes_too(tmp_path: Path) -> None:
    """The harness itself adds no problem: only the fixture's files do."""
    assert [str(p) for p in checks.run_all(lay_out(tmp_path))] == []


def _find(problems: list[Problem], **expected: str) -> Problem:
    """The one problem whose fields match the given regular expressions."""
    found = [
        p
        for p in problems
        if all(re.search(pattern, getattr(p, key)) for key, pattern in expected.items())
    ]
    assert found, "\n".join(["no problem matches", repr(expected), *map(str, problems)])
    return found[0]


def test_dangling_next(tmp_path: Path) -> None:
    problems = checks.run_all(lay_out(tmp_path, "dangling_next"))
    _find(
        problems,
        file=r"state_machines/training_pipeline\.asl\.json$",
        where=r"^Resources\.TrainingPipeline$",
        message=r"^statelint: .*EvaluateModel",
    )


def test_unused_substitution(tmp_path: Path) -> None:
    problems = checks.run_all(lay_out(tmp_path, "unused_substitution"))
    problem = _find(
        problems,
        file=r"template\.yaml$",
        where=r"^Resources\.TrainingPipeline\.Properties\.DefinitionSubstitutions"
        r"\.ModelPackageGroupName$",
    )
    assert re.match(
        r"is not used by .*state_machines/training_pipeline\.asl\.json; remove the entry, or use "
        r"\$\{ModelPackageGroupName\} in the definition$",
        problem.message,
    )


def test_missing_pass_role(tmp_path: Path) -> None:
    problems = checks.run_all(lay_out(tmp_path, "missing_passrole"))
    passrole = [p for p in problems if "iam:PassRole" in p.message]
    assert {p.message.split(" (")[0] for p in passrole} == {
        "States.Preprocess",
        "States.Train",
        "States.Tune",  # a tuning job passes its training jobs' role
        "States.Evaluate",
        "States.CreateModel",
        "States.Clarify.Branches[0].States.BiasCheck",
        "States.Clarify.Branches[1].States.Explainability",
        "States.Baselines.Branches[0].States.DataQualityBaseline",
        "States.Baselines.Branches[1].States.ModelQualityBaseline",
    }
    problem = _find(passrole, message=r"^States\.Train ")
    assert problem.where == "Resources.TrainingPipeline (role TrainingPipelineRole)"
    assert problem.message == (
        "States.Train (sagemaker:createTrainingJob.sync passes RoleArn to SageMaker) needs "
        "iam:PassRole on !GetAtt SageMakerExecutionRole.Arn, which the role's policies do not "
        "grant; add a statement allowing iam:PassRole on !GetAtt SageMakerExecutionRole.Arn to "
        "the state machine's Policies"
    )


def test_lambda_calling_an_action_its_role_lacks(tmp_path: Path) -> None:
    problems = checks.run_all(lay_out(tmp_path, "lambda_action_not_granted"))
    problem = _find(
        problems, file=r"lambdas/read_evaluation/gate\.py:\d+$", message=r"^calls s3\.get_object,"
    )
    assert problem.where == "Resources.ReadEvaluationFunction (role ReadEvaluationFunctionRole)"
    assert problem.message == (
        "calls s3.get_object, which needs s3:GetObject; the role does not grant it on any "
        "bucket's objects of the template "
        '(!Sub "arn:${AWS::Partition}:s3:::sfn-mlops-artifactbucket/*"); '
        "grant it, e.g. `- S3ReadPolicy: {BucketName: !Ref ArtifactBucket}` in its Policies"
    )


def test_job_code_function_without_put_object(tmp_path: Path) -> None:
    """The custom resource's Lambda writes the bundle with s3.put_object; its role lacks it."""
    problems = checks.run_all(lay_out(tmp_path, "job_code_put_not_granted"))
    (problem,) = problems
    assert re.search(r"/lambdas/job_code/job_code\.py:\d+$", problem.file)
    assert problem.where == "Resources.JobCodeFunction (role JobCodeFunctionRole)"
    assert problem.message == (
        "calls s3.put_object, which needs s3:PutObject; the role does not grant it on any "
        "bucket's objects of the template "
        '(!Sub "arn:${AWS::Partition}:s3:::sfn-mlops-artifactbucket/*"); '
        "grant it, e.g. `- S3CrudPolicy: {BucketName: !Ref ArtifactBucket}` in its Policies"
    )


def test_clarify_job_role_without_the_shadow_endpoint(tmp_path: Path) -> None:
    """Clarify scores through an endpoint it makes as the job's role; InvokeEndpoint removed."""
    problems = checks.run_all(lay_out(tmp_path, "clarify_shadow_endpoint_not_granted"))
    assert {p.where for p in problems} == {"Resources.SageMakerExecutionRole"}
    assert [p.message.split(" runs as ")[0] for p in problems] == [
        "States.Clarify.Branches[0].States.BiasCheck",
        "States.Clarify.Branches[1].States.Explainability",
    ]
    assert problems[0].message.endswith(
        'which needs sagemaker:InvokeEndpoint on !Sub "arn:${AWS::Partition}:sagemaker:'
        "${AWS::Region}:${AWS::AccountId}:endpoint/sm-clarify-*\"; the role's policies "
        "do not grant it"
    )


def test_public_bucket(tmp_path: Path) -> None:
    problems = checks.run_all(lay_out(tmp_path, "public_bucket"))
    bucket = [p for p in problems if p.where == "Resources.ArtifactBucket"]
    assert [p.message.split(";")[0] for p in bucket] == [
        "does not block public access (BlockPublicPolicy, RestrictPublicBuckets not true)",
        "has a bucket policy statement (PublicRead) allowing Principal '*'",
    ]


def test_the_command_prints_one_line_per_problem_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = lay_out(tmp_path, "public_bucket")
    assert checks.main([str(template)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(
        line.startswith(f"{template}: Resources.ArtifactBucket: ") for line in lines
    )
