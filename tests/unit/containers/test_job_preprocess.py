"""Preprocessing job: settings, validation messages, encoding, split and output layout."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import preprocess
import pytest
from job_data import abalone_like, run_preprocess
from jobkit import UserError

SPLIT_70_15_15 = preprocess.Split(train=0.7, validation=0.15, test=0.15, seed=42)
ENV = {
    "SFN_MLOPS_TARGET": "rings",
    "SFN_MLOPS_PROBLEM_TYPE": "regression",
    "SFN_MLOPS_CATEGORICAL_COLUMNS": '["sex"]',
    "SFN_MLOPS_SPLIT": '{"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}',
}


def toy() -> pd.DataFrame:
    """Ten rows: sex cycles M/F/I with the last one missing, length 0.1..1.0, rings 1..10."""
    return pd.DataFrame(
        {
            "sex": ["M", "F", "I", "M", "F", "I", "M", "F", "I", None],
            "length": [round(0.1 * (i + 1), 1) for i in range(10)],
            "rings": list(range(1, 11)),
        }
    )


def run(tmp_path: Path, data: pd.DataFrame, problem_type: str = "regression", **kw) -> dict:
    arguments = {"target": "rings", "categorical_columns": ["sex"], "split": SPLIT_70_15_15}
    arguments.update(kw)
    return run_preprocess(data, tmp_path, problem_type, **arguments)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# ---------------------------------------------------------------- happy path


def test_regression_split_layout_and_schema(tmp_path: Path) -> None:
    schema = run(tmp_path, toy())
    out = tmp_path / "out"
    # default_rng(42).permutation(10) = [5 6 0 7 3 2 4 | 9 | 1 8]; train 7, validation 1, test 2
    assert lines(out / "train/train.csv") == [
        "6,1,0.6",
        "7,2,0.7",
        "1,2,0.1",
        "8,0,0.8",
        "4,2,0.4",
        "3,1,0.3",
        "5,0,0.5",
    ]
    assert lines(out / "validation/validation.csv") == ["10,,1"]  # missing category: empty field
    assert lines(out / "test/test.csv") == ["2,0,0.2", "9,1,0.9"]
    expected = {
        "target": "rings",
        "problem_type": "regression",
        "features": ["sex", "length"],
        "categorical": {"sex": ["F", "I", "M"]},
        "labels": None,
        "rows": {"train": 7, "validation": 1, "test": 2},
        "data": {  # no manifest: every row is recent, the usual split
            "recent_rows": 10, "older_rows": 0, "older_kept": 0, "test_from": "all",
            "note": "all data is recent",
        },
    }
    assert schema == expected
    assert json.loads((out / "schema/schema.json").read_text()) == expected


def test_binary_labels_are_sorted_codes(tmp_path: Path) -> None:
    data = toy().assign(rings=["yes", "no"] * 5)
    schema = run(tmp_path, data, "binary")
    assert schema["labels"] == ["no", "yes"]
    assert [line.split(",")[0] for line in lines(tmp_path / "out/test/test.csv")] == ["0", "1"]


def test_multiclass_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    data = toy().assign(rings=[10, 9, 2] * 3 + [10])
    schema = run(tmp_path, data, "multiclass")
    assert schema["labels"] == [2, 9, 10]
    # test rows are 1 and 8: labels 9 and 2
    assert [line.split(",")[0] for line in lines(tmp_path / "out/test/test.csv")] == ["1", "0"]


def test_folder_of_csv_and_parquet_is_stacked(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = toy()
    data.iloc[:5].to_csv(folder / "a.csv", index=False)
    data.iloc[5:].to_parquet(folder / "b.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    schema = preprocess.preprocess(
        input_dir=str(folder),
        output_dir=str(tmp_path / "out"),
        target="rings",
        problem_type="regression",
        categorical_columns=["sex"],
        split=SPLIT_70_15_15,
    )
    assert schema["rows"] == {"train": 7, "validation": 1, "test": 2}
    assert lines(tmp_path / "out/test/test.csv") == ["2,0,0.2", "9,1,0.9"]


def test_numeric_strings_in_a_numeric_column_are_numbers(tmp_path: Path) -> None:
    data = toy().assign(length=[str(v) for v in toy()["length"]])
    run(tmp_path, data)
    assert lines(tmp_path / "out/test/test.csv") == ["2,0,0.2", "9,1,0.9"]


def test_main_reads_env_and_writes_outputs(tmp_path: Path) -> None:
    abalone_like(40)[["sex", "length", "rings"]].to_csv(tmp_path / "data.csv", index=False)
    argv = [
        "--input-dir",
        str(tmp_path / "data.csv"),
        "--output-dir",
        str(tmp_path / "out"),
        "--message-file",
        str(tmp_path / "message"),
    ]
    assert preprocess.main(argv, env=ENV) == 0
    schema = json.loads((tmp_path / "out/schema/schema.json").read_text())
    assert schema["rows"] == {"train": 28, "validation": 6, "test": 6}
    assert not (tmp_path / "message").exists()


def test_main_reads_the_delimiter_the_cli_detected(tmp_path: Path) -> None:
    frame = abalone_like(40)[["sex", "length", "rings"]]
    frame.to_csv(tmp_path / "data.csv", index=False, sep=";")
    argv = ["--input-dir", str(tmp_path / "data.csv"), "--output-dir", str(tmp_path / "out")]
    argv += ["--message-file", str(tmp_path / "message")]

    assert preprocess.main(argv, env={**ENV, "SFN_MLOPS_CSV_DELIMITER": ";"}) == 0

    schema = json.loads((tmp_path / "out/schema/schema.json").read_text())
    assert schema["features"] == ["sex", "length"]
    assert schema["categorical"]["sex"] == sorted(frame["sex"].dropna().unique().tolist())


def test_a_bad_delimiter_setting_is_named(tmp_path: Path) -> None:
    message = tmp_path / "message"
    env = {**ENV, "SFN_MLOPS_CSV_DELIMITER": ";;"}
    assert preprocess.main(["--message-file", str(message)], env=env) == 1
    assert message.read_text() == (
        "UserError: SFN_MLOPS_CSV_DELIMITER=';;' must be one character (csv_delimiter)"
    )


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("name", sorted(ENV))
def test_missing_env_names_the_variable(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in ENV.items() if k != name}
    message = tmp_path / "message"
    assert preprocess.main(["--message-file", str(message)], env=env) == 1
    assert message.read_text() == f"UserError: environment variable {name} is not set"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SFN_MLOPS_PROBLEM_TYPE", "classification", "SFN_MLOPS_PROBLEM_TYPE='classification'"),
        ("SFN_MLOPS_CATEGORICAL_COLUMNS", "sex", "SFN_MLOPS_CATEGORICAL_COLUMNS is not valid JSON"),
        ("SFN_MLOPS_CATEGORICAL_COLUMNS", '"sex"', "must be a JSON list of column names"),
        (
            "SFN_MLOPS_SPLIT",
            '{"train": 0.7, "validation": 0.2, "test": 0.2, "seed": 1}',
            "sum to 1",
        ),
        ("SFN_MLOPS_SPLIT", '{"train": 1, "validation": 0, "test": 0, "seed": 1}', "validation=0"),
        ("SFN_MLOPS_SPLIT", '{"train": 0.8, "valid": 0.1, "test": 0.1, "seed": 1}', "'valid'"),
        (
            "SFN_MLOPS_SPLIT",
            '{"train": 0.8, "validation": 0.1, "test": 0.1, "seed": "a"}',
            "seed='a'",
        ),
    ],
)
def test_invalid_env_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(UserError, match=name) as caught:
        preprocess.settings_from_env({**ENV, name: value})
    assert message in str(caught.value)


def test_settings_from_env() -> None:
    settings = preprocess.settings_from_env(ENV)
    assert settings == preprocess.Settings("rings", "regression", ("sex",), SPLIT_70_15_15)


# ---------------------------------------------------------------- input files


def test_no_input_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(UserError, match="no input files in .*/in"):
        preprocess.list_input_files(str(tmp_path / "in"))


def test_unknown_file_type_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"notes\.txt is not a \.csv, \.parquet or \.pq file"):
        preprocess.list_input_files(str(tmp_path))


def test_files_with_different_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("sex,length,rings\nM,0.1,1\n")
    (tmp_path / "b.csv").write_text("sex,rings\nF,2\n")
    with pytest.raises(UserError, match=r"b\.csv has columns \['sex', 'rings'\]"):
        preprocess.read_inputs(preprocess.list_input_files(str(tmp_path)), ["sex"])


def test_header_only_csv(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.csv has no data rows"):
        run(tmp_path, toy().iloc[:0])


# ---------------------------------------------------------------- data validation


@pytest.mark.parametrize(("target", "suggestion"), [("ring", "'rings'"), ("RINGS", "'rings'")])
def test_missing_target_suggests_a_close_column(
    tmp_path: Path, target: str, suggestion: str
) -> None:
    with pytest.raises(UserError) as caught:
        run(tmp_path, toy(), target=target)
    message = str(caught.value)
    assert f"target column '{target}'" in message
    assert "columns are ['sex', 'length', 'rings']" in message
    assert message.endswith(f"did you mean {suggestion}?")


def test_entirely_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"column\(s\) \['height'\] have no values at all; drop them"
    ):
        run(tmp_path, toy().assign(height=None))


def test_rows_with_missing_target_are_counted_and_located(tmp_path: Path) -> None:
    data = toy().astype({"rings": "float"})
    data.loc[[2, 5], "rings"] = None
    with pytest.raises(UserError) as caught:
        run(tmp_path, data)
    assert "'rings' is missing in 2 row(s), e.g. row 3 of data.csv, row 6 of data.csv" in str(
        caught.value
    )


def test_regression_target_must_be_numeric(tmp_path: Path) -> None:
    data = toy().assign(rings=["1", "2", "many", "4", "5", "lots", "7", "8", "9", "10"])
    with pytest.raises(
        UserError,
        match=r"'rings' must be numeric for regression; found values like \['many', 'lots'\]",
    ):
        run(tmp_path, data)


def test_binary_needs_two_values(tmp_path: Path) -> None:
    data = toy().assign(rings=["a", "b", "c"] * 3 + ["a"])
    with pytest.raises(
        UserError,
        match=r"exactly 2 distinct values; found 3: \['a', 'b', 'c'\]; use problem type multiclass",
    ):
        run(tmp_path, data, "binary")


def test_multiclass_needs_three_classes(tmp_path: Path) -> None:
    data = toy().assign(rings=["a", "b"] * 5)
    with pytest.raises(
        UserError, match=r"at least 3 classes; found 2: \['a', 'b'\]; use problem type binary"
    ):
        run(tmp_path, data, "multiclass")


def test_declared_categorical_must_exist(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"categorical column\(s\) \['color'\] in categorical_columns"
    ):
        run(tmp_path, toy(), categorical_columns=["sex", "color"])


def test_text_column_must_be_declared_categorical(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        run(tmp_path, toy(), categorical_columns=[])
    message = str(caught.value)
    assert "column 'sex' is not numeric (values like ['M', 'F', 'I'])" in message
    assert "add it to categorical_columns" in message


def test_too_few_rows_for_the_split(tmp_path: Path) -> None:
    with pytest.raises(
        UserError,
        match="6 row.* gives train=4, validation=0, test=2; each split needs at least 1 row",
    ):
        run(tmp_path, toy().iloc[:6])


def test_feature_names_xgboost_rejects(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"\['length\[mm\]'\] contain one of"):
        run(tmp_path, toy().rename(columns={"length": "length[mm]"}))
