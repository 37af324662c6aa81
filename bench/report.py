"""Render the suite's JSON as Markdown: to stdout, or into docs/performance.md between
`<!-- bench:start -->` and `<!-- bench:end -->`.

    python -m bench.report [--json bench/results/bench.json] [--docs docs/] [--sections bench,universe]

Items 6 (the universe's scale), 7 (training at that scale) and 8 (the fold evaluation's
publication) go to their own sections, `<!-- universe:start -->`, `<!-- training-scale:start -->`
and `<!-- fold-publication:start -->`, so that they can be re-measured (`python -m bench --items
6,7,8`) without re-running the rest; `--sections` picks the sections to
write (default: those the JSON has).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench._subprocess import ROOT
from forecast_assets.doc_sections import add_docs_argument, write_sections


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(v: float | None, digits: int = 0) -> str:
    if v is None:
        return ""
    return f"{v:,.{digits}f}"


def _describe(t: dict) -> str:
    from bench.training import Shape

    shape = dict(t["shape"], quantiles=tuple(t["shape"]["quantiles"]))
    return Shape(**shape).describe()


def _training(record: dict) -> list[str]:
    out = ["### Training throughput against PyTorch (item 1)", ""]
    rows = []
    for name, t in record["training"].items():
        s = t["samples_per_s"]
        best = t["pytorch_best_whole_machine"]
        torch_whole = s[f"whole_pytorch_{best}"]
        rows.append(
            [
                f"{name}: {_describe(t)}",
                "one model, one core",
                _n(s["per_core_project"]),
                _n(s["per_core_pytorch"]) + " (1 thread)",
                f"**{t['ratio_per_core']:.2f}**",
            ]
        )
        rows.append(
            [
                "",
                f"{t['folds']} fold models, whole machine",
                _n(s["whole_project"]) + " (a process per fold, 2 at a time)",
                _n(torch_whole) + (" (2 threads)" if best == "threads" else " (2 processes)"),
                f"**{t['ratio_whole_machine']:.2f}**",
            ]
        )
    out.append(_table(["shape", "form", "project, samples/s", "PyTorch, samples/s", "ratio"], rows))
    first = next(iter(record["training"].values()))
    out += [
        "",
        (
            f"Medians of {first['repeats']} alternating repeats; a fold is a fresh model trained "
            f"for a fixed number of steps (no validation). Whole machine: PyTorch's other "
            f"configuration reached "
            + "; ".join(
                f"{n} {_n(t['samples_per_s']['whole_pytorch_' + ('processes' if t['pytorch_best_whole_machine'] == 'threads' else 'threads')])}"
                for n, t in record["training"].items()
            )
            + " samples/s. Not in these figures: what a fresh fold process costs before it "
            "trains (importing JAX and the project, compiling from the persistent cache), "
            "measured alone: "
            + "; ".join(f"{n} {t['fold_process_start_s']:.1f} s" for n, t in record["training"].items())
            + " (Dagster's own step-process start comes on top)."
        ),
    ]
    out += [
        "",
        "What makes the project's side fast on a CPU (`forecast_core/models/lstm/modules.py`, `train.py`): "
        "each step's batch runs as micro-batches of 32 windows, gathered and differentiated "
        "inside the jitted step (a `lax.scan` that sums their gradients), then one optimizer "
        "update with the mean, so every micro-batch's activations stay in the core's cache; "
        "the LSTM's backward pass is written by hand (a `jax.custom_vjp`): the reverse scan does "
        "one `[B, 4H] @ [4H, H]` product per step, every factor that does not depend on the "
        "carry is computed for all steps before it, and the recurrent weight's gradient is one "
        "product after it. The second core is used the way the job uses it: a second process "
        "(XLA runs this model on one core per process). float32 throughout: bf16 was not used. "
        "Prediction is unchanged bit for bit (stored models predict exactly as before); in "
        "training, the forward pass computes the sigmoids as `(1 + tanh(z/2)) / 2` in one "
        "elementwise pass and the gradients agree with autodiff to float32 rounding, so trained "
        "models differ from before only through rounding and through dropout masks drawn per "
        "micro-batch (same distribution, other draws).",
    ]
    return out


def _inference(rows: list[dict]) -> list[str]:
    table = [
        [
            r["tickers"],
            _n(r["jit_call_s"] * 1000, 1),
            _n(r["compile_s"], 2),
            _n(r["xla_temp_mb"], 1),
            _n(r["predict_s"], 3),
            _n(r["forecasts_s"], 3),
            _n(r["peak_rss_mb"]),
        ]
        for r in rows
    ]
    return [
        "### Inference (item 2)",
        "",
        _table(
            [
                "tickers",
                "jitted call, ms",
                "its compilation, s",
                "XLA working memory, MB",
                "`LSTMForecaster.predict`, one session, s",
                "`make_forecasts`, one session, s",
                "process peak RSS, MB",
            ],
            table,
        ),
        "",
        "The jitted call runs every ticker's window of the session at once. The project's path "
        "(`predict`) also scales and windows the panel and pads to one compiled 8192-row "
        "chunk, so its time barely moves with the universe.",
    ]


def _features(rows: list[dict]) -> list[str]:
    base = rows[0]
    table = [
        [
            r["tickers"],
            _n(r["price_rows"]),
            _n(r["features_s"], 2),
            _n(r["folds_s"], 3),
            _n(1000 * r["features_s"] / r["tickers"], 1),
            f"{(r['features_s'] / base['features_s']) / (r['tickers'] / base['tickers']):.2f}",
            _n(r["peak_rss_mb"]),
        ]
        for r in rows
    ]
    return [
        "### Features and folds (item 3)",
        "",
        _table(
            [
                "tickers (x 20 years)",
                "price rows",
                "features + targets + panel, s",
                "folds, s",
                "ms per ticker",
                f"cost / linear from {base['tickers']}",
                "peak RSS, MB",
            ],
            table,
        ),
        "",
        "Synthetic tickers are block bootstraps (20-session blocks) of the sample's returns, "
        "with the real ^GSPC as the exogenous ticker. 'cost / linear' is the time relative to "
        f"{base['tickers']} tickers scaled linearly (1.00: linear).",
    ]


def _pipeline(p: dict) -> list[str]:
    out = ["### Pipeline (item 4)", ""]
    demo = p.get("demo")
    if demo:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in demo["steps_s"].items())
        out.append(
            f"Whole pipeline on the sample, cold (`make demo`, {demo.get('date', '')}): "
            f"**{demo['total_s']:.0f} s** ({steps}); peak RSS {demo['peak_rss_mb']} MB."
        )
    else:
        out.append(
            "Whole pipeline on the sample: not measured in this run (run `make demo`, which "
            "writes bench/results/demo_timings.json, then the suite)."
        )
    n = p["nightly"]
    rows = [[k, _n(v, 2)] for k, v in n["steps_s"].items()]
    out += [
        "",
        f"Nightly incremental run for {n['day']} (the model of the month already trained; "
        f"{p['warehouse']}): `nightly_job` in-process, **{n['wall_s']:.1f} s** wall, "
        f"slowest step {n['slowest_step_s']:.1f} s, peak RSS {n['peak_rss_mb']:.0f} MB.",
        "",
        _table(["step", "seconds"], rows),
    ]
    return out


def _warehouse(w: dict) -> list[str]:
    rows = [
        [name, q["rows"], _n(q["query_s"] * 1000, 1), _n(q["read_sql_s"] * 1000, 1)]
        for name, q in w["queries"].items()
    ]
    return [
        "### Warehouse (item 5)",
        "",
        f"{w['tickers']} tickers x {w['sessions']} sessions x {len(w['horizons'])} horizons = "
        f"{w['forecast_rows']:,} forecast rows ({w['file_mb']} MB file, written in one "
        f"transaction in {w['write_s']:.2f} s):",
        "",
        _table(["view", "rows", "query, ms", "`read_sql` (open, query, polars), ms"], rows),
    ]


def _reproduce(item: int, rows: list[dict], seconds: float | None) -> str:
    """The command that re-measures a universe-scale item at `rows`' sizes, and how long it took."""
    sizes = ",".join(str(r["tickers"]) for r in rows)
    took = f" ({seconds:.0f} s on this machine)" if seconds else ""
    return f"Reproduce with `.venv/bin/python -m bench --items {item} --tickers {sizes}`{took}"


def _universe(rows: list[dict], seconds: float | None = None) -> list[str]:
    base = rows[0]

    def linear(value: float, base_value: float, n: int) -> str:
        return f"{(value / base_value) / (n / base['tickers']):.2f}"

    table = []
    for r in rows:
        f, p, i = r["features"], r["publication"], r["inference"]
        table.append(
            [
                f"{r['tickers']:,}",
                _n(f["price_rows"]),
                f"{_n(f['features_s'], 2)} ({_n(f['whole_peak_rss_mb'])} MB)"
                if "features_s" in f
                else "not run (about 30 GB)",
                _n(f["chunked_s"], 2),
                _n(f["peak_rss_mb"]),
                linear(f["chunked_s"], base["features"]["chunked_s"], r["tickers"]),
                _n(p["warehouse_mb"], 1),
                _n(p["full_copy_s"], 3),
                f"**{_n(p['incremental_s'], 3)}** (max {_n(p['incremental_max_s'], 3)})",
                _n(i["predict_s"], 3),
                _n(i["forecasts_s"], 3),
                _n(max(f["peak_rss_mb"], p["peak_rss_mb"], i["peak_rss_mb"])),
            ]
        )
    chunk = rows[0]["features"]["chunk"]
    repeats = rows[0]["publication"]["repeats"]
    return [
        "### Universe scale: 20 to 5,000 tickers (item 6)",
        "",
        _reproduce(6, rows, seconds)
        + "; `--tickers 20,500` runs the small sizes only. Then `.venv/bin/python -m bench.report "
        "--docs docs/ --sections universe` renders this section from `bench/results/bench.json`. "
        "Peak memory is each process's `ru_maxrss` (the synthetic prices included): the "
        "features process peaks with the whole universe's prices held, whatever the chunk. "
        "A retrain month and one fold at these sizes are item 7 (below); the nightly run end "
        "to end is `bench.universe_nightly` (its section below).",
        "",
        _table(
            [
                "tickers (x 20 years)",
                "price rows",
                "features + targets, whole, s (peak)",
                f"the same, {chunk} tickers at a time, s",
                "features process peak RSS, MB",
                "chunked cost / linear",
                "warehouse, MB",
                "publication per commit, full copy, s",
                "publication per commit, incremental, s",
                "`LSTMForecaster.predict`, one session, s",
                "`make_forecasts`, one session, s",
                "peak RSS of the item's processes, MB",
            ],
            table,
        ),
        "",
        "Features: the `features` asset's computation (`build_features`, `build_targets`) on the "
        "synthetic prices; chunked, each chunk carries the exogenous tickers (market features "
        "are joined by date), and the first chunk is checked equal to the whole computation's "
        "rows where that runs. "
        f"Publication: a nightly commit replaces the newest session's prices and writes its "
        f"forecasts ({_n(rows[-1]['publication']['rows_per_commit'])} rows deleted and inserted at "
        f"{rows[-1]['tickers']:,} tickers); medians of {repeats} commits each, the two "
        "publications alternating on the same warehouse: the previous one (checkpoint, copy "
        "the whole file, fsync, swap) and `warehouse.replica.publish` (the changed slices into "
        "the stale slot, checkpoint, swap the link). The incremental cost is the changed "
        "tables' predicate scans, the slot's checkpoint and fixed costs: it does not include "
        "tables the commit did not write, whatever their size (a whole-table write such as "
        "today's `features` copies that table). Inference: as item 2, on two years of the "
        "universe.",
        *_nightly(rows),
    ]


def _nightly(rows: list[dict]) -> list[str]:
    """The blocked features against the unblocked computation, and the nightly incremental run."""
    rows = [r for r in rows if "nightly" in r and "blocked" in r["features"]]
    if not rows:
        return []
    table = []
    for r in rows:
        b, build, night = r["features"]["blocked"], r["nightly"]["build"], r["nightly"]["night"]
        last = night["nights"][-1]
        table.append(
            [
                f"{r['tickers']:,}",
                _n(b["unblocked_s"], 2),
                _n(b["blocked_s"], 2),
                f"{b['blocked_over_unblocked']:.2f}",
                _n(build["full_s"], 1),
                f"**{_n(night['features_s_median'], 2)}** (max {_n(night['features_s_max'], 2)})",
                _n(sorted(n["store_s"] for n in night["nights"])[len(night["nights"]) // 2], 2),
                f"{_n(last['feature_rows'])} / {_n(last['target_rows'])}",
                _n(night["peak_rss_mb"]),
            ]
        )
    return [
        "",
        "#### Incremental features (blocks) and the nightly run",
        "",
        _table(
            [
                "tickers",
                "features, unblocked, s",
                "features, blocked, s",
                "blocked / unblocked",
                "`features` asset, full rebuild, s",
                f"`features` asset, one night, s (median of {len(rows[0]['nightly']['night']['nights'])})",
                "storing the night's prices, s",
                "feature / target rows written per night",
                "nightly process peak RSS, MB",
            ],
            table,
        ),
        "",
        "Features are stored computed in 2-year calendar blocks, each from a 3-year warm-up "
        "(`forecast_core.data.blocks`), so that a night recomputes one block and equals a full "
        "recompute bit for bit. Blocked against unblocked: the same chunks, alternating, medians "
        "(one repeat at 5,000). Full rebuild: the `features` asset on an empty features table "
        "(prices read, blocked features and targets, written in one transaction, 500 tickers "
        "at a time). One night: a fresh process stores one new session's prices (a price "
        "vintage) and runs the `features` asset, which reads every ticker's prices of the new "
        "session's block and its warm-up (3 to 5 years), recomputes them and writes the "
        "new session's features and the targets it changes. Forecasts and scores are not in "
        "this figure.",
    ]


def _training_scale(rows: list[dict], seconds: float | None = None) -> list[str]:
    """Item 7: a retrain month and one fold at each universe size."""
    base = rows[0]

    def per_ticker(r: dict, what: str, key: str) -> str:
        ratio = (r[what][key] / base[what][key]) / (r["tickers"] / base["tickers"])
        return f"{ratio:.2f}"

    table, models = [], []
    for r in rows:
        t, f = r["retrain"], r["fold"]
        table.append(
            [
                f"{r['tickers']:,}",
                _n(t["panel_rows"]),
                _n(t["panel_disk_mb"]),
                _n(t["panel_peak_mb"]),
                f"**{_n(t['retrain_s'], 1)}** ({_n(t['retrain_lstm_s'], 1)}, {t['retrain_epochs']} epochs)",
                _n(t["peak_rss_mb"]),
                f"**{_n(f['fold_s'], 1)}** ({_n(f['fold_model_s']['lstm'], 1)})",
                _n(f["peak_rss_mb"]),
                per_ticker(r, "retrain", "retrain_s"),
                per_ticker(r, "fold", "fold_s"),
                t["retrain_serving"],
            ]
        )
        models.append([f"{r['tickers']:,}", *(_n(v, 1) for v in f["fold_model_s"].values())])
    last = rows[-1]["fold"]
    return [
        "### A retrain month and one fold at scale (item 7)",
        "",
        _reproduce(7, rows, seconds)
        + ", then `.venv/bin/python -m bench.report --docs docs/ --sections training-scale`. Each "
        "measurement is a fresh process (`python -m bench.scale_training {retrain,fold} N`) on "
        "the demo's configuration: a child process builds the modelling panel 250 tickers at a "
        "time (what `panel_known_at` reads) and spills it to Parquet files of 100 tickers (as "
        "`lstm_model` and each `fold_evaluation` step do, `forecast_core.data.spilled_panel`); "
        "the measuring process then runs `train_period_model` for the last whole month (the "
        "LSTM, every baseline on validation, the gate: what `lstm_model` does), or "
        f"`evaluate_fold` on the last of the {last['n_folds']} folds (one of `fold_evaluation`'s "
        "steps, which run in parallel processes), on the spilled panel. Its peak memory (the "
        "process's `ru_maxrss`) is the models' and the libraries'; the synthetic prices and the "
        "panel's building are the child's (the assets read the panel from the warehouse a chunk "
        "at a time instead).",
        "",
        _table(
            [
                "tickers (x 20 years)",
                "panel rows",
                "panel on disk, MB",
                "building and spilling it, peak RSS, MB",
                "retrain month, s (the LSTM's, epochs)",
                "retrain peak RSS, MB",
                "one fold, s (the LSTM's)",
                "fold peak RSS, MB",
                "retrain cost / linear",
                "fold cost / linear",
                "serving model (validation)",
            ],
            table,
        ),
        "",
        "Seconds of each model in the fold (fit on the training slice, predict the test slice):",
        "",
        _table(["tickers", *last["fold_model_s"]], models),
        "",
        "What bounds the memory: no step holds the whole panel. Each model reads only the "
        "columns it uses from the spilled files (`panel_columns`, `columns_between`: its keys, "
        "targets and one to four inputs; a slice of dates where it scores one); ridge and the "
        "point baselines fit a chunk of tickers at a time (ridge from sufficient statistics, 400 "
        "tickers of its 22 features a chunk: `CHUNK_TICKER_COLUMNS`), the volatility baselines "
        "fit per chunk and pool their standardised targets, the LSTM builds its windows per "
        "chunk, and every forecast is made a chunk at a time (1,700 to 2,000 tickers of a few "
        "columns; `model_parts`: no model reads a cross-section). What still grows with the universe: "
        "the LSTM's float32 training arrays (inputs, targets, scales, ids: about 75 bytes per "
        "row, 1.8 GB at 5,000 tickers x 20 years, with their copy on the JAX device) and the "
        "pooled training residuals and z-values (16 bytes per row and horizon). Results are "
        "those of the panel in memory (`tests/data/test_spilled_panel.py`: every model's fold "
        "predictions bit for bit, ridge to the order of its float sums). Before the spill "
        "(commit 74488b1, measured the same way but with the prices and the panel in the "
        "process): 471.9 s and 17,019 MB for the retrain month, 527.3 s and 17,145 MB for the "
        "fold at 5,000 tickers. The spill is not what made these runs slower: side by side in "
        "one process (`python -m bench.spilled_vs_memory N`: the LSTM fitted for 4 epochs, then "
        "the fold's test forecasts), the panel in memory against the spilled panel took 44.0 s "
        "(the process's first fit, with its compilations) against 30.4 s in the training loop "
        "and 91.0 s against 94.3 s for the test forecasts at 5,000 tickers, and 20.5 s against "
        "18.6 s and 7.5 s against 7.9 s at 500 (the second repeat); the difference from commit 74488b1's run is "
        "the LSTM's training loop (98.4 s then, 176.8 s now, for the same 25 epochs), whose "
        "cause is not established. "
        '"Cost / linear" is the time per ticker over the 20-ticker '
        "time per ticker (1: linear; below 1: better). The LSTM's cost grows slowly: a fixed "
        "number of steps per epoch, and early stopping scores at most `train.max_val_windows` "
        "(100,000) validation windows after each; the gate and the fold score every window.",
    ]


def _fold_publication(rows: list[dict], seconds: float | None = None) -> list[str]:
    """Item 8: `publish_fold_evaluation` from staged files against one frame in memory."""
    base = rows[0]["staged"]
    table = []
    for r in rows:
        s, f = r["staged"], r["frames"]
        linear = (s["publish_s"] / base["publish_s"]) / (r["tickers"] / rows[0]["tickers"])
        table.append(
            [
                f"{r['tickers']:,}",
                _n(s["prediction_rows"]),
                _n(s["staged_mb"]),
                f"**{_n(s['publish_s'], 1)}**",
                f"**{_n(s['peak_rss_mb'])}**",
                _n(f["publish_s"], 1),
                _n(f["peak_rss_mb"]),
                f"{linear:.2f}",
                _n(s["warehouse_mb"]),
            ]
        )
    return [
        "### Publishing the fold evaluation at scale (item 8)",
        "",
        _reproduce(8, rows, seconds)
        + ", then `.venv/bin/python -m bench.report --docs docs/ --sections fold-publication`. "
        f"The `fold_evaluation` asset's last step, `publish_fold_evaluation`, on {base['folds']} "
        "folds' predictions, as many rows as `evaluate_fold` gives at each size (7 models, 2 "
        "horizons, 252 test sessions a fold; noise values), staged as Parquet by a child process "
        "as the fold steps stage them (`stage_fold`, in the run's storage): the step checks the "
        "files' key and streams them into `fold_predictions` under a 2 GiB DuckDB memory limit "
        "(`warehouse.io.ParquetRows`, `STAGED_MEMORY_LIMIT`), writes `fold_metrics` in the same "
        "transaction, then publishes the read replica (here its first publication, which seeds "
        "the slot table by table). Against it, the same rows read into one frame and written "
        "from memory, as the step did when Dagster handed it every fold's frames (their "
        "unpickling not included). Each is a fresh process; peak RSS is its `ru_maxrss`. "
        "`fold_predictions` has no PRIMARY KEY index (the writer keeps the key): with it, the "
        "staged publication at 500 tickers took 19.7 s instead of 10.0 s and the warehouse "
        "1,101 MB instead of 652 MB (measured once each, before the memory limit).",
        "",
        _table(
            [
                "tickers",
                "prediction rows",
                "staged Parquet, MB",
                "publication from the staged files, s",
                "its peak RSS, MB",
                "from one frame, s",
                "its peak RSS, MB",
                "staged cost / linear",
                "warehouse, MB",
            ],
            table,
        ),
    ]


def _item_runs(record: dict) -> dict:
    runs = dict(record.get("item_runs", {}))
    if "1" not in runs and "training" in record:  # records written before item_runs existed
        loads = [t["load_average"] for t in record["training"].values() if "load_average" in t]
        if loads:
            runs["1"] = {"load_average": [loads[0]["before"][0], loads[-1]["after"][0]]}
    return runs


def render(record: dict) -> str:
    m = record["machine"]
    parts = [
        "### Benchmarks",
        "",
        "Reproduce with `.venv/bin/pip install -e '.[bench]'` (PyTorch, benchmark-only), then "
        "`.venv/bin/python -m bench` (the whole suite, about 8 minutes on this machine; "
        "`.venv/bin/python -m bench --quick` re-measures the headline training ratio in about a "
        "minute) and `.venv/bin/python -m bench.report --docs docs/` to regenerate this "
        "section from `bench/results/bench.json`.",
        "",
        f"Machine: {m['cpu']}, {m['cpus_usable']} cores, CPU only; Python {m['python']}, JAX "
        f"{m['jax']}, PyTorch {m['torch']}; measured {record['date'][:10]}. 1-minute load average "
        f"before -> after each item (the suite's own processes count: item 1 keeps both cores busy, "
        f"so about 2 is the suite alone; more means other work shared the cores): "
        + ", ".join(
            f"item {k} {v['load_average'][0]} -> {v['load_average'][1]}"
            for k, v in sorted(_item_runs(record).items())
        )
        + ". Absolute figures move with the machine's load; ratios compare the two sides measured "
        f"alternately in the same run. {record['gpu']}",
    ]
    if "training" in record:
        parts += ["", *_training(record)]
    if "inference" in record:
        parts += ["", *_inference(record["inference"])]
    if "features" in record:
        parts += ["", *_features(record["features"])]
    if "pipeline" in record:
        parts += ["", *_pipeline(record["pipeline"])]
    if "warehouse" in record:
        parts += ["", *_warehouse(record["warehouse"])]
    return "\n".join(parts)


def render_text(record: dict) -> str:
    text = render(record)
    if "universe" in record:
        text += "\n\n" + "\n".join(
            _universe(record["universe"], record.get("item_runs", {}).get("6", {}).get("seconds"))
        )
    if "training_scale" in record:
        text += "\n\n" + "\n".join(
            _training_scale(record["training_scale"], record.get("item_runs", {}).get("7", {}).get("seconds"))
        )
    if "fold_publication" in record:
        text += "\n\n" + "\n".join(
            _fold_publication(
                record["fold_publication"], record.get("item_runs", {}).get("8", {}).get("seconds")
            )
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "bench.json"))
    parser.add_argument(
        "--sections",
        help="comma-separated: bench, universe, training-scale, fold-publication (default: what the JSON has)",
    )
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    import json

    path = Path(args.json)
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run `python -m bench` first")
    record = json.loads(path.read_text())
    sections = {}
    if any(k in record for k in ("training", "inference", "features", "pipeline", "warehouse")):
        sections["bench"] = render(record)
    if "universe" in record:
        sections["universe"] = "\n".join(
            _universe(record["universe"], record.get("item_runs", {}).get("6", {}).get("seconds"))
        )
    if "training_scale" in record:
        sections["training-scale"] = "\n".join(
            _training_scale(record["training_scale"], record.get("item_runs", {}).get("7", {}).get("seconds"))
        )
    if "fold_publication" in record:
        sections["fold-publication"] = "\n".join(
            _fold_publication(
                record["fold_publication"], record.get("item_runs", {}).get("8", {}).get("seconds")
            )
        )
    if args.sections:
        wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
        missing = [s for s in wanted if s not in sections]
        if missing:
            raise SystemExit(f"{path} has no results for section(s) {missing}")
        sections = {s: sections[s] for s in wanted}
    if args.docs:
        for page in write_sections(args.docs, sections):
            print(f"updated {page}")
    else:
        print("\n\n".join(sections.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
