"""`sfn-mlops models ...` and `sfn-mlops endpoints ...`: the registry and endpoints, by boto3.

Every call goes to the workspace's local service with plain boto3 (SageMaker and
sagemaker-runtime), exactly as a user's own script would; the local URL of an endpoint comes
from the service's status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK = 0
DECIDED = ("Approved", "Rejected")


class HostingError(Exception):
    """A problem the user can fix (printed without a traceback by the CLI)."""


# ------------------------------------------------------------------ models
def cmd_models(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    connect(args)
    sagemaker = boto3.client("sagemaker")
    if args.action == "list":
        print("\n".join(model_table(sagemaker, args.group)))
    elif args.action == "describe":
        package = _package(sagemaker, args.version)
        print(json.dumps(package, indent=2, default=str) if args.json else describe_model(package))
    else:
        print(decide(sagemaker, args.version, args.action, args.reason))
    return EXIT_OK


def _package(sagemaker: Any, reference: str) -> dict[str, Any]:
    """A version by ARN or as GROUP/VERSION (DescribeModelPackage takes both, as in AWS)."""
    try:
        return dict(sagemaker.describe_model_package(ModelPackageName=reference))
    except sagemaker.exceptions.ClientError as err:
        raise HostingError(
            f"no model version {reference!r} ({err.response['Error']['Message']}); name one as "
            "GROUP/VERSION or by its ARN, see `sfn-mlops models list`"
        ) from err


def decide(sagemaker: Any, reference: str, action: str, reason: str | None) -> str:
    """Approve or reject a version that waits for a decision; a decided one is left alone."""
    package = _package(sagemaker, reference)
    status = package.get("ModelApprovalStatus")
    if status in DECIDED:
        raise HostingError(
            f"{_label(package)} is already {status}; only a PendingManualApproval version "
            "can be approved or rejected here (UpdateModelPackage changes a decided one)"
        )
    wanted = "Approved" if action == "approve" else "Rejected"
    update: dict[str, Any] = {
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelApprovalStatus": wanted,
    }
    if reason:
        update["ApprovalDescription"] = reason
    sagemaker.update_model_package(**update)
    return f"{_label(package)}: {status} -> {wanted}"


def _label(package: dict[str, Any]) -> str:
    group = package.get("ModelPackageGroupName")
    version = package.get("ModelPackageVersion")
    return f"{group}/{version}" if group and version else str(package["ModelPackageArn"])


def model_table(sagemaker: Any, group: str | None) -> list[str]:
    groups = [group] if group else _all_groups(sagemaker)
    rows = []
    for name in groups:
        for summary in _paged(
            sagemaker.list_model_packages,
            "ModelPackageSummaryList",
            ModelPackageGroupName=name,
            SortBy="CreationTime",
            SortOrder="Descending",
        ):
            rows.append(
                [
                    f"{name}/{summary.get('ModelPackageVersion', '?')}",
                    summary.get("ModelApprovalStatus", ""),
                    summary.get("ModelPackageStatus", ""),
                    f"{summary['CreationTime']:%Y-%m-%d %H:%M:%S}",
                    summary.get("ModelPackageDescription", ""),
                ]
            )
    if not rows:
        return ["No model versions yet. `sfn-mlops run` registers one after the gates pass."]
    return _table(["VERSION", "APPROVAL", "STATUS", "CREATED", "DESCRIPTION"], rows)


def _all_groups(sagemaker: Any) -> list[str]:
    return [
        g["ModelPackageGroupName"]
        for g in _paged(sagemaker.list_model_package_groups, "ModelPackageGroupSummaryList")
    ]


def describe_model(package: dict[str, Any]) -> str:
    container = (package.get("InferenceSpecification") or {}).get("Containers", [{}])[0]
    lines = [
        f"version     {_label(package)}",
        f"arn         {package['ModelPackageArn']}",
        f"approval    {package.get('ModelApprovalStatus', '')}"
        + (f" ({package['ApprovalDescription']})" if package.get("ApprovalDescription") else ""),
        f"created     {package['CreationTime']:%Y-%m-%d %H:%M:%S}",
        f"image       {container.get('Image', '')}",
        f"model data  {container.get('ModelDataUrl', '')}",
    ]
    for section, reports in (package.get("ModelMetrics") or {}).items():
        for name, report in reports.items():
            lines.append(f"{section}.{name:<14} {report.get('S3Uri', '')}")
    for key, value in (package.get("CustomerMetadataProperties") or {}).items():
        lines.append(f"{key:<11} {value}")
    return "\n".join(lines)


# ------------------------------------------------------------------ endpoints
def cmd_endpoints(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    service = connect(args)
    sagemaker = boto3.client("sagemaker")
    ports = _ports(service)
    if args.action == "list":
        print("\n".join(endpoint_table(sagemaker, ports)))
        return EXIT_OK
    if args.action in AB_ACTIONS:
        return ab_test(boto3.client("lambda"), args)
    endpoint = _endpoint(sagemaker, args.name)
    if args.action == "describe":
        if args.json:
            print(json.dumps(endpoint, indent=2, default=str))
        else:
            print(describe_endpoint(endpoint, ports.get(args.name)))
        return EXIT_OK
    return invoke(boto3.client("sagemaker-runtime"), args)


#: CLI action -> the A/B test function's action (lambdas/ab_test/app.py)
AB_ACTIONS = {"ab-status": "status", "promote": "promote", "end": "end"}
#: The A/B test function: its name in the local service (the template's logical id); in AWS,
#: the stack's ABTestFunction.
AB_FUNCTION = "ABTestFunction"


def ab_test(lambda_client: Any, args: argparse.Namespace) -> int:
    """Ask the A/B test function (the same code the schedule runs) for the tally, or to decide."""
    request = {"action": AB_ACTIONS[args.action], "endpoint": args.name}
    try:
        answer = lambda_client.invoke(FunctionName=AB_FUNCTION, Payload=json.dumps(request))
    except lambda_client.exceptions.ResourceNotFoundException as err:
        raise HostingError(
            f"no {AB_FUNCTION} deployed in this workspace: run the pipeline first (sfn-mlops run)"
        ) from err
    result = json.loads(answer["Payload"].read())
    if answer.get("FunctionError"):
        raise HostingError(f"{args.name}: {result.get('errorType')}: {result.get('errorMessage')}")
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else ab_report(result))
    return EXIT_OK


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def ab_report(result: dict[str, Any]) -> str:
    """The running tally of one A/B test, as `endpoints ab-status` prints it."""
    lines = [
        f"A/B test on {result['endpoint']}: {result['phase']} (started {result['started']}; "
        f"{result['problem_type']}, {result.get('test') or 'no test yet'})"
    ]
    rows = [
        [
            v["variant"],
            v["model"],
            f"{v['weight']:.0%}" if v["weight"] <= 1 else _number(v["weight"]),
            str(v["labelled"]),
            _number(v["metric"]),
            str(v["invocations"]),
            str(v["errors_5xx"]),
            "-" if v["model_latency_us"] is None else f"{v['model_latency_us'] / 1000:.2f} ms",
        ]
        for v in result["variants"]
    ]
    if rows:
        header = ["VARIANT", "MODEL", "WEIGHT", "LABELLED", result["metric"].upper(),
                  "INVOCATIONS", "5XX", "LATENCY"]
        lines += _table(header, rows)
    if result.get("p_value") is not None:
        lines.append(
            f"p-value {_number(result['p_value'], 3)} now; a look decides below "
            f"{_number(result['alpha_per_look'], 3)} (alpha / {result['max_looks']} planned "
            f"looks); looks made: {result['looks_done']} of {result['max_looks']}"
        )
    verdict = result.get("verdict")
    if verdict:
        lines.append(f"Verdict ({verdict['by']}, {verdict['at']}): {verdict['action']}: "
                     f"{verdict['reason']}")
    lines.append(f"Next: {result['next']}")
    skipped = result.get("skipped") or {}
    if skipped:
        lines.append("Not counted: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    return "\n".join(lines)


def _ports(service: Any) -> dict[str, int]:
    from sfn_mlops.local import control

    status = control.admin(service, "status")
    return {name: int(port) for name, port in (status.get("endpoints") or {}).items()}


def _endpoint(sagemaker: Any, name: str) -> dict[str, Any]:
    try:
        return dict(sagemaker.describe_endpoint(EndpointName=name))
    except sagemaker.exceptions.ClientError as err:
        raise HostingError(
            f"no endpoint named {name!r} ({err.response['Error']['Message']}); "
            "see `sfn-mlops endpoints list`"
        ) from err


def endpoint_table(sagemaker: Any, ports: dict[str, int]) -> list[str]:
    rows = []
    for summary in _paged(sagemaker.list_endpoints, "Endpoints", SortBy="CreationTime"):
        endpoint = sagemaker.describe_endpoint(EndpointName=summary["EndpointName"])
        port = ports.get(endpoint["EndpointName"])
        rows.append(
            [
                endpoint["EndpointName"],
                endpoint["EndpointStatus"],
                endpoint["EndpointConfigName"],
                _weights(endpoint.get("ProductionVariants", [])),
                f"http://127.0.0.1:{port}" if port else "-",
                _deployment(endpoint) or "",
            ]
        )
    if not rows:
        return ["No endpoints yet. `sfn-mlops run` deploys one after registration."]
    return _table(["NAME", "STATUS", "CONFIG", "WEIGHTS", "URL", "DEPLOYMENT"], rows)


def _weights(variants: list[dict[str, Any]]) -> str:
    total = sum(v.get("CurrentWeight", 0.0) for v in variants) or 1.0
    return ", ".join(
        f"{v['VariantName']} {100 * v.get('CurrentWeight', 0.0) / total:.0f}%" for v in variants
    )


def _deployment(endpoint: dict[str, Any]) -> str | None:
    """The deployment in progress, as SageMaker's PendingDeploymentSummary says it."""
    pending = endpoint.get("PendingDeploymentSummary")
    if not pending:
        return None
    variants = pending.get("ProductionVariants", [])
    states = [s for v in variants for s in v.get("VariantStatus", [])]
    step = f": {states[-1]['Status']} ({states[-1]['StatusMessage']})" if states else ""
    return f"to {pending['EndpointConfigName']}{step}"


def describe_endpoint(endpoint: dict[str, Any], port: int | None) -> str:
    lines = [
        f"endpoint    {endpoint['EndpointName']}  {endpoint['EndpointStatus']}",
        f"config      {endpoint['EndpointConfigName']}",
        f"url         {f'http://127.0.0.1:{port}/invocations' if port else '- (not serving)'}",
    ]
    for variant in endpoint.get("ProductionVariants", []):
        lines.append(
            f"variant     {variant['VariantName']}: weight {variant.get('CurrentWeight', 0):g}, "
            f"{variant.get('CurrentInstanceCount', 0)} instance(s)"
        )
    capture = endpoint.get("DataCaptureConfig")
    if capture:
        lines.append(
            f"capture     {capture['CaptureStatus']} {capture['CurrentSamplingPercentage']}% -> "
            f"{capture['DestinationS3Uri']}"
        )
    deployment = _deployment(endpoint)
    if deployment:
        lines.append(f"deploying   {deployment}")
    if endpoint.get("FailureReason"):
        lines.append(f"failure     {endpoint['FailureReason']}")
    return "\n".join(lines)


def invoke(runtime: Any, args: argparse.Namespace) -> int:
    """InvokeEndpoint with the body given (or a file's, or stdin's); the answer on stdout."""
    body = _body(args)
    request: dict[str, Any] = {
        "EndpointName": args.name,
        "Body": body,
        "ContentType": args.content_type,
        "Accept": args.accept,
    }
    if args.target_variant:
        request["TargetVariant"] = args.target_variant
    try:
        answer = runtime.invoke_endpoint(**request)
    except runtime.exceptions.ClientError as err:
        error = err.response["Error"]
        raise HostingError(f"{error['Code']}: {error['Message']}") from err
    sys.stdout.write(answer["Body"].read().decode("utf-8", "replace"))
    print(f"(served by variant {answer.get('InvokedProductionVariant', '?')})", file=sys.stderr)
    return EXIT_OK


def _body(args: argparse.Namespace) -> bytes:
    if args.file == "-":
        return sys.stdin.buffer.read()
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise HostingError(f"--file {args.file}: no such file")
        return path.read_bytes()
    if args.body is None:
        raise HostingError("give the request body, e.g. 'M,0.455,0.365,...', or --file FILE")
    return str(args.body).encode()


# ------------------------------------------------------------------ shared
def _paged(call: Callable[..., Any], key: str, **params: Any) -> list[dict[str, Any]]:
    items, token = [], None
    while True:
        page = call(**params, **({"NextToken": token} if token else {}), MaxResults=100)
        items.extend(page.get(key, []))
        token = page.get("NextToken")
        if not token:
            return items


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def add_commands(
    commands: Any, common: argparse.ArgumentParser, connect: Callable[[argparse.Namespace], Any]
) -> None:
    """The `models` and `endpoints` subcommands; ``connect`` finds (or starts) the service."""
    models = commands.add_parser("models", help="the Model Registry: list, describe, approve")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="model versions, newest first")
    listing.add_argument("--group", help="one model package group (default: all)")
    described = actions.add_parser("describe", parents=[common], help="one model version")
    described.add_argument("version", help="GROUP/VERSION or the model package ARN")
    described.add_argument("--json", action="store_true", help="the DescribeModelPackage answer")
    for action in ("approve", "reject"):
        decided = actions.add_parser(
            action, parents=[common], help=f"{action} a version waiting for manual approval"
        )
        decided.add_argument("version", help="GROUP/VERSION or the model package ARN")
        decided.add_argument("--reason", help="recorded as the ApprovalDescription")
    models.set_defaults(handler=lambda args: cmd_models(args, connect))

    endpoints = commands.add_parser("endpoints", help="real-time endpoints: list, describe, invoke")
    actions = endpoints.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="status, weights, URL, deployment")
    described = actions.add_parser("describe", parents=[common], help="one endpoint")
    described.add_argument("name")
    described.add_argument("--json", action="store_true", help="the DescribeEndpoint answer")
    invoked = actions.add_parser("invoke", parents=[common], help="send one request")
    invoked.add_argument("name")
    invoked.add_argument("body", nargs="?", help="the request body (CSV rows, or JSON)")
    invoked.add_argument("--file", help="read the body from FILE ('-': stdin)")
    invoked.add_argument("--content-type", default="text/csv", help="default text/csv")
    invoked.add_argument("--accept", default="text/csv", help="default text/csv")
    invoked.add_argument("--target-variant", help="send it to this production variant")
    status = actions.add_parser(
        "ab-status", parents=[common], help="an A/B test's tally, p-value and next step"
    )
    status.add_argument("name")
    status.add_argument("--json", action="store_true", help="the A/B test function's answer")
    for action, text in (
        ("promote", "decide an A/B test by hand: the challenger wins (traffic shifts to it)"),
        ("end", "decide an A/B test by hand: retire the challenger, keep the champion"),
    ):
        decided = actions.add_parser(action, parents=[common], help=text)
        decided.add_argument("name")
    endpoints.set_defaults(handler=lambda args: cmd_endpoints(args, connect))
