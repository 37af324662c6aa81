"""PNG charts for the UI's metadata, sized to be read there: 11-13 pt labels at 100 dpi, a few
panels per row, short dates on the axes. (`forecast_core.plots` keeps its compact versions for
other uses.)"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER  # noqa: E402
from forecast_core.data.features import with_price  # noqa: E402

STYLE = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "figure.titlesize": 15,
}
DPI = 100


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fan_chart_tickers(forecasts: pl.DataFrame, max_tickers: int = 12) -> list[str]:
    """The tickers `fan_chart` draws: the first `max_tickers` by name of the latest as-of date's
    (so a caller can read only their prices)."""
    latest = forecasts.filter(pl.col("as_of_date") == pl.col("as_of_date").max())
    return sorted(latest[TICKER].unique().to_list())[:max_tickers]


def fan_chart(
    prices: pl.DataFrame, forecasts: pl.DataFrame, history: int = 40, max_tickers: int = 12
) -> bytes:
    """One panel per ticker (at most `max_tickers`): the last `history` closes and, at each
    horizon's target date, the median forecast and its 80% band from the latest as-of date."""
    latest = forecasts.filter(pl.col("as_of_date") == pl.col("as_of_date").max())
    tickers = fan_chart_tickers(forecasts, max_tickers)
    as_of = latest["as_of_date"].max()
    closes = with_price(prices).filter(pl.col(DATE) <= as_of).collect()
    with plt.rc_context(STYLE):
        cols = min(3, len(tickers)) or 1
        rows = math.ceil(len(tickers) / cols) or 1
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
        for ax, ticker in zip(axes.flat, tickers):
            past = closes.filter(pl.col(TICKER) == ticker).tail(history)
            ax.plot(past[DATE].to_list(), past[PRICE].to_list(), color="black", lw=1.4, label="close")
            fc = latest.filter(pl.col(TICKER) == ticker).sort(HORIZON)
            x = [as_of, *fc["target_date"].to_list()]
            last = fc["last_close"][0]
            ax.fill_between(
                x,
                [last, *fc["q10_close"]],
                [last, *fc["q90_close"]],
                color="tab:blue",
                alpha=0.25,
                label="80% band",
            )
            ax.plot(x, [last, *fc["q50_close"]], color="tab:blue", lw=2, marker="o", label="median")
            ax.set_title(f"{ticker} ({fc['model'][0]})")
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=5))
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(tickers) :]:
            ax.axis("off")
        axes.flat[0].legend(loc="upper left")
        more = len(latest[TICKER].unique()) - len(tickers)
        fig.suptitle(
            f"Forecasts made after the close of {as_of}: median and 80% band (price)"
            + (f"; {more} more tickers in the forecasts table" if more > 0 else "")
        )
        fig.tight_layout()
        return _png(fig)


def loss_curves(train: list[float], val: list[float], best_epoch: int, prior_val: float, title: str) -> bytes:
    """Training and validation pinball loss per epoch, the untrained network (the volatility
    prior) as a dashed line, the epoch kept marked."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        epochs = list(range(len(train)))
        ax.plot(epochs, train, marker="o", label="train pinball")
        ax.plot(epochs, val, marker="o", label="validation pinball")
        ax.axhline(prior_val, color="grey", ls="--", label=f"prior (untrained) {prior_val:.5g}")
        if 0 <= best_epoch < len(val):
            ax.scatter([best_epoch], [val[best_epoch]], s=160, facecolors="none", edgecolors="red", lw=2)
            ax.annotate(
                f"kept: epoch {best_epoch}",
                (best_epoch, val[best_epoch]),
                xytext=(8, 10),
                textcoords="offset points",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("pinball loss (log return)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        return _png(fig)


def equity_curves(curves: pl.DataFrame, title: str) -> bytes:
    """Cumulative net growth of 1 per strategy (columns date, strategy, equity)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(10, 5))
        for (name,), group in curves.sort(DATE).group_by("strategy", maintain_order=True):
            ax.plot(group[DATE].to_list(), group["equity"].to_list(), lw=1.6, label=name)
        ax.set_ylabel("growth of 1 (net of costs)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(ncol=3)
        return _png(fig)
