"""Batch scoring's input: a user's file checked against the model's schema and reordered."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sfn_mlops.batch import BatchError, data_processing, prepare

FEATURES = ["sex", "length", "weight"]


def _csv(path: Path, frame: pd.DataFrame, sep: str = ",") -> Path:
    frame.to_csv(path, index=False, sep=sep)
    return path


def test_the_ids_then_the_features_in_the_models_order_without_a_header(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"weight": [0.5, 0.7], "id": ["a1", "b2"], "sex": ["M", "F"], "length": [0.4, 0.3],
         "rings": [9, 11]}
    )  # fmt: skip
    prepared = prepare(_csv(tmp_path / "d.csv", frame, ";"), FEATURES, ["id"], tmp_path / "o.csv")
    assert prepared.path.read_text().splitlines() == ["a1,M,0.4,0.5", "b2,F,0.3,0.7"]
    assert (prepared.rows, prepared.ignored) == (2, ["rings"])
    assert prepared.data_processing == {
        "InputFilter": "$[1:]",
        "JoinSource": "Input",
        "OutputFilter": "$[0,-1]",
    }


def test_parquet_and_a_folder_of_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for part in range(2):
        frame = pd.DataFrame({"sex": ["I"], "length": [0.1 * part], "weight": [1.0]})
        frame.to_parquet(folder / f"part-{part}.parquet")
    prepared = prepare(folder, FEATURES, [], tmp_path / "o.csv")
    assert prepared.rows == 2 and prepared.data_processing == {}
    assert prepared.path.read_text().splitlines()[1].startswith("I,0.1")


@pytest.mark.parametrize(
    ("columns", "ids", "message"),
    [
        (["sex", "length"], [], r"the model's features \['weight'\] are not columns"),
        (FEATURES, ["key"], r"--id-column \['key'\] is not a column"),
        (FEATURES, ["sex"], r"--id-column \['sex'\] is one of the model's features"),
    ],
)
def test_what_does_not_fit_is_named_before_any_job(
    tmp_path: Path, columns: list[str], ids: list[str], message: str
) -> None:
    frame = pd.DataFrame({name: ["1"] for name in columns})
    with pytest.raises(BatchError, match=message):
        prepare(_csv(tmp_path / "d.csv", frame), FEATURES, ids, tmp_path / "o.csv")


def test_several_id_columns_pass_through_together() -> None:
    assert data_processing(2) == {
        "InputFilter": "$[2:]",
        "JoinSource": "Input",
        "OutputFilter": "$[0:1,-1]",
    }


def test_a_value_with_a_comma_is_refused_by_name(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sex": ["M, F"], "length": [0.1], "weight": [1.0]})
    with pytest.raises(BatchError, match="a value holds a comma"):
        prepare(_csv(tmp_path / "d.csv", frame), FEATURES, [], tmp_path / "o.csv")
