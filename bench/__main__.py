"""python -m bench [--quick] [--items 1,2,3,4,5,6,7,8] [--repeats N] [--run-demo] [--tickers 20,500,5000]

The benchmark suite of issue 5. Prints a table and writes JSON to bench/results/ (`bench.json`,
or `quick.json` with --quick). Items:
  1. LSTM training throughput against a PyTorch nn.LSTM mirror (needs the `bench` extra), per
     core and on the whole machine, at the issue's shape and at the job's default shape;
  2. inference for 20, 100 and 500 tickers (time and memory);
  3. features and folds for 20, 100 and 500 synthetic tickers x 20 years;
  4. the whole pipeline on the sample (from `make demo`'s timings) and a nightly incremental run;
  5. warehouse views on 500 tickers x 1 year of forecasts;
  6. the universe's scale, 20 / 500 / 5,000 synthetic tickers x 20 years (`--tickers` picks the
     sizes; not in the default items, `--items 6`): features and targets (whole, and chunked by
     ticker), the warehouse's size and the read replica's publication per commit (full copy
     against incremental), inference for one session; peak memory of each;
  7. training at the universe's scale, the same sizes (`--items 7`): one retrain month
     (`train_period_model`) and one walk-forward fold (`evaluate_fold`), a process each, with
     their seconds and peak memory (`bench.scale_training`);
  8. the fold evaluation's publication at the same sizes (`--items 8`): `publish_fold_evaluation`
     on every fold's predictions staged as Parquet, against the same rows written from one frame
     in memory (the way before staging), a process each (`bench.scale_training publish`).
`--quick` runs item 1 alone at the issue's shape (about a minute) and prints its JSON, with
`train_throughput_ratio_vs_pytorch` (whole machine) and `..._per_core`.
`python -m bench.report --docs docs/` renders bench/results/bench.json into docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time

from bench import TORCH_INSTALL_HINT, torch_available
from bench._subprocess import ROOT, run_item

RESULTS = ROOT / "bench" / "results"
GPU_NOTE = (
    "GPU figures unmeasured: no GPU was available to this project. The training path runs "
    "on a GPU with no code change (JAX places arrays there; micro-batching is CPU-only)."
)


def machine() -> dict:
    import jax
    import jaxlib

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jax_backend": jax.default_backend(),
        "torch": None,
    }
    if torch_available():
        import torch

        info["torch"] = torch.__version__
    return info


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def item_training(quick: bool, repeats: int | None, log) -> dict:
    from bench.training import ISSUE_SHAPE, default_shape, measure_shape, sample_feature_count

    out = {}
    plans = [(ISSUE_SHAPE, 8 if quick else 24)]
    if not quick:
        plans.append((default_shape(sample_feature_count()), 100))
    for shape, steps in plans:
        log(f"item 1: training, {shape.name} shape ({shape.describe()}), {steps} steps per fold")
        load_before = _load()
        out[shape.name] = measure_shape(shape, steps, repeats or (3 if quick else 5), log=log)
        out[shape.name]["load_average"] = {"before": load_before, "after": _load()}
    return out


def item_sizes(module: str, sizes, log) -> list[dict]:
    rows = []
    for n in sizes:
        log(f"  {module}: {n} tickers")
        rows.append(run_item(module, str(n)))
    return rows


def run_demo(log) -> None:
    log("running `make demo` (the whole pipeline, cold)")
    subprocess.run(["make", "demo"], cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="item 1 at the issue's shape only")
    parser.add_argument(
        "--items", default="1,2,3,4,5", help="comma-separated items (default 1-5; 6, 7 and 8 on request)"
    )
    parser.add_argument(
        "--tickers", default="20,500,5000", help="items 6, 7 and 8's universe sizes (default 20,500,5000)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per training measurement")
    parser.add_argument("--run-demo", action="store_true", help="run `make demo` first (item 4)")
    args = parser.parse_args(argv)
    items = {1} if args.quick else {int(i) for i in args.items.split(",") if i.strip()}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if 1 in items and not torch_available():
        log(TORCH_INSTALL_HINT)
        return 2
    started = time.perf_counter()
    record: dict = {
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "gpu": GPU_NOTE,
        "note": (
            "Timings share the machine with whatever else runs on it; the load averages in "
            "item_runs say how busy it was. Ratios compare the two sides measured "
            "alternately in one run."
        ),
    }
    runs: dict[str, dict] = {}

    def timed(item: int, fn):
        before, t = _load(), time.perf_counter()
        value = fn()
        runs[str(item)] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t, 1),
            "load_average": [before[0], _load()[0]],
        }
        return value

    if 1 in items:
        training = timed(1, lambda: item_training(args.quick, args.repeats, log))
        record["training"] = training
        headline = training["issue"]
        record["train_throughput_ratio_vs_pytorch"] = headline["ratio_whole_machine"]
        record["train_throughput_ratio_vs_pytorch_per_core"] = headline["ratio_per_core"]
        if "default" in training:
            record["train_throughput_ratio_vs_pytorch_default_shape"] = training["default"][
                "ratio_whole_machine"
            ]
            record["train_throughput_ratio_vs_pytorch_per_core_default_shape"] = training["default"][
                "ratio_per_core"
            ]
    if 2 in items:
        from bench.inference import SIZES

        log("item 2: inference")
        record["inference"] = timed(2, lambda: item_sizes("bench.inference", SIZES, log))
    if 3 in items:
        from bench.scaling import SIZES as SCALING_SIZES

        log("item 3: features and folds")
        record["features"] = timed(3, lambda: item_sizes("bench.scaling", SCALING_SIZES, log))
    if 4 in items:
        from bench import pipeline

        if args.run_demo:
            run_demo(log)
        log("item 4: pipeline (demo timings, nightly incremental run)")
        record["pipeline"] = timed(4, lambda: pipeline.measure(log=log))
    if 5 in items:
        log("item 5: warehouse views")
        record["warehouse"] = timed(5, lambda: run_item("bench.warehouse_queries"))
    if 6 in items:
        from bench import universe

        sizes = tuple(int(n) for n in args.tickers.split(",") if n.strip())
        log(f"item 6: universe scale, {', '.join(map(str, sizes))} tickers")
        record["universe"] = timed(6, lambda: universe.measure(sizes, log=log))
    if 7 in items:
        from bench import scale_training

        sizes = tuple(int(n) for n in args.tickers.split(",") if n.strip())
        log(f"item 7: a retrain month and one fold, {', '.join(map(str, sizes))} tickers")
        record["training_scale"] = timed(7, lambda: scale_training.measure(sizes, log=log))
    if 8 in items:
        from bench import scale_training

        sizes = tuple(int(n) for n in args.tickers.split(",") if n.strip())
        log(f"item 8: the fold evaluation's publication, {', '.join(map(str, sizes))} tickers")
        record["fold_publication"] = timed(8, lambda: scale_training.measure_publication(sizes, log=log))
    record["item_runs"] = runs
    record["suite_s"] = round(time.perf_counter() - started, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("quick.json" if args.quick else "bench.json")
    if not args.quick and not items >= {1, 2, 3, 4, 5} and out.is_file():
        merged = json.loads(out.read_text())  # a partial run updates its items only
        item_runs = {**merged.get("item_runs", {}), **runs}
        merged.update(record)
        merged["item_runs"] = item_runs
        record = merged
    out.write_text(json.dumps(record, indent=2))
    from bench.report import render_text

    if args.quick:
        keys = ("train_throughput_ratio_vs_pytorch", "train_throughput_ratio_vs_pytorch_per_core")
        print(json.dumps({**{k: record[k] for k in keys}, **record}, indent=2))
    else:
        print(render_text(record))
    log(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
