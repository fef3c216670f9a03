"""Small abalone-shaped data and a preprocess helper shared by the job script tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import preprocess

SPLIT = preprocess.Split(train=0.6, validation=0.2, test=0.2, seed=7)
TARGETS = {"regression": "rings", "binary": "old", "multiclass": "age"}


def abalone_like(rows: int, seed: int = 0) -> pd.DataFrame:
    """A small abalone-shaped frame with a regression, a binary and a multiclass target."""
    rng = np.random.default_rng(seed)
    length = rng.uniform(0.1, 0.8, rows).round(3)
    sex = rng.choice(["M", "F", "I"], rows)
    weight = (length**3 * 4 + rng.normal(0, 0.05, rows)).round(4)
    rings = (length * 20 + (sex == "I") * -2 + rng.normal(0, 1.5, rows)).round().astype(int) + 3
    return pd.DataFrame(
        {
            "sex": sex,
            "length": length,
            "whole_weight": weight,
            "rings": rings,
            "old": np.where(rings > 11, "yes", "no"),
            "age": np.select([rings < 9, rings < 13], ["young", "adult"], "senior"),
        }
    )


def frame_for(problem_type: str, rows: int = 300) -> pd.DataFrame:
    """The frame with only the target of that problem type."""
    frame = abalone_like(rows)
    keep = [c for c in frame.columns if c not in TARGETS.values() or c == TARGETS[problem_type]]
    return frame[keep]


def run_preprocess(data: pd.DataFrame, folder: Path, problem_type: str, **overrides: Any) -> dict:
    """Write `data` as CSV and preprocess it into folder/out; return the schema."""
    folder.mkdir(parents=True, exist_ok=True)
    data.to_csv(folder / "data.csv", index=False)
    arguments = {
        "input_dir": str(folder / "data.csv"),
        "output_dir": str(folder / "out"),
        "target": TARGETS[problem_type],
        "problem_type": problem_type,
        "categorical_columns": ["sex"],
        "split": SPLIT,
    }
    arguments.update(overrides)
    return preprocess.preprocess(**arguments)
