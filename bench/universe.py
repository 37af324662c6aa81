"""Item 6: the universe's scale, 20 / 500 / 5,000 synthetic tickers x 20 years.

For each size, in a fresh process each (for its own peak memory):
- `bench.universe_features`: features and targets, for the whole universe at once (up to 500
  tickers: at 5,000 the whole computation would need about 30 GB) and chunked by ticker;
- `bench.publication`: the warehouse (prices for 20 years, 20 sessions of forecasts), its file
  size, and the read replica's publication per nightly commit, full copy against incremental;
- `bench.inference`: one session's forecasts (the model on two years of the universe);
- `bench.universe_nightly`: the features asset's full (blocked) rebuild, then, in a fresh
  process, nightly incremental runs of it (one new session each) with their peak memory.
`python -m bench --items 6 [--tickers 20,500]` runs it; `python -m bench.report --docs docs/`
renders it.
"""

from __future__ import annotations

import os
import tempfile

from bench._subprocess import run_item

SIZES = (20, 500, 5000)
PARTS = {
    "features": ("bench.universe_features",),
    "publication": ("bench.publication",),
    "inference": ("bench.inference",),
}


def measure(sizes: tuple[int, ...] = SIZES, log=print) -> list[dict]:
    rows = []
    for n in sizes:
        row: dict = {"tickers": n}
        for name, (module, *args) in PARTS.items():
            log(f"  {module}: {n} tickers")
            row[name] = run_item(module, str(n), *args, timeout=3600)
        log(f"  bench.universe_nightly: {n} tickers")
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            row["nightly"] = {
                # Features only: the end-to-end nightly run (with a retrain) is run on its own.
                "build": run_item("bench.universe_nightly", "build", str(n), tmp, "features", timeout=3600),
                "night": run_item("bench.universe_nightly", "night", str(n), tmp, timeout=3600),
            }
        rows.append(row)
    return rows
