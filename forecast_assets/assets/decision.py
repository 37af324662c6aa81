"""Decision quality: strategy_backtest (would acting on the forecasts have paid, at what risk)
and forecast_explanations (why the LSTM said what it said)."""

import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from forecast_assets.charts import equity_curves
from forecast_assets.metadata import (
    OWNERS,
    add_partition_metadata,
    frame_table,
    image,
    row_count,
    table_metadata,
)
from forecast_assets.partitions import partition_dates
from forecast_assets.periods import batches_by_period
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.backtest import strategy
from forecast_core.columns import TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data import calendar
from forecast_core.data.universe import within_membership
from forecast_core.models.lstm import explain
from forecast_core.plots import attribution_chart
from warehouse import read_sql, read_table, reads, transaction
from warehouse.io import ParquetRows

#: Portfolio metrics of the `all` period reported as numeric metadata, per strategy.
_KEY_METRICS = ("sharpe", "dsr", "cagr", "max_drawdown")


@dg.asset(
    deps=["fold_evaluation", "forecast_scores"],
    group_name="decision",
    kinds={"duckdb"},
    pool="warehouse_write",
    owners=OWNERS,
    tags={"layer": "decision"},
    metadata=table_metadata("backtest_metrics"),
)
def strategy_backtest(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Would acting on the forecasts have paid? The same documented rules (long when the
    horizon-1 median is positive and the band's lower edge is above -backtest.max_downside,
    sized to a volatility target from the band width, capped at 1) applied to every model's
    out-of-sample fold forecasts and to the published daily forecasts, traded at the next
    session's close with costs and slippage, beside buy-and-hold; a delisted ticker's position
    is sold at the close of its last session. Writes backtest_returns and
    backtest_metrics (CAGR, volatility, Sharpe, Sortino, drawdown, hit rate, profit factor,
    turnover, probabilistic and deflated Sharpe ratios); the strategy_comparison view lines
    them up. Runs `BACKTEST_CHUNK_TICKERS` tickers at a time (each ticker's trades and metrics
    are its own; the portfolio adds up every part's sums), staging the parts' daily returns as
    Parquet under TMPDIR, all written in one transaction."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    horizon = min(cfg.horizons)
    if horizon != 1:
        raise dg.Failure(f"the backtest trades horizon-1 forecasts; configured horizons are {cfg.horizons}")
    exits = {t: last for t in cfg.universe.tickers if (last := cfg.universe.listing(t)[1]) is not None}
    with tempfile.TemporaryDirectory(prefix="forecast-backtest-") as staging:
        staged: list[str] = []

        def stage(returns: pl.DataFrame) -> None:
            staged.append(str(Path(staging) / f"part_{len(staged)}.parquet"))
            returns.write_parquet(staged[-1])

        result = strategy.run_backtest_in_parts(
            _backtest_parts(path, cfg, horizon), cfg.backtest, exits, stage
        )
        stage(result.portfolio)
        with transaction(path) as w:
            w.replace("backtest_returns", ParquetRows(tuple(staged)))
            w.replace("backtest_metrics", result.metrics)
    comparison = read_table("strategy_comparison", path=path)
    overall = comparison.filter(pl.col("period") == strategy.ALL)
    return_rows = result.ticker_rows + result.portfolio.height
    context.log.info(
        f"backtested {result.portfolio['strategy'].n_unique()} strategies: {return_rows:,} daily "
        f"returns, {result.metrics.height:,} metric rows"
    )
    portfolio = strategy.equity_curves(result.portfolio.filter(pl.col("period") == strategy.ALL))
    metadata: dict[str, dg.MetadataValue | float | int] = {
        **row_count(result.metrics.height),
        "return_rows": dg.MetadataValue.int(return_rows),
        "metric_rows": dg.MetadataValue.int(result.metrics.height),
        "strategies": dg.MetadataValue.int(result.portfolio["strategy"].n_unique()),
        "cost_bps_per_turnover": float(cfg.backtest.cost_bps + cfg.backtest.slippage_bps),
        "comparison_all_periods": frame_table(overall, COMPARISON_COLUMNS),
        "equity_curves": image(
            equity_curves(
                portfolio, "Equal-weight portfolio, every fold's test slices: strategies vs buy-and-hold"
            ),
            "equity curves",
        ),
    }
    for row in overall.iter_rows(named=True):
        for metric in _KEY_METRICS:
            value = row[metric]
            metadata[f"{row['strategy']}_{metric}"] = float(value) if value is not None else float("nan")
    return dg.MaterializeResult(metadata=metadata)


#: Tickers backtested at a time: each part's signals, prices and returns are held at once (at
#: 500 tickers x 5 folds, 5.1 GB of process RSS in one part, 2.9 GB in parts of 100; at 5,000
#: the whole backtest's rows would not fit in memory).
BACKTEST_CHUNK_TICKERS = 100


def _backtest_parts(
    path: str, cfg: ForecastConfig, horizon: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(signals, member prices) of `BACKTEST_CHUNK_TICKERS` tickers at a time: every model's fold
    predictions of `horizon` (`strategy.fold_signals`) and the published forecasts, with those
    tickers' prices. Raises `dg.Failure` when there is no fold prediction to backtest."""
    tickers = read_sql(
        "SELECT DISTINCT ticker FROM fold_predictions WHERE horizon = ? "
        "UNION SELECT DISTINCT ticker FROM forecasts WHERE horizon = ? ORDER BY ticker",
        [horizon, horizon],
        path,
    )[TICKER].to_list()
    if not read_sql("SELECT count(*) AS n FROM fold_predictions WHERE horizon = ?", [horizon], path)["n"][0]:
        raise dg.Failure(
            f"no fold predictions of horizon {horizon} to backtest: materialize fold_evaluation first"
        )
    for i in range(0, len(tickers), BACKTEST_CHUNK_TICKERS):
        names = tickers[i : i + BACKTEST_CHUNK_TICKERS]
        where = f"horizon = ? AND {reads.IN_TICKERS}"
        folds = read_table("fold_predictions", where, [horizon, names], path)
        signals = [strategy.fold_signals(folds, horizon)] if folds.height else []
        published = read_table("forecasts", where, [horizon, names], path)
        if published.height:
            signals.append(strategy.published_signals(published, horizon))
        if signals:
            yield pl.concat(signals), within_membership(reads.prices(path, tickers=names), cfg.universe)


#: The strategy comparison's columns shown in the UI.
COMPARISON_COLUMNS = [
    "strategy",
    "cagr",
    "ann_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "hit_rate",
    "turnover",
    "psr",
    "dsr",
]


def forecast_explanations_asset(trading_days: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`forecast_explanations` on the job's session partitions (`forecast_assets.definitions.build_defs`)."""
    return dg.asset(
        partitions_def=trading_days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["daily_forecasts", "lstm_model"],
        group_name="decision",
        kinds={"jax", "duckdb"},
        pool="warehouse_write",
        owners=OWNERS,
        tags={"layer": "decision"},
        metadata=table_metadata("forecast_explanations"),
    )(forecast_explanations)


def forecast_explanations(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Why the LSTM forecast what it did: integrated-gradient attributions of each session's
    median forecast (every ticker and horizon), computed with the model of the session's month
    (one jitted call per session and horizon for all tickers) and stored as their two margins:
    per input feature summed over the lookback window, ranked (`forecast_explanations`), and per
    lag summed over the inputs (`forecast_explanation_lags`). Baseline: the ticker's training
    mean of every feature; either margin of a forecast sums to its median minus the baseline's.
    The full (feature, lag) grid of one forecast: `python -m forecast_assets.explain DATE TICKER`."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    start, end = partition_dates(context, cfg.calendar)
    sessions = calendar.sessions(start, end, cfg.calendar)
    frames, lag_frames, explained, served = [], [], [], {}
    for batch in batches_by_period(path, cfg, sessions):
        row, period = batch.model_row, batch.period
        if row["serving_model"] != "lstm":
            context.log.warning(
                f"{period}: the gate refused the LSTM ({row['serving_model']} serves); the attributions "
                "explain the LSTM's forecasts, not the published ones"
            )
        # A ticker added after the period's model was trained is served by a baseline: nothing to explain.
        unseen = sorted(set(batch.panel[TICKER].unique().to_list()) - set(batch.lstm.tickers))
        if unseen:
            context.log.warning(f"{period}: {unseen} are not in the period's LSTM; not explained")
        panel = batch.panel.filter(pl.col(TICKER).is_in(list(batch.lstm.tickers)))
        sessions_explained = explain.explain_sessions(batch.lstm, panel, batch.days)
        explained += sessions_explained
        served[period] = f"{row['model_version']} ({row['serving_model']})"
        frames += [e.feature_frame(row["model_version"]) for e in sessions_explained]
        lag_frames += [e.lag_frame(row["model_version"]) for e in sessions_explained]
    table = pl.concat(frames)
    with transaction(path) as w:
        w.replace("forecast_explanations", table, "as_of_date BETWEEN ? AND ?", [start, end])
        w.replace(
            "forecast_explanation_lags", pl.concat(lag_frames), "as_of_date BETWEEN ? AND ?", [start, end]
        )
    gap = max(e.completeness_gap for e in explained)
    scale = max(float(np.abs(e.forecast - e.baseline_forecast).max()) for e in explained)
    last = explained[-1]
    per_day = dict(table.group_by("as_of_date").len().iter_rows())
    add_partition_metadata(
        context,
        {key: row_count(per_day.get(dt.date.fromisoformat(key), 0)) for key in context.partition_keys},
    )
    context.log.info(
        f"stored {table.height:,} per-feature and {sum(f.height for f in lag_frames):,} per-lag "
        f"attributions for {len(sessions)} session(s)"
    )
    # The range's summary, once, on its last session.
    context.add_asset_metadata(
        {
            "run_range": dg.MetadataValue.text(f"{start}..{end} ({len(sessions)} sessions)"),
            "run_rows": dg.MetadataValue.int(table.height),
            "models": dg.MetadataValue.json(served),
            "completeness_max_abs_gap": dg.MetadataValue.float(gap),
            "max_abs_forecast_minus_baseline": dg.MetadataValue.float(scale),
            "top_features": frame_table(_top_features(table, end)),
            "attribution_chart": _attribution_picture(last),
        },
        partition_key=context.partition_keys[-1],
    )
    return dg.MaterializeResult()


def _top_features(table: pl.DataFrame, day) -> pl.DataFrame:
    """Top 10 features by mean |attribution| to the median forecast (log return), summed over the
    lookback window and averaged over tickers, on `day`, per horizon."""
    top = (
        table.filter(pl.col("as_of_date") == day)
        .group_by("horizon", "feature")
        .agg(
            pl.col("attribution").abs().mean().alias("mean_abs_attribution"),
            pl.col("attribution").mean().alias("mean_attribution"),
        )
        .sort("horizon", "mean_abs_attribution", descending=[False, True])
        .group_by("horizon", maintain_order=True)
        .head(10)
    )
    return top


def _attribution_picture(e: explain.SessionExplanation) -> dg.MetadataValue:
    """The horizon-1 attributions of the ticker whose median moved most from the baseline."""
    i = int(np.argmax(np.abs(e.forecast[0] - e.baseline_forecast[0])))
    title = (
        f"{e.tickers[i]} on {e.day}, horizon {e.horizons[0]}: median {e.forecast[0, i]:+.4f} "
        f"vs baseline {e.baseline_forecast[0, i]:+.4f} (log return)"
    )
    return image(attribution_chart(e.attributions[0, i], e.features, title), "attributions")
