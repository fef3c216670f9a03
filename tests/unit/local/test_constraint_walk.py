"""Every constraint of every shape the local service serves is checked, none skipped.

Walks the input shapes of every operation of every served service (botocore's models) and, for
each constraint a shape carries, sends the checker a value that breaks it and expects a problem
naming it. Patterns must compile with Java's meaning (sfn_mlops.local.java_regex).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape

from sfn_mlops.local import validation
from sfn_mlops.local.java_regex import compile_java, translate
from sfn_mlops.local.server import SIGNING_NAMES, service_model

SERVED = sorted({model for model, _ in SIGNING_NAMES.values()} | {"sagemaker-runtime"})
_TEXT = ("string", "blob")
_NUMBERS = ("integer", "long", "float", "double")


def _shapes(service: str) -> Iterator[Shape]:
    model = service_model(service)
    seen: set[str] = set()
    stack = [
        model.operation_model(name).input_shape
        for name in model.operation_names
        if model.operation_model(name).input_shape is not None
    ]
    while stack:
        shape = stack.pop()
        if shape.name in seen:
            continue
        seen.add(shape.name)
        yield shape
        if isinstance(shape, StructureShape):
            stack += shape.members.values()
        elif isinstance(shape, ListShape):
            stack.append(shape.member)
        elif isinstance(shape, MapShape):
            stack += [shape.key, shape.value]


def _constrained() -> list[tuple[str, Shape]]:
    return [
        (service, shape)
        for service in SERVED
        for shape in _shapes(service)
        if {"min", "max", "pattern"} & shape.metadata.keys() or getattr(shape, "enum", None)
    ]


CONSTRAINED = _constrained()


class _Sized:
    """A value of the shape's kind whose length is whatever the test says (no 2 GB strings)."""

    @staticmethod
    def of(kind: str, length: int) -> Any:
        base = {"string": str, "blob": bytes, "list": list, "map": dict}[kind]
        sized = type(f"Sized{base.__name__}", (base,), {"__len__": lambda self: length})
        return sized()


def _problems(value: Any, shape: Shape) -> list[str]:
    problems: list[str] = []
    validation._check_constraints(value, shape, "member", problems)
    return problems


def _breaking_values(shape: Shape) -> Iterator[tuple[str, Any]]:
    meta, kind = shape.metadata, shape.type_name
    sized = kind in (*_TEXT, "list", "map")
    if "min" in meta and (meta["min"] > 0 or not sized):
        yield "greater than or equal", (
            _Sized.of(kind, meta["min"] - 1) if sized else meta["min"] - 1
        )
    if "max" in meta:
        yield "less than or equal", _Sized.of(kind, meta["max"] + 1) if sized else meta["max"] + 1
    if getattr(shape, "enum", None):
        yield "enum value set", "not-one-of-" + "-".join(shape.enum)[:50]


def test_the_walk_finds_the_models_constraints() -> None:
    assert set(SERVED) >= {"s3", "sagemaker", "stepfunctions", "sagemaker-runtime"}
    assert len(CONSTRAINED) > 1000
    assert sum("pattern" in shape.metadata for _, shape in CONSTRAINED) > 500


@pytest.mark.parametrize("service", SERVED)
def test_every_constraint_is_checked(service: str) -> None:
    skipped: list[str] = []
    for _, shape in (item for item in CONSTRAINED if item[0] == service):
        if shape.type_name not in (*_TEXT, *_NUMBERS, "list", "map"):
            skipped.append(f"{shape.name}: a {shape.type_name} with {shape.metadata}")
            continue
        for words, value in _breaking_values(shape):
            if not any(words in problem for problem in _problems(value, shape)):
                skipped.append(f"{shape.name}: {words} not checked")
        if "pattern" in shape.metadata:
            compile_java(shape.metadata["pattern"])  # raises UnsupportedPattern
    assert skipped == []


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        # CustomerMetadataValue: letters, separators, digits and _.:/=+-@ only
        (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", "endpoint sfn-mlops (model x)", False),
        (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", "endpoint sfn-mlops model x", True),
        (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", "modèle 2", True),
        # Java's POSIX classes are ASCII only
        (r"arn:[\p{Alnum}\-]+:lambda:.*", "arn:aws:lambda:x", True),
        (r"arn:[\p{Alnum}\-]+:lambda:.*", "arn:awś:lambda:x", False),
        (r"\A\S[\p{Print}]*\z", "abc def", True),
        (r"\A\S[\p{Print}]*\z", "abc\tdef", False),
        (r"\p{ASCII}*", "plain", True),
        (r"\p{ASCII}*", "café", False),
        # `.` stops at line terminators, as in Java
        (r"a.*", "a\nb", False),
        (r"a.*", "a b", True),
        # a surrogate pair is one supplementary code point
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "ok \U0001f600\t", True),
        (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "bell \x07", False),
    ],
)
def test_java_patterns_keep_their_meaning(pattern: str, value: str, matches: bool) -> None:
    assert bool(compile_java(pattern).fullmatch(value)) is matches, translate(pattern)


def test_map_keys_are_checked_too() -> None:
    shape = service_model("sagemaker").shape_for("CustomerMetadataMap")
    problems: list[str] = []
    validation._check({"bad key;": "v", "k": "bad (value)"}, shape, "meta", problems)
    assert problems == [
        "Value 'bad key;' at 'meta' failed to satisfy constraint: Map keys must satisfy "
        "constraint: [Member must satisfy regular expression pattern: "
        r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,128}]",
        "Value 'bad (value)' at 'meta.k.member' failed to satisfy constraint: Member must "
        r"satisfy regular expression pattern: ([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}",
    ]


def test_a_union_takes_exactly_one_member() -> None:
    """Union structures (CloudWatch's EvaluationWindow, SageMaker's ...) of every served model."""
    unions = [
        shape for service in SERVED for shape in _shapes(service)
        if isinstance(shape, StructureShape) and shape.metadata.get("union")
    ]  # fmt: skip
    assert any(shape.name == "EvaluationWindow" for shape in unions)
    for shape in unions:
        members = list(shape.members)
        for value in ({}, dict.fromkeys(members[:2], {})) if len(members) > 1 else ({},):
            problems: list[str] = []
            validation._check(value, shape, "u", problems)
            assert any("Member must set exactly one of" in p for p in problems), shape.name
    window = service_model("cloudwatch").shape_for("EvaluationWindow")
    problems = []
    validation._check({"SlidingWindow": {}}, window, "evaluationWindow", problems)
    assert problems == []
