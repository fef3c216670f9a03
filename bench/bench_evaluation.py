"""The evaluation job's own time, before and after the bootstrap intervals (issue 22, item 4).

Times `evaluate.evaluate(...)` (load the model, read the test split, predict, bootstrap, write
evaluation.json and the model quality baseline) in this process, for the evaluation script at
a git ref (the baseline, default `main`) and in the working tree, alternating so machine noise
hits both alike. Both score the same run's files: the model, the bundled abalone test split
(627 rows) and the training and validation splits, with the champion (the production model
staged by FindChampion) and without it. The interpreter's start and the imports are left out:
they are the same for both and the fork server pays them once.

Usage: python bench/bench_evaluation.py RUN_DIR [--base main] [--repeats 7]
RUN_DIR is a local run's folder in the workspace's object store, one with a champion, e.g.
`WORKSPACE/objects/sfn-mlops-artifactbucket/runs/RUN` after a second `sfn-mlops run`.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "containers" / "common"))

GATE = {"metric": "rmse", "direction": "minimize", "champion_margin": 0.0}


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def base_script(ref: str, into: Path) -> Path:
    text = subprocess.run(
        ["git", "show", f"{ref}:containers/evaluation/evaluate.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = into / "evaluate_base.py"
    path.write_text(text)
    return path


def one_run(module: ModuleType, run: Path, out: Path, champion: bool, gate: bool) -> float:
    kwargs: dict[str, Any] = {
        "model_dir": str(next((run / "training").rglob("model.tar.gz")).parent),
        "test_path": str(next((run / "processing/test").glob("*.csv"))),
        "output_dir": str(out),
        "champion_dir": str(run / "champion") if champion else None,
        "split_paths": {
            split: str(next((run / "processing" / split).glob("*.csv")))
            for split in ("train", "validation")
        },
    }
    if gate:
        kwargs["gate"] = GATE
    started = time.perf_counter()
    module.evaluate(**kwargs)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--base", default="main")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        before = load(base_script(args.base, tmp), "evaluate_base")
        after = load(ROOT / "containers/evaluation/evaluate.py", "evaluate_now")
        print(f"{'champion':<10}{'base median s':>15}{'now median s':>15}{'added s':>10}")
        for champion in (False, True):
            times: dict[str, list[float]] = {"base": [], "now": []}
            for _ in range(args.repeats):
                for label, module, gate in (("base", before, False), ("now", after, True)):
                    seconds = one_run(module, args.run, tmp / label, champion, gate)
                    times[label].append(seconds)
            base, now = statistics.median(times["base"]), statistics.median(times["now"])
            print(f"{'yes' if champion else 'no':<10}{base:>15.3f}{now:>15.3f}{now - base:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
