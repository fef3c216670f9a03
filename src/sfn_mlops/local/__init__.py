"""The local cloud: AWS's APIs answered on one machine, reached through plain boto3."""

from __future__ import annotations

import sys
import types

_BATCH_INTEGRATION = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch"
)


class _BatchNotEmulated:
    def __init__(self) -> None:
        raise ValueError("arn:aws:states:::batch:* tasks are not emulated by the local cloud")


def _stub_batch_integration() -> None:
    """Stand in for the engine's AWS Batch integration before the engine is imported.

    That one module imports all of moto's Batch and EC2 models (1.5 s of every cold start,
    measured) and local mode does not emulate Batch. Only this module of the engine is
    replaced; see engine.py and tests/functional/test_engine_contract.py.
    """
    if _BATCH_INTEGRATION not in sys.modules:
        stub = types.ModuleType(_BATCH_INTEGRATION)
        stub.StateTaskServiceBatch = _BatchNotEmulated  # type: ignore[attr-defined]
        sys.modules[_BATCH_INTEGRATION] = stub


_stub_batch_integration()
