"""The run's collected data (lambdas/collect_data): which files to read, which rows are recent,
and a split whose test rows are recent ones.

The manifest in the ``collected`` input lists the configured data's objects (relative paths
under the data input, sizes) and the labelled captured rows written beside it, each marked
recent or older than the production model. The job reads exactly those files: one that arrived
after the listing is left for the next run, one that changed size since is an error. With
recent rows to judge on, the test split is drawn from them alone and the training rows keep at
most ``older_share`` of older data; otherwise (a first run, no new data, too few recent rows)
the split is the usual seeded shuffle of every row.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from jobkit import UserError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DataFile:
    path: str
    recent: bool


def read_manifest(collected_dir: str | None) -> dict[str, Any] | None:
    """The run's manifest; None when the job runs without one (a definition from before)."""
    if not collected_dir:
        return None
    path = os.path.join(collected_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as stream:
        manifest: dict[str, Any] = json.load(stream)
    return manifest


def listed_files(manifest: dict[str, Any], input_dir: str, collected_dir: str) -> list[DataFile]:
    """The manifest's files at their local paths, checked against what was listed."""
    files = []
    for item in manifest["objects"]:
        if item["kind"] != "source":
            path = os.path.join(collected_dir, item["path"])
        elif os.path.isfile(input_dir):  # the data URI names one file
            path = input_dir
        else:
            path = os.path.join(input_dir, item["path"])
        if not os.path.isfile(path):
            raise UserError(f"{item['uri']} was listed for this run but is not in the job's input")
        if "size" in item and os.path.getsize(path) != item["size"]:
            raise UserError(
                f"{item['uri']} changed after this run listed it ({item['size']} bytes then, "
                f"{os.path.getsize(path)} now); run again to train on it as it is"
            )
        files.append(DataFile(path, bool(item["recent"])))
    _report_unlisted(manifest, input_dir)
    return files


def _report_unlisted(manifest: dict[str, Any], input_dir: str) -> None:
    if not os.path.isdir(input_dir):
        return
    listed = {item["path"] for item in manifest["objects"] if item["kind"] == "source"}
    for name in sorted(os.listdir(input_dir)):
        if not name.startswith((".", "_")) and name not in listed:
            print(f"left out {name}: it arrived after this run's data was listed", flush=True)


def choose_rows(
    recent: np.ndarray, fractions: tuple[float, float, float], seed: int,
    policy: dict[str, Any],
) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:  # fmt: skip
    """The rows of each split when recent rows decide the test; None: the usual split of all
    rows. The second value says what the run trained and is judged on."""
    count, older = int(recent.sum()), int((~recent).sum())
    summary: dict[str, Any] = {"recent_rows": count, "older_rows": older}
    if older == 0:
        return None, {**summary, "older_kept": 0, "test_from": "all", "note": "all data is recent"}
    minimum = int(policy.get("min_recent_rows", 30))
    if count < minimum:
        note = (
            f"{count} recent rows (fewer than retraining.min_recent_rows, {minimum}): "
            "trained and judged on all the data"
        )
        return None, {**summary, "older_kept": older, "test_from": "all", "note": note}
    rng = np.random.default_rng(seed)
    _, validation, test = fractions
    ordered = rng.permutation(np.flatnonzero(recent))
    n_test = max(1, round(count * test))
    rest = ordered[n_test:]
    share = float(policy.get("older_share", 0.2))
    kept = min(older, math.floor(share / (1 - share) * len(rest)))
    pool = rng.permutation(np.concatenate([rest, rng.permutation(np.flatnonzero(~recent))[:kept]]))
    n_validation = max(1, round(len(pool) * validation / (1 - test)))
    if len(pool) - n_validation < 1:
        raise UserError(f"{count} recent rows leave no training rows; lower split.test")
    rows = {
        "train": pool[n_validation:],
        "validation": pool[:n_validation],
        "test": ordered[:n_test],
    }
    return rows, {**summary, "older_kept": kept, "test_from": "recent"}
