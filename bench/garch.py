"""GJR-GARCH cost and accuracy: `python -m bench.garch [--skip-cost] [--skip-folds]`.

Writes `bench/results/garch.json` and prints it. Two parts:

- cost, on one core (BLAS threads pinned to 1): `GjrGarch.fit` and `predict` at 20 and 500
  block-bootstrapped tickers x 20 years (`bench.synthetic`), fitted on all but the last 252
  sessions and predicting those 252; and a nightly predict at 500 tickers with the parameters fixed
  (`from_state`, no refit) for one new session, over the full 20-year history and over the last
  two years of it. The panel holds only what these models read (`ret_1` and the targets), not the
  feature columns.
- folds: the sample's own 5 walk-forward folds (default `ForecastConfig`, the layout of the
  `walk_forward_folds` asset), each model fitted on rows <= fold.train_end (with the validation
  slice passed, as `evaluate_fold` does). Mean pinball over folds of the validation slices (what
  chooses the blend mode) and of the test slices (reported only), as ratios to `ewma_vol`, for
  `ewma_vol`, `gjr_garch` and `vol_blend` with both modes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
import warnings
from collections import Counter

from bench._subprocess import ROOT

# One core: numpy and scipy are imported inside the functions below, after this.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

RESULTS = ROOT / "bench" / "results"
SIZES = (20, 500)
YEARS = 20
HOLDOUT = 252


def _timed(fn, repeats: int = 1):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, round(statistics.median(times), 4)


def _return_panel(n_tickers: int):
    """ticker, date, ret_1, target_h{h} from the block-bootstrapped prices (no other features)."""
    import polars as pl

    from bench.synthetic import synthetic_prices
    from forecast_core.columns import ADJ_CLOSE, DATE, TICKER
    from forecast_core.config import ForecastConfig

    horizons = ForecastConfig().horizons
    prices = synthetic_prices(n_tickers, YEARS).filter(~pl.col(TICKER).str.starts_with("^"))
    lp = pl.col(ADJ_CLOSE).log()
    return (
        prices.sort(TICKER, DATE)
        .select(
            TICKER,
            DATE,
            ret_1=lp.diff().over(TICKER),
            **{f"target_h{h}": (lp.shift(-h) - lp).over(TICKER) for h in horizons},
        )
        .filter(pl.col("ret_1").is_not_null())
    )


def cost(n_tickers: int) -> dict:
    import polars as pl

    from forecast_core.columns import DATE
    from forecast_core.config import ForecastConfig
    from forecast_core.models.forecaster import ForecastTask
    from forecast_core.models.garch import GarchFallbackWarning, GjrGarch, fit_gjr

    cfg = ForecastConfig()
    task = ForecastTask(("ret_1",), cfg.horizons, cfg.quantiles)
    panel = _return_panel(n_tickers)
    # One fit before the clock starts (imports, first calls), as in a long-running process.
    fit_gjr(panel["ret_1"].to_numpy()[:1000])
    days = panel[DATE].unique().sort().to_list()
    train_end, start, last = days[-HOLDOUT - cfg.max_horizon - 1], days[-HOLDOUT], days[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GarchFallbackWarning)
        model, fit_s = _timed(lambda: GjrGarch.from_config(task, cfg).fit(panel, train_end))
    _, predict_s = _timed(lambda: model.predict(panel, start, last), repeats=3)
    record = {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "tickers": n_tickers,
        "years": YEARS,
        "rows": panel.height,
        "fit_s": fit_s,
        "fit_ms_per_ticker": round(1000 * fit_s / n_tickers, 2),
        "fallback_tickers": len(model.fallback_tickers_),
        "fallback_reasons": dict(
            Counter(why.split(":")[0].split(" (")[0] for why in model.fallback_tickers_.values())
        ),
        "fallback_warnings": len(caught),
        f"predict_{HOLDOUT}_sessions_s": predict_s,
    }
    if n_tickers == max(SIZES):
        state = json.loads(json.dumps(model.state()))
        nightly = GjrGarch.from_state(task, cfg, state)
        _, record["nightly_predict_full_history_s"] = _timed(lambda: nightly.predict(panel, last, last), 5)
        recent = panel.filter(pl.col(DATE) >= days[-2 * 252])
        _, record["nightly_predict_2y_history_s"] = _timed(lambda: nightly.predict(recent, last, last), 5)
        _, record["from_state_s"] = _timed(lambda: GjrGarch.from_state(task, cfg, state), 5)
        record["state_json_kb"] = round(len(json.dumps(state)) / 1024, 1)
    return record


def sample_panel():
    """The sample's modelling panel and its 5 walk-forward folds (default configuration)."""
    import polars as pl

    from forecast_core.columns import DATE, TICKER
    from forecast_core.config import ForecastConfig
    from forecast_core.data.features import build_features, build_targets
    from forecast_core.data.panel import assemble_panel, targets_long, targets_wide
    from forecast_core.evaluation.folds import walk_forward_folds
    from forecast_core.sources import SampleSource

    cfg = ForecastConfig()
    source = SampleSource()
    prices = source.fetch(
        list(cfg.universe.all_tickers), dt.date.fromisoformat(cfg.source.start_date), source.last_date()
    )
    feats = build_features(prices, cfg)
    universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
    panel = assemble_panel(feats, targets_wide(targets, cfg.horizons), prices)
    sessions = panel.drop_nulls()[DATE].unique().sort().to_list()
    return cfg, panel, walk_forward_folds(sessions, cfg.folds, cfg.purge_sessions)


def _pinball(model, panel, start, end, task) -> list[float]:
    from forecast_core.evaluation.metrics import pinball
    from forecast_core.models.forecaster import rows_between

    rows = rows_between(panel, start, end)
    q = model.predict(panel, start, end).astype("float64")
    out = []
    for j, col in enumerate(task.target_columns):
        y = rows[col].to_numpy()
        known = rows[col].is_not_null().to_numpy()
        out.append(pinball(y[known], q[known, j], task.quantiles))
    return out


def folds_report() -> dict:
    from forecast_core.data.features import feature_columns
    from forecast_core.models.baselines import EwmaVol
    from forecast_core.models.forecaster import ForecastTask
    from forecast_core.models.garch import GjrGarch, VolBlend

    cfg, panel, folds = sample_panel()
    task = ForecastTask(tuple(feature_columns(panel)), cfg.horizons, cfg.quantiles)
    makers = {
        "ewma_vol": lambda: EwmaVol.from_config(task, cfg),
        "gjr_garch": lambda: GjrGarch.from_config(task, cfg),
        "vol_blend[quantile]": lambda: VolBlend(task, cfg.ewma_lambda, mode="quantile"),
        "vol_blend[variance]": lambda: VolBlend(task, cfg.ewma_lambda, mode="variance"),
    }
    scores = {split: {name: [] for name in makers} for split in ("validation", "test")}
    fallbacks = {}
    for fold in folds:
        for name, make in makers.items():
            model = make().fit(panel, fold.train_end, fold.val)
            scores["validation"][name].append(_pinball(model, panel, fold.val_start, fold.val_end, task))
            scores["test"][name].append(_pinball(model, panel, fold.test_start, fold.test_end, task))
            if name == "gjr_garch":
                fallbacks[fold.fold] = model.fallback_tickers_
    out = {"folds": [{"fold": f.fold, "train_end": str(f.train_end)} for f in folds]}
    for split, by_model in scores.items():
        base = by_model["ewma_vol"]
        per_h = {}
        for j, h in enumerate(task.horizons):
            ref_mean = statistics.mean(s[j] for s in base)
            per_h[f"h{h}"] = {
                name: {
                    "mean_pinball": statistics.mean(s[j] for s in values),
                    "ratio_of_means": round(statistics.mean(s[j] for s in values) / ref_mean, 6),
                    "ratio_per_fold": [round(s[j] / b[j], 5) for s, b in zip(values, base)],
                }
                for name, values in by_model.items()
            }
        out[split] = per_h
    out["gjr_fallback_tickers_per_fold"] = fallbacks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-folds", action="store_true")
    args = parser.parse_args()
    result: dict = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if not args.skip_cost:
        result["cost"] = [cost(n) for n in SIZES]
    if not args.skip_folds:
        result["sample_folds"] = folds_report()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "garch.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
