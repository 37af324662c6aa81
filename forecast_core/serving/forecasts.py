"""Daily forecasts: quantile log returns for each ticker and horizon, and the prices they imply.

For an as-of date D (a session), the forecaster reads features up to D and predicts the forward
log return to `target_date` = D + h sessions on the exchange calendar; prices are
`last_close * exp(q)` where `last_close` is D's (adjusted) close.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER
from forecast_core.data import calendar
from forecast_core.data.features import with_price
from forecast_core.evaluation import metrics
from forecast_core.evaluation.walk_forward import quantile_columns
from forecast_core.models.forecaster import Forecaster, ForecastTask, rows_between

FORECAST_COLUMNS = (
    "as_of_date", TICKER, HORIZON, "model_version", "model", "target_date", "last_close",
    "pred_log_return", "q10", "q50", "q90", "pred_close", "q10_close", "q50_close", "q90_close",
    "created_at",
)  # fmt: skip


def make_forecasts(
    panel: pl.DataFrame,
    forecaster: Forecaster,
    task: ForecastTask,
    start: dt.date,
    end: dt.date,
    model_version: str,
    created_at: dt.datetime,
    calendar_code: str,
    quantiles: np.ndarray | None = None,
) -> pl.DataFrame:
    """`forecasts` rows for every panel row dated in [start, end] (one per ticker, date, horizon);
    `quantiles`: the forecaster's `predict(panel, start, end)` where the caller has it already."""
    rows = rows_between(panel, start, end)
    if rows.height == 0:
        return pl.DataFrame(schema={c: pl.Null for c in FORECAST_COLUMNS})
    q = forecaster.predict(panel, start, end) if quantiles is None else quantiles
    point = forecaster.point_forecast(panel, start, end, q)
    qcols = quantile_columns(task.quantiles)
    dates = rows[DATE].unique().sort().to_list()
    frames = []
    for h_i, h in enumerate(task.horizons):
        targets = pl.DataFrame(
            {DATE: dates, "target_date": [calendar.add_sessions(d, h, calendar_code) for d in dates]}
        )
        frames.append(
            rows.select(pl.col(DATE).alias("as_of_date"), TICKER, pl.col(PRICE).alias("last_close"), DATE)
            .join(targets, on=DATE, how="left")
            .drop(DATE)
            .with_columns(
                pl.lit(h, pl.Int32).alias(HORIZON),
                pl.Series("pred_log_return", point[:, h_i], pl.Float64),
                *[pl.Series(c, q[:, h_i, j], pl.Float64) for j, c in enumerate(qcols)],
            )
        )
    out = pl.concat(frames).with_columns(
        pl.lit(model_version).alias("model_version"),
        pl.lit(forecaster.name).alias("model"),
        (pl.col("last_close") * pl.col("pred_log_return").exp()).alias("pred_close"),
        *[(pl.col("last_close") * pl.col(c).exp()).alias(f"{c}_close") for c in ("q10", "q50", "q90")],
        pl.lit(created_at, pl.Datetime("us", "UTC")).alias("created_at"),
    )
    return out.select(FORECAST_COLUMNS).sort("as_of_date", TICKER, HORIZON)


def score_forecasts(
    forecasts: pl.DataFrame, prices: pl.DataFrame, quantiles: tuple[float, ...], scored_at: dt.datetime
) -> pl.DataFrame:
    """`forecast_scores` rows for forecasts whose target date has a realised price.

    Scored in the prices of today's vintage: the realised log return is log(P[target] /
    P[as_of]) with both closes as stored now, and the forecast's prices are rebased by
    P[as_of] / last_close (1 unless history was rewritten since, e.g. by a split), so a
    restatement changes neither side's scale. error = pred_close - actual_close; covered_80 =
    actual inside [q10_close, q90_close]; pinball = mean quantile loss of the log-return
    quantiles against the realised log return.
    """
    price = with_price(prices).select(TICKER, DATE, PRICE).collect()
    actual = price.rename({DATE: "target_date", PRICE: "actual_close"})
    base = price.rename({DATE: "as_of_date", PRICE: "base_close"})
    joined = (
        forecasts.join(actual, on=[TICKER, "target_date"], how="inner")
        .join(base, on=[TICKER, "as_of_date"], how="left")
        .with_columns(pl.col("base_close").fill_null(pl.col("last_close")))
        .with_columns(
            (pl.col("actual_close") / pl.col("base_close")).log().alias("actual_log_return"),
            *[
                (pl.col(c) * (pl.col("base_close") / pl.col("last_close"))).alias(c)
                for c in ("pred_close", "q10_close", "q90_close")
            ],
        )
    )
    qcols = quantile_columns(quantiles)
    y = joined["actual_log_return"].to_numpy()
    q = joined.select(qcols).to_numpy() if joined.height else np.zeros((0, len(qcols)))
    pin = metrics.pinball_per_row(y, q, quantiles) if joined.height else np.zeros(0)
    return joined.select(
        "as_of_date",
        TICKER,
        HORIZON,
        "model_version",
        "model",
        "target_date",
        "actual_close",
        "actual_log_return",
        (pl.col("pred_close") - pl.col("actual_close")).alias("error"),
        ((pl.col("pred_close") - pl.col("actual_close")).abs() / pl.col("actual_close") * 100).alias(
            "abs_pct_error"
        ),
        (
            (pl.col("actual_close") >= pl.col("q10_close")) & (pl.col("actual_close") <= pl.col("q90_close"))
        ).alias("covered_80"),
        pl.Series("pinball", pin, pl.Float64),
        pl.lit(scored_at, pl.Datetime("us", "UTC")).alias("scored_at"),
    ).sort("as_of_date", TICKER, HORIZON)
