"""What a state machine's role needs to run a Task: the call its integration makes (through
`requests.needs`, as any caller's), and, for SageMaker's `.sync` jobs, what Step Functions does
besides: it describes and stops the job and keeps the managed EventBridge rule through which it
learns of the job's end (`sfn_mlops.policies.SAGEMAKER_JOBS`, shared with the offline checks,
from AWS's "IAM policies for Amazon SageMaker" in the Step Functions Developer Guide,
https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from sfn_mlops.local.iam.requests import Need, needs
from sfn_mlops.policies import SAGEMAKER_JOBS, SYNC_JOB_VERBS, SYNC_RULE_ACTIONS

_INTEGRATION = re.compile(
    r"^arn:[\w-]+:states:::(?P<service>[\w-]+):(?P<action>[^.]+)(?P<suffix>\..+)?$"
)
#: Optimized integrations' service -> the botocore service the call goes to.
_SERVICES = {"sagemaker": "sagemaker", "lambda": "lambda", "sns": "sns", "events": "events"}
_PATTERNS = ("", ".sync", ".waitForTaskToken")


class UnknownIntegration(ValueError):
    """A Task resource whose permissions are not described here."""


def _operation(action: str) -> str:
    return action[:1].upper() + action[1:]


def _sync_needs(
    action: str, parameters: Mapping[str, Any], region: str, account: str
) -> list[Need]:
    noun, kind, name_param, _ = SAGEMAKER_JOBS[action]
    name = str(parameters.get(name_param) or "").lower()
    job = f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}"
    why = f"sagemaker:{action}.sync"
    found = [Need(f"sagemaker:{verb}{noun}", job, why) for verb in SYNC_JOB_VERBS[1:]]
    # `.sync` tags the job it starts and reads its tags (the policy AWS gives for it lists
    # sagemaker:AddTags and sagemaker:ListTags).
    found += [Need(f"sagemaker:{verb}", job, why) for verb in ("AddTags", "ListTags")]
    return found + _rule_needs(action, region, account)


def _rule_needs(action: str, region: str, account: str) -> list[Need]:
    rule = SAGEMAKER_JOBS[action][3]
    rule_arn = f"arn:aws:events:{region}:{account}:rule/{rule}"
    why = f"sagemaker:{action}.sync learns of the job's end through the rule {rule}"
    return [Need(f"events:{verb}", rule_arn, why) for verb in SYNC_RULE_ACTIONS]


def _task_resources(states: Mapping[str, Any]) -> Iterator[str]:
    """The Resource of every Task state, in Parallel branches and Map iterators too."""
    for state in states.values():
        if not isinstance(state, Mapping):
            continue
        if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
            yield state["Resource"]
        for branch in state.get("Branches") or []:
            yield from _task_resources((branch or {}).get("States") or {})
        for key in ("ItemProcessor", "Iterator"):
            yield from _task_resources((state.get(key) or {}).get("States") or {})


def managed_rule_needs(definition: Mapping[str, Any], region: str, account: str) -> list[Need]:
    """What the role needs on the managed EventBridge rules of a definition's SageMaker `.sync`
    Tasks. Step Functions learns of a `.sync` job's end through such a rule ("Additional
    permissions for tasks using .sync", https://docs.aws.amazon.com/step-functions/latest/dg/
    service-integration-iam-templates.html), made as the state machine's role when the state
    machine is created or updated, and refuses the state machine when the role may not ("I'm
    unable to create a state machine ... Additional permissions are required for .sync task
    states", Step Functions Developer Guide, "Troubleshooting",
    https://docs.aws.amazon.com/step-functions/latest/dg/troubleshooting-general.html)."""
    found: list[Need] = []
    for resource in _task_resources(definition.get("States") or {}):
        match = _INTEGRATION.match(resource)
        if match is None or (match["service"], match["suffix"]) != ("sagemaker", ".sync"):
            continue
        if match["action"] in SAGEMAKER_JOBS:
            found += _rule_needs(match["action"], region, account)
    return list(dict.fromkeys(found))


def task_needs(
    resource: str, parameters: Mapping[str, Any], region: str, account: str
) -> list[Need]:
    """What the state machine's role needs for a Task with this `Resource` and its resolved
    `Parameters` (or `Arguments`). Raises `UnknownIntegration` for one not described here."""
    if resource.startswith("arn:aws:lambda:"):  # a Lambda function as the Task's resource
        return needs("lambda", "Invoke", {"FunctionName": resource}, region, account)
    match = _INTEGRATION.match(resource)
    if match is None:
        raise UnknownIntegration(resource)
    service, action, suffix = match["service"], match["action"], match["suffix"] or ""
    if service == "aws-sdk" and not suffix:
        sdk_service, _, sdk_action = action.partition(":")
        if not sdk_action:
            raise UnknownIntegration(resource)
        return needs(sdk_service, _operation(sdk_action), parameters, region, account)
    if service not in _SERVICES or suffix not in _PATTERNS:
        raise UnknownIntegration(resource)
    if suffix == ".sync" and not (service == "sagemaker" and action in SAGEMAKER_JOBS):
        raise UnknownIntegration(resource)
    found = needs(_SERVICES[service], _operation(action), parameters, region, account)
    if suffix == ".sync":
        found += _sync_needs(action, parameters, region, account)
    return found
