"""Small served models for the endpoint tests: a booster, its schema, and the inference code."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.packaging import build_bundle

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"
FEATURES = ("sex", "length", "weight")
SCHEMA = {
    "target": "rings",
    "problem_type": "regression",
    "features": list(FEATURES),
    "categorical": {"sex": ["F", "I", "M"]},
}
BUCKET = "models"


def train_booster(seed: int = 0, rounds: int = 5) -> Any:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    rows = np.column_stack([rng.integers(0, 3, 200), rng.random(200), rng.random(200)])
    label = rows[:, 0] + 10 * rows[:, 1] + rng.normal(0, 0.1, 200)
    return xgb.train({"max_depth": 3, "nthread": 1, "seed": seed}, xgb.DMatrix(rows, label), rounds)


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def put_model(cloud: LocalCloud, name: str, booster: Any) -> str:
    """The booster as a SageMaker model.tar.gz in the local S3; returns its URI."""
    cloud.objects.create_bucket(BUCKET)
    archive = _tar(
        {
            "xgboost-model": bytes(booster.save_raw("ubj")),
            "schema.json": json.dumps(SCHEMA).encode(),
        }
    )
    cloud.objects.put_bytes(BUCKET, f"{name}/model.tar.gz", archive)
    return f"s3://{BUCKET}/{name}/model.tar.gz"


def put_inference_code(cloud: LocalCloud) -> dict[str, str]:
    """The project's inference code as sourcedir.tar.gz; returns the model's script-mode env."""
    cloud.objects.create_bucket(BUCKET)
    bundle = build_bundle(CONTAINERS)
    cloud.objects.put_bytes(
        BUCKET, "code/sourcedir.tar.gz", bundle.files["inference/sourcedir.tar.gz"]
    )
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code/sourcedir.tar.gz",
    }
