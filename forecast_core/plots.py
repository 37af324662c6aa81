"""Pictures for the Dagster UI: PNG bytes made with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER  # noqa: E402
from forecast_core.features import with_price  # noqa: E402


def fan_chart(prices: pl.DataFrame, forecasts: pl.DataFrame, history: int = 60) -> bytes:
    """Small multiples, one per ticker: the last `history` closes and, at each horizon's target
    date, the median forecast with its 80% band (q10..q90) from the latest as-of date."""
    latest = forecasts.filter(pl.col("as_of_date") == pl.col("as_of_date").max())
    tickers = sorted(latest[TICKER].unique().to_list())
    as_of = latest["as_of_date"].max()
    closes = with_price(prices).filter(pl.col(DATE) <= as_of).collect()
    cols = min(5, len(tickers)) or 1
    rows = math.ceil(len(tickers) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    for ax, ticker in zip(axes.flat, tickers):
        past = closes.filter(pl.col(TICKER) == ticker).tail(history)
        ax.plot(past[DATE].to_list(), past[PRICE].to_list(), color="black", lw=1)
        fc = latest.filter(pl.col(TICKER) == ticker).sort(HORIZON)
        x = [as_of, *fc["target_date"].to_list()]
        last = fc["last_close"][0]
        ax.fill_between(x, [last, *fc["q10_close"]], [last, *fc["q90_close"]], color="tab:blue", alpha=0.25)
        ax.plot(x, [last, *fc["q50_close"]], color="tab:blue", lw=1.2, marker=".")
        ax.set_title(f"{ticker} ({fc['model'][0]})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", labelrotation=45)
    for ax in list(axes.flat)[len(tickers):]:
        ax.axis("off")
    fig.suptitle(f"Forecasts as of {as_of}: median and 80% band", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()
