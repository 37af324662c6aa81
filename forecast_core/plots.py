"""Pictures for the Dagster UI: PNG bytes made with matplotlib's non-interactive backend."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER  # noqa: E402
from forecast_core.data.features import with_price  # noqa: E402


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
    for ax in list(axes.flat)[len(tickers) :]:
        ax.axis("off")
    fig.suptitle(f"Forecasts as of {as_of}: median and 80% band", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()


def equity_chart(returns: pl.DataFrame, period: str = "all", ticker: str = "portfolio") -> bytes:
    """Equity curves of every strategy against buy-and-hold (top, log scale) and their drawdowns
    (bottom), for one ticker (default the equal-weight portfolio) and period of `backtest_returns`."""
    from forecast_core.backtest.strategy import BUY_AND_HOLD, equity_curves

    rows = equity_curves(returns.filter((pl.col("period") == period) & (pl.col(TICKER) == ticker)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=(2, 1))
    strategies = sorted(rows["strategy"].unique().to_list(), key=lambda s: (s == BUY_AND_HOLD, s))
    for strategy in strategies:
        part = rows.filter(pl.col("strategy") == strategy).sort(DATE)
        bench = strategy == BUY_AND_HOLD
        style = (
            {"color": "black", "lw": 1.6}
            if bench
            else {"color": "tab:blue", "lw": 1.6}
            if strategy in ("lstm", "published")
            else {"lw": 0.9, "alpha": 0.8}
        )
        top.plot(part[DATE].to_list(), part["equity"].to_list(), label=strategy, **style)
        bottom.plot(part[DATE].to_list(), (-part["drawdown"]).to_list(), **style)
        if bench:
            bottom.fill_between(
                part[DATE].to_list(), (-part["drawdown"]).to_list(), 0, color="grey", alpha=0.2
            )
    top.set_yscale("log")
    top.set_ylabel("equity (start = 1)")
    top.legend(fontsize=7, ncol=3)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    bottom.tick_params(axis="x", labelrotation=30, labelsize=7)
    top.set_title(f"Strategies on the forecasts vs buy-and-hold: {ticker}, period {period}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def attribution_chart(attributions, features, title: str, top_features: int = 8) -> bytes:
    """One forecast's attributions `[lookback, features]` (log return): their sum per lookback
    step (top; lag 0 is the as-of session, on the right) and, below, a heatmap of the
    `top_features` features with the largest total |attribution| over the window."""
    import numpy as np

    a = np.asarray(attributions, dtype=float)
    lookback = a.shape[0]
    lag_axis = np.arange(-(lookback - 1), 1)
    order = np.argsort(-np.abs(a).sum(axis=0))[:top_features]
    fig, (top, heat) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(1, 1.6))
    per_step = a.sum(axis=1)
    top.bar(lag_axis, per_step, color=["tab:green" if v >= 0 else "tab:red" for v in per_step])
    top.axhline(0, color="black", lw=0.6)
    top.set_ylabel("sum over features")
    limit = float(np.abs(a[:, order]).max()) or 1.0
    image = heat.imshow(
        a[:, order].T,
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        extent=(lag_axis[0] - 0.5, lag_axis[-1] + 0.5, len(order) - 0.5, -0.5),
    )
    heat.set_yticks(range(len(order)), [features[i] for i in order], fontsize=7)
    heat.set_xlabel("sessions before the as-of date")
    fig.subplots_adjust(left=0.25, right=0.98, top=0.92, bottom=0.12)
    fig.colorbar(image, ax=[top, heat], shrink=0.6, label="attribution (log return)")
    top.set_title(title, fontsize=10)
    return _png(fig)
