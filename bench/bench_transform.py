"""Batch transform of 1,000,000 rows against a bare script, side by side in one run (issue 8).

Target: a local batch transform job (CreateTransformJob through boto3 -> Completed) scores at
least 70 % of the rows/s of a bare script that reads the same CSV, calls the same booster's
``inplace_predict`` with the same threads and writes the predictions; peak memory of both.

- Data: 1,000,000 abalone-like rows (``common.make_abalone_like``), headerless, the model's
  features in order: ``raw`` has ``sex`` as F/I/M (what the pipeline's model reads),
  ``numeric`` its code (what the XGBoost container's default handler reads).
- Model: the pipeline's abalone model (``bench_endpoint.abalone_model``: 150 rounds, depth 5).
- Transform: a local cloud served on loopback in this process (the service's code), the job
  started warm from the fork server; SplitType Line, MultiRecord, MaxPayloadInMB 6, AssembleWith
  Line. ``script mode``: the model with ``containers/inference/inference.py`` (what the batch
  state machine runs); ``default handler``: the same archive without script mode, numeric rows.
  Timed from CreateTransformJob to Completed as boto3 sees it (listing, linking, the job's
  process, model load, scoring, publishing, 25 ms polls). Peak RSS: the job's process (VmHWM,
  sampled; it counts pages it shares with the fork server).
- Bare: a fresh ``python`` process that reads the CSV with pandas, maps ``sex`` to its code
  (raw), ``inplace_predict`` with ``nthread`` = the job's cores (``SM_NUM_CPUS``), writes one
  prediction a line. rows/s uses its own work (after its imports: load the booster, read,
  predict, write); its spawn -> exit wall is shown too. Peak RSS: ``ru_maxrss``.
- Where the job's time goes: its handlers on one 6 MB payload (input_fn, predict_fn, output_fn)
  in this process, per row.

Repeats alternate transform and bare; figures are medians.

    .venv/bin/python bench/bench_transform.py            # 3 repeats of each (~3 min)
    .venv/bin/python bench/bench_transform.py --quick    # 100,000 rows, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests" / "functional"), str(REPO / "containers" / "common")]

import common  # noqa: E402
from bench_endpoint import abalone_model  # noqa: E402

TARGET = 0.70
DATA_DIR = Path(tempfile.gettempdir()) / "sfn-bench-data"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
PAYLOAD_MB = 6
BARE = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
import numpy as np, pandas as pd, xgboost
started = time.perf_counter()
booster = xgboost.Booster()
booster.load_model(spec["model"])
booster.set_param({"nthread": spec["nthread"]})
frame = pd.read_csv(spec["data"], header=None)
if spec["codes"]:
    frame[0] = frame[0].map(spec["codes"])
read = time.perf_counter()
prediction = booster.inplace_predict(frame.to_numpy(np.float32))
predicted = time.perf_counter()
with open(spec["out"], "w") as out:
    out.write("\n".join(map(str, prediction.tolist())) + "\n")
done = time.perf_counter()
print(json.dumps({"work": done - started, "read": read - started,
                  "predict": predicted - read, "write": done - predicted}))
"""


# ------------------------------------------------------------------ data
def inputs(rows: int) -> dict[str, Path]:
    """The transform's input files (headerless features), made once per size."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    source = common.make_abalone_like(rows, DATA_DIR / f"abalone_{rows}.csv", seed=rows)
    files = {
        "raw": DATA_DIR / f"transform_raw_{rows}.csv",
        "numeric": DATA_DIR / f"transform_numeric_{rows}.csv",
    }
    if all(path.is_file() for path in files.values()):
        return files
    table = pacsv.read_csv(source).drop(["rings"])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    pacsv.write_csv(table, files["raw"], write_options=options)
    codes = pc.index_in(table.column("sex"), value_set=pa.array(["F", "I", "M"]))
    numeric = table.set_column(0, "sex", pc.cast(codes, pa.float64()))
    pacsv.write_csv(numeric, files["numeric"], write_options=options)
    return files


# ------------------------------------------------------------------ the two sides
def peak_rss_of(pid_of: Any, stop: threading.Event, peak: list[int]) -> None:
    """Sample VmHWM (the process's own peak RSS so far) of the job's process until ``stop``."""
    while not stop.wait(0.05):
        pid = pid_of()
        if not pid:
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        except OSError:
            pass


def run_transform(sm: Any, cloud: Any, name: str, model: str, data: str) -> dict[str, Any]:
    from sfn_mlops.local.jobs.transform import KIND_TRANSFORM

    request = {
        "TransformJobName": name,
        "ModelName": model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": PAYLOAD_MB,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": data}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://bench/out/{name}",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    stop, peak = threading.Event(), [0]

    def pid_of() -> int | None:
        doc = cloud.metadata.get(KIND_TRANSFORM, name) or {}
        return doc.get("ChildPid")

    sampler = threading.Thread(target=peak_rss_of, args=(pid_of, stop, peak), daemon=True)
    sampler.start()
    started = time.perf_counter()
    sm.create_transform_job(**request)
    while True:
        job = sm.describe_transform_job(TransformJobName=name)
        if job["TransformJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(0.025)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if job["TransformJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job['TransformJobStatus']}: {job.get('FailureReason')}")
    log = (cloud.jobs_dir / name / "job.log").read_text()
    scoring = [float(line.split(" in ")[1].split()[0]) for line in log.splitlines()
               if line.startswith("[sfn-mlops] ") and " lines in " in line]  # fmt: skip
    return {"wall": wall, "scoring": sum(scoring), "peak_rss": peak[0]}


def run_bare(model_file: Path, data: Path, codes: dict[str, float] | None, threads: int) -> dict:
    from sfn_mlops.local.jobs.launch import default_env

    with tempfile.TemporaryDirectory() as tmp:
        spec = {
            "model": str(model_file),
            "data": str(data),
            "codes": codes,
            "nthread": threads,
            "out": str(Path(tmp) / "predictions.csv"),
        }
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", BARE, json.dumps(spec)], stdout=subprocess.PIPE,
            env=default_env(),  # the job's OpenMP settings (OMP_WAIT_POLICY=PASSIVE)
        )  # fmt: skip
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"bare script exited {proc.returncode}")
        result = json.loads(out)
    return {**result, "fresh": wall, "peak_rss": usage.ru_maxrss * 1024}


# ------------------------------------------------------------------ where the job's time goes
def handler_stages(cloud: Any, model: str, data: Path, folder: Path) -> dict[str, float]:
    """input_fn / predict_fn / output_fn on the first 6 MB payload of ``data``: us per row."""
    from sfn_mlops.local.endpoint_server import load_variant
    from sfn_mlops.local.jobs.training import job_cpus

    doc = cloud.service("sagemaker")._model(model)
    container = doc["PrimaryContainer"]
    os.environ["SFN_MLOPS_INFERENCE_THREADS"] = str(job_cpus())
    spec = {
        "model_name": model,
        "model_data_url": container["ModelDataUrl"],
        "environment": container.get("Environment") or {},
    }
    handlers = load_variant(spec, cloud.objects.root, folder)
    if type(handlers.model).__name__ == "Booster":
        handlers.model.set_param({"nthread": job_cpus()})
    with open(data, "rb") as stream:
        payload = stream.read(PAYLOAD_MB * 1024 * 1024)
    payload = payload[: payload.rfind(b"\n") + 1]
    rows = payload.count(b"\n")
    times: dict[str, list[float]] = {"input_fn": [], "predict_fn": [], "output_fn": []}
    for _ in range(3):
        t0 = time.perf_counter()
        parsed = handlers.input_fn(payload, "text/csv")
        t1 = time.perf_counter()
        prediction = handlers.predict_fn(parsed, handlers.model)
        t2 = time.perf_counter()
        handlers.output_fn(prediction, "text/csv")
        t3 = time.perf_counter()
        for stage, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[stage].append(seconds)
    return {stage: statistics.median(values) / rows * 1e6 for stage, values in times.items()}


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rows, repeats = (100_000, 1) if args.quick else (args.rows, args.repeats)
    common.print_machine()

    import boto3
    from conftest import serving
    from endpoint_models import put_inference_code

    from sfn_mlops.local import jobs
    from sfn_mlops.local.cloud import LocalCloud
    from sfn_mlops.local.jobs.training import job_cpus

    files = inputs(rows)
    threads = job_cpus()
    print(f"rows {rows:,}; {files['raw'].stat().st_size / 1e6:.1f} MB raw; job cores {threads}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        archive, model_file = abalone_model(folder)
        with tarfile.open(archive) as tar:
            schema = json.load(tar.extractfile("schema.json"))  # type: ignore[arg-type]
        codes = {c: float(i) for i, c in enumerate(schema["categorical"]["sex"])}
        cloud = LocalCloud(folder / "workspace")
        with serving(cloud):
            sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
            s3.create_bucket(Bucket="bench")
            cloud.objects.put_file("bench", "model/model.tar.gz", archive)
            for kind, path in files.items():
                cloud.objects.put_file("bench", f"in/{kind}/data.csv", path)
            environment = put_inference_code(cloud)
            for model, env in (("script-mode", environment), ("default-handler", {})):
                sm.create_model(
                    ModelName=model,
                    PrimaryContainer={
                        "Image": IMAGE,
                        "ModelDataUrl": "s3://bench/model/model.tar.gz",
                        "Environment": env,
                    },
                    ExecutionRoleArn=ROLE,
                )
            variants = {
                "script mode (inference.py), raw rows": ("script-mode", "raw", codes),
                "default handler, numeric rows": ("default-handler", "numeric", None),
            }
            results: dict[str, dict[str, list[dict]]] = {
                v: {"job": [], "bare": []} for v in variants
            }
            jobs.prewarm()  # the service starts its fork server when it starts
            for repeat in range(repeats):
                for label, (model, kind, mapping) in variants.items():
                    name = f"{model}-{repeat}"
                    job = run_transform(sm, cloud, name, model, f"s3://bench/in/{kind}/")
                    bare = run_bare(model_file, files[kind], mapping, threads)
                    results[label]["job"].append(job)
                    results[label]["bare"].append(bare)
                    print(
                        f"  {label} #{repeat + 1}: job {job['wall']:.2f} s (scoring "
                        f"{job['scoring']:.2f} s), bare work {bare['work']:.2f} s (fresh "
                        f"{bare['fresh']:.2f} s); load {common.loadavg()}",
                        flush=True,
                    )
            stages = {
                label: handler_stages(cloud, model, files[kind], folder / f"stages-{model}")
                for label, (model, kind, _) in variants.items()
            }
    report(rows, results, stages)


def report(rows: int, results: dict[str, dict[str, list[dict]]], stages: dict) -> None:
    def med(items: list[dict], key: str) -> float:
        return common.median([item[key] for item in items])

    table, verdicts = [], []
    for label, runs in results.items():
        job, bare = med(runs["job"], "wall"), med(runs["bare"], "work")
        ratio = (rows / job) / (rows / bare)
        verdicts.append(ratio >= TARGET)
        table.append(
            [
                label,
                f"{rows / job:,.0f}",
                f"{job:.2f}",
                f"{med(runs['job'], 'scoring'):.2f}",
                f"{med(runs['job'], 'peak_rss') / 2**20:.0f} MiB",
                f"{rows / bare:,.0f}",
                f"{bare:.2f} ({med(runs['bare'], 'fresh'):.2f})",
                f"{med(runs['bare'], 'peak_rss') / 2**20:.0f} MiB",
                f"**{ratio:.2f} — {common.verdict(ratio >= TARGET)}**",
            ]
        )
    header = ["handlers", "job rows/s", "job s", "scoring s", "job peak RSS", "bare rows/s",
              "bare work s (fresh)", "bare peak RSS", f"ratio (target ≥ {TARGET:.2f})"]  # fmt: skip
    print(f"\n## {rows:,} rows: medians")
    print(common.table(table, header))
    print("\n## the job's handlers on one 6 MB payload, us per row (this process)")
    print(
        common.table(
            [
                [label, *(f"{v:.2f}" for v in s.values()), f"{sum(s.values()):.2f}"]
                for label, s in stages.items()
            ],
            ["handlers", "input_fn", "predict_fn", "output_fn", "sum"],
        )
    )
    print(f"\nverdicts: {', '.join(common.verdict(v) for v in verdicts)}")


if __name__ == "__main__":
    main()
