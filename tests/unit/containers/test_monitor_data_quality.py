"""The local Model Monitor analyzer's data-quality analysis (containers/monitor/data_quality.py
through run.py): Model Monitor's file formats, the drift distance against an independent
oracle, the checks, captures with bad lines, and the window with no data."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MONITOR = Path(__file__).resolve().parents[3] / "containers" / "monitor"
if str(MONITOR) not in sys.path:
    sys.path.insert(0, str(MONITOR))

import data_quality as dq  # noqa: E402
import run as monitor_run  # noqa: E402

NOW = datetime(2026, 12, 3, 11, 30, tzinfo=UTC)
START, END = "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z"
IN_WINDOW = "2026-12-03T10:15:00Z"
CAPTURE = json.dumps({"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput"]}})


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, Any]:
    return {
        "age": rng.integers(18, 80, n),
        "income": rng.normal(50.0 + shift, 10.0, n),
        "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
    }


def write_csv(path: Path, columns: dict[str, Any], header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    lines = [",".join(names)] if header else []
    rows = zip(*(columns[n] for n in names), strict=True)
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_job(tmp: Path, name: str, **env: str) -> tuple[int, Path, dict[str, str]]:
    out = tmp / name
    full = {
        "output_path": str(out),
        "SFN_MLOPS_MESSAGE_FILE": str(out / "message"),
        "SFN_MLOPS_METRICS_DIR": str(out / "metrics"),
        **env,
    }
    return monitor_run.main(full), out, full


def read(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("baseline")
    data = write_csv(tmp / "data" / "train.csv", frame(np.random.default_rng(0), 5000))
    code, out, _ = run_job(tmp, "out", dataset_source=str(data.parent))
    assert code == 0, (out / "message").read_text()
    return out


def monitor(tmp: Path, baseline: Path, source: Path, **env: str) -> tuple[int, Path]:
    code, out, _ = run_job(
        tmp,
        "monitor",
        dataset_source=str(source),
        baseline_statistics=str(baseline / "statistics.json"),
        baseline_constraints=str(baseline / "constraints.json"),
        publish_cloudwatch_metrics="Enabled",
        sagemaker_endpoint_name="ep",
        sagemaker_monitoring_schedule_name="sched",
        **env,
    )
    return code, out


def checks(out: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for v in read(out / "constraint_violations.json")["violations"]:
        assert set(v) == {"feature_name", "constraint_check_type", "description"}
        found.setdefault(v["constraint_check_type"], []).append(v["feature_name"])
    return found


def capture_line(rows: list[str], when: str = IN_WINDOW, encoding: str = "CSV") -> str:
    data = "\n".join(rows)
    if encoding == "BASE64":
        data = base64.b64encode(data.encode()).decode()
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                              "data": data, "encoding": encoding},
            "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                               "data": "\n".join("0.5" for _ in rows), "encoding": "CSV"},
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": when},
        "eventVersion": "0",
    }  # fmt: skip
    return json.dumps(record)


def write_capture(tmp: Path, lines: list[str]) -> Path:
    folder = tmp / "capture" / "ep" / "AllTraffic" / "2026" / "12" / "03" / "10"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "capture.jsonl").write_text("\n".join(lines) + "\n")
    return tmp / "capture"


def rows_of(columns: dict[str, Any]) -> list[str]:
    return [",".join(str(v) for v in row) for row in zip(*columns.values(), strict=True)]


# ---------------------------------------------------------------- formats


def test_baseline_writes_model_monitor_statistics_and_constraints(baseline: Path) -> None:
    stats = read(baseline / "statistics.json")
    assert stats["version"] == 0.0 and stats["dataset"]["item_count"] == 5000
    by_name = {f["name"]: f for f in stats["features"]}
    assert [f["name"] for f in stats["features"]] == ["age", "income", "color"]
    assert by_name["age"]["inferred_type"] == "Integral"
    assert by_name["income"]["inferred_type"] == "Fractional"
    num = by_name["income"]["numerical_statistics"]
    assert set(num) == {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
    assert num["common"] == {"num_present": 5000, "num_missing": 0}
    kll = num["distribution"]["kll"]
    assert len(kll["buckets"]) == 10
    assert set(kll["buckets"][0]) == {"lower_bound", "upper_bound", "count"}
    assert sum(b["count"] for b in kll["buckets"]) == pytest.approx(5000)
    counts, _ = np.histogram(frame(np.random.default_rng(0), 5000)["income"], bins=10)
    assert [b["count"] for b in kll["buckets"]] == pytest.approx(counts, abs=0.005 * 5000)
    assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048.0}
    weight = sum(len(level) * 2**i for i, level in enumerate(kll["sketch"]["data"]))
    assert weight == 5000
    text = by_name["color"]
    assert text["inferred_type"] == "String"
    s = text["string_statistics"]
    assert s["distinct_count"] == 3.0
    assert {b["value"] for b in s["distribution"]["categorical"]["buckets"]} == {
        "red", "green", "blue"}  # fmt: skip

    constraints = read(baseline / "constraints.json")
    assert constraints["version"] == 0.0
    features = {f["name"]: f for f in constraints["features"]}
    assert features["age"]["num_constraints"] == {"is_non_negative": True}
    assert features["age"]["completeness"] == 1.0
    assert sorted(features["color"]["string_constraints"]["domains"]) == ["blue", "green", "red"]
    dist = constraints["monitoring_config"]["distribution_constraints"]
    assert dist == {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    }
    assert (baseline / "message").read_text().startswith("Completed")


def test_statistics_match_numpy(baseline: Path) -> None:
    values = frame(np.random.default_rng(0), 5000)["income"]
    stats = {f["name"]: f for f in read(baseline / "statistics.json")["features"]}
    num = stats["income"]["numerical_statistics"]
    assert num["mean"] == pytest.approx(values.mean())
    assert num["std_dev"] == pytest.approx(values.std())
    assert (num["min"], num["max"]) == pytest.approx((values.min(), values.max()))


# ---------------------------------------------------------------- drift


def test_drift_distance_equals_the_cdf_distance_of_the_raw_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 200_000), rng.normal(0.3, 1.2, 150_000)
    base = dq.profile("x", _column(a))
    now = dq.profile("x", _column(b), "Fractional")
    got, sizes = dq.distance(base.statistics, now)  # type: ignore[misc]
    points = np.concatenate([a, b])
    exact = np.max(
        np.abs(
            np.searchsorted(np.sort(a), points, side="right") / len(a)
            - np.searchsorted(np.sort(b), points, side="right") / len(b)
        )
    )
    error = 2 * base.sketch.normalized_rank_error(False)
    assert abs(got - exact) <= error and sizes == (200_000, 150_000)


def test_small_samples_are_exact() -> None:
    a, b = np.arange(100.0), np.arange(30.0, 130.0)
    got, _ = dq.distance(dq.profile("x", _column(a)).statistics, dq.profile("x", _column(b)))  # type: ignore[misc]
    assert got == pytest.approx(0.3)


def _column(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.chunked_array([pa.array(values)])


def test_same_data_has_no_violations_and_metrics(tmp_path: Path, baseline: Path) -> None:
    source = write_csv(tmp_path / "data" / "now.csv", frame(np.random.default_rng(0), 5000))
    code, out = monitor(tmp_path, baseline, source.parent)
    assert code == 0 and checks(out) == {}
    lines = [json.loads(x) for x in (out / "metrics" / "data_quality_metrics.jsonl").open()]
    names = {line["MetricName"] for line in lines}
    assert {"feature_baseline_drift_income", "feature_non_null_color", "feature_data_age"} <= names
    drift = {x["MetricName"]: x["Value"] for x in lines if "Value" in x}
    # same values, two randomized KLL compactions: within the sketch's rank error (k 2048)
    assert drift["feature_baseline_drift_income"] < 0.005
    data = next(x for x in lines if x["MetricName"] == "feature_data_age")
    assert set(data["StatisticValues"]) == {"SampleCount", "Sum", "Minimum", "Maximum"}
    for line in lines:
        assert line["Namespace"] == "aws/sagemaker/Endpoints/data-metrics"
        assert line["Dimensions"] == [
            {"Name": "Endpoint", "Value": "ep"},
            {"Name": "MonitoringSchedule", "Value": "sched"},
        ]
        assert ("Value" in line) != ("StatisticValues" in line)
    assert (out / "message").read_text() == dq.COMPLETED


def test_shifted_data_drifts(tmp_path: Path, baseline: Path) -> None:
    source = write_csv(tmp_path / "d" / "x.csv", frame(np.random.default_rng(1), 3000, shift=8.0))
    code, out = monitor(tmp_path, baseline, source.parent)
    assert code == 0 and checks(out) == {"baseline_drift_check": ["income"]}
    assert "CompletedWithViolations" in (out / "message").read_text()


def test_robust_ignores_a_small_windows_noise_that_simple_flags(tmp_path: Path) -> None:
    base = dq.profile("x", _column(np.random.default_rng(2).normal(0, 1, 5000)))
    now = dq.profile("x", _column(np.random.default_rng(3).normal(0, 1, 20)), "Fractional")
    baseline = {"features": [base.statistics]}

    def flagged(method: str) -> list[str]:
        config = {"distribution_constraints": {"comparison_method": method}}
        found, drift = dq.violations(20, {"x": now}, baseline, {"monitoring_config": config})
        assert drift["x"] > 0.1  # 20 values: a noisy CDF
        return [v["constraint_check_type"] for v in found]

    assert flagged("Simple") == ["baseline_drift_check"] and flagged("Robust") == []


# ---------------------------------------------------------------- checks


def test_categorical_new_values_type_and_completeness(tmp_path: Path, baseline: Path) -> None:
    rows = ["age,income,color", "30,50.0,red", "40,51.0,purple", "abc,49.0,red", "50,,blue"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.csv").write_text("\n".join(rows) + "\n")
    code, out = monitor(tmp_path, baseline, tmp_path / "d")
    found = checks(out)
    assert code == 0
    assert found["categorical_values_check"] == ["color"]
    assert found["data_type_check"] == ["age"]
    assert found["completeness_check"] == ["income"]


def test_capture_with_missing_column_and_bad_lines(tmp_path: Path, baseline: Path) -> None:
    data = frame(np.random.default_rng(0), 600)
    inputs = rows_of({"age": data["age"], "income": data["income"]})  # no color
    lines = [capture_line(inputs[i : i + 100]) for i in range(0, 500, 100)]
    lines += [capture_line(inputs[500:], encoding="BASE64")]
    lines += [
        "{not json",
        '{"captureData": 3}',
        capture_line(inputs[:5], when="2026-12-03T12:00:00Z"),
    ]
    source = write_capture(tmp_path, lines)
    code, out = monitor(tmp_path, baseline, source, dataset_format=CAPTURE,
                        start_time=START, end_time=END)  # fmt: skip
    assert code == 0
    assert checks(out) == {"missing_column_check": ["color"]}
    counts = read(out / "monitoring_report.json")["counts"]
    assert counts["malformed_capture_lines"] == 2
    assert counts["records_outside_window"] == 1
    assert counts["rows"] == 600 and counts["records"] == 6
    names = {json.loads(x)["MetricName"] for x in (out / "metrics").glob("*").__next__().open()}
    assert "feature_baseline_drift_color" not in names and "feature_non_null_color" not in names
    assert read(out / "statistics.json")["dataset"]["item_count"] == 600


def test_capture_with_output_first_and_extra_column(tmp_path: Path, baseline: Path) -> None:
    indexes = ["endpointInput", "endpointOutput"]
    both = json.dumps({"sagemakerCaptureJson": {"captureIndexNames": indexes}})
    data = frame(np.random.default_rng(0), 50)
    source = write_capture(tmp_path, [capture_line(rows_of(data))])
    code, out = monitor(tmp_path, baseline, source, dataset_format=both)
    found = checks(out)
    assert code == 0 and found["extra_column_check"] == ["_c3"]
    # the output column (0.5) took the first baseline name: age is no longer integral
    assert found["data_type_check"] == ["age"]


def test_no_data_in_the_window_fails_as_model_monitor_does(tmp_path: Path, baseline: Path) -> None:
    source = write_capture(tmp_path, [capture_line(["30,50.0,red"], when="2026-12-03T09:00:00Z"),
                                      "garbage"])  # fmt: skip
    code, out = monitor(tmp_path, baseline, source, dataset_format=CAPTURE,
                        start_time=START, end_time=END)  # fmt: skip
    assert code == 1
    assert (out / "message").read_text() == "Job inputs had no data"
    assert not (out / "metrics").exists() or not any((out / "metrics").iterdir())
    assert not (out / "statistics.json").exists()
    assert read(out / "monitoring_report.json")["counts"]["malformed_capture_lines"] == 1


def test_json_bodies_are_rows() -> None:
    assert dq.json_rows({"instances": [[1, 2], [3, 4]]}, dq.INPUT) == [[1, 2], [3, 4]]
    assert dq.json_rows([1, 2, 3], dq.INPUT) == [[1, 2, 3]]
    assert dq.json_rows({"predictions": [{"score": 0.1}, {"score": 0.2}]}, dq.OUTPUT) == [
        [0.1], [0.2]]  # fmt: skip
    assert dq.json_rows([0.1, 0.2], dq.OUTPUT) == [[0.1], [0.2]]


def test_bad_settings_are_client_errors(tmp_path: Path, baseline: Path) -> None:
    code, out, _ = run_job(tmp_path, "a", dataset_source=str(tmp_path), dataset_format="{bad")
    assert code == 1 and (out / "message").read_text().startswith("ClientError: dataset_format")
    code, out, _ = run_job(tmp_path, "b", dataset_source=str(tmp_path), analysis_type="BIAS")
    assert code == 1 and "analysis_type" in (out / "message").read_text()


def test_model_quality_is_dispatched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    class Fake:
        @staticmethod
        def main(env: Any, *, message_file: str, metrics_dir: str) -> int:
            calls.append({"message_file": message_file, "metrics_dir": metrics_dir})
            return 0

    monkeypatch.setitem(sys.modules, "model_quality", Fake)
    code, out, _ = run_job(tmp_path, "mq", analysis_type="MODEL_QUALITY")
    assert code == 0
    assert calls == [{"message_file": str(out / "message"), "metrics_dir": str(out / "metrics")}]


@pytest.mark.parametrize("n", [0, 1, 2, 5000, 300_000])
def test_sketch_levels_read_from_the_serialized_form_equal_the_iterated(n: int) -> None:
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch(dq.KLL_K)
    if n:
        sketch.update(np.random.default_rng(n).normal(size=n))
    iterated: list[list[float]] = []
    for item, weight in sketch:
        level = int(weight).bit_length() - 1
        iterated += [[] for _ in range(level + 1 - len(iterated))]
        iterated[level].append(item)
    got = dq.sketch_levels(sketch)
    while got and not got[-1]:
        got.pop()
    assert got == iterated
