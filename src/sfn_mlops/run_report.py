"""`sfn-mlops report NAME`: one self-contained HTML page about a run.

Everything comes through boto3 (DescribeExecution, the history, the state machine's
definition, the run's S3 objects), so the page reads the same for local and AWS runs. The
state machine is drawn as the Step Functions console draws it: each state coloured by its
outcome, with its duration. The model is loaded and scored with the evaluation job's own code
(containers/evaluation/evaluate.py), so every number on the page is the job's number.

Sections (each a `<section id=...>`): `summary`, `graph`, `states`, `gate`, `splits`,
`importance`, then `predicted-vs-actual` and `residuals` (regression) or `confusion-matrix`
and `roc` (classification), `config`, and `missing` when the run left something out.
matplotlib (imported here only, Agg-free: figures render straight to SVG) draws the plots.
"""

from __future__ import annotations

import html
import io
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfn_mlops import job_code
from sfn_mlops.follow import cause_summary
from sfn_mlops.report import (
    champion_phrase,
    gate_phrase,
    interval_phrase,
    state_output,
    summarize,
)
from sfn_mlops.runs import execution_history, flat_config

SPLITS = ("train", "validation", "test")
#: Scatter plots draw at most this many test rows (every row is scored and counted).
MAX_POINTS = 5000
TOP_FEATURES = 20
#: The outcome of a state → (fill, stroke), the Step Functions console's colours.
OUTCOME_COLOURS = {
    "succeeded": ("#e6f4ea", "#2e7d32"),
    "failed": ("#fdecea", "#c62828"),
    "caught": ("#fff4e5", "#e65100"),
    "running": ("#e3f2fd", "#1565c0"),
    "aborted": ("#eeeeee", "#616161"),
    "not-run": ("#ffffff", "#b0b0b0"),
}
_FAILURE_EVENTS = ("Failed", "TimedOut", "StartFailed", "SubmitFailed", "ScheduleFailed")


class ReportError(Exception):
    """The run cannot be reported (e.g. no definition); the message says why."""


# ------------------------------------------------------------------ states from the history
@dataclass(frozen=True)
class StateRun:
    """What one state did in the execution (its last entry, if it ran more than once)."""

    name: str
    outcome: str  # a key of OUTCOME_COLOURS
    seconds: float | None = None
    started: Any = None  # datetime of the first entry
    entries: int = 0
    failures: int = 0  # failed attempts, retried or caught
    error: str | None = None
    cause: str | None = None


@dataclass
class _Trace:
    entered: list[Any] = field(default_factory=list)  # timestamps
    exited: list[Any] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    last_failed: bool = False


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventDetails")), {})


def _owners(events: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Event id → the state it belongs to, by following previousEventId back to a
    StateEntered event (branch events of a Parallel interleave, so order alone misleads).
    Parallel*/Map* events belong to the nearest Parallel/Map state on that chain."""
    by_id = {event["id"]: event for event in events}
    owners: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        wanted = "ParallelStateEntered" if kind.startswith("Parallel") else "StateEntered"
        wanted = "MapStateEntered" if kind.startswith("Map") else wanted
        current: Mapping[str, Any] | None = event
        while current is not None and not current["type"].endswith(wanted):
            current = by_id.get(current.get("previousEventId") or 0)
        if current is not None:
            owners[event["id"]] = _details(current).get("name", "")
    return owners


def _traces(events: Sequence[Mapping[str, Any]]) -> dict[str, _Trace]:
    owners = _owners(events)
    traces: dict[str, _Trace] = {}
    for event in events:
        kind, name = event["type"], owners.get(event["id"])
        if name is None:
            continue
        trace = traces.setdefault(name, _Trace())
        if kind.endswith("StateEntered") and _details(event).get("name") == name:
            trace.entered.append(event["timestamp"])
            trace.last_failed = False
        elif kind.endswith("StateExited") and _details(event).get("name") == name:
            trace.exited.append(event["timestamp"])
        elif kind.endswith(_FAILURE_EVENTS) and not kind.startswith("Execution"):
            trace.failures.append(_details(event))
            trace.last_failed = True
        elif kind.endswith(("Succeeded", "Started", "Scheduled", "Submitted")):
            trace.last_failed = False
    return traces


def state_runs(
    events: Sequence[Mapping[str, Any]], definition: Mapping[str, Any], status: str
) -> dict[str, StateRun]:
    """Every state of the definition (branches included) with its outcome and duration."""
    traces, stop = _traces(events), events[-1]["timestamp"] if events else None
    runs = {}
    for name, state in walk_states(definition):
        trace = traces.get(name)
        if trace is None or not trace.entered:
            runs[name] = StateRun(name, "not-run")
            continue
        end = trace.exited[-1] if len(trace.exited) >= len(trace.entered) else stop
        failure = trace.failures[-1] if trace.failures else {}
        runs[name] = StateRun(
            name=name,
            outcome=_outcome(state, trace, status),
            seconds=(end - trace.entered[0]).total_seconds() if end else None,
            started=trace.entered[0],
            entries=len(trace.entered),
            failures=len(trace.failures),
            error=failure.get("error") or (state.get("Error") if state["Type"] == "Fail" else None),
            cause=failure.get("cause") or (state.get("Cause") if state["Type"] == "Fail" else None),
        )
    return runs


def _outcome(state: Mapping[str, Any], trace: _Trace, status: str) -> str:
    if state["Type"] == "Fail":
        return "failed"
    if len(trace.exited) >= len(trace.entered):
        return "caught" if trace.last_failed else "succeeded"
    if trace.last_failed:
        return "failed"
    if status == "RUNNING":
        return "running"
    return "aborted" if status == "ABORTED" else "failed"


def taken_transitions(events: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(from, to) for each transition the execution made: a StateEntered event's previous
    event is the StateExited event of the state it came from."""
    by_id = {event["id"]: event for event in events}
    taken = set()
    for event in events:
        if not event["type"].endswith("StateEntered"):
            continue
        previous = by_id.get(event.get("previousEventId") or 0)
        if previous is not None and previous["type"].endswith("StateExited"):
            taken.add((_details(previous)["name"], _details(event)["name"]))
    return taken


# ------------------------------------------------------------------ the definition as a graph
NODE_W, NODE_H = 190, 44
GAP_X, GAP_Y = 30, 42
DUMMY_W = 14
PAD, HEADER = 14, 30


def walk_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, state) for every state, those inside Parallel branches and Map iterators too."""
    for name, state in definition.get("States", {}).items():
        yield name, state
        for branch in _branches(state):
            yield from walk_states(branch)


def _branches(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if state["Type"] == "Parallel":
        return list(state.get("Branches", []))
    if state["Type"] == "Map":
        return [state.get("ItemProcessor") or state.get("Iterator") or {"States": {}}]
    return []


def transitions(state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(target, kind) of each way out of a state: next, choice, default or catch."""
    out = [(choice["Next"], "choice") for choice in state.get("Choices", []) if "Next" in choice]
    if "Default" in state:
        out.append((state["Default"], "default"))
    if "Next" in state:
        out.append((state["Next"], "next"))
    out += [(catch["Next"], "catch") for catch in state.get("Catch", [])]
    return out


@dataclass(frozen=True)
class Box:
    """A state drawn as a rectangle (a Parallel or Map state encloses its branches)."""

    name: str
    type: str
    x: float
    y: float
    w: float
    h: float
    compound: bool = False


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # next | choice | default | catch | back
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Graph:
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    width: float
    height: float


def layout(definition: Mapping[str, Any]) -> Graph:
    """A layered top-down layout (longest-path layers, barycentre ordering, long edges
    routed through shared bends so they pass beside the states, not through them)."""
    states = definition.get("States", {})
    sizes, inner = {}, {}
    for name, state in states.items():
        branches = [layout(branch) for branch in _branches(state)]
        inner[name] = branches
        sizes[name] = _compound_size(branches) if branches else (NODE_W, NODE_H)
    edges: dict[tuple[str, str], str] = {}
    for name, state in states.items():
        for target, kind in transitions(state):
            if target in states:
                edges.setdefault((name, target), kind)
    start = definition.get("StartAt", next(iter(states), ""))
    return _Layered(states, sizes, edges, start).graph(inner)


def _compound_size(branches: Sequence[Graph]) -> tuple[float, float]:
    width = sum(g.width for g in branches) + GAP_X * (len(branches) - 1) + 2 * PAD
    return max(width, NODE_W), max((g.height for g in branches), default=0) + HEADER + PAD


class _Layered:
    """One level of the layout: the states of a machine or of one branch."""

    def __init__(
        self,
        states: Mapping[str, Any],
        sizes: Mapping[str, tuple[float, float]],
        edges: Mapping[tuple[str, str], str],
        start: str,
    ) -> None:
        self.states, self.sizes, self.edges = states, sizes, edges
        self.back = self._back_edges(start)
        self.layer = self._layers(start)
        self.rows = self._rows()
        self._order()
        self.x = self._x_positions()
        self.tops, self.heights = self._y_positions()

    def _successors(self, name: str) -> list[str]:
        return [target for (source, target) in self.edges if source == name]

    def _back_edges(self, start: str) -> set[tuple[str, str]]:
        """Edges to a state still on the depth-first path (loops); drawn beside the graph."""
        back: set[tuple[str, str]] = set()
        self.discovered: list[str] = []
        for root in [start, *self.states]:
            if root in self.discovered or root not in self.states:
                continue
            self.discovered.append(root)
            path, stack = [root], [iter(self._successors(root))]
            while stack:
                target = next(stack[-1], None)
                if target is None:
                    stack.pop()
                    path.pop()
                elif target in path:
                    back.add((path[-1], target))
                elif target not in self.discovered:
                    self.discovered.append(target)
                    path.append(target)
                    stack.append(iter(self._successors(target)))
        return back

    def _layers(self, start: str) -> dict[str, int]:
        layer = {name: 0 for name in self.states}
        forward = [edge for edge in self.edges if edge not in self.back]
        for _ in self.states:  # longest path: at most one pass per state settles it
            changed = False
            for source, target in forward:
                if layer[target] < layer[source] + 1:
                    layer[target], changed = layer[source] + 1, True
            if not changed:
                break
        return layer

    def _rows(self) -> list[list[str]]:
        """States and bends (one shared bend per target and layer) by layer."""
        depth = max(self.layer.values(), default=0) + 1
        rows: list[list[str]] = [[] for _ in range(depth)]
        for name in self.discovered:
            rows[self.layer[name]].append(name)
        self.links: set[tuple[str, str]] = set()
        self.routes: dict[tuple[str, str], list[str]] = {}
        for source, target in self.edges:
            if (source, target) in self.back:
                continue
            route = [source]
            for level in range(self.layer[source] + 1, self.layer[target]):
                bend = f"\0{target}\0{level}"
                if bend not in rows[level]:
                    rows[level].append(bend)
                route.append(bend)
            route.append(target)
            self.routes[(source, target)] = route
            self.links |= set(zip(route, route[1:], strict=False))
        return rows

    def _order(self) -> None:
        """Barycentre sweeps: each node moves toward the mean position of its neighbours."""
        for sweep in range(8):
            down = sweep % 2 == 0
            levels = range(1, len(self.rows)) if down else range(len(self.rows) - 2, -1, -1)
            for level in levels:
                ref = self.rows[level - 1 if down else level + 1]
                place = {name: index for index, name in enumerate(ref)}
                row = self.rows[level]

                def key(item: tuple[int, str], place: dict[str, int] = place) -> float:
                    index, name = item
                    near = [place[n] for n in self._neighbours(name) if n in place]
                    return sum(near) / len(near) if near else float(index)

                self.rows[level] = [name for _, name in sorted(enumerate(row), key=key)]

    def _neighbours(self, name: str) -> Iterator[str]:
        for source, target in self.links:
            if source == name:
                yield target
            elif target == name:
                yield source

    def _width(self, name: str) -> float:
        return DUMMY_W if name.startswith("\0") else self.sizes[name][0]

    def _x_positions(self) -> dict[str, float]:
        """Centres: each node wants its neighbours' mean; a row is then pushed apart."""
        x: dict[str, float] = {}
        for row in self.rows:
            x.update(self._spread(row, [0.0] * len(row)))
        for sweep in range(6):
            rows = self.rows if sweep % 2 == 0 else self.rows[::-1]
            for row in rows:
                wanted = []
                for name in row:
                    near = [x[n] for n in self._neighbours(name)]
                    wanted.append(sum(near) / len(near) if near else x[name])
                x.update(self._spread(row, wanted))
        self._straighten(x)
        left = min((x[n] - self._width(n) / 2 for n in x), default=0.0)
        return {name: value - left for name, value in x.items()}

    def _straighten(self, x: dict[str, float]) -> None:
        """Give each long edge's bends one x where the rows leave room: a straight line."""
        groups: dict[str, list[tuple[int, int]]] = {}
        for level, row in enumerate(self.rows):
            for index, name in enumerate(row):
                if name.startswith("\0"):
                    groups.setdefault(name.split("\0")[1], []).append((level, index))
        for bends in groups.values():
            values = sorted(x[self.rows[level][index]] for level, index in bends)
            for candidate in (values[-1], values[len(values) // 2], values[0]):
                if all(self._fits(level, index, candidate, x) for level, index in bends):
                    for level, index in bends:
                        x[self.rows[level][index]] = candidate
                    break

    def _fits(self, level: int, index: int, at: float, x: Mapping[str, float]) -> bool:
        """Whether the bend at rows[level][index] can move to `at` keeping its row's gaps."""
        row, room = self.rows[level], GAP_X + DUMMY_W / 2
        if index > 0 and x[row[index - 1]] + self._width(row[index - 1]) / 2 + room > at:
            return False
        after = row[index + 1] if index + 1 < len(row) else None
        return after is None or x[after] - self._width(after) / 2 - room >= at

    def _spread(self, row: Sequence[str], wanted: Sequence[float]) -> dict[str, float]:
        """Positions as close to `wanted` as the order and the gaps allow (both ways, mean)."""
        if not row:
            return {}
        gaps = [
            (self._width(a) + self._width(b)) / 2 + GAP_X
            for a, b in zip(row, row[1:], strict=False)
        ]
        right = [wanted[0]]
        for gap, want in zip(gaps, wanted[1:], strict=True):
            right.append(max(want, right[-1] + gap))
        left = [wanted[-1]]
        for gap, want in zip(gaps[::-1], wanted[-2::-1], strict=True):
            left.append(min(want, left[-1] - gap))
        placed = [(a + b) / 2 for a, b in zip(right, left[::-1], strict=True)]
        for index, gap in enumerate(gaps):  # the mean can break a gap only upward: settle
            placed[index + 1] = max(placed[index + 1], placed[index] + gap)
        return dict(zip(row, placed, strict=True))

    def _y_positions(self) -> tuple[list[float], list[float]]:
        tops, heights, y = [], [], 0.0
        for row in self.rows:
            height = max((self.sizes[n][1] for n in row if not n.startswith("\0")), default=NODE_H)
            tops.append(y)
            heights.append(height)
            y += height + GAP_Y
        return tops, heights

    def graph(self, inner: Mapping[str, Sequence[Graph]]) -> Graph:
        boxes: list[Box] = []
        edges: list[Edge] = []
        for name, state in self.states.items():
            w, h = self.sizes[name]
            x, y = self.x[name] - w / 2, self.tops[self.layer[name]]
            boxes.append(Box(name, state["Type"], x, y, w, h, compound=bool(inner[name])))
            offset = x + PAD + max(0.0, (w - _compound_size(inner[name])[0]) / 2)
            for branch in inner[name]:
                boxes += [_moved(b, offset, y + HEADER) for b in branch.boxes]
                edges += [_moved_edge(e, offset, y + HEADER) for e in branch.edges]
                offset += branch.width + GAP_X
        edges += [self._edge(source, target, kind) for (source, target), kind in self.edges.items()]
        width = max((b.x + b.w for b in boxes), default=0.0) + (40 if self.back else 0)
        height = self.tops[-1] + self.heights[-1] if self.tops else 0.0
        return Graph(tuple(boxes), tuple(edges), width, height)

    def _edge(self, source: str, target: str, kind: str) -> Edge:
        if (source, target) in self.back:
            (sx, sy), (tx, ty) = self._centre(source), self._centre(target)
            return Edge(source, target, "back", ((sx, sy), (tx, ty)))
        route = self.routes[(source, target)]
        points = [(self.x[source], self.tops[self.layer[source]] + self.sizes[source][1])]
        for level, bend in enumerate(route[1:-1], start=self.layer[source] + 1):
            points += [(self.x[bend], self.tops[level]), (self.x[bend], self.tops[level] + NODE_H)]
        points.append((self.x[target], self.tops[self.layer[target]]))
        return Edge(source, target, kind, tuple(points))

    def _centre(self, name: str) -> tuple[float, float]:
        """The middle of the state's right side, where a loop's edge leaves or arrives."""
        w, h = self.sizes[name]
        return self.x[name] + w / 2, self.tops[self.layer[name]] + h / 2


def _moved(box: Box, dx: float, dy: float) -> Box:
    return Box(box.name, box.type, box.x + dx, box.y + dy, box.w, box.h, box.compound)


def _moved_edge(edge: Edge, dx: float, dy: float) -> Edge:
    points = tuple((x + dx, y + dy) for x, y in edge.points)
    return Edge(edge.source, edge.target, edge.kind, points)


# ------------------------------------------------------------------ the run's data
@dataclass(frozen=True)
class ModelView:
    """The trained model seen through the evaluation job's code."""

    problem_type: str
    labels: tuple[str, ...]  # class names (classification), else ()
    importance: dict[str, dict[str, float]]  # feature → gain, total_gain, weight
    split_metrics: dict[str, dict[str, float]]  # split → metric → value
    test_y: np.ndarray
    test_pred: np.ndarray  # values, P(positive), or per-class probabilities


@dataclass(frozen=True)
class RunReport:
    """Everything the page shows, gathered once (render() does no I/O)."""

    name: str
    status: str
    started: Any  # datetime
    stopped: Any  # datetime or None
    error: str | None
    cause: str | None
    definition: dict[str, Any]
    states: dict[str, StateRun]
    taken: set[tuple[str, str]]
    config: dict[str, Any]
    evaluation: dict[str, Any] | None  # ReadEvaluation's gate decision
    test_report: dict[str, Any] | None  # evaluation.json
    model: ModelView | None
    prefix: str | None = None
    missing: tuple[str, ...] = ()
    #: The CLI's summary of the run: data, gates, Clarify, the version, the endpoint, monitoring.
    outcome: tuple[str, ...] = ()


def definition_of(sfn: Any, execution: Mapping[str, Any]) -> dict[str, Any]:
    """The definition the execution ran, not the state machine's current one."""
    found = sfn.describe_state_machine_for_execution(executionArn=execution["executionArn"])
    return dict(json.loads(found["definition"]))


def gather(
    sfn: Any, s3: Any, execution: Mapping[str, Any],
    local_path: Callable[[str], str | None] = lambda uri: None,
) -> RunReport:  # fmt: skip
    """Read the run: the execution, its history and definition, then its S3 artifacts.
    ``local_path`` gives an artifact's file on this machine (local mode), for links."""
    events = execution_history(sfn, execution["executionArn"])
    outcome: list[str] = []
    summarize(
        dict(execution), list(events), outcome.append, local_path,
        read_json=lambda uri: _read_json(s3, uri, []),
    )  # fmt: skip
    definition = definition_of(sfn, execution)
    latest = _latest_output(events)
    prefix = latest.get("run", {}).get("prefix")
    steps = latest.get("steps", {})
    missing: list[str] = []
    test_report = None
    if "evaluate" in steps and prefix:
        test_report = _read_json(s3, f"{prefix}/evaluation/evaluation.json", missing)
    elif prefix:
        missing.append("evaluation: the run ended before the Evaluate state finished")
    model_uri = steps.get("train", {}).get("model_artifacts")
    model = None
    if model_uri and prefix:
        model = _model_view(s3, model_uri, prefix, missing)
    else:
        missing.append("model: the run ended before the Train state finished; no plots")
    return RunReport(
        name=execution["name"],
        status=execution["status"],
        started=execution["startDate"],
        stopped=execution.get("stopDate"),
        error=execution.get("error"),
        cause=execution.get("cause"),
        definition=definition,
        states=state_runs(events, definition, execution["status"]),
        taken=taken_transitions(events),
        config=json.loads(execution.get("input") or "{}").get("config", {}),
        evaluation=(state_output(events, "ReadEvaluation") or {}).get("evaluation"),
        test_report=test_report,
        model=model,
        prefix=prefix,
        missing=tuple(missing),
        outcome=tuple(line for text in outcome for line in text.strip("\n").splitlines()),
    )


def _latest_output(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The newest state output that carries the run's prefix and step results."""
    for event in reversed(events):
        details = event.get("stateExitedEventDetails")
        if details and details.get("output"):
            output = json.loads(details["output"])
            if isinstance(output, dict) and "run" in output:
                return output
    return {}


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _read_bytes(s3: Any, uri: str, missing: list[str]) -> bytes | None:
    from botocore.exceptions import ClientError

    bucket, key = _split_uri(uri)
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as err:
        missing.append(f"{uri}: {err.response.get('Error', {}).get('Code', err)}")
        return None


def _read_json(s3: Any, uri: str, missing: list[str]) -> Any:
    raw = _read_bytes(s3, uri, missing)
    return None if raw is None else json.loads(raw)


def _split_file(s3: Any, prefix: str, split: str) -> str | None:
    """The split's CSV (the first by name, as the jobs pick it)."""
    bucket, key = _split_uri(f"{prefix}/processing/{split}/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    names = sorted(item["Key"] for item in listed if item["Key"].endswith(".csv"))
    return f"s3://{bucket}/{names[0]}" if names else None


def _model_view(s3: Any, model_uri: str, prefix: str, missing: list[str]) -> ModelView | None:
    """Load the model and the splits as the evaluation job does, score every split."""
    job = job_code.evaluation_job()
    with tempfile.TemporaryDirectory(prefix="sfn-mlops-report-") as work:
        archive = _read_bytes(s3, model_uri, missing)
        if archive is None:
            return None
        Path(work, "model.tar.gz").write_bytes(archive)
        try:
            booster, schema = job.load_model(job.extract_model(work, work))
        except job.jobkit.JobError as err:
            missing.append(f"model: {err}")
            return None
        splits = _splits(s3, job, prefix, work, missing)
        if "test" not in splits:
            return None
        scored = {name: (y, job.predict(booster, schema, x)) for name, (y, x) in splits.items()}
    problem = schema["problem_type"]
    metrics = {
        name: {
            metric: entry["value"]
            for metric, entry in job.metrics_report(problem, y, pred)[
                job.REPORT_KEYS[problem]
            ].items()
        }
        for name, (y, pred) in scored.items()
    }
    return ModelView(
        problem_type=problem,
        labels=tuple(str(label) for label in schema.get("labels") or ()),
        importance=_importance(booster, list(schema["features"])),
        split_metrics=metrics,
        test_y=scored["test"][0],
        test_pred=scored["test"][1],
    )


def _splits(
    s3: Any, job: Any, prefix: str, work: str, missing: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for split in SPLITS:
        uri = _split_file(s3, prefix, split)
        raw = _read_bytes(s3, uri, missing) if uri else None
        if raw is None:
            missing.append(f"{split} split: no CSV under {prefix}/processing/{split}/")
            continue
        path = Path(work, f"{split}.csv")
        path.write_bytes(raw)
        found[split] = job.jobkit.read_target_first_csv(str(path))
    return found


def _importance(booster: Any, features: Sequence[str]) -> dict[str, dict[str, float]]:
    """XGBoost's gain (mean per split), total gain and weight (splits) per feature."""
    named = dict(zip((f"f{i}" for i in range(len(features))), features, strict=True))
    table: dict[str, dict[str, float]] = {name: {} for name in features}
    for kind in ("gain", "total_gain", "weight"):
        for key, value in booster.get_score(importance_type=kind).items():
            table.setdefault(named.get(key, key), {})[kind] = float(value)
    return {name: values for name, values in table.items() if values}


# ------------------------------------------------------------------ HTML
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse}
td,th{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#2e7d32;font-weight:bold}.failed{color:#c62828;font-weight:bold}
.note{color:#555;font-size:.92em}pre.cause{background:#fafafa;border:1px solid #eee;padding:.6em;
white-space:pre-wrap;max-height:18em;overflow:auto;font-size:.85em}
svg{max-width:100%;height:auto}.plots{display:flex;flex-wrap:wrap;gap:1.5em}
.legend span{display:inline-block;margin-right:1em;font-size:.9em}
.legend i{display:inline-block;width:12px;height:12px;border:2px solid;border-radius:3px;
vertical-align:-2px;margin-right:4px}
"""
BAR_COLOUR = "#3b6ea5"
EDGE_TAKEN, EDGE_IDLE = "#333333", "#b8b8b8"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_esc(title)}</h2>{body}</section>'


def render(report: RunReport) -> str:
    """The page: one HTML string, no script, every plot inline SVG, nothing from the network."""
    sections = [_summary(report), _outcome_section(report), _graph_section(report)]
    sections.append(_states_table(report))
    sections += [_gate(report), _splits_table(report)]
    if report.model is not None:
        sections += _model_sections(report.model, report.config.get("target", "target"))
    sections += [_config(report), _missing(report)]
    title = f"Run {report.name}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def write(report: RunReport, path: Path) -> Path:
    """Write the page (temp file, then rename: a reader never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(render(report), encoding="utf-8")
    partial.replace(path)
    return path


def _summary(report: RunReport) -> str:
    took = (report.stopped - report.started).total_seconds() if report.stopped else None
    verdict = "passed" if report.status == "SUCCEEDED" else "failed"
    rows = [
        ("status", f'<span class="{verdict}">{_esc(report.status)}</span>'),
        ("started", _esc(f"{report.started:%Y-%m-%d %H:%M:%S}")),
        ("duration", _esc(_seconds(took) or "running")),
        (
            "problem",
            _esc(f"{report.config.get('problem_type', '?')} on {report.config.get('target', '?')}"),
        ),  # fmt: skip
        ("artifacts", _esc(report.prefix or "—")),
    ]
    body = "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    if report.error:
        body += f'<p class="failed">Error: {_esc(report.error)}</p>'
        summary = cause_summary(report.cause, limit=4000)
        body += f'<pre class="cause">{_esc(summary or report.cause or "")}</pre>'
    return _section("summary", "Summary", body)


def _outcome_section(report: RunReport) -> str:
    """The run's story as the CLI told it, each local artifact a link to its file."""
    if not report.outcome:
        return ""
    lines = []
    for line in report.outcome[1:]:  # the first repeats the summary's status
        shown = _esc(line)
        path = line.strip()
        if path.startswith("/") and " " not in path:
            shown = shown.replace(_esc(path), f'<a href="file://{_esc(path)}">{_esc(path)}</a>')
        lines.append(shown)
    body = "\n".join(lines)
    return _section("outcome", "Outcome", f'<pre class="outcome">{body}</pre>')


# ------------------------------------------------------------------ the graph
def _graph_section(report: RunReport) -> str:
    legend = "".join(
        f'<span><i style="background:{fill};border-color:{stroke}"></i>{_esc(outcome)}</span>'
        for outcome, (fill, stroke) in OUTCOME_COLOURS.items()
    )
    body = (
        f'<p class="legend">{legend}</p>{graph_svg(report.definition, report.states, report.taken)}'
        '<p class="note">Solid dark arrows: the transitions this run took; dashed: Catch.</p>'
    )
    return _section("graph", "State machine", body)


def graph_svg(
    definition: Mapping[str, Any], states: Mapping[str, StateRun], taken: set[tuple[str, str]]
) -> str:
    """The definition drawn as the console's graph view, each state in its outcome's colour."""
    graph = layout(definition)
    margin = 12.0
    width, height = graph.width + 2 * margin, graph.height + 2 * margin
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="{-margin} {-margin} {width:.0f} {height:.0f}" '
        'role="img" font-family="system-ui,sans-serif">',
        "<defs>" + _marker("sfn-arrow-taken", EDGE_TAKEN) + _marker("sfn-arrow", EDGE_IDLE),
        "</defs>",
    ]
    parts += [_box_svg(b, states.get(b.name)) for b in graph.boxes if b.compound]
    ordered = sorted(graph.edges, key=lambda e: (e.source, e.target) in taken)
    parts += [_edge_svg(e, (e.source, e.target) in taken) for e in ordered]
    parts += [_box_svg(b, states.get(b.name)) for b in graph.boxes if not b.compound]
    parts.append("</svg>")
    return "".join(parts)


def _marker(key: str, colour: str) -> str:
    return (
        f'<marker id="{key}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="{colour}"/></marker>'
    )


def _path(points: Sequence[tuple[float, float]], back: bool) -> str:
    (x0, y0), rest = points[0], points[1:]
    if back:
        (x1, y1), bulge = rest[-1], 70
        bend = f"{x0 + bulge:.1f},{y0:.1f} {x1 + bulge:.1f},{y1:.1f}"
        return f"M{x0:.1f},{y0:.1f}C{bend} {x1:.1f},{y1:.1f}"
    d, previous = [f"M{x0:.1f},{y0:.1f}"], points[0]
    for x, y in rest:
        px, py = previous
        if abs(px - x) < 0.5:
            d.append(f"L{x:.1f},{y:.1f}")
        else:
            mid = (py + y) / 2
            d.append(f"C{px:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{y:.1f}")
        previous = (x, y)
    return "".join(d)


def _edge_svg(edge: Edge, taken: bool) -> str:
    colour, marker = (EDGE_TAKEN, "sfn-arrow-taken") if taken else (EDGE_IDLE, "sfn-arrow")
    dash = ' stroke-dasharray="5,4"' if edge.kind == "catch" else ""
    width = 2 if taken else 1.3
    return (
        f'<path class="edge {edge.kind}{" taken" if taken else ""}" '
        f'd="{_path(edge.points, edge.kind == "back")}" fill="none" stroke="{colour}" '
        f'stroke-width="{width}"{dash} marker-end="url(#{marker})">'
        f"<title>{_esc(edge.source)} → {_esc(edge.target)} ({edge.kind})</title></path>"
    )


def _box_svg(box: Box, run: StateRun | None) -> str:
    run = run or StateRun(box.name, "not-run")
    fill, stroke = OUTCOME_COLOURS[run.outcome]
    took = _seconds(run.seconds)
    detail = " · ".join(part for part in (box.type, took or run.outcome.replace("-", " ")) if part)
    tip = f"{box.name} ({box.type}): {run.outcome}" + (f" in {took}" if took else "")
    if run.failures:
        tip += f"; {run.failures} failed attempt(s), last {run.error}"
    head = (
        f'<g class="state{" compound" if box.compound else ""} outcome-{run.outcome}" '
        f'data-state="{_esc(box.name)}" '
        f'data-outcome="{run.outcome}"><title>{_esc(tip)}</title>'
    )
    if box.compound:
        return (
            f'{head}<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
            f'rx="8" fill="{fill}" fill-opacity="0.45" stroke="{stroke}" stroke-width="1.5" '
            f'stroke-dasharray="6,4"/><text x="{box.x + 10:.1f}" y="{box.y + 19:.1f}" '
            f'font-size="13" font-weight="600">{_esc(box.name)}</text><text '
            f'x="{box.x + box.w - 10:.1f}" y="{box.y + 19:.1f}" font-size="11" fill="#555" '
            f'text-anchor="end">{_esc(detail)}</text></g>'
        )
    cx = box.x + box.w / 2
    return (
        f'{head}<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
        f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
        f'<text x="{cx:.1f}" y="{box.y + 18:.1f}" font-size="13" font-weight="600" '
        f'text-anchor="middle">{_esc(_fit(box.name, 24))}</text>'
        f'<text x="{cx:.1f}" y="{box.y + 35:.1f}" font-size="11" fill="#555" '
        f'text-anchor="middle">{_esc(detail)}</text></g>'
    )


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ran(report: RunReport, name: str) -> tuple[bool, Any]:
    """Sort key: the states in the order they ran, then those that did not run."""
    run = report.states.get(name)
    started = run.started if run else None
    return started is None, started or 0


def _states_table(report: RunReport) -> str:
    rows = []
    for name, state in sorted(walk_states(report.definition), key=lambda i: _ran(report, i[0])):
        run = report.states.get(name) or StateRun(name, "not-run")
        reason = cause_summary(run.cause, limit=300).partition("\n")[0]
        problem = f"{run.error}: {reason}" if run.error else ""
        attempts = f"{run.failures} failed" if run.failures else ""
        rows.append(
            f'<tr class="outcome-{run.outcome}"><td>{_esc(name)}</td><td>{_esc(state["Type"])}'
            f'</td><td style="color:{OUTCOME_COLOURS[run.outcome][1]}">{_esc(run.outcome)}</td>'
            f'<td class="num">{_esc(_seconds(run.seconds))}</td><td>{_esc(attempts)}</td>'
            f"<td>{_esc(problem.strip(': '))}</td></tr>"
        )
    body = (
        "<table><tr><th>state</th><th>type</th><th>outcome</th><th class=num>duration</th>"
        f"<th>attempts</th><th>error</th></tr>{''.join(rows)}</table>"
    )
    return _section("states", "States", body)


# ------------------------------------------------------------------ metrics
def _gate(report: RunReport) -> str:
    gate = report.evaluation
    if not gate:
        return _section("gate", "Quality gate", "<p>Not reached: the run has no evaluation.</p>")
    verdict = "passed" if gate["passed"] else "failed"
    body = (
        f'<p><span class="{verdict}">{verdict.upper()}</span>: {_esc(gate_phrase(gate))} '
        "on the test split</p>"
        f'<p class="note">{_esc(gate.get("cause", ""))}</p>'
    )
    champion = gate.get("champion") or {}
    if champion.get("present"):
        body += (
            f"<p>Against production ({_esc(champion.get('source'))}): "
            f"{_esc(champion_phrase(gate))}</p>"
        )
    elif champion:
        body += f"<p>Against production: {_esc(champion.get('cause'))}</p>"
    return _section("gate", "Quality gate", body)


def _splits_table(report: RunReport) -> str:
    test = {}
    for key, section in (report.test_report or {}).items():
        if key.endswith("_metrics"):
            test = section
    splits = report.model.split_metrics if report.model else {}
    names = list(test) or sorted({m for values in splits.values() for m in values})
    if not names:
        return _section("splits", "Metrics", "<p>No metrics: the run has no evaluation.</p>")
    head = "".join(f'<th class="num">{s}</th>' for s in SPLITS)
    rows = []
    for metric in names:
        cells = "".join(
            f'<td class="num">{_num(splits.get(s, {}).get(metric))}</td>' for s in SPLITS
        )
        entry = test.get(metric, {})
        spread = entry.get("standard_deviation")
        job = _num(entry.get("value")) + (f" ± {spread:.2g}" if spread is not None else "")
        job += interval_phrase(entry.get("confidence_interval"))
        rows.append(f'<tr><td>{_esc(metric)}</td>{cells}<td class="num">{job}</td></tr>')
    body = (
        f"<table><tr><th>metric</th>{head}<th class=num>evaluation.json (test)</th></tr>"
        f"{''.join(rows)}</table><p class=note>Train, validation and test: computed for this "
        "report with the evaluation job's own metric functions (containers/evaluation/"
        "evaluate.py, <code>metrics_report</code>) on the processing job's splits, with the "
        "model loaded as the job loads it. The last column is the evaluation job's report "
        "(± its bootstrap standard deviation, and its percentile bootstrap interval); its test "
        "values are the same computation.</p>"
    )
    return _section("splits", "Metrics on each split", body)


def _config(report: RunReport) -> str:
    rows = "".join(
        f"<tr><td>{_esc(key)}</td><td>{_esc(_text(value))}</td></tr>"
        for key, value in sorted(flat_config(report.config).items())
    )
    return _section("config", "Config", f"<table>{rows}</table>")


def _missing(report: RunReport) -> str:
    if not report.missing:
        return ""
    items = "".join(f"<li>{_esc(item)}</li>" for item in report.missing)
    return _section("missing", "Not in this report", f"<ul>{items}</ul>")


# ------------------------------------------------------------------ plots (matplotlib → SVG)
def _figure(width: float = 5.4, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Any) -> str:
    """The figure as inline SVG: text as text (no glyph ids to clash between figures), no
    date, ids salted the same way each time (the same run renders the same page)."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "sfn-mlops"}):
        figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _model_sections(model: ModelView, target: str) -> list[str]:
    sections = [_importance_section(model)]
    y, pred = model.test_y, model.test_pred
    if model.problem_type == "regression":
        sections += [_predicted_vs_actual(y, pred, target), _residuals(y, pred)]
    else:
        sections += [_confusion(model), _roc(model)]
    return sections


def _sample(size: int) -> np.ndarray:
    if size <= MAX_POINTS:
        return np.arange(size)
    return np.sort(np.random.default_rng(0).choice(size, MAX_POINTS, replace=False))


def _rows_note(size: int) -> str:
    shown = f"; {MAX_POINTS:,} of them drawn" if size > MAX_POINTS else ""
    return f'<p class="note">The test split: {size:,} rows{shown}.</p>'


def _importance_section(model: ModelView) -> str:
    ranked = sorted(model.importance.items(), key=lambda item: -item[1].get("gain", 0.0))
    if not ranked:
        return _section("importance", "Feature importance", "<p>The model has no splits.</p>")
    top = ranked[:TOP_FEATURES][::-1]
    figure = _figure(6.4, 0.6 + 0.28 * len(top))
    axes = figure.add_subplot()
    axes.barh([name for name, _ in top], [v.get("gain", 0.0) for _, v in top], color=BAR_COLOUR)
    axes.set_xlabel("gain (mean loss reduction per split)")
    rows = "".join(
        f'<tr><td>{_esc(name)}</td><td class="num">{_num(v.get("gain"))}</td>'
        f'<td class="num">{_num(v.get("total_gain"))}</td>'
        f'<td class="num">{_num(v.get("weight"))}</td></tr>'
        for name, v in ranked
    )
    table = (
        "<table><tr><th>feature</th><th class=num>gain</th><th class=num>total gain</th>"
        f"<th class=num>splits</th></tr>{rows}</table>"
    )
    body = f'<div class="plots">{_svg(figure)}{table}</div>'
    body += (
        "<p class=note>XGBoost's own importance (<code>get_score</code>); features the model "
        "never splits on are left out.</p>"
    )
    return _section("importance", "Feature importance", body)


def _predicted_vs_actual(y: np.ndarray, pred: np.ndarray, target: str) -> str:
    rows = _sample(y.size)
    figure = _figure()
    axes = figure.add_subplot()
    axes.scatter(y[rows], pred[rows], s=9, alpha=0.35, color=BAR_COLOUR, linewidths=0)
    low = float(min(np.nanmin(y), np.nanmin(pred)))
    high = float(max(np.nanmax(y), np.nanmax(pred)))
    axes.plot([low, high], [low, high], "--", color="#555", linewidth=1, label="predicted = actual")
    axes.set_xlabel(f"actual {target}")
    axes.set_ylabel(f"predicted {target}")
    axes.legend(loc="upper left")
    body = _svg(figure) + _rows_note(y.size)
    return _section("predicted-vs-actual", "Predicted against actual", body)


def _residuals(y: np.ndarray, pred: np.ndarray) -> str:
    rows, residual = _sample(y.size), y - pred
    figure = _figure(8.4, 3.6)
    scatter, histogram = figure.subplots(1, 2, width_ratios=(2, 1))
    scatter.scatter(pred[rows], residual[rows], s=9, alpha=0.35, color=BAR_COLOUR, linewidths=0)
    scatter.axhline(0, color="#555", linewidth=1, linestyle="--")
    scatter.set_xlabel("predicted")
    scatter.set_ylabel("residual (actual − predicted)")
    histogram.hist(residual, bins=40, orientation="horizontal", color=BAR_COLOUR)
    histogram.set_xlabel("rows")
    histogram.sharey(scatter)
    body = _svg(figure) + _rows_note(y.size)
    return _section("residuals", "Residuals", body)


def _predicted_classes(model: ModelView) -> np.ndarray:
    """The class each row is given, by the evaluation job's rule (P ≥ 0.5, or argmax)."""
    if model.problem_type == "binary":
        return (model.test_pred >= 0.5).astype(np.int64)
    return np.argmax(model.test_pred, axis=1)


def confusion_matrix(model: ModelView) -> np.ndarray:
    """Counts, rows the actual class, columns the predicted one."""
    classes = max(len(model.labels), 2)
    actual = model.test_y.astype(np.int64)
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (actual, _predicted_classes(model)), 1)
    return counts


def _confusion(model: ModelView) -> str:
    counts = confusion_matrix(model)
    labels = list(model.labels) or [str(i) for i in range(len(counts))]
    figure = _figure(4.6, 4.0)
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        dark = count > counts.max() / 2
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if dark else "black")  # fmt: skip
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    rule = "P(positive) ≥ 0.5" if model.problem_type == "binary" else "the most probable class"
    body = _svg(figure) + f'<p class="note">Test split; the predicted class is {rule}.</p>'
    return _section("confusion-matrix", "Confusion matrix", body)


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score, from (0, 0)."""
    order = np.argsort(-score, kind="mergesort")
    ranked, positive = score[order], y[order] == 1
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    true = np.cumsum(positive)[last]
    false = last + 1 - true
    total_true, total_false = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    return np.r_[0.0, false / total_false], np.r_[0.0, true / total_true]


def _roc(model: ModelView) -> str:
    figure = _figure(4.8, 4.2)
    axes = figure.add_subplot()
    y = model.test_y.astype(np.int64)
    if model.problem_type == "binary":
        curves = [(model.labels[-1] if model.labels else "1", y == 1, model.test_pred)]
    else:
        curves = [(label, y == k, model.test_pred[:, k]) for k, label in enumerate(model.labels)]
    for label, actual, score in curves:
        fpr, tpr = roc_curve(actual.astype(np.int64), score)
        axes.plot(fpr, tpr, linewidth=1.6, label=f"{label} (AUC {np.trapezoid(tpr, fpr):.3f})")
    axes.plot([0, 1], [0, 1], ":", color="#777", linewidth=1, label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.legend(loc="lower right", fontsize="small")
    kind = "" if model.problem_type == "binary" else " (each class against the rest)"
    body = _svg(figure) + f'<p class="note">Test split{kind}.</p>'
    return _section("roc", "ROC curve", body)
