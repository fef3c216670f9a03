"""Clarify's shadow endpoint (containers/clarify/shadow.py) against a recording SageMaker client:
its names, its calls in Clarify's order, the batches, the wait and the clean-up on failure."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "containers" / "clarify"))
import shadow  # noqa: E402

NOW = 1733570000.0
PREDICTOR = shadow.Predictor("run-1-model", "ml.m5.xlarge", 1, "text/csv", "text/csv")


def _hex(seed: int) -> str:
    return f"{random.Random(seed).randrange(16**4):04x}"


def test_names_are_clarifys() -> None:
    assert shadow.config_name("sm-clarify", NOW, random.Random(0)) == (
        f"sm-clarify-config-1733570000-{_hex(0)}"
    )
    assert shadow.endpoint_name("sm-clarify", "run-1-model", NOW, random.Random(0)) == (
        f"sm-clarify-run-1-model-1733570000-{_hex(0)}"
    )
    # a long model name is cut so that the whole is 63 characters, the most SageMaker takes
    model = "m" * 40 + "x" * 40
    name = shadow.endpoint_name("sm-clarify", model, NOW, random.Random(0))
    assert name == f"sm-clarify-{'m' * 36}-1733570000-{_hex(0)}"
    assert len(name) == 63
    # and so is a long prefix (a user's endpoint_name_prefix), to half of what is left
    name = shadow.endpoint_name("p" * 40, model, NOW, random.Random(0))
    assert name == f"{'p' * 23}-{'m' * 23}-1733570000-{_hex(0)}"


@pytest.mark.parametrize(
    ("most", "max_payload", "expected"),
    [
        (1000, 100, [["aa", "bb", "cc"]]),
        (2, 100, [["aa", "bb"], ["cc"]]),
        (1000, 6, [["aa", "bb"], ["cc"]]),  # each record is its line: 3 bytes
        (1000, 5, [["aa"], ["bb"], ["cc"]]),
    ],
)
def test_batches_keep_to_the_record_count_and_the_payload(
    most: int, max_payload: int, expected: list[list[str]]
) -> None:
    assert [list(b) for b in shadow.batches(["aa", "bb", "cc"], most, max_payload)] == expected


def test_a_record_over_the_payload_limit_alone_is_refused() -> None:
    with pytest.raises(shadow.ShadowEndpointError, match="record 2 alone is 6 bytes, over"):
        list(shadow.batches(["a", "bbbbb"], 10, 5))


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class _SageMaker:
    """Records each call; the endpoint is InService after ``creating`` DescribeEndpoint calls."""

    def __init__(self, creating: int = 1, fail: str = "", status: str = "InService") -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.creating = creating
        self.fail = fail
        self.status = status

    def _call(self, name: str, params: dict[str, Any]) -> None:
        self.calls.append((name, params))
        if name == self.fail:
            raise RuntimeError(f"{name} refused")

    def create_endpoint_config(self, **params: Any) -> None:
        self._call("CreateEndpointConfig", params)

    def create_endpoint(self, **params: Any) -> None:
        self._call("CreateEndpoint", params)

    def describe_endpoint(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeEndpoint", params)
        polls = sum(1 for name, _ in self.calls if name == "DescribeEndpoint")
        if polls <= self.creating:
            return {"EndpointStatus": "Creating"}
        return {"EndpointStatus": self.status, "FailureReason": "the model did not load"}

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        self._call("InvokeEndpoint", params)
        lines = params["Body"].decode().splitlines()
        return {"Body": _Body("".join(f"{len(line)}\n" for line in lines).encode())}

    def delete_endpoint_config(self, **params: Any) -> None:
        self._call("DeleteEndpointConfig", params)

    def delete_endpoint(self, **params: Any) -> None:
        self._call("DeleteEndpoint", params)


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


def _open(client: _SageMaker, clock: _Clock, **options: Any) -> Any:
    options.setdefault("job_name", "run-1-bias")
    return shadow.shadow_endpoint(
        client, client, PREDICTOR, log=lambda line: None, clock=clock, sleep=clock.sleep,
        rng=random.Random(0), **options,
    )  # fmt: skip


def _names(client: _SageMaker) -> list[str]:
    return [name for name, _ in client.calls]


def test_the_endpoint_is_made_asked_and_deleted_in_clarifys_order(clock: _Clock) -> None:
    client = _SageMaker(creating=2)
    with _open(client, clock) as endpoint:
        answers = shadow.Endpoint(client, endpoint.name, PREDICTOR, batch_records=2).predict(
            ["1,2", "3,4,5", "6"]
        )
    assert answers == [["3"], ["5"], ["1"]]
    assert _names(client) == [
        "CreateEndpointConfig", "CreateEndpoint", "DescribeEndpoint", "DescribeEndpoint",
        "DescribeEndpoint", "InvokeEndpoint", "InvokeEndpoint", "DeleteEndpointConfig",
        "DeleteEndpoint",
    ]  # fmt: skip
    config = f"sm-clarify-config-1733570000-{_hex(0)}"
    tags = [{"Key": "sm-clarify-processing-job", "Value": "run-1-bias"}]
    assert client.calls[0][1] == {
        "EndpointConfigName": config,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": "run-1-model", "InitialVariantWeight": 1,
             "InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge"},
        ],
        "Tags": tags,
    }  # fmt: skip
    name = client.calls[1][1]["EndpointName"]
    assert name.startswith("sm-clarify-run-1-model-1733570000-")
    assert client.calls[1][1] == {"EndpointName": name, "EndpointConfigName": config, "Tags": tags}
    invoke = client.calls[5][1]
    assert invoke == {"EndpointName": name, "Body": b"1,2\n3,4,5\n", "ContentType": "text/csv",
                      "Accept": "text/csv"}  # fmt: skip
    assert client.calls[-2][1] == {"EndpointConfigName": config}
    assert client.calls[-1][1] == {"EndpointName": name}


def test_a_failure_after_the_create_calls_still_deletes_both(clock: _Clock) -> None:
    client = _SageMaker()
    with pytest.raises(ValueError, match="analysis failed"), _open(client, clock):
        raise ValueError("analysis failed")
    assert _names(client)[-2:] == ["DeleteEndpointConfig", "DeleteEndpoint"]


def test_a_refused_create_endpoint_deletes_the_config_it_made(clock: _Clock) -> None:
    client = _SageMaker(fail="CreateEndpoint")
    with pytest.raises(RuntimeError, match="CreateEndpoint refused"), _open(client, clock):
        pytest.fail("the endpoint was not made")
    assert _names(client) == ["CreateEndpointConfig", "CreateEndpoint", "DeleteEndpointConfig"]


def test_a_refused_config_deletes_nothing(clock: _Clock) -> None:
    client = _SageMaker(fail="CreateEndpointConfig")
    with pytest.raises(RuntimeError, match="CreateEndpointConfig refused"), _open(client, clock):
        pytest.fail("nothing was made")
    assert _names(client) == ["CreateEndpointConfig"]


def test_a_deletion_that_fails_is_logged_and_the_other_still_made(
    clock: _Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    client = _SageMaker(fail="DeleteEndpointConfig")
    with _open(client, clock):
        pass
    assert _names(client)[-2:] == ["DeleteEndpointConfig", "DeleteEndpoint"]
    assert "Failed to delete endpoint config sm-clarify-config-" in capsys.readouterr().err


def test_a_failed_endpoint_is_the_models_error(clock: _Clock) -> None:
    client = _SageMaker(status="Failed")
    with pytest.raises(shadow.ShadowEndpointError) as failed, _open(client, clock):
        pytest.fail("the endpoint failed")
    assert failed.value.kind == "ClientError"
    assert str(failed.value).endswith(": Failed. Reason: the model did not load")
    assert _names(client)[-2:] == ["DeleteEndpointConfig", "DeleteEndpoint"]


def test_an_endpoint_that_never_comes_up_times_out_with_the_platforms_error(
    clock: _Clock,
) -> None:
    client = _SageMaker(creating=10**6)
    with pytest.raises(shadow.ShadowEndpointError) as slow, _open(client, clock, wait_seconds=5):
        pytest.fail("the endpoint never came up")
    assert slow.value.kind == "AlgorithmError"
    assert "is still Creating after 5 s (the shadow endpoint gets 5 s to come InService)" in str(
        slow.value
    )
    assert clock.now - NOW == pytest.approx(5.0)
    assert _names(client)[-2:] == ["DeleteEndpointConfig", "DeleteEndpoint"]


def test_an_answer_without_a_row_per_record_is_refused() -> None:
    class _Short(_SageMaker):
        def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
            return {"Body": io.BytesIO(b"1\n")}

    endpoint = shadow.Endpoint(_Short(), "sm-clarify-m-1-abcd", PREDICTOR)
    with pytest.raises(shadow.ShadowEndpointError, match="answered 1 record.s. to a request of 2"):
        endpoint.predict(["1", "2"])


def test_the_predictor_section_and_its_defaults() -> None:
    config = {"dataset_type": "text/csv", "predictor": {"model_name": "m", "instance_type": "t"}}
    assert shadow.Predictor.from_config(config) == shadow.Predictor(
        "m", "t", 1, "text/csv", "text/csv"
    )
    config["predictor"].update(accept_type="application/json", endpoint_name_prefix="mine")
    predictor = shadow.Predictor.from_config(config)
    assert (predictor.accept, predictor.prefix) == ("application/json", "mine")
