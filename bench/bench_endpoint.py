"""Local endpoint throughput and capture, beside a bare server, in one run (issue 7).

Targets:
1. Single-record CSV requests, 16 concurrent clients on loopback, data capture on (100 %): at
   least 70 % of the throughput of a bare server that only parses the CSV and calls the same
   booster's `inplace_predict`; requests/s and p50/p99 latency of both.
2. 50,000 requests from 32 clients: zero errors, and the captured records equal the requests
   exactly (no loss, no duplicate, every line valid JSON).

The endpoint is `sfn_mlops.local.endpoints` serving the pipeline's abalone model (150 rounds,
depth 5, `sex` categorical) with the project's inference code in script mode, as the pipeline
deploys it. The bare server is a stdlib `ThreadingHTTPServer` (HTTP/1.1 keep-alive, Nagle off,
the endpoint's own server class) in a process of its own, one booster thread, numeric CSV.
Clients: 2 processes x (clients / 2) threads, each thread one keep-alive `http.client`
connection, sending the same raw abalone rows (the bare server gets the codes). Rounds
alternate endpoint and bare; figures are medians over rounds.

    .venv/bin/python bench/bench_endpoint.py           # 3 rounds of 10 s, then 50k requests
    .venv/bin/python bench/bench_endpoint.py --quick   # 1 round of 3 s, 5k requests
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "functional"), str(REPO / "containers" / "common")]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

TARGET = 0.70
ROWS = [  # raw abalone rows in the schema's feature order (sex first)
    "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15",
    "F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21",
    "I,0.33,0.255,0.08,0.205,0.0895,0.0395,0.055",
]
CODES = {"F": "0", "I": "1", "M": "2"}


# ------------------------------------------------------------------ the model
def abalone_model(folder: Path, rounds: int = 150, seed: int = 0) -> tuple[Path, Path]:
    """The pipeline's model on abalone: model.tar.gz (xgboost-model + schema.json) in
    ``folder``; ``rounds`` and ``seed`` give another version of it (another prediction)."""
    import io
    import tarfile

    import jobkit
    from sklego.datasets import load_abalone

    xgb = jobkit.import_xgboost()
    frame = load_abalone(as_frame=True)
    categories = sorted(frame["sex"].unique())
    frame["sex"] = frame["sex"].map({c: i for i, c in enumerate(categories)}).astype(float)
    features = [c for c in frame.columns if c != "rings"]
    booster = xgb.train(
        {"max_depth": 5, "eta": 0.1, "subsample": 0.8, "nthread": 2, "seed": seed},
        xgb.DMatrix(frame[features].to_numpy(float), frame["rings"].to_numpy(float)),
        rounds,
    )
    schema = {
        "target": "rings",
        "problem_type": "regression",
        "features": features,
        "categorical": {"sex": categories},
    }
    model_file = folder / "xgboost-model"
    model_file.write_bytes(bytes(booster.save_raw("ubj")))  # the name the container expects
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_file, "xgboost-model")
        data = json.dumps(schema).encode()
        info = tarfile.TarInfo("schema.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive, model_file


# ------------------------------------------------------------------ the bare server
def bare_server(model_file: str) -> None:
    """Parse the CSV, inplace_predict, answer: the floor a serving process can reach here."""
    from http.server import BaseHTTPRequestHandler

    import numpy as np
    import xgboost

    from sfn_mlops.local.endpoint_server import Server

    booster = xgboost.Booster()
    booster.load_model(model_file)
    booster.set_param({"nthread": 1})

    class Bare(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rows = [[float(v) for v in line.split(",")] for line in body.decode().splitlines()]
            prediction = booster.inplace_predict(np.asarray(rows, np.float32))
            out = ("\n".join(str(v) for v in prediction) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = Server(("127.0.0.1", 0), Bare)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


# ------------------------------------------------------------------ clients
def client_process(
    port: int, threads: int, seconds: float, count: int, first: int, bare: bool
) -> None:
    """Threads on keep-alive connections until `seconds` pass or `count` requests are sent;
    prints latencies (ms), errors and the bodies sent as JSON."""
    rows = [",".join([CODES[r[0]], r[2:]]) if bare else r for r in ROWS]
    latencies: list[float] = []
    errors: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(first, first + count) if count else range(1 << 62))
    deadline = time.monotonic() + seconds if seconds else float("inf")

    def run() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, my_errors, my_sent = [], [], []
        for index in next_index:  # shared iterator: next() is atomic under the GIL
            if time.monotonic() > deadline:
                break
            body = rows[index % len(rows)]
            if count:  # unique bodies: the capture check matches each request to one record
                body = _unique(body, index)
            started = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "text/csv"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    my_errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                my_errors.append(type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
            my_sent.append(body)
        with lock:
            latencies.extend(mine)
            errors.extend(my_errors)
            sent.extend(my_sent)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"latencies": latencies, "errors": errors, "sent": sent if count else []}))


def _unique(row: str, index: int) -> str:
    """The row with its last value carrying the request index (still a valid number)."""
    head, _, _ = row.rpartition(",")
    return f"{head},0.{index + 1:06d}"


def load(port: int, clients: int, seconds: float, count: int, bare: bool) -> dict[str, Any]:
    processes = 2
    per = [clients // processes + (i < clients % processes) for i in range(processes)]
    counts = [count // processes + (i < count % processes) for i in range(processes)]
    firsts = [sum(counts[:i]) for i in range(processes)]  # each process numbers its own range
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                str(port),
                str(threads),
                str(seconds),
                str(share),
                str(first),
                "1" if bare else "0",
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        for threads, share, first in zip(per, counts, firsts, strict=True)
    ]
    results = [json.loads(child.communicate()[0]) for child in children]
    wall = time.perf_counter() - started
    latencies = sorted(v for r in results for v in r["latencies"])
    return {
        "requests": len(latencies),
        "rate": len(latencies) / wall,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "errors": [e for r in results for e in r["errors"]],
        "sent": [s for r in results for s in r["sent"]],
    }


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    rounds, seconds, total = (
        (1, 3.0, 5_000) if args.quick else (args.rounds, args.seconds, args.requests)
    )

    from endpoint_models import BUCKET, put_inference_code

    from sfn_mlops.local.cloud import LocalCloud
    from sfn_mlops.local.endpoints import CaptureSpec, Fleet, VariantSpec

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        archive, model_file = abalone_model(folder)
        cloud = LocalCloud(folder / "workspace")
        environment = put_inference_code(cloud)
        cloud.objects.put_file(BUCKET, "abalone/model.tar.gz", archive)
        spec = VariantSpec(
            "AllTraffic", "abalone", "x/sagemaker-xgboost:3.0-5",
            f"s3://{BUCKET}/abalone/model.tar.gz", environment, 1, 1.0,
        )  # fmt: skip
        capture = CaptureSpec(f"s3://{BUCKET}/capture", 100, True, True, ("text/csv",), ())
        hosts = cloud.endpoint_hosts
        bare = subprocess.Popen(
            [sys.executable, __file__, "--bare", str(model_file)], stdout=subprocess.PIPE
        )
        try:
            bare_port = int(json.loads(bare.stdout.readline())["port"])  # type: ignore[union-attr]
            port = hosts.serve("bench", [(Fleet("c#1", (spec,)), 1.0)], capture)
            describe(rounds, seconds)
            throughput(port, bare_port, rounds, seconds)
            hosts.serve("bench-50k", [(Fleet("c#1", (spec,)), 1.0)], capture)
            exact_capture(cloud, hosts, total)
        finally:
            bare.kill()
            hosts.stop_all()


def describe(rounds: int, seconds: float) -> None:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"commit {commit}, nproc {os.cpu_count()}, load {load_avg}; {rounds} round(s) of "
          f"{seconds:g} s per server, alternated, 16 clients; medians over rounds")  # fmt: skip


def throughput(port: int, bare_port: int, rounds: int, seconds: float) -> None:
    load(port, 4, 1.0, 0, False), load(bare_port, 4, 1.0, 0, True)  # warm-up
    ours, bare = [], []
    for _ in range(rounds):
        ours.append(load(port, 16, seconds, 0, False))
        bare.append(load(bare_port, 16, seconds, 0, True))
    for name, runs in (("endpoint (capture on)", ours), ("bare server", bare)):
        print(
            f"{name:<22} {statistics.median(r['rate'] for r in runs):8.0f} req/s   "
            f"p50 {statistics.median(r['p50'] for r in runs):6.2f} ms   "
            f"p99 {statistics.median(r['p99'] for r in runs):6.2f} ms   "
            f"errors {sum(len(r['errors']) for r in runs)}"
        )
    share = statistics.median(r["rate"] for r in ours) / statistics.median(r["rate"] for r in bare)
    print(f"endpoint / bare throughput: {share:.2f} (target >= {TARGET:.2f})  "
          f"{'PASS' if share >= TARGET else 'MISS'}")  # fmt: skip


def exact_capture(cloud: Any, hosts: Any, total: int) -> None:
    from endpoint_models import BUCKET

    port = hosts.port("bench-50k")
    result = load(port, 32, 0, total, False)
    hosts.stop("bench-50k")  # publishes the open capture files
    folder = cloud.objects.root / BUCKET / "capture" / "bench-50k"
    captured, bad_lines = Counter(), 0
    for path in folder.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                captured[json.loads(line)["captureData"]["endpointInput"]["data"]] += 1
            except (ValueError, KeyError):
                bad_lines += 1
    sent = Counter(result["sent"])
    lost = sum((sent - captured).values())
    extra = sum((captured - sent).values())
    ok = not result["errors"] and lost == extra == bad_lines == 0 and len(sent) == total
    print(
        f"{total:,} requests, 32 clients: {result['rate']:.0f} req/s, errors "
        f"{len(result['errors'])}; captured {sum(captured.values()):,} records: lost {lost}, "
        f"extra {extra}, invalid lines {bad_lines}, distinct bodies {len(sent):,}  "
        f"{'PASS' if ok else 'MISS'}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        bare_server(sys.argv[2])
    elif sys.argv[1:2] == ["--client"]:
        port, threads, seconds, count, first, bare = sys.argv[2:8]
        client_process(int(port), int(threads), float(seconds), int(count), int(first), bare == "1")
    else:
        main()
