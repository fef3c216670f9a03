"""The run's collected data in the preprocessing job: exactly the listed files, and a test
split drawn from recent rows while older rows fill at most their share of training."""

from __future__ import annotations

import json
from pathlib import Path

import collected
import numpy as np
import preprocess
import pytest
from jobkit import UserError

FRACTIONS = (0.7, 0.15, 0.15)
POLICY = {"older_share": 0.2, "min_recent_rows": 30}


def test_the_test_split_is_drawn_from_recent_rows_only() -> None:
    recent = np.array([False] * 1000 + [True] * 200)
    rows, summary = collected.choose_rows(recent, FRACTIONS, 7, POLICY)
    assert rows is not None
    assert recent[rows["test"]].all() and len(rows["test"]) == 30  # 15 % of 200
    training = np.concatenate([rows["train"], rows["validation"]])
    older = int((~recent[training]).sum())
    assert older == summary["older_kept"] == 42  # 0.2 / 0.8 x 170 recent training rows
    assert older / len(training) <= 0.2
    everything = np.concatenate(list(rows.values()))
    assert len(set(everything.tolist())) == len(everything)  # no row in two splits
    assert summary == {"recent_rows": 200, "older_rows": 1000, "older_kept": 42,
                       "test_from": "recent"}  # fmt: skip


def test_an_older_share_of_zero_trains_on_recent_rows_only() -> None:
    recent = np.array([False] * 50 + [True] * 100)
    rows, _ = collected.choose_rows(recent, FRACTIONS, 7, {**POLICY, "older_share": 0})
    assert rows is not None and all(recent[part].all() for part in rows.values())


@pytest.mark.parametrize(
    ("recent", "note"),
    [
        ([True] * 40, "all data is recent"),
        ([False] * 40 + [True] * 29, "29 recent rows (fewer than retraining.min_recent_rows, 30)"),
    ],
)
def test_without_enough_recent_rows_the_usual_split_of_all_rows(
    recent: list[bool], note: str
) -> None:
    rows, summary = collected.choose_rows(np.array(recent), FRACTIONS, 7, POLICY)
    assert rows is None and summary["test_from"] == "all"
    assert summary["note"].startswith(note)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_job_reads_the_listed_files_and_leaves_a_late_one_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = "\n".join(["sex,length,rings", *[f"M,0.{i % 9 + 1},{i % 7 + 3}" for i in range(60)]])
    new = "\n".join(["sex,length,rings", *[f"F,0.{i % 9 + 1},{i % 5 + 9}" for i in range(40)]])
    _write(tmp_path / "data/old.csv", old + "\n")
    _write(tmp_path / "data/late.csv", old + "\n")  # arrived after the listing
    _write(tmp_path / "collected/captured/recent.csv", new + "\n")
    manifest = {
        "objects": [
            {"uri": "s3://b/d/old.csv", "kind": "source", "path": "old.csv",
             "size": len(old) + 1, "recent": False},
            {"uri": "s3://b/r/captured/recent.csv", "kind": "captured",
             "path": "captured/recent.csv", "rows": 40, "recent": True},
        ],
        "window": {"since": "2026-12-04T10:30:00.000000Z", "rows": None, "why": "since x"},
        "policy": {"older_share": 0.25, "min_recent_rows": 30},
    }  # fmt: skip
    _write(tmp_path / "collected/manifest.json", json.dumps(manifest))
    schema = preprocess.preprocess(
        input_dir=str(tmp_path / "data"), collected_dir=str(tmp_path / "collected"),
        output_dir=str(tmp_path / "out"), target="rings", problem_type="regression",
        categorical_columns=["sex"], split=preprocess.Split(0.7, 0.15, 0.15, 7),
    )  # fmt: skip
    assert "left out late.csv: it arrived after this run's data was listed" in (
        capsys.readouterr().out
    )
    assert schema["data"]["recent_rows"] == 40 and schema["data"]["older_rows"] == 60
    assert schema["data"]["test_from"] == "recent"
    assert schema["data"]["since"] == "2026-12-04T10:30:00.000000Z"
    test_rows = (tmp_path / "out/test/test.csv").read_text().splitlines()
    assert len(test_rows) == 6 and all(row.split(",")[1] == "0" for row in test_rows)  # all F
    baseline = (tmp_path / "out/baseline/baseline.csv").read_text().splitlines()
    assert baseline[0] == '"sex","length"'  # pyarrow quotes text
    assert {row.split(",")[0] for row in baseline[1:]} == {'"F"'}  # the recent rows only


def test_a_file_that_changed_after_the_listing_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "data/old.csv", "sex,length,rings\nM,0.1,3\n")
    manifest = {"objects": [{"uri": "s3://b/d/old.csv", "kind": "source", "path": "old.csv",
                             "size": 5, "recent": True}]}  # fmt: skip
    with pytest.raises(UserError, match=r"s3://b/d/old.csv changed after this run listed it"):
        collected.listed_files(manifest, str(tmp_path / "data"), str(tmp_path / "collected"))
