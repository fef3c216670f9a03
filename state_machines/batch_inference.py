"""The batch inference state machine: score a data set with a registered, approved model.

FindModel (the group's newest Approved version, or the one the input names) -> CreateBatchModel
-> Transform (a SageMaker batch transform job, `.sync`) -> PublishOutput (the predictions are
copied to the destination only once the job has succeeded) -> Scored. Any failure notifies the
failure topic and ends in `BatchFailed` with the original error and cause.

Input (`sfn-mlops batch` writes it):

    {"model_package_group": "sfn-mlops-models", "model_version": null,
     "data_uri": "s3://.../", "content_type": "text/csv", "destination_uri": "s3://.../",
     "transform": {"SplitType": "Line", "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6,
                   "AssembleWith": "Line"},
     "data_processing": {"InputFilter": "$[1:]", "JoinSource": "Input",
                         "OutputFilter": "$[0,-1]"},
     "instance_type": "ml.m5.large", "max_runtime_seconds": 3600}

    python -m state_machines.batch_inference          # writes batch_inference.asl.json
    python -m state_machines.batch_inference --check  # exits 1 when the file is stale
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from state_machines.training_pipeline import (
    CREATE_MODEL,
    LAMBDA_INVOKE,
    LAMBDA_TRANSIENT_ERRORS,
    SAGEMAKER_TRANSIENT_ERRORS,
    Fail,
    Graph,
    Task,
    attempt_name,
    generate,
    notify_failure,
    on_model_error,
    steps,
    transient_retry,
)

ASL_PATH = Path(__file__).with_name("batch_inference.asl.json")
TRANSFORM_JOB_SYNC = "arn:aws:states:::sagemaker:createTransformJob.sync"
#: Every `${...}` substitution the definition uses; template.yaml supplies each one.
PLACEHOLDERS = frozenset(
    {
        "ArtifactBucket",
        "SageMakerRoleArn",
        "FailureTopicArn",
        "FindModelVersionFunctionArn",
        "PublishBatchOutputFunctionArn",
    }
)
#: Where a batch's job writes and captures, under the artifact bucket.
BATCH_PREFIX = "States.Format('s3://${ArtifactBucket}/batches/{}', $$.Execution.Name)"


def find_model() -> Task:
    return Task(
        "FindModel",
        resource=LAMBDA_INVOKE,
        comment="The group's newest Approved version, or the Approved version the input names.",
        parameters={
            "FunctionName": "${FindModelVersionFunctionArn}",
            "Payload": {
                "group.$": "$.model_package_group",
                "version.$": "$.model_version",
            },
        },
        result_selector={"version.$": "$.Payload"},
        result_path="$.model",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def name_batch() -> steps.Pass:
    return steps.Pass(
        "NameBatch",
        comment="Names the batch's model, job and S3 prefix after the execution.",
        parameters={
            "model.$": "States.Format('{}-model', $$.Execution.Name)",
            "job.$": "States.Format('{}-transform', $$.Execution.Name)",
            "output.$": f"States.Format('{{}}/output/', {BATCH_PREFIX})",
            "capture.$": f"States.Format('{{}}/capture/', {BATCH_PREFIX})",
        },
        result_path="$.batch",
    )


def create_batch_model() -> Task:
    return Task(
        "CreateBatchModel",
        resource=CREATE_MODEL,
        parameters={
            "ModelName.$": "$.batch.model",
            "PrimaryContainer": {
                "Image.$": "$.model.version.Image",
                "ModelDataUrl.$": "$.model.version.ModelDataUrl",
                "Environment.$": "$.model.version.Environment",
            },
            "ExecutionRoleArn": "${SageMakerRoleArn}",
        },
        result_path=None,
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def transform() -> Task:
    """SageMaker's transform semantics: records split by line, batched up to MaxPayloadInMB,
    responses assembled by line; DataProcessing joins the prediction to (filtered) input."""
    return Task(
        "Transform",
        resource=TRANSFORM_JOB_SYNC,
        parameters={
            "TransformJobName.$": attempt_name("$.batch.job"),
            "ModelName.$": "$.batch.model",
            "BatchStrategy.$": "$.transform.BatchStrategy",
            "MaxPayloadInMB.$": "$.transform.MaxPayloadInMB",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.data_uri"}},
                "ContentType.$": "$.content_type",
                "SplitType.$": "$.transform.SplitType",
            },
            "TransformOutput": {
                "S3OutputPath.$": "$.batch.output",
                "Accept.$": "$.content_type",
                "AssembleWith.$": "$.transform.AssembleWith",
            },
            "DataProcessing.$": "$.data_processing",
            # Batch data capture, so the monitors can watch batch scoring too.
            "DataCaptureConfig": {"DestinationS3Uri.$": "$.batch.capture"},
            "TransformResources": {"InstanceCount": 1, "InstanceType.$": "$.instance_type"},
        },
        result_selector={
            "job_name.$": "$.TransformJobName",
            "status.$": "$.TransformJobStatus",
        },
        result_path="$.transform_job",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def publish_output() -> Task:
    return Task(
        "PublishOutput",
        resource=LAMBDA_INVOKE,
        comment="Copies the predictions to the destination: a failed job leaves nothing there.",
        parameters={
            "FunctionName": "${PublishBatchOutputFunctionArn}",
            "Payload": {
                "source.$": "$.batch.output",
                "destination.$": "$.destination_uri",
                "execution.$": "$$.Execution.Name",
            },
        },
        result_selector={"objects.$": "$.Payload.objects", "outputs.$": "$.Payload.outputs"},
        result_path="$.published",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def build_definition() -> dict[str, Any]:
    """The batch state machine as an Amazon States Language dict."""
    failed = Fail("BatchFailed", error_path="$.error.Error", cause_path="$.error.Cause")
    notify = notify_failure(failed, "sfn-mlops batch inference failed")
    on_error = steps.Catch(error_equals=["States.ALL"], result_path="$.error", next_step=notify)
    tasks = [find_model(), create_batch_model(), transform(), publish_output()]
    on_model_error(tasks[1], made=tasks[2], notify=notify, name="BatchModelMadeAlready")
    for task in tasks:
        task.add_catch(on_error)
    chain = steps.Chain([tasks[0], name_batch(), *tasks[1:], steps.Succeed("Scored")])
    graph = Graph(
        chain,
        comment="sfn-mlops batch inference: score a data set with the newest approved model "
        "(or a named version) by a SageMaker batch transform job, then publish the predictions.",
    )
    return graph.to_dict()  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    return generate(argv, ASL_PATH, build_definition, "state_machines.batch_inference")


if __name__ == "__main__":
    sys.exit(main())
