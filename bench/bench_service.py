"""Target 3: one boto3 DescribeExecution over loopback against the local service.

Targets (issue 10): the median of one boto3 `DescribeExecution` against a workspace's service is
at most 2 ms; 8 concurrent clients calling it for 10 s get no error (requests/s reported).

Baselines measured in the same run, in interleaved blocks:
- the same boto3 call against a stub: a minimal stdlib `ThreadingHTTPServer` (HTTP/1.1
  keep-alive, Nagle off, like the service) in its own process that answers the service's own
  DescribeExecution bytes, canned: the floor of boto3 + loopback HTTP;
- a raw `http.client` request (the bytes boto3 sent, replayed on a keep-alive connection) to the
  service and to the stub: the server's side alone, without boto3's client-side work.

Concurrency: 8 client *processes* (a process each, so the clients do not share one GIL), each
with its own boto3 client, start together and call DescribeExecution for 10 s; the same against
the stub as the baseline. Loopback only; every loop is bounded by a count or a deadline; the
service (started here with `control.ensure_running`) and the stub are stopped in `finally`.
Usage: python bench/bench_service.py [--quick] [--calls N] [--seconds S] [--clients C]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET_MS = 2.0
BLOCK = 100  # calls per variant per round; the variants alternate round by round
WARMUP = 50
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/bench-service"
DEFINITION = {
    "StartAt": "Hello",
    "States": {"Hello": {"Type": "Pass", "Result": {"hello": "world"}, "End": True}},
}
SKIP_HEADERS = {"content-length", "connection", "date", "server", "transfer-encoding"}


# ------------------------------------------------------------------ the stub (its own process)
def serve_stub(canned_path: str) -> None:
    """A minimal HTTP/1.1 server answering every POST with the canned response; prints its port,
    exits when stdin closes (the benchmark's end, or its death)."""
    import threading

    canned = json.loads(Path(canned_path).read_text())
    body = canned["body"].encode()
    headers = list(canned["headers"].items())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(httpd.server_address[1], flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    httpd.shutdown()


def start_stub(canned_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--stub", str(canned_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise RuntimeError("the stub server did not start")
    return proc, f"http://127.0.0.1:{port}"


def stop_process(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ one client, timed
def client(url: str) -> Any:
    """A Step Functions client signing with the keys in the environment: the workspace
    administrator's (``execution`` puts them there; the client processes inherit them)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),  # an error must show, not be retried away
    )


def captured_request(sfn: Any, arn: str) -> tuple[dict[str, str], bytes]:
    """The headers and body boto3 sends for DescribeExecution (signed), to replay raw."""
    seen: dict[str, Any] = {}

    def grab(request: Any, **_: Any) -> None:
        seen["headers"] = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        seen["body"] = request.body if isinstance(request.body, bytes) else request.body.encode()

    sfn.meta.events.register("before-send.sfn.DescribeExecution", grab)
    try:
        sfn.describe_execution(executionArn=arn)
    finally:
        sfn.meta.events.unregister("before-send.sfn.DescribeExecution", grab)
    headers = {k: v for k, v in seen["headers"].items() if k.lower() not in SKIP_HEADERS}
    return headers, seen["body"]


class Raw:
    """The captured request on one keep-alive http.client connection."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.headers = dict(headers, **{"Content-Length": str(len(body))})
        self.body = body

    def call(self) -> bytes:
        self.conn.request("POST", "/", self.body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return data

    def response(self) -> tuple[dict[str, str], str]:
        self.conn.request("POST", "/", self.body, self.headers)
        response = self.conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]}")
        headers = {k: v for k, v in response.getheaders() if k.lower() not in SKIP_HEADERS}
        return headers, body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def timed_blocks(variants: dict[str, Any], calls: int) -> dict[str, list[float]]:
    """Latency in ms of each variant's call, ``calls`` each, alternating in blocks of BLOCK."""
    for call in variants.values():
        for _ in range(WARMUP):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    clock = time.perf_counter_ns
    for _ in range(max(1, calls // BLOCK)):
        for name, call in variants.items():
            out = samples[name]
            for _ in range(BLOCK):
                started = clock()
                call()
                out.append((clock() - started) / 1e6)
    return samples


def iam_blocks(workspace: Path, call: Any, calls: int) -> dict[str, list[float]]:
    """Latency in ms of ``call`` with the workspace's IAM mode ``enforce`` and ``off``,
    alternating in blocks of BLOCK (the service reads the mode file when it changes)."""
    from sfn_mlops.local.authorization import write_mode

    samples: dict[str, list[float]] = {"IAM enforce": [], "IAM off": []}
    clock = time.perf_counter_ns
    try:
        for _ in range(max(1, calls // BLOCK)):
            for name, mode in (("IAM enforce", "enforce"), ("IAM off", "off")):
                write_mode(workspace, mode)
                for _ in range(WARMUP // 5):
                    call()
                out = samples[name]
                for _ in range(BLOCK):
                    started = clock()
                    call()
                    out.append((clock() - started) / 1e6)
    finally:
        write_mode(workspace, "enforce")
    return samples


# ------------------------------------------------------------------ concurrent clients
def worker(url: str, arn: str, seconds: float) -> None:
    """One client process: ready -> wait for 'go' on stdin -> call for ``seconds`` -> JSON."""
    sfn = client(url)
    sfn.describe_execution(executionArn=arn)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    latencies: list[float] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter
    started = clock()
    deadline = started + seconds
    while (now := clock()) < deadline:
        try:
            sfn.describe_execution(executionArn=arn)
            latencies.append((clock() - now) * 1000)
        except Exception as err:  # noqa: BLE001 - counted and reported, never hidden
            name = type(err).__name__
            errors[name] = errors.get(name, 0) + 1
    elapsed = clock() - started
    print(json.dumps({"ok": len(latencies), "errors": errors, "elapsed": elapsed,
                      "median": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}),
          flush=True)  # fmt: skip


def concurrent(url: str, arn: str, clients: int, seconds: float) -> dict[str, Any]:
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(clients):
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", url, arn, str(seconds)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process did not get ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ok = sum(r["ok"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for name, count in r["errors"].items():
            errors[name] = errors.get(name, 0) + count
    elapsed = max(r["elapsed"] for r in results)
    return {
        "ok": ok,
        "errors": errors,
        "rps": ok / elapsed,
        "median_ms": common.median([r["median"] for r in results]),
        "p99_ms": max(r["p99"] for r in results),
        "per_client_rps": [round(r["ok"] / r["elapsed"]) for r in results],
    }


# ------------------------------------------------------------------ main
def execution(workspace: Path) -> tuple[str, str]:
    """The service's url and a finished execution's ARN (a one-Pass-state machine)."""
    from sfn_mlops.local import control

    info = control.ensure_running(workspace)
    os.environ.update(control.admin_key(workspace).environment())  # signed as the CLI signs
    # the project's template deployed: IAM decides every call on its policies (issue 21)
    control.admin(info, "deploy", {"project": str(Path(__file__).resolve().parents[1])})
    sfn = client(info.url)
    machine = sfn.create_state_machine(
        name="bench-service", definition=json.dumps(DEFINITION), roleArn=ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="describe-me", input='{"a": 1}')[
        "executionArn"
    ]
    deadline = time.monotonic() + 60
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{arn} still RUNNING after 60 s")
        time.sleep(0.05)
    return info.url, arn


def main() -> int:  # noqa: PLR0915 - one straight script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, 3 s of concurrency")
    parser.add_argument("--calls", type=int, help="timed calls per variant (default 2000)")
    parser.add_argument("--seconds", type=float, help="concurrency phase length (default 10)")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    calls = args.calls or (500 if args.quick else 2000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    common.print_machine()
    stub = None
    with common.workspace("sfn-bench-service-") as workspace:
        try:
            url, arn = execution(workspace)
            service = common.service_info(workspace)
            print(f"service pid {service.pid} at {url}; execution {arn}", flush=True)
            sfn = client(url)
            headers, body = captured_request(sfn, arn)
            canned_headers, canned_body = Raw(url, headers, body).response()
            canned = workspace / "bench-stub-canned.json"  # removed with the workspace
            canned.write_text(json.dumps({"headers": canned_headers, "body": canned_body}))
            stub, stub_url = start_stub(canned)
            stub_sfn = client(stub_url)
            if stub_sfn.describe_execution(executionArn=arn)["executionArn"] != arn:
                raise RuntimeError("the stub's canned answer does not parse as the service's")
            raw_service, raw_stub = Raw(url, headers, body), Raw(stub_url, headers, body)
            variants = {
                "boto3 -> service": lambda: sfn.describe_execution(executionArn=arn),
                "boto3 -> stub (baseline)": lambda: stub_sfn.describe_execution(executionArn=arn),
                "raw http.client -> service": raw_service.call,
                "raw http.client -> stub": raw_stub.call,
            }
            print(
                f"single client: {calls} calls per variant after {WARMUP} warm-up calls, in "
                f"alternating blocks of {BLOCK}; load {common.loadavg()}",
                flush=True,
            )
            samples = timed_blocks(variants, calls)
            med = {name: common.median(values) for name, values in samples.items()}
            rows = [
                [
                    name,
                    f"{med[name]:.3f}",
                    f"{percentile(values, 0.9):.3f}",
                    f"{percentile(values, 0.99):.3f}",
                    f"{min(values):.3f}",
                    common.ratio(med[name], med["boto3 -> stub (baseline)"]),
                    common.ratio(med[name], med["raw http.client -> stub"]),
                ]
                for name, values in samples.items()
            ]
            print(
                common.table(
                    rows,
                    [
                        "DescribeExecution",
                        "median ms",
                        "p90 ms",
                        "p99 ms",
                        "min ms",
                        "/ boto3->stub",
                        "/ raw->stub",
                    ],
                )
            )
            iam = iam_blocks(workspace, variants["boto3 -> service"], calls)
            on, off = common.median(iam["IAM enforce"]), common.median(iam["IAM off"])
            print(
                f"boto3 DescribeExecution, IAM enforce vs off (alternating blocks): median "
                f"{on:.3f} ms vs {off:.3f} ms = {common.ratio(on, off)}; p99 "
                f"{percentile(iam['IAM enforce'], 0.99):.3f} vs "
                f"{percentile(iam['IAM off'], 0.99):.3f} ms"
            )
            server_side = med["raw http.client -> service"] - med["raw http.client -> stub"]
            client_side = med["boto3 -> stub (baseline)"] - med["raw http.client -> stub"]
            print(
                f"the service's own work per call (raw->service - raw->stub): "
                f"{server_side:.3f} ms; boto3's client-side work (boto3->stub - raw->stub): "
                f"{client_side:.3f} ms; response {len(canned_body)} bytes"
            )
            print(
                f"\n{args.clients} concurrent client processes x {seconds:.0f} s, "
                f"DescribeExecution (load {common.loadavg()})",
                flush=True,
            )
            conc_service = concurrent(url, arn, args.clients, seconds)
            conc_stub = concurrent(stub_url, arn, args.clients, seconds)
            rows = [
                [
                    name,
                    f"{c['rps']:.0f}",
                    str(c["ok"]),
                    json.dumps(c["errors"]) if c["errors"] else "0",
                    f"{c['median_ms']:.2f}",
                    f"{c['p99_ms']:.2f}",
                    " ".join(map(str, c["per_client_rps"])),
                ]
                for name, c in (("service", conc_service), ("stub (baseline)", conc_stub))
            ]
            print(
                common.table(
                    rows,
                    [
                        "server",
                        "requests/s",
                        "ok",
                        "errors",
                        "median ms",
                        "worst client p99 ms",
                        "per client req/s",
                    ],
                )
            )
            print(
                f"requests/s service / stub: {common.ratio(conc_service['rps'], conc_stub['rps'])}"
            )
            print(f"\n## Target 3 (load average at the end: {common.loadavg()})")
            single = med["boto3 -> service"]
            print(
                common.table(
                    [
                        [
                            "boto3 DescribeExecution, median",
                            f"{single:.3f} ms",
                            f"<= {TARGET_MS:.1f} ms",
                            common.ratio(single, TARGET_MS),
                            common.verdict(single <= TARGET_MS),
                        ],
                        [
                            "boto3 DescribeExecution with IAM enforced, median",
                            f"{on:.3f} ms",
                            f"<= {TARGET_MS:.1f} ms",
                            f"{common.ratio(on, TARGET_MS)} (off: {off:.3f} ms)",
                            common.verdict(on <= TARGET_MS),
                        ],
                        [
                            f"{args.clients} concurrent clients x {seconds:.0f} s: errors",
                            str(sum(conc_service["errors"].values())),
                            "0",
                            f"{conc_service['rps']:.0f} req/s",
                            common.verdict(not conc_service["errors"] and conc_service["ok"] > 0),
                        ],
                    ],
                    ["figure", "value", "target", "ratio / rate", "verdict"],
                )
            )
        finally:
            stop_process(stub)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--stub":
        serve_stub(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        os.environ.pop("AWS_ENDPOINT_URL", None)
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(main())
