"""Sessions grouped by retrain period, each with the period's stored model and the panel as it was
known on the group's last session: what forecasting and explaining a range of sessions share.

Forecasting reads the lean serving panel (`warehouse.reads.serving_panel`: the columns the period's
fitted models read, every session) unless a baseline must be refitted, which needs the full panel
(`forecast_assets.serving`)."""

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl

from forecast_assets import serving
from forecast_core.columns import DATE, HORIZON, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.models.forecaster import ForecastTask, rows_between
from forecast_core.models.lstm import artifacts
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.serving.forecasts import make_forecasts
from forecast_core.serving.periods import period_key, period_start_of
from warehouse import reads


@dataclass
class PeriodBatch:
    """Sessions of one retrain period with the period's model and panel."""

    period_start: dt.date
    days: list[dt.date]
    model_row: dict  # the `models` row, with its artifact
    lstm: LSTMForecaster
    panel: pl.DataFrame
    feature_columns: tuple[str, ...]
    #: The price vintage the panel was built from (`forecasts.prices_vintage`).
    prices_vintage: int
    #: Whether a price vintage since the model's rewrote history (its stored baseline is then refitted).
    rewritten_since_model: bool = True

    @property
    def period(self) -> str:
        return period_key(self.period_start)

    def forecasts(
        self, cfg: ForecastConfig, created_at: dt.datetime
    ) -> tuple[pl.DataFrame, dict[str, list[str]]]:
        """`forecasts` rows for the batch's sessions, made by the period's serving plan
        (`forecast_assets.serving.serving_plan`), and which model served which tickers."""
        row = self.model_row
        task = ForecastTask(self.feature_columns, cfg.horizons, cfg.quantiles)
        plan = serving.serving_plan(
            row,
            self.lstm,
            self.panel,
            task,
            cfg,
            self.period_start,
            self.tickers(),
            self.rewritten_since_model,
        )
        frames = [
            make_forecasts(
                self.panel.filter(pl.col(TICKER).is_in(served)),
                forecaster,
                task,
                self.days[0],
                self.days[-1],
                row["model_version"],
                created_at,
                cfg.calendar,
            )
            for forecaster, served in plan
        ]
        rows = (
            pl.concat(frames)
            .with_columns(pl.lit(self.prices_vintage, pl.Int64).alias("prices_vintage"))
            .sort("as_of_date", TICKER, HORIZON)
        )
        return rows, {forecaster.name: served for forecaster, served in plan}

    def tickers(self) -> list[str]:
        """The tickers with a panel row in the batch's sessions."""
        return rows_between(self.panel, self.days[0], self.days[-1])[TICKER].unique().sort().to_list()


def batches_by_period(
    path: str, cfg: ForecastConfig, sessions: list[dt.date], lean: bool = False
) -> Iterator[PeriodBatch]:
    """One batch per retrain period among `sessions`; fails naming the missing model or sessions.
    `lean`: the serving panel where the period's forecasts need no refit (for forecasting only:
    the panel has no targets and only `serving.serving_columns`)."""
    for period_start, group in itertools.groupby(sessions, key=period_start_of):
        days = list(group)
        period = period_key(period_start)
        row = reads.latest_model(path, period)
        if row is None:
            raise dg.Failure(
                f"no model for retrain period {period} (needed for {days[0]}..{days[-1]}): "
                f"materialize lstm_model partition {period_start.isoformat()} first"
            )
        vintage = reads.prices_vintage(path)
        rewritten = reads.history_rewritten_since(path, row["prices_vintage"])
        lstm = artifacts.from_bytes(row["artifact"])
        batch = None
        if lean:
            columns = serving.serving_columns(reads.feature_table_columns(path))
            panel, feature_cols = reads.serving_panel(path, cfg, days[-1], columns, days[0])
            batch = PeriodBatch(period_start, days, row, lstm, panel, feature_cols, vintage, rewritten)
            task = ForecastTask(feature_cols, cfg.horizons, cfg.quantiles)
            if serving.needs_refit(row, lstm, task, cfg, batch.tickers(), rewritten):
                batch = None
        if batch is None:
            panel, feature_cols = reads.panel_known_at(path, cfg, days[-1])
            batch = PeriodBatch(period_start, days, row, lstm, panel, feature_cols, vintage, rewritten)
        missing = sorted(set(days) - set(batch.panel[DATE].unique().to_list()))
        if missing:
            raise dg.Failure(
                f"no features for sessions {missing[:10]}: materialize raw_prices and features for them"
            )
        yield batch
