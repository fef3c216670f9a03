"""The training pipeline's state machine, built with the Step Functions Data Science SDK.

`build_definition()` returns the Amazon States Language definition as a dict. Every ARN and
name in it is a `${Placeholder}` that `template.yaml` fills through `DefinitionSubstitutions`
(see `PLACEHOLDERS`). The definition uses JSONPath only: no JSONata, no `Assign`.

Regenerate the committed file after a change here:

    python -m state_machines.training_pipeline          # writes training_pipeline.asl.json
    python -m state_machines.training_pipeline --check  # exits 1 when the file is stale

The SDK (2.3.0, 2022) predates some States Language fields; the small subclasses below add
them through the SDK's own `allowed_fields` mechanism instead of patching the JSON afterwards:
`ResultSelector` on Task, `MaxDelaySeconds` and `JitterStrategy` on Retry, `ErrorPath` and
`CausePath` on Fail.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

# `import stepfunctions` sets the root logger's level to ERROR; put it back afterwards. It also
# imports `sagemaker`, whose config loader prints an INFO line per config file it does not find.
_root_level = logging.getLogger().level
if logging.getLogger("sagemaker.config").level == logging.NOTSET:
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
from stepfunctions import steps  # noqa: E402
from stepfunctions.steps.choice_rule import ChoiceRule  # noqa: E402
from stepfunctions.steps.states import Graph  # noqa: E402

logging.getLogger().setLevel(_root_level)

ASL_PATH = Path(__file__).with_name("training_pipeline.asl.json")

#: Every `${...}` substitution the definition uses; template.yaml supplies each one.
PLACEHOLDERS = frozenset(
    {
        "ArtifactBucket",
        "SageMakerRoleArn",
        "XGBoostImageUri",
        "CodeUri",
        "ReadEvaluationFunctionArn",
        "FailureTopicArn",
        "ClarifyImageUri",
        "PrepareClarifyFunctionArn",
        "BiasGateFunctionArn",
        "RegisterModelFunctionArn",
        "DeployModelFunctionArn",
        "FindChampionFunctionArn",
        "CollectDataFunctionArn",
        "WaitForApprovalFunctionArn",
        "ModelMonitorImageUri",
        "SetUpMonitoringFunctionArn",
    }
)

#: Script mode: the endpoint serves with containers/inference/inference.py, which takes raw
#: values (category names) in the schema's feature order. The model and its registered
#: version both name it.
SERVING_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "${CodeUri}/inference/sourcedir.tar.gz",
}
PROCESSING_JOB_SYNC = "arn:aws:states:::sagemaker:createProcessingJob.sync"
TRAINING_JOB_SYNC = "arn:aws:states:::sagemaker:createTrainingJob.sync"
TUNING_JOB_SYNC = "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync"
DESCRIBE_TRAINING_JOB = "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
CREATE_MODEL = "arn:aws:states:::sagemaker:createModel"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_INVOKE_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
DESCRIBE_ENDPOINT = "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
UPDATE_MODEL_PACKAGE = "arn:aws:states:::aws-sdk:sagemaker:updateModelPackage"

# Transient errors only: a job that ran and failed (States.TaskFailed) is never retried.
# SageMaker API errors, throttling included ("Rate exceeded"), reach Step Functions as
# SageMaker.AmazonSageMakerException, the name AWS's own examples retry on.
SAGEMAKER_TRANSIENT_ERRORS = ["SageMaker.AmazonSageMakerException"]
# The errors AWS recommends retrying for every lambda:invoke Task.
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    # read_evaluation's own name for S3 throttling or a 5xx while it reads the report
    "EvaluationReportUnavailable",
]
# Clarify's container contract: input and output names and folders (AWS requires these names).
CLARIFY_CONFIG_DIR = "/opt/ml/processing/input/config"
CLARIFY_DATA_DIR = "/opt/ml/processing/input/data"
CLARIFY_OUTPUT_DIR = "/opt/ml/processing/output"
#: The Clarify settings the PrepareClarify and ReadBiasReport Lambdas read, and its two jobs.
CLARIFY_JOBS = ("bias", "explainability")
# SNS's ThrottledException and InternalErrorException, named the way the optimized
# integration names service errors (SNS.<Code>Exception).
SNS_TRANSIENT_ERRORS = ["SNS.ThrottledException", "SNS.InternalErrorException"]

PROCESSING_CODE_DIR = "/opt/ml/processing/input/code"
PROCESSING_DATA_DIR = "/opt/ml/processing/input/data"
#: The run's manifest and labelled captures (CollectData), beside the configured data.
PROCESSING_COLLECTED_DIR = "/opt/ml/processing/input/collected"
PROCESSING_OUTPUT_DIR = "/opt/ml/processing/output"
PROCESSING_OUTPUTS = ("train", "validation", "test", "schema", "baseline")
VOLUME_SIZE_GB = 30


# --- SDK extensions --------------------------------------------------------------------------


class ExtraField(Enum):
    """States Language fields newer than the SDK's `Field` enum.

    `Block` accepts a keyword argument when its value is in `allowed_fields()` and writes it
    in PascalCase, so `max_delay_seconds` becomes `MaxDelaySeconds`.
    """

    ResultSelector = "result_selector"
    MaxDelaySeconds = "max_delay_seconds"
    JitterStrategy = "jitter_strategy"
    ErrorPath = "error_path"
    CausePath = "cause_path"


class Retry(steps.Retry):
    """A retrier with a capped backoff (`MaxDelaySeconds`) and `JitterStrategy`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.jitter_strategy not in (None, "FULL", "NONE"):
            raise ValueError(f"jitter_strategy must be FULL or NONE, got {self.jitter_strategy!r}")

    def allowed_fields(self) -> list[Enum]:
        return [*super().allowed_fields(), ExtraField.MaxDelaySeconds, ExtraField.JitterStrategy]


class Task(steps.Task):
    """A Task state that also accepts `ResultSelector`."""

    def allowed_fields(self) -> list[Enum]:
        return [*super().allowed_fields(), ExtraField.ResultSelector]


class Fail(steps.Fail):
    """A Fail state that can take its Error and Cause from the input (`ErrorPath`, `CausePath`)."""

    def __init__(self, state_id: str, **kwargs: Any) -> None:
        super().__init__(state_id, **kwargs)
        if self.error is not None and self.error_path is not None:
            raise ValueError("Only one of 'error' or 'error_path' can be provided.")
        if self.cause is not None and self.cause_path is not None:
            raise ValueError("Only one of 'cause' or 'cause_path' can be provided.")

    def allowed_fields(self) -> list[Enum]:
        return [*super().allowed_fields(), ExtraField.ErrorPath, ExtraField.CausePath]


# --- retries ---------------------------------------------------------------------------------


TRANSIENT_ATTEMPTS = 3  # retries after the first attempt


def transient_retry(errors: list[str]) -> Retry:
    """2 s, 4 s, 8 s (capped at 30 s) with full jitter."""
    return Retry(
        error_equals=list(errors),
        interval_seconds=2,
        max_attempts=TRANSIENT_ATTEMPTS,
        backoff_rate=2.0,
        max_delay_seconds=30,
        jitter_strategy="FULL",
    )


def attempt_name(path: str) -> str:
    """The job name at `path` on the first attempt and `<name>-N` on the Nth retry.

    A create whose job SageMaker made but whose answer was lost fails the Task, and Step
    Functions retries it with the same parameters; SageMaker refuses a second job of that name,
    so every retry would fail (aws-step-functions-data-science-sdk-python#140). The Context
    object's `State.RetryCount` ("Accessing execution data from the Context object", Step
    Functions Developer Guide) gives each attempt a name of its own; the names of later states
    come from the job the Task describes at its end, never from `path`.
    """
    retried = ", ".join(
        f"States.Format('{{}}-{n}', {path})" for n in range(1, 1 + TRANSIENT_ATTEMPTS)
    )
    return f"States.ArrayGetItem(States.Array({path}, {retried}), $$.State.RetryCount)"


#: The longest suffix `attempt_name` adds ("-3"): the entry points' name limits leave room.
RETRY_SUFFIX = f"-{TRANSIENT_ATTEMPTS}"


# --- states ----------------------------------------------------------------------------------


def _run_path(suffix: str) -> str:
    """An S3 URI under this run's prefix, as an intrinsic function."""
    return f"States.Format('{{}}/{suffix}', $.run.prefix)"


def _s3_input(name: str, local_path: str, uri: dict[str, str]) -> dict[str, Any]:
    """A ProcessingInput; `uri` is `{"S3Uri": ...}` or `{"S3Uri.$": ...}`."""
    return {
        "InputName": name,
        "S3Input": {
            **uri,
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _s3_output(name: str, local_path: str, uri_expression: str) -> dict[str, Any]:
    return {
        "OutputName": name,
        "S3Output": {
            "LocalPath": local_path,
            "S3Uri.$": uri_expression,
            "S3UploadMode": "EndOfJob",
        },
    }


def _channel(name: str, content_type: str) -> dict[str, Any]:
    """A training channel reading the preprocessing output of the same name."""
    return {
        "ChannelName": name,
        "ContentType": content_type,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri.$": _run_path(f"processing/{name}"),
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }


# Where a processing container writes why it failed: DescribeProcessingJob's ExitMessage.
EXIT_MESSAGE_FILE = "/opt/ml/output/message"


def _processing_job(
    job_name_path: str,
    script: str,
    arguments: list[str],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    json_arguments: dict[str, str] | None = None,
) -> dict[str, Any]:
    """CreateProcessingJob parameters for a script run in the XGBoost image.

    `json_arguments` maps an option to a path of the state's input, passed as its JSON text
    (States.JsonToString inside a States.Array of the arguments)."""
    # The message file is named explicitly so the local runner can re-root it.
    fixed = [*arguments, "--message-file", EXIT_MESSAGE_FILE]
    app: dict[str, Any] = {
        "ImageUri": "${XGBoostImageUri}",
        "ContainerEntrypoint": ["python3", f"{PROCESSING_CODE_DIR}/{script}"],
    }
    if json_arguments:
        items = [f"'{argument}'" for argument in fixed]
        for option, path in json_arguments.items():
            items += [f"'{option}'", f"States.JsonToString({path})"]
        app["ContainerArguments.$"] = f"States.Array({', '.join(items)})"
    else:
        app["ContainerArguments"] = fixed
    return {
        "ProcessingJobName.$": attempt_name(job_name_path),
        "AppSpecification": app,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": outputs},
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType.$": "$.config.instance_type",
                "VolumeSizeInGB": VOLUME_SIZE_GB,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.config.max_runtime_seconds"},
        "RoleArn": "${SageMakerRoleArn}",
    }


def prepare_run() -> steps.Pass:
    return steps.Pass(
        "PrepareRun",
        comment="Names this run's jobs and S3 prefix after the execution.",
        parameters={
            "job_names": {
                "preprocess.$": "States.Format('{}-preprocess', $$.Execution.Name)",
                "train.$": "States.Format('{}-train', $$.Execution.Name)",
                "tune.$": "States.Format('{}-tune', $$.Execution.Name)",
                "evaluate.$": "States.Format('{}-evaluate', $$.Execution.Name)",
                "model.$": "States.Format('{}-model', $$.Execution.Name)",
                "bias.$": "States.Format('{}-bias', $$.Execution.Name)",
                "explainability.$": "States.Format('{}-explain', $$.Execution.Name)",
                "data_baseline.$": "States.Format('{}-dq-base', $$.Execution.Name)",
                "quality_baseline.$": "States.Format('{}-mq-base', $$.Execution.Name)",
            },
            "prefix.$": "States.Format('s3://${ArtifactBucket}/runs/{}', $$.Execution.Name)",
            # SageMaker script mode reads these two hyperparameters JSON-encoded.
            "script_mode": {
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"${CodeUri}/training/sourcedir.tar.gz"',
            },
        },
        result_path="$.run",
    )


def preprocess() -> Task:
    parameters = _processing_job(
        "$.run.job_names.preprocess",
        "preprocess.py",
        [
            "--input-dir", PROCESSING_DATA_DIR, "--collected-dir", PROCESSING_COLLECTED_DIR,
            "--output-dir", PROCESSING_OUTPUT_DIR,
        ],
        inputs=[
            _s3_input("data", PROCESSING_DATA_DIR, {"S3Uri.$": "$.config.data_uri"}),
            _s3_input("collected", PROCESSING_COLLECTED_DIR, {"S3Uri.$": _run_path("data/")}),
            _s3_input("code", PROCESSING_CODE_DIR, {"S3Uri": "${CodeUri}/processing/"}),
        ],
        outputs=[
            _s3_output(name, f"{PROCESSING_OUTPUT_DIR}/{name}", _run_path(f"processing/{name}"))
            for name in PROCESSING_OUTPUTS
        ],
    )
    parameters["Environment.$"] = "$.config.processing_env"
    return Task(
        "Preprocess",
        resource=PROCESSING_JOB_SYNC,
        parameters=parameters,
        result_selector={"job_name.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
        result_path="$.steps.preprocess",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def _training_resources() -> dict[str, Any]:
    """What a training job and a tuning job's training jobs share: data, output, machine."""
    return {
        "InputDataConfig": [
            _channel("train", "text/csv"),
            _channel("validation", "text/csv"),
            _channel("schema", "application/json"),
        ],
        "OutputDataConfig": {"S3OutputPath.$": _run_path("training")},
        "ResourceConfig": {
            "InstanceCount": 1,
            "InstanceType.$": "$.config.instance_type",
            "VolumeSizeInGB": VOLUME_SIZE_GB,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.config.max_runtime_seconds"},
        "RoleArn": "${SageMakerRoleArn}",
    }


def tuning_enabled(tune: steps.State, train: steps.State) -> steps.Choice:
    choice = steps.Choice(
        "TuningEnabled", comment="A hyperparameter tuning job when the config has `tuning`."
    )
    choice.add_choice(ChoiceRule.BooleanEquals("$.config.tuning.enabled", True), tune)
    choice.default_choice(train)
    return choice


def tune() -> Task:
    """The search: SageMaker runs the training jobs and names the best by the objective,
    read from each job's log by the metric definition's regex (script mode has no built-in
    metrics)."""
    return Task(
        "Tune",
        resource=TUNING_JOB_SYNC,
        parameters={
            "HyperParameterTuningJobName.$": attempt_name("$.run.job_names.tune"),
            "HyperParameterTuningJobConfig.$": "$.config.tuning.job_config",
            "TrainingJobDefinition": {
                "AlgorithmSpecification": {
                    "TrainingImage": "${XGBoostImageUri}",
                    "TrainingInputMode": "File",
                    "MetricDefinitions.$": "$.config.tuning.metric_definitions",
                },
                "StaticHyperParameters.$": (
                    "States.JsonMerge($.config.tuning.static_hyperparameters, "
                    "$.run.script_mode, false)"
                ),
                **_training_resources(),
            },
        },
        result_selector={
            "job_name.$": "$.HyperParameterTuningJobName",
            "best.$": "$.BestTrainingJob",
            "counters.$": "$.TrainingJobStatusCounters",
        },
        result_path="$.steps.tune",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def describe_best_training_job() -> Task:
    return Task(
        "DescribeBestTrainingJob",
        resource=DESCRIBE_TRAINING_JOB,
        comment="The best training job's model goes on, as a training job's would.",
        parameters={"TrainingJobName.$": "$.steps.tune.best.TrainingJobName"},
        result_selector={
            "job_name.$": "$.TrainingJobName",
            "model_artifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
        },
        result_path="$.steps.train",
        retry=transient_retry(["SageMaker.SageMakerException", "SageMaker.ThrottlingException"]),
    )


def train() -> Task:
    return Task(
        "Train",
        resource=TRAINING_JOB_SYNC,
        parameters={
            "TrainingJobName.$": attempt_name("$.run.job_names.train"),
            "AlgorithmSpecification": {
                "TrainingImage": "${XGBoostImageUri}",
                "TrainingInputMode": "File",
            },
            "HyperParameters.$": (
                "States.JsonMerge($.config.hyperparameters, $.run.script_mode, false)"
            ),
            **_training_resources(),
        },
        result_selector={
            "job_name.$": "$.TrainingJobName",
            "model_artifacts.$": "$.ModelArtifacts.S3ModelArtifacts",
        },
        result_path="$.steps.train",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def evaluate() -> Task:
    model_dir, test_dir = "/opt/ml/processing/model", "/opt/ml/processing/test"
    train_dir, validation_dir = "/opt/ml/processing/train", "/opt/ml/processing/validation"
    evaluation_dir, champion_dir = "/opt/ml/processing/evaluation", "/opt/ml/processing/champion"
    return Task(
        "Evaluate",
        resource=PROCESSING_JOB_SYNC,
        parameters=_processing_job(
            "$.run.job_names.evaluate",
            "evaluate.py",
            [
                *("--model-dir", model_dir, "--test-dir", test_dir),
                *("--output-dir", evaluation_dir, "--champion-dir", champion_dir),
                *("--train-dir", train_dir, "--validation-dir", validation_dir),
            ],
            inputs=[
                _s3_input("model", model_dir, {"S3Uri.$": "$.steps.train.model_artifacts"}),
                _s3_input("champion", champion_dir, {"S3Uri.$": _run_path("champion/")}),
                _s3_input("test", test_dir, {"S3Uri.$": _run_path("processing/test")}),
                _s3_input("train", train_dir, {"S3Uri.$": _run_path("processing/train")}),
                _s3_input(
                    "validation", validation_dir, {"S3Uri.$": _run_path("processing/validation")}
                ),
                _s3_input("code", PROCESSING_CODE_DIR, {"S3Uri": "${CodeUri}/evaluation/"}),
            ],
            outputs=[_s3_output("evaluation", evaluation_dir, _run_path("evaluation"))],
            # the intervals' level and the paired comparison with the champion
            json_arguments={"--gate": "$.config.gate"},
        ),
        result_selector={"job_name.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
        result_path="$.steps.evaluate",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


#: The keys of the read_evaluation Lambda's result, kept under $.evaluation.
EVALUATION_KEYS = (
    "metric",
    "value",
    "threshold",
    "direction",
    "passed",
    "metrics",
    "cause",
    "champion",
    "overfitting",
    "interval",
    "bound",
    "gated_value",
    "data",
)


def find_champion() -> Task:
    return Task(
        "FindChampion",
        resource=LAMBDA_INVOKE,
        comment="Stages the production model, if any, for the evaluation to score beside.",
        parameters={
            "FunctionName": "${FindChampionFunctionArn}",
            "Payload": {
                "endpoint_name.$": "$.config.deployment.endpoint_name",
                "group.$": "$.config.registry.model_package_group",
                "destination.$": _run_path("champion/"),
            },
        },
        result_selector={
            "present.$": "$.Payload.present",
            "source.$": "$.Payload.source",
            "model_data_url.$": "$.Payload.model_data_url",
        },
        result_path="$.steps.champion",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def collect_data() -> Task:
    """The run's data written down before it is read: the configured objects as they are now
    and the endpoint's labelled traffic, each recent or older than the production model."""
    return Task(
        "CollectData",
        resource=LAMBDA_INVOKE,
        comment="Lists the data and adds labelled production traffic; writes the manifest.",
        parameters={
            "FunctionName": "${CollectDataFunctionArn}",
            "Payload": {
                "config.$": "$.config",
                "destination.$": _run_path("data/"),
                "champion_model_url.$": "$.steps.champion.model_data_url",
                "execution_input.$": "$$.Execution.Input",
            },
        },
        result_selector={
            "manifest_uri.$": "$.Payload.manifest_uri",
            "since.$": "$.Payload.since",
            "why.$": "$.Payload.why",
            "captured_rows.$": "$.Payload.captured_rows",
            "skipped.$": "$.Payload.skipped",
        },
        result_path="$.steps.data",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def champion_gate(challenger_wins: steps.State, kept: steps.State) -> steps.Choice:
    """The new model goes on only if it beats the production model by the margin (numbers
    compared here, as in the quality gate); without a comparable champion it goes on. With
    gate.champion_significance, the paired bootstrap difference's one-sided bound must be
    past the margin instead: a significant improvement."""
    gate = steps.Choice(
        "ChampionGate", comment="Keeps the production model when the new one is not better."
    )
    gate.add_choice(
        ChoiceRule.BooleanEquals("$.evaluation.champion.present", False), challenger_wins
    )
    significance = "$.evaluation.champion.significance"
    gate.add_choice(
        ChoiceRule.And(
            [
                ChoiceRule.IsNull(significance, True),
                _by_direction(
                    "$.evaluation.value",
                    "$.evaluation.champion.required",
                    ChoiceRule.NumericLessThanEqualsPath,
                    ChoiceRule.NumericGreaterThanEqualsPath,
                ),
            ]
        ),
        challenger_wins,
    )
    gate.add_choice(
        ChoiceRule.And(
            [
                ChoiceRule.IsNull(significance, False),
                _by_direction(
                    "$.evaluation.champion.difference_bound",
                    "$.evaluation.champion.required_difference",
                    ChoiceRule.NumericLessThanPath,
                    ChoiceRule.NumericGreaterThanPath,
                ),
            ]
        ),
        challenger_wins,
    )
    gate.default_choice(kept)
    return gate


def _by_direction(variable: str, reference: str, minimize: Any, maximize: Any) -> ChoiceRule:
    """`variable` compared with `reference` by `minimize` or `maximize` as the gate's
    direction says."""
    return ChoiceRule.Or(
        [
            ChoiceRule.And(
                [
                    ChoiceRule.StringEquals("$.evaluation.direction", direction),
                    comparison(variable, reference),
                ]
            )
            for direction, comparison in (("minimize", minimize), ("maximize", maximize))
        ]
    )


def read_evaluation() -> Task:
    return Task(
        "ReadEvaluation",
        resource=LAMBDA_INVOKE,
        parameters={
            "FunctionName": "${ReadEvaluationFunctionArn}",
            "Payload": {
                "evaluation_uri.$": _run_path("evaluation/evaluation.json"),
                "gate.$": "$.config.gate",
            },
        },
        # Keep the function's result (the Payload), not the invoke response around it.
        result_selector={f"{key}.$": f"$.Payload.{key}" for key in EVALUATION_KEYS},
        result_path="$.evaluation",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def quality_gate(approved: steps.State, below_threshold: steps.State) -> steps.Choice:
    """Compares the numbers themselves rather than trusting a boolean from the Lambda:
    `gated_value` is the metric's value, or with gate.confidence its interval's pessimistic
    bound."""
    gate = steps.Choice(
        "QualityGate",
        comment="Passes when the metric (or, with gate.confidence, its interval's pessimistic "
        "bound) is on the right side of the threshold.",
    )
    passes = _by_direction(
        "$.evaluation.gated_value",
        "$.evaluation.threshold",
        ChoiceRule.NumericLessThanEqualsPath,
        ChoiceRule.NumericGreaterThanEqualsPath,
    )
    gate.add_choice(passes, approved)
    gate.default_choice(below_threshold)
    return gate


def overfit_gate(approved: steps.State, overfits: steps.State) -> steps.Choice:
    """With `gate.max_train_test_gap`, the test metric may be worse than the training one by
    at most that much (the numbers compared here); without it, nothing is gated."""
    gate = steps.Choice(
        "OverfitGate", comment="Passes when the train/test gap is within gate.max_train_test_gap."
    )
    limit = "$.evaluation.overfitting.limit"
    gate.add_choice(
        ChoiceRule.Or(
            [
                ChoiceRule.IsNull(limit, True),
                ChoiceRule.NumericLessThanEqualsPath("$.evaluation.overfitting.gap", limit),
            ]
        ),
        approved,
    )
    gate.default_choice(overfits)
    return gate


def clarify_enabled(create: steps.State, approved: steps.State) -> steps.Choice:
    choice = steps.Choice(
        "ClarifyEnabled", comment="Runs the bias check and explainability when configured."
    )
    choice.add_choice(ChoiceRule.BooleanEquals("$.config.clarify.enabled", True), create)
    choice.default_choice(approved)
    return choice


def create_model() -> Task:
    """The SageMaker model Clarify scores with (and registration and deployment use later)."""
    return Task(
        "CreateModel",
        resource=CREATE_MODEL,
        parameters={
            "ModelName.$": "$.run.job_names.model",
            "PrimaryContainer": {
                "Image": "${XGBoostImageUri}",
                "ModelDataUrl.$": "$.steps.train.model_artifacts",
                "Environment": SERVING_ENVIRONMENT,
            },
            "ExecutionRoleArn": "${SageMakerRoleArn}",
        },
        result_selector={"model_arn.$": "$.ModelArn"},
        result_path="$.steps.model",
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


#: SageMaker's answer to a second CreateModel of a name (the start of its ValidationException).
MODEL_EXISTS = "Cannot create already existing model*"


def on_model_error(model: Task, made: Any, notify: Any, name: str) -> None:
    """A CreateModel that fails because its model exists goes on to `made`.

    That happens when a retry follows a create SageMaker made but never answered (see
    `attempt_name`); the model is this execution's (its name and inputs are), so it is the one
    the run wanted. Every other error goes to `notify`, as anywhere else.
    """
    check = steps.Choice(name, comment="A retried CreateModel finds the model it made?")
    check.add_choice(ChoiceRule.StringMatches("$.error.Cause", MODEL_EXISTS), next_step=made)
    check.default_choice(next_step=notify)
    errors = SAGEMAKER_TRANSIENT_ERRORS
    model.add_catch(steps.Catch(error_equals=errors, result_path="$.error", next_step=check))


def prepare_clarify() -> Task:
    return Task(
        "PrepareClarify",
        resource=LAMBDA_INVOKE,
        comment="Writes both Clarify analysis configs from the config and the run's schema.",
        parameters={
            "FunctionName": "${PrepareClarifyFunctionArn}",
            "Payload": {
                "clarify.$": "$.config.clarify",
                "schema_uri.$": _run_path("processing/schema/schema.json"),
                "test_uri.$": _run_path("processing/test/test.csv"),
                "output_prefix.$": _run_path("clarify"),
                "model_name.$": "$.run.job_names.model",
                "instance_type.$": "$.config.instance_type",
            },
        },
        result_selector={
            f"{key}.$": f"$.Payload.{key}"
            for key in ("bias_config", "explainability_config", "explainability_data")
        },
        result_path="$.steps.prepare_clarify",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def clarify_job(state_id: str, job: str, dataset: str) -> Task:
    """A SageMaker Clarify processing job: the Clarify image takes no entrypoint, only its
    `analysis_config` and `dataset` inputs and the `analysis_result` output."""
    return Task(
        state_id,
        resource=PROCESSING_JOB_SYNC,
        parameters={
            "ProcessingJobName.$": attempt_name(f"$.run.job_names.{job}"),
            "AppSpecification": {"ImageUri": "${ClarifyImageUri}"},
            "ProcessingInputs": [
                _s3_input(
                    "analysis_config",
                    CLARIFY_CONFIG_DIR,
                    {"S3Uri.$": _run_path(f"clarify/{job}/config/")},
                ),
                _s3_input("dataset", CLARIFY_DATA_DIR, {"S3Uri.$": _run_path(dataset)}),
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    _s3_output(
                        "analysis_result", CLARIFY_OUTPUT_DIR, _run_path(f"clarify/{job}/report")
                    )
                ]
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType.$": "$.config.instance_type",
                    "VolumeSizeInGB": VOLUME_SIZE_GB,
                }
            },
            # Read by the local Clarify runtime's HTML report only; AWS's Clarify ignores it.
            "Environment": {
                "SFN_MLOPS_BIAS_THRESHOLDS.$": (
                    "States.JsonToString($.config.clarify.bias_thresholds)"
                )
            },
            "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.config.max_runtime_seconds"},
            "RoleArn": "${SageMakerRoleArn}",
        },
        result_selector={"job_name.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def clarify() -> steps.Parallel:
    parallel = steps.Parallel(
        "Clarify",
        comment="The bias check and the explainability analysis, side by side.",
        result_path="$.steps.clarify",
    )
    parallel.add_branch(clarify_job("BiasCheck", "bias", "processing/test/"))
    parallel.add_branch(
        clarify_job("Explainability", "explainability", "clarify/explainability/data/")
    )
    return parallel


#: The keys of the bias gate Lambda's result, kept under $.bias.
BIAS_KEYS = ("passed", "cause", "violations", "headline")


def read_bias_report() -> Task:
    return Task(
        "ReadBiasReport",
        resource=LAMBDA_INVOKE,
        parameters={
            "FunctionName": "${BiasGateFunctionArn}",
            "Payload": {
                "analysis_uri.$": _run_path("clarify/bias/report/analysis.json"),
                "thresholds.$": "$.config.clarify.bias_thresholds",
                "facets.$": "$.config.clarify.facets",
            },
        },
        result_selector={f"{key}.$": f"$.Payload.{key}" for key in BIAS_KEYS},
        result_path="$.bias",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def bias_gate(approved: steps.State, failed: steps.State) -> steps.Choice:
    gate = steps.Choice("BiasGate", comment="Passes when every configured bias threshold holds.")
    gate.add_choice(ChoiceRule.BooleanEquals("$.bias.passed", True), approved)
    gate.default_choice(failed)
    return gate


def register_model(state_id: str = "RegisterModel", *, rejected: bool = False) -> Task:
    """A version in the Model Registry group, with its reports and provenance; `rejected`:
    the version of a model that lost to the production model, kept as Rejected."""
    return Task(
        state_id,
        resource=LAMBDA_INVOKE,
        comment="Registers the version as Rejected: the production model stays."
        if rejected
        else "A version in the Model Registry group, with its reports and provenance.",
        parameters={
            "FunctionName": "${RegisterModelFunctionArn}",
            "Payload": {
                "group.$": "$.config.registry.model_package_group",
                "image": "${XGBoostImageUri}",
                "model_data_url.$": "$.steps.train.model_artifacts",
                "environment": SERVING_ENVIRONMENT,
                "approval.$": "$.config.registry.approval",
                **({"clarify": False} if rejected else {"clarify.$": "$.config.clarify.enabled"}),
                "reports": {
                    "evaluation.$": _run_path("evaluation/evaluation.json"),
                    "bias.$": _run_path("clarify/bias/report/analysis.json"),
                    "explainability.$": _run_path("clarify/explainability/report/analysis.json"),
                },
                "execution_arn.$": "$$.Execution.Id",
                "data_uri.$": "$.config.data_uri",
                "config.$": "$.config",
                "metric.$": "$.evaluation.metric",
                "value.$": "$.evaluation.value",
                "interval.$": "$.evaluation.interval",
                "champion.$": "$.evaluation.champion",
                "data.$": "$.steps.data",
                "judged_on.$": "$.evaluation.data",
                "rejected": rejected,
            },
        },
        result_selector={
            f"{key}.$": f"$.Payload.{key}"
            for key in ("ModelPackageArn", "ModelPackageVersion", "ModelApprovalStatus")
        },
        result_path="$.registration",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def approval_needed(wait: steps.State, approved: steps.State) -> steps.Choice:
    choice = steps.Choice(
        "ApprovalNeeded", comment="A version registered PendingManualApproval waits for a decision."
    )
    choice.add_choice(
        ChoiceRule.StringEquals("$.registration.ModelApprovalStatus", "PendingManualApproval"),
        wait,
    )
    choice.default_choice(approved)
    return choice


def wait_for_approval() -> Task:
    """Pauses the execution until the version is approved (it goes on with the registration
    the decision returns) or rejected (`ModelRejected`), at most
    `registry.approval_timeout_seconds` (`States.Timeout`)."""
    wait = Task(
        "WaitForApproval",
        resource=LAMBDA_INVOKE_WAIT,
        comment="Approve or reject the version in the Model Registry (locally: "
        "`sfn-mlops models approve|reject GROUP/VERSION`) to resume.",
        parameters={
            "FunctionName": "${WaitForApprovalFunctionArn}",
            "Payload": {
                "token.$": "$$.Task.Token",
                "model_package_arn.$": "$.registration.ModelPackageArn",
                "execution_arn.$": "$$.Execution.Id",
            },
        },
        timeout_seconds_path="$.config.registry.approval_timeout_seconds",
        result_path="$.registration",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )
    wait.add_catch(
        steps.Catch(
            error_equals=["ModelRejected"],
            result_path="$.error",
            next_step=Fail("ModelRejected", error="ModelRejected", cause_path="$.error.Cause"),
        )
    )
    timed_out = steps.Pass(
        "ApprovalCause",
        parameters={
            "Cause.$": "States.Format('Model package version {} was neither approved nor "
            "rejected within {} s (registry.approval_timeout_seconds); it stays "
            "PendingManualApproval and nothing was deployed', "
            "$.registration.ModelPackageArn, $.config.registry.approval_timeout_seconds)"
        },
        result_path="$.error",
    )
    timed_out.next(Fail("ApprovalTimedOut", error="ApprovalTimedOut", cause_path="$.error.Cause"))
    wait.add_catch(
        steps.Catch(error_equals=["States.Timeout"], result_path="$.timeout", next_step=timed_out)
    )
    return wait


def deployment_wanted(deploy: steps.State, registered: steps.State) -> steps.Choice:
    choice = steps.Choice(
        "DeploymentWanted", comment="Deploys an approved version when deployment is on."
    )
    choice.add_choice(
        ChoiceRule.And(
            [
                ChoiceRule.BooleanEquals("$.config.deployment.enabled", True),
                ChoiceRule.StringEquals("$.registration.ModelApprovalStatus", "Approved"),
            ]
        ),
        deploy,
    )
    choice.default_choice(registered)
    return choice


def deploy_model() -> Task:
    return Task(
        "DeployModel",
        resource=LAMBDA_INVOKE,
        comment="Creates the endpoint, or updates it with the configured guardrails.",
        parameters={
            "FunctionName": "${DeployModelFunctionArn}",
            "Payload": {
                "model_name.$": "$.run.job_names.model",
                "settings.$": "$.config.deployment",
                "capture_destination": "s3://${ArtifactBucket}/data-capture",
                # strategy ab: the A/B test's record names the problem and the version
                "problem_type.$": "$.config.problem_type",
                "model_package_arn.$": "$.registration.ModelPackageArn",
            },
        },
        result_selector={
            **{
                f"{key}.$": f"$.Payload.{key}"
                for key in (
                    "EndpointName",
                    "EndpointConfigName",
                    "PreviousConfigName",  # EndpointReady tells a rollback by it
                    "Strategy",
                    "Operation",
                )
            },
            "polls_left.$": "$.Payload.polls_left",
            "waits.$": "$.Payload.waits",
        },
        result_path="$.deployment",
        retry=[
            transient_retry(LAMBDA_TRANSIENT_ERRORS),
            # Another run's deployment holds the endpoint: wait for it (SageMaker takes
            # minutes per deployment), up to about an hour.
            Retry(
                error_equals=["EndpointBusy"],
                interval_seconds=10,
                max_attempts=60,
                backoff_rate=1.5,
                max_delay_seconds=60,
                jitter_strategy="FULL",
            ),
        ],
    )


def describe_endpoint() -> Task:
    return Task(
        "DescribeEndpoint",
        resource=DESCRIBE_ENDPOINT,
        parameters={"EndpointName.$": "$.deployment.EndpointName"},
        result_path="$.endpoint",
        retry=transient_retry(["SageMaker.SageMakerException", "SageMaker.ThrottlingException"]),
    )


def _deployment_failed(name: str, notify: steps.State, cause: str | None = None) -> steps.Pass:
    """The error as a Catch records it, then the failure notification: a rollback is news."""
    error = {"Error": name}
    error.update({"Cause": cause} if cause else {"Cause.$": "$.endpoint.FailureReason"})
    failed = steps.Pass(name, parameters=error, result_path="$.error")
    failed.next(notify)
    return failed


def rolled_back(notify: steps.State) -> steps.Pass:
    """A rollback: the error names the alarm (SageMaker's FailureReason), the version and the
    config that serves again; the version is marked Rejected in the registry, so FindChampion,
    `batch` and the batch schedule (newest Approved version) never pick a model that was
    rolled back. Marking it is best effort: the notification goes out either way."""
    failed = steps.Pass(
        "DeploymentRolledBack",
        parameters={
            "Error": "DeploymentRolledBack",
            "Cause.$": "States.Format('{} Version {} was rolled back; the endpoint serves its "
            "previous config {} again.', $.endpoint.FailureReason, "
            "$.registration.ModelPackageArn, $.deployment.PreviousConfigName)",
        },
        result_path="$.error",
    )
    mark = Task(
        "MarkRolledBack",
        resource=UPDATE_MODEL_PACKAGE,
        comment="The rolled-back version leaves the Approved ones (UpdateModelPackage).",
        parameters={
            "ModelPackageArn.$": "$.registration.ModelPackageArn",
            "ModelApprovalStatus": "Rejected",
            "ApprovalDescription.$": "States.Format('Rolled back by execution {}: {}', "
            "$$.Execution.Name, $.endpoint.FailureReason)",
        },
        result_path=None,
        retry=transient_retry(["SageMaker.SageMakerException", "SageMaker.ThrottlingException"]),
        catch=steps.Catch(error_equals=["States.ALL"], result_path=None, next_step=notify),
    )
    failed.next(mark)
    mark.next(notify)
    return failed


def endpoint_ready(
    deployed: steps.State, describe: steps.State, notify: steps.State
) -> steps.Choice:
    """A bounded wait: InService on the new config ends it; a rollback, a failure or the
    configured timeout fails the execution with an error saying which (the old model serves),
    after the failure notification."""
    ready = steps.Choice("EndpointReady", comment="Waits for the endpoint's deployment to end.")
    in_service = ChoiceRule.StringEquals("$.endpoint.EndpointStatus", "InService")
    reason = ChoiceRule.IsPresent("$.endpoint.FailureReason", True)
    config = "$.endpoint.EndpointConfigName"
    ready.add_choice(
        ChoiceRule.And(
            [in_service, ChoiceRule.StringEqualsPath(config, "$.deployment.EndpointConfigName")]
        ),
        deployed,
    )
    previous = ChoiceRule.StringEqualsPath(config, "$.deployment.PreviousConfigName")
    ready.add_choice(ChoiceRule.And([in_service, reason, previous]), rolled_back(notify))
    ready.add_choice(
        ChoiceRule.And([ChoiceRule.StringEquals("$.endpoint.EndpointStatus", "Failed"), reason]),
        _deployment_failed("EndpointFailed", notify),
    )
    # Another run's deployment can only start once ours has ended (DeployModel retries
    # EndpointBusy until then): InService on a config newer than ours means ours finished.
    ready.add_choice(in_service, steps.Succeed("DeployedThenSuperseded"))
    ready.add_choice(
        ChoiceRule.NumericLessThanEquals("$.deployment.polls_left", 0),
        _deployment_failed(
            "EndpointWaitTimedOut",
            notify,
            cause="The endpoint did not finish deploying within deployment.timeout_seconds; "
            "it goes on in SageMaker (see DescribeEndpoint)",
        ),
    )
    # DeployModel's schedule: waits[polls_left] seconds (1 s, doubling to poll_seconds).
    count = steps.Pass(
        "CountPoll",
        parameters={
            "value.$": "States.MathAdd($.deployment.polls_left, -1)",
            "wait.$": "States.ArrayGetItem($.deployment.waits, $.deployment.polls_left)",
        },
        result_path="$.poll",
    )
    wait = steps.Wait("WaitForEndpoint", seconds_path="$.poll.wait")
    store = steps.Pass(
        "StorePollsLeft", input_path="$.poll.value", result_path="$.deployment.polls_left"
    )
    ready.default_choice(steps.Chain([count, wait, store, describe]))
    return ready


# Model Monitor's analyzer container reads its settings from the environment and these folders.
MONITOR_INPUT_DIR = "/opt/ml/processing/input/baseline_dataset_input"
MONITOR_OUTPUT_DIR = "/opt/ml/processing/output"
MONITOR_CSV_FORMAT = json.dumps({"csv": {"header": True, "output_columns_position": "START"}})
#: The columns of the evaluation's model_quality_baseline.csv (containers/evaluation).
QUALITY_COLUMNS = {
    "inference_attribute": "prediction",
    "probability_attribute": "probability",
    "ground_truth_attribute": "label",
}


def monitoring_wanted(baselines: steps.State, deployed: steps.State) -> steps.Choice:
    choice = steps.Choice(
        "MonitoringWanted", comment="Sets Model Monitor up on the endpoint when monitoring is on."
    )
    choice.add_choice(ChoiceRule.BooleanEquals("$.config.monitoring.enabled", True), baselines)
    choice.default_choice(deployed)
    return choice


def _baseline_job(
    state_id: str, job_name: str, dataset: str, output: str, environment: dict[str, str]
) -> Task:
    """A Model Monitor baseline: the analyzer image suggests statistics and constraints."""
    return Task(
        state_id,
        resource=PROCESSING_JOB_SYNC,
        parameters={
            "ProcessingJobName.$": attempt_name(f"$.run.job_names.{job_name}"),
            "AppSpecification": {"ImageUri": "${ModelMonitorImageUri}"},
            "Environment": {
                "dataset_format": MONITOR_CSV_FORMAT,
                "dataset_source": MONITOR_INPUT_DIR,
                "output_path": MONITOR_OUTPUT_DIR,
                "publish_cloudwatch_metrics": "Disabled",
                **environment,
            },
            "ProcessingInputs": [
                _s3_input(
                    "baseline_dataset_input", MONITOR_INPUT_DIR, {"S3Uri.$": _run_path(dataset)}
                )
            ],
            "ProcessingOutputConfig": {
                "Outputs": [_s3_output("monitoring_output", MONITOR_OUTPUT_DIR, _run_path(output))]
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType.$": "$.config.instance_type",
                    "VolumeSizeInGB": VOLUME_SIZE_GB,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds.$": "$.config.max_runtime_seconds"},
            "RoleArn": "${SageMakerRoleArn}",
        },
        result_path=None,
        retry=transient_retry(SAGEMAKER_TRANSIENT_ERRORS),
    )


def baselines() -> steps.Parallel:
    """The data-quality baseline of the training features and, with model quality on, the
    model-quality baseline of the test set's predictions, side by side."""
    parallel = steps.Parallel(
        "Baselines", comment="Model Monitor's baselines, in parallel.", result_path=None
    )
    parallel.add_branch(
        _baseline_job(
            "DataQualityBaseline",
            "data_baseline",
            "processing/baseline/",
            "monitoring/data-quality",
            {},
        )  # fmt: skip
    )
    quality = _baseline_job(
        "ModelQualityBaseline",
        "quality_baseline",
        "evaluation/model_quality_baseline.csv",
        "monitoring/model-quality",
        {
            "analysis_type": "MODEL_QUALITY",
            "problem_type.$": "$.config.monitoring.model_quality.problem_type",
            "probability_threshold_attribute": "0.5",
            **QUALITY_COLUMNS,
        },
    )
    wanted = steps.Choice("ModelQualityWanted")
    wanted.add_choice(
        ChoiceRule.BooleanEquals("$.config.monitoring.model_quality.enabled", True), quality
    )
    wanted.default_choice(steps.Pass("NoModelQualityBaseline"))
    parallel.add_branch(wanted)
    return parallel


def set_up_monitoring() -> Task:
    return Task(
        "SetUpMonitoring",
        resource=LAMBDA_INVOKE,
        comment="Points the endpoint's monitoring schedules at the new baselines, and makes "
        "the alarms that start a retraining.",
        parameters={
            "FunctionName": "${SetUpMonitoringFunctionArn}",
            "Payload": {
                "endpoint_name.$": "$.deployment.EndpointName",
                "run_name.$": "$$.Execution.Name",
                "baseline_uri.$": _run_path("monitoring"),
                "settings.$": "$.config.monitoring",
                "image_uri": "${ModelMonitorImageUri}",
                "role_arn": "${SageMakerRoleArn}",
                "bucket": "${ArtifactBucket}",
            },
        },
        result_selector={"schedules.$": "$.Payload.schedules", "alarms.$": "$.Payload.alarms"},
        result_path="$.monitoring",
        retry=transient_retry(LAMBDA_TRANSIENT_ERRORS),
    )


def notify_failure(
    pipeline_failed: steps.State, subject: str = "sfn-mlops pipeline failed"
) -> Task:
    """Publishes the caught error to the failure topic, then ends in ``pipeline_failed``."""
    notify = Task(
        "NotifyFailure",
        resource=SNS_PUBLISH,
        parameters={
            "TopicArn": "${FailureTopicArn}",
            "Subject": subject,
            "Message": {
                "execution.$": "$$.Execution.Id",
                "error.$": "$.error.Error",
                "cause.$": "$.error.Cause",
            },
        },
        result_path=None,
        retry=transient_retry(SNS_TRANSIENT_ERRORS),
        # A notification that cannot be sent must not hide the original error.
        catch=steps.Catch(error_equals=["States.ALL"], result_path=None, next_step=pipeline_failed),
    )
    notify.next(pipeline_failed)
    return notify


def build_definition() -> dict[str, Any]:
    """The pipeline as an Amazon States Language dict, with `${Placeholder}` substitutions."""
    pipeline_failed = Fail("PipelineFailed", error_path="$.error.Error", cause_path="$.error.Cause")
    notify = notify_failure(pipeline_failed)
    on_error = steps.Catch(error_equals=["States.ALL"], result_path="$.error", next_step=notify)
    prepare, training, tuning = preprocess(), train(), tune()
    best = describe_best_training_job()
    champion, collect = find_champion(), collect_data()
    scoring = [evaluate(), read_evaluation()]
    tasks = [champion, collect, prepare, training, tuning, best, *scoring]
    model = create_model()
    clarify_tasks = [prepare_clarify(), clarify(), read_bias_report()]
    register, deploy, describe = register_model(), deploy_model(), describe_endpoint()
    register_rejected = register_model("RegisterRejectedModel", rejected=True)
    wait = wait_for_approval()
    release_tasks = [register, register_rejected, wait, deploy, describe]
    monitor_tasks = [baselines(), set_up_monitoring()]
    for task in [*tasks, *clarify_tasks, *release_tasks, *monitor_tasks]:
        task.add_catch(on_error)

    deployed = steps.Succeed("ModelDeployed")
    monitored = monitoring_wanted(steps.Chain([*monitor_tasks, deployed]), deployed)
    describe.next(endpoint_ready(deployed=monitored, describe=describe, notify=notify))
    deployment = deployment_wanted(
        deploy=steps.Chain([deploy, describe]), registered=steps.Succeed("ModelRegistered")
    )
    wait.next(deployment)
    release = steps.Chain([register, approval_needed(wait=wait, approved=deployment)])
    clarify_chain = steps.Chain(
        [
            *clarify_tasks,
            bias_gate(
                approved=release,
                failed=Fail("BiasCheckFailed", error="BiasCheckFailed", cause_path="$.bias.cause"),
            ),
        ]
    )
    after_model = clarify_enabled(clarify_chain, release)
    on_model_error(model, made=after_model, notify=notify, name="ModelMadeAlready")
    model.add_catch(on_error)
    gate = champion_gate(
        challenger_wins=quality_gate(
            approved=overfit_gate(
                approved=steps.Chain([model, after_model]),
                overfits=Fail(
                    "ModelOverfits",
                    error="ModelOverfits",
                    cause_path="$.evaluation.overfitting.cause",
                ),
            ),
            below_threshold=Fail(
                "ModelQualityBelowThreshold",
                error="ModelQualityBelowThreshold",
                cause_path="$.evaluation.cause",
            ),
        ),
        kept=steps.Chain([register_rejected, steps.Succeed("KeptProductionModel")]),
    )
    scored = steps.Chain([*scoring, gate])
    training.next(scored)
    steps.Chain([tuning, best, scored])
    chain = steps.Chain(
        [prepare_run(), champion, collect, prepare, tuning_enabled(tune=tuning, train=training)]
    )
    graph = Graph(
        chain,
        comment=(
            "sfn-mlops training pipeline: find the production model, collect the data it never "
            "saw, preprocess, train and evaluate an XGBoost model "
            "beside the production model, keep the production model unless the new one beats "
            "it, gate on the evaluation metric, then create the model, check it for bias and "
            "explain it with SageMaker Clarify, gate on the bias metrics, register it in the "
            "Model Registry, deploy it to the real-time endpoint and set Model Monitor up on it."
        ),
    )
    return graph.to_dict()


def render(definition: dict[str, Any]) -> str:
    """The committed file's exact text: 2-space indent, sorted keys, trailing newline."""
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(
    argv: list[str] | None, asl_path: Path, build: Callable[[], dict[str, Any]], module: str
) -> int:
    """Write ``asl_path`` from ``build()``; with ``--check``, exit 1 when it is stale."""
    parser = argparse.ArgumentParser(description=f"Writes {asl_path.name}.")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if {asl_path.name} differs from the definition built here",
    )
    args = parser.parse_args(argv)

    expected = render(build())
    if args.check:
        current = asl_path.read_text(encoding="utf-8") if asl_path.exists() else None
        if current != expected:
            print(f"{asl_path} is out of date; run: python -m {module}", file=sys.stderr)
            return 1
        return 0
    asl_path.write_text(expected, encoding="utf-8")
    print(f"wrote {asl_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return generate(argv, ASL_PATH, build_definition, "state_machines.training_pipeline")


if __name__ == "__main__":
    sys.exit(main())
