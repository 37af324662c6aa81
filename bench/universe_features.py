"""Features and targets for N synthetic tickers x 20 years, whole and chunked by ticker.

`python -m bench.universe_features N [--chunk C]` (one size per process, for its peak memory)
prints JSON: `features_s` and its peak memory for the whole universe at once when N <= 500 (what
the `features` asset computes today; at 5,000 tickers it would need about 30 GB, more than this
machine has), and `chunked_s` with `chunk_peak_rss_mb` for the same work done C tickers at a time
(every chunk with the exogenous tickers, whose market features are joined by date, so a
ticker's features do not depend on its chunk: checked on the first chunk against the whole
computation when it runs). Chunking bounds the peak to one chunk's frames plus the prices.

`blocked`: the features computed as the asset stores them (`forecast_core.data.blocks`: 2-year
blocks, each from a 3-year warm-up) against the unblocked computation, side by side on the same
chunks, alternating, medians of `REPEATS` (one repeat at 5,000 tickers): `blocked_over_unblocked`.
"""

from __future__ import annotations

import argparse
import resource
import time

from bench._subprocess import emit

YEARS = 20
WHOLE_UP_TO = 500
REPEATS = 3


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _work(prices, cfg):
    import polars as pl

    from forecast_core.columns import TICKER
    from forecast_core.data.features import build_features, build_targets
    from forecast_core.data.panel import targets_long

    feats = build_features(prices, cfg)
    universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
    return feats, targets


def measure(n_tickers: int, chunk: int) -> dict:
    import dataclasses

    import polars as pl

    from bench.synthetic import config_for, synthetic_prices
    from forecast_core.columns import TICKER

    cfg = config_for(n_tickers)
    prices = synthetic_prices(n_tickers, YEARS)
    base_rss = _rss_mb()
    out: dict = {"tickers": n_tickers, "years": YEARS, "price_rows": prices.height, "chunk": chunk}
    whole = None
    if n_tickers <= WHOLE_UP_TO:
        t = time.perf_counter()
        whole = _work(prices, cfg)
        out["features_s"] = round(time.perf_counter() - t, 3)
        out["feature_rows"] = whole[0].height
        out["whole_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    tickers = list(cfg.universe.tickers)
    exogenous = list(cfg.universe.exogenous)
    rows = 0
    chunk_peak = 0.0
    t = time.perf_counter()
    for i in range(0, len(tickers), chunk):
        names = tickers[i : i + chunk]
        part_cfg = dataclasses.replace(cfg, universe=dataclasses.replace(cfg.universe, tickers=tuple(names)))
        part = prices.filter(pl.col(TICKER).is_in(names + exogenous))
        feats, targets = _work(part, part_cfg)
        rows += feats.filter(pl.col(TICKER).is_in(names)).height
        chunk_peak = max(chunk_peak, _rss_mb())
        if whole is not None and i == 0:
            expected = whole[0].filter(pl.col(TICKER).is_in(names)).sort(TICKER, "date")
            got = feats.filter(pl.col(TICKER).is_in(names)).sort(TICKER, "date").select(expected.columns)
            assert got.equals(expected), "a chunk's features differ from the whole universe's"
        del feats, targets, part
    out["chunked_s"] = round(time.perf_counter() - t, 3)
    out["chunked_feature_rows"] = rows
    out["prices_rss_mb"] = round(base_rss, 1)
    out["chunk_peak_rss_mb"] = round(chunk_peak, 1)
    out["blocked"] = _blocked_against_unblocked(
        prices, cfg, chunk, REPEATS if n_tickers <= WHOLE_UP_TO else 1
    )
    return out


def _blocked_against_unblocked(prices, cfg, chunk: int, repeats: int) -> dict:
    """Seconds for the features of every chunk, unblocked and blocked, alternating; medians."""
    import polars as pl

    from forecast_core.columns import TICKER
    from forecast_core.data.blocks import blocked_features
    from forecast_core.data.features import available_inputs, build_features

    inputs = available_inputs(prices)
    tickers, exogenous = list(cfg.universe.tickers), list(cfg.universe.exogenous)
    parts = [
        prices.filter(pl.col(TICKER).is_in(tickers[i : i + chunk] + exogenous))
        for i in range(0, len(tickers), chunk)
    ]
    times: dict[str, list[float]] = {"unblocked": [], "blocked": []}
    for _ in range(repeats):
        for name, fn in (("unblocked", build_features), ("blocked", blocked_features)):
            t = time.perf_counter()
            for part in parts:
                fn(part, cfg, inputs)
            times[name].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {
        "repeats": repeats,
        "unblocked_s": round(med["unblocked"], 3),
        "blocked_s": round(med["blocked"], 3),
        "blocked_over_unblocked": round(med["blocked"] / med["unblocked"], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("tickers", type=int)
    parser.add_argument("--chunk", type=int, default=250)
    args = parser.parse_args()
    emit(measure(args.tickers, args.chunk))
