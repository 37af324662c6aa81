"""Item 3: features and walk-forward folds for 20, 100 and 500 synthetic tickers x 20 years.

`python -m bench.scaling N` (one universe size per process, for its peak memory) prints JSON:
seconds to build the point-in-time features, the targets and the modelling panel from the price
panel (the `features` asset's work, without the warehouse write), and to lay out the folds.
"""

from __future__ import annotations

import sys
import time

from bench._subprocess import emit

SIZES = (20, 100, 500)
YEARS = 20


def measure(n_tickers: int, repeats: int = 3) -> dict:
    import polars as pl

    from bench.synthetic import config_for, synthetic_prices
    from forecast_core.columns import DATE, TICKER
    from forecast_core.data.features import build_features, build_targets
    from forecast_core.data.panel import assemble_panel, targets_long, targets_wide
    from forecast_core.evaluation.folds import walk_forward_folds

    cfg = config_for(n_tickers)
    started = time.perf_counter()
    prices = synthetic_prices(n_tickers, YEARS)
    generate_s = time.perf_counter() - started
    feature_s, folds_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        feats = build_features(prices, cfg)
        universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
        targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
        panel = assemble_panel(feats, targets_wide(targets, cfg.horizons), prices)
        feature_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        sessions = panel.drop_nulls()[DATE].unique().sort().to_list()
        folds = walk_forward_folds(sessions, cfg.folds, cfg.purge_sessions)
        folds_s.append(time.perf_counter() - t)
    return {
        "tickers": n_tickers,
        "years": YEARS,
        "price_rows": prices.height,
        "feature_rows": feats.height,
        "panel_rows": panel.height,
        "n_features": feats.width - 2,
        "folds": len(folds),
        "generate_s": round(generate_s, 3),
        "features_s": round(sorted(feature_s)[len(feature_s) // 2], 3),
        "folds_s": round(sorted(folds_s)[len(folds_s) // 2], 4),
    }


if __name__ == "__main__":
    emit(measure(int(sys.argv[1])))
