"""The LSTM study: settings chosen on validation slices, seed noise, and the test score reported.

    python -m bench.lstm_study [--folds 0,1,2,3,4] [--seeds 0,1,2] [--set model.lookback=60 ...]
                               [--config FILE.toml] [--aci 0.02] [--out bench/results/lstm_study.json]
    python -m bench.lstm_study --report docs/studies/*.json [--docs docs/]

For each fold of the walk-forward layout (the same folds the pipeline evaluates) and each seed, it
fits the LSTM (with the given overrides of the default configuration) and the volatility
baselines on the fold's training slice, and scores them on the fold's *validation* slice (what a
setting may be chosen on) and on its *test* slice (reported, never used to choose). It prints the
ratio of each to `ewma_vol`, per fold and as the mean over folds, with the spread over seeds. It
runs outside Dagster on an in-memory panel of the source (the embedded sample by default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import polars as pl

from forecast_assets.doc_sections import add_docs_argument, write_sections
from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig, config_from_dict
from forecast_core.data.features import build_features, build_targets, feature_columns
from forecast_core.data.panel import assemble_panel
from forecast_core.evaluation import metrics
from forecast_core.evaluation.folds import walk_forward_folds
from forecast_core.models.baselines import make_baseline
from forecast_core.models.forecaster import ForecastTask, rows_between
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.recalibration import Recalibrated
from forecast_core.sources import make_source

VOL_BASELINES = ("ewma_vol", "gjr_garch", "vol_blend")


def study_panel(cfg: ForecastConfig) -> tuple[pl.DataFrame, ForecastTask]:
    """The labelled panel of the configured source's whole history, and the forecast task."""
    source = make_source(cfg)
    end = source.last_date() if hasattr(source, "last_date") else dt.date.today()
    prices = source.fetch(cfg.universe.all_tickers, dt.date.fromisoformat(cfg.source.start_date), end)
    feats = build_features(prices, cfg)
    universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    panel = assemble_panel(feats, build_targets(universe, cfg.horizons), prices)
    return panel, ForecastTask(feature_columns(feats), cfg.horizons, cfg.quantiles)


def _pinball(q: np.ndarray, rows: pl.DataFrame, task: ForecastTask) -> list[float]:
    y = rows.select(task.target_columns).to_numpy()
    return [metrics.pinball(y[:, i], q[:, i, :], task.quantiles) for i in range(len(task.horizons))]


def _coverage(q: np.ndarray, rows: pl.DataFrame, task: ForecastTask) -> list[float]:
    y = rows.select(task.target_columns).to_numpy()
    lo, hi = task.quantiles.index(0.1), task.quantiles.index(0.9)
    return [metrics.coverage(y[:, i], q[:, i, lo], q[:, i, hi]) for i in range(len(task.horizons))]


def score_slices(model, panel: pl.DataFrame, task: ForecastTask, fold) -> dict[str, list[float]]:
    out = {}
    for name, (start, end) in {"val": fold.val, "test": (fold.test_start, fold.test_end)}.items():
        rows = rows_between(panel, start, end).filter(
            pl.all_horizontal(pl.col(task.target_columns).is_not_null())
        )
        q = model.predict(panel, start, end)
        known = (
            rows_between(panel, start, end)
            .select(pl.all_horizontal(pl.col(task.target_columns).is_not_null()))
            .to_series()
            .to_numpy()
        )
        out[f"{name}_pinball"] = _pinball(q[known], rows, task)
        out[f"{name}_coverage"] = _coverage(q[known], rows, task)
        y = rows.select(task.target_columns).to_numpy()
        point = model.point_forecast(panel, start, end, q)[known]
        out[f"{name}_rmse"] = [metrics.rmse(y[:, i], point[:, i]) for i in range(len(task.horizons))]
        out[f"{name}_rmse_zero"] = [
            metrics.rmse(y[:, i], np.zeros(len(y))) for i in range(len(task.horizons))
        ]
    return out


def _member_scores(lstm: LSTMForecaster, panel: pl.DataFrame, task: ForecastTask, fold) -> dict:
    """Each ensemble member's validation and test pinball `[K][H]` (single-seed results)."""
    out = {}
    for name, (start, end) in {"val": fold.val, "test": (fold.test_start, fold.test_end)}.items():
        rows = rows_between(panel, start, end)
        known = (
            rows.select(pl.all_horizontal(pl.col(task.target_columns).is_not_null())).to_series().to_numpy()
        )
        members = lstm.predict_members(panel, start, end)
        out[f"{name}_pinball"] = [_pinball(m[known], rows.filter(pl.Series(known)), task) for m in members]
    return out


def run(
    cfg: ForecastConfig,
    folds_wanted: list[int],
    seeds: list[int],
    baselines: tuple[str, ...],
    aci: tuple[float, ...] = (),
) -> dict:
    panel, task = study_panel(cfg)
    sessions = panel.drop_nulls()[DATE].unique().sort().to_list()
    folds = [f for f in walk_forward_folds(sessions, cfg.folds, cfg.purge_sessions) if f.fold in folds_wanted]
    results: dict = {"folds": {}, "horizons": list(cfg.horizons)}
    for fold in folds:
        fold_panel = panel.filter(pl.col(DATE) <= fold.test_end)
        entry: dict = {}
        for name in baselines:
            model = make_baseline(name, task, cfg)
            try:
                model.fit(fold_panel, fold.train_end, fold.val)
            except Exception as exc:  # noqa: BLE001 - a study reports a model that cannot run
                print(f"fold {fold.fold} {name}: {exc}")
                continue
            entry[name] = score_slices(model, fold_panel, task, fold)
            for gamma in aci:
                entry[f"{name}_aci_{gamma}"] = score_slices(
                    Recalibrated(model, gamma, fold.val_start), fold_panel, task, fold
                )
        entry["lstm"] = []
        for seed in seeds:
            seeded = config_from_dict(_with_seed(cfg, seed))
            started = time.perf_counter()
            lstm = LSTMForecaster(task, seeded).fit(fold_panel, fold.train_end, fold.val)
            scores = score_slices(lstm, fold_panel, task, fold)
            scores["members"] = _member_scores(lstm, fold_panel, task, fold)
            for gamma in aci:
                scores[f"aci_{gamma}"] = score_slices(
                    Recalibrated(lstm, gamma, fold.val_start), fold_panel, task, fold
                )
            scores |= {"best_epoch": lstm.result.best_epoch, "seconds": time.perf_counter() - started,
                       "prior_val_loss": lstm.result.prior_val_loss, "best_val_loss": lstm.result.best_val_loss}  # fmt: skip
            entry["lstm"].append(scores)
            _print_line(fold.fold, seed, scores, entry.get("ewma_vol"))
        results["folds"][fold.fold] = entry
    results["summary"] = summary(results)
    return results


def _with_seed(cfg: ForecastConfig, seed: int) -> dict:
    values = cfg.to_dict()
    values["train"]["seed"] = seed
    return values


def _print_line(fold: int, seed: int, s: dict, ref: dict | None) -> None:
    def ratio(key: str) -> str:
        if ref is None:
            return ""
        return " ".join(f"{a / b:.4f}" for a, b in zip(s[key], ref[key]))

    print(
        f"fold {fold} seed {seed}: val/ewma {ratio('val_pinball')}  test/ewma {ratio('test_pinball')}  "
        f"cov {' '.join(f'{c:.3f}' for c in s['test_coverage'])}  best_epoch {s['best_epoch']}  "
        f"{s['seconds']:.0f}s",
        flush=True,
    )


def summary(results: dict) -> dict:
    """Per slice and horizon: the mean over folds of each model's pinball as a ratio to ewma_vol
    (the LSTM's as mean, min and max over seeds), and the folds where the LSTM is below the best
    volatility baseline."""
    out: dict = {}
    folds = results["folds"]
    for slice_ in ("val", "test"):
        key = f"{slice_}_pinball"
        for h_i, h in enumerate(results["horizons"]):
            ref = np.array([folds[f]["ewma_vol"][key][h_i] for f in folds])
            row = {}
            for name in VOL_BASELINES:
                if all(name in folds[f] for f in folds):
                    row[name] = float(np.mean([folds[f][name][key][h_i] for f in folds] / ref))
            per_seed = np.array([[s[key][h_i] for s in folds[f]["lstm"]] for f in folds])  # [folds, seeds]
            ratios = (per_seed / ref[:, None]).mean(axis=0)
            row["lstm_mean"], row["lstm_min"], row["lstm_max"] = map(
                float, (ratios.mean(), ratios.min(), ratios.max())
            )
            best = np.min(
                [[folds[f][n][key][h_i] for n in VOL_BASELINES if n in folds[f]] for f in folds], axis=1
            )
            row["lstm_below_best_folds"] = int((per_seed.mean(axis=1) < best).sum())
            members = np.array([[m[h_i] for s in folds[f]["lstm"] for m in s["members"][key]] for f in folds])
            member_ratios = (members / ref[:, None]).mean(axis=0)  # [seeds x members]: single models
            row["single_model_mean"] = float(member_ratios.mean())
            row["single_model_min"], row["single_model_max"] = (
                float(member_ratios.min()),
                float(member_ratios.max()),
            )
            cov_key = f"{slice_}_coverage"
            covs = [s[cov_key][h_i] for f in folds for s in folds[f]["lstm"]]
            row["lstm_coverage_min"], row["lstm_coverage_max"] = float(min(covs)), float(max(covs))
            out[f"{slice_}_h{h}"] = row
    return out


def report_markdown(paths: list[Path]) -> str:
    """The `lstm-study` section of docs/evaluation.md from study JSON files."""
    lines = [
        "Mean pinball over the folds as a ratio to `ewma_vol`'s (lower is better); `lstm`: the "
        "ensemble; `single seeds`: its members scored alone, mean [min, max] (the seed noise); "
        "`vs best`: the ensemble over the best volatility baseline of that slice and horizon; "
        "`folds below`: folds where the ensemble beat every volatility baseline; coverage: the "
        "ensemble's 80% band, min and max over folds.",
        "",
        "| study | slice | h | lstm | single seeds | gjr_garch | vol_blend | vs best | folds below | coverage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        r = json.loads(Path(path).read_text())
        name = Path(path).stem
        for key, row in r["summary"].items():
            slice_, h = key.split("_h")
            best = min(row.get(n, np.inf) for n in VOL_BASELINES)
            lines.append(
                f"| {name} | {slice_} | {h} | {row['lstm_mean']:.4f} | {row['single_model_mean']:.4f} "
                f"[{row['single_model_min']:.4f}, {row['single_model_max']:.4f}] | "
                f"{row.get('gjr_garch', float('nan')):.4f} | {row.get('vol_blend', float('nan')):.4f} | "
                f"{row['lstm_mean'] / best:.4f} | {row['lstm_below_best_folds']} of {len(r['folds'])} | "
                f"{row['lstm_coverage_min']:.3f}-{row['lstm_coverage_max']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. model.lookback=60")
    parser.add_argument("--config", help="a TOML configuration file to start from")
    parser.add_argument("--baselines", default=",".join(VOL_BASELINES))
    parser.add_argument(
        "--aci", default="", help="also score the bands recalibrated online with these gammas"
    )
    parser.add_argument("--out", default="bench/results/lstm_study.json")
    parser.add_argument("--report", nargs="+", type=Path, help="render these study JSON files instead")
    add_docs_argument(parser)
    args = parser.parse_args(argv)
    if args.report:
        body = report_markdown(args.report)
        if args.docs:
            write_sections(args.docs, {"lstm-study": body})
        else:
            print(body)
        return
    values = tomllib.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, raw = item.split("=", 1)
        section, _, name = key.rpartition(".")
        target = values.setdefault(section, {}) if section else values
        target[name] = tomllib.loads(f"v = {raw}")["v"]
    cfg = config_from_dict(values)
    available = [b for b in args.baselines.split(",") if b]
    results = run(
        cfg,
        [int(f) for f in args.folds.split(",")],
        [int(s) for s in args.seeds.split(",")],
        tuple(available),
        tuple(float(g) for g in args.aci.split(",") if g),
    )
    results["overrides"] = args.set
    print(json.dumps(results["summary"], indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
