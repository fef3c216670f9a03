"""The data read as meant (sfn_mlops.columns): delimiter, column kinds, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfn_mlops.columns import DataProblems, detect_delimiter, profile, split_sizes
from sfn_mlops.config import load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def table(rows: int, delimiter: str = ",", label=lambda i: "yes" if i % 2 else "no") -> str:
    lines = [delimiter.join(["color", "size", "bought"])]
    lines += [delimiter.join([("red", "blue")[i % 2 == 0 and i % 3 == 0], str(i / 4), label(i)])
              for i in range(rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    assert detect_delimiter(write(tmp_path / "d.csv", table(30, delimiter))) == delimiter


def test_a_single_column_file_reads_as_comma(tmp_path: Path) -> None:
    assert detect_delimiter(write(tmp_path / "one.csv", "price\n1\n2\n")) == ","


def test_text_columns_are_categorical_and_numbers_numeric(tmp_path: Path) -> None:
    data = write(tmp_path / "shop.csv", table(200, ";"))
    config = load_config(None, [f"data={data}", "target=bought", "problem_type=binary"])

    shape = profile(config, [data])

    assert (shape.delimiter, shape.rows) == (";", 200)
    assert shape.kinds == {"color": "categorical", "size": "numeric"}
    assert shape.describe("bought") == (
        "200 rows; target bought; features color (cat), size (num); delimiter ';'"
    )


def test_categorical_columns_override_a_numeric_guess(tmp_path: Path) -> None:
    data = write(tmp_path / "shop.csv", table(200))
    config = load_config(
        None, [f"data={data}", "target=bought", "problem_type=binary", "categorical_columns=[size]"]
    )

    assert profile(config, [data]).categorical == ["color", "size"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = table(40).replace("\n3.0,", "\nten,").replace(",no\n", ",\n", 1)
    text = text.replace("red,0.25,yes", "red,eleven,yes")
    data = write(tmp_path / "bad.csv", text)
    config = load_config(
        None, [f"data={data}", "target=bought", "problem_type=binary", "numeric_columns=[size]"]
    )

    with pytest.raises(DataProblems) as raised:
        profile(config, [data])

    assert raised.value.problems == [
        "numeric_columns: column 'size' holds values that are not numbers: 'eleven'; fix them, "
        "or remove it from numeric_columns",
        "target: column 'bought' has 1 missing value(s) (bad.csv line 2); drop or fill those rows",
        "split.min_test_rows: the test split would hold 6 rows (train=28, validation=6, test=6), "
        "too few to trust its metrics; at least 20 are required. Add data, raise split.test, or "
        "lower split.min_test_rows",
    ]
    assert str(raised.value).startswith("the data does not fit the config:\n  - numeric_columns")


def test_files_of_a_folder_must_agree_on_columns(tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", table(100))
    second = write(tmp_path / "b.csv", "color,bought,weight\nred,yes,1\n")
    config = load_config(None, [f"data={tmp_path}", "target=bought", "problem_type=binary"])

    with pytest.raises(DataProblems) as raised:
        profile(config, [first, second])

    assert raised.value.problems == [
        f"{second} has other columns than a.csv: it lacks size; adds weight"
    ]


def test_a_regression_target_must_be_numeric_and_rows_must_fill_every_split(tmp_path: Path) -> None:
    data = write(tmp_path / "tiny.csv", table(4))
    config = load_config(None, [f"data={data}", "target=bought"])

    with pytest.raises(DataProblems) as raised:
        profile(config, [data])

    assert raised.value.problems == [
        "target: column 'bought' must be numeric for regression; it holds 'no', 'yes' "
        "(use problem_type binary or multiclass)",
        "split: 4 rows are too few for 0.7/0.15/0.15 (train=2, validation=0, test=2); each split "
        "needs at least 1 row",
    ]


def test_a_class_too_rare_for_every_split_is_named(tmp_path: Path) -> None:
    labels = lambda i: "maybe" if i == 0 else ("yes", "no")[i % 2]  # noqa: E731
    data = write(tmp_path / "rare.csv", table(300, label=labels))
    config = load_config(None, [f"data={data}", "target=bought", "problem_type=multiclass"])

    with pytest.raises(DataProblems) as raised:
        profile(config, [data])

    (problem,) = raised.value.problems
    assert problem.startswith("target: class 'maybe' has 1 row(s) and would be absent from the ")
    assert problem.count(" and ") == 2  # one row reaches one split: absent from the other two


def test_split_sizes_match_the_processing_jobs_rule() -> None:
    assert split_sizes(20, (0.7, 0.15, 0.15)) == {"train": 14, "validation": 3, "test": 3}
    assert split_sizes(4177, (0.7, 0.15, 0.15)) == {"train": 2923, "validation": 626, "test": 628}
