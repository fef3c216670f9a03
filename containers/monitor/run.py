"""The local runtime of SageMaker's Model Monitor analyzer image (``sagemaker-model-monitor-
analyzer``): a processing job with no arguments whose settings are environment variables, as
Model Monitor sets them (the BYOC "Container Contract Inputs").

``analysis_type`` ``MODEL_QUALITY`` runs ``model_quality.main``; nothing or ``DATA_QUALITY``
runs ``data_quality.main``; anything else is a ClientError. Each is imported when chosen, and
is called as ``main(env, message_file=..., metrics_dir=...)`` and returns the exit code. The
local service passes the job's re-rooted ``/opt/ml/output/message`` and
``/opt/ml/output/metrics/cloudwatch`` as ``SFN_MLOPS_MESSAGE_FILE`` and
``SFN_MLOPS_METRICS_DIR`` (see ``common``). A crash is the algorithm's fault: its message
(``AlgorithmError: ...``) goes to the message file and the exit code is 2.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import message_file, metrics_dir, write_message  # noqa: E402

ANALYSES = {"DATA_QUALITY": "data_quality", "MODEL_QUALITY": "model_quality"}


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    message, metrics = message_file(env), metrics_dir(env)
    kind = (env.get("analysis_type") or "DATA_QUALITY").strip().upper()
    module_name = ANALYSES.get(kind)
    if module_name is None:
        text = f"ClientError: analysis_type {kind!r} is not one of {', '.join(ANALYSES)}"
        return _fail(message, text, 1)
    try:
        module = __import__(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        text = (
            f"AlgorithmError: analysis_type {kind} needs containers/monitor/{module_name}.py, "
            "which this installation does not have"
        )
        return _fail(message, text, 2)
    try:
        return int(module.main(env, message_file=message, metrics_dir=metrics))
    except Exception as err:  # noqa: BLE001 - the job's last word: whose fault, and why
        traceback.print_exc()
        return _fail(message, f"AlgorithmError: {type(err).__name__}: {err}", 2)


def _fail(message: str, text: str, code: int) -> int:
    print(text, file=sys.stderr, flush=True)
    write_message(message, text)
    return code


if __name__ == "__main__":
    sys.exit(main())
