"""Sessions grouped by retrain period, each with the period's stored model and the panel as it was
known on the group's last session: what forecasting and explaining a range of sessions share.

Forecasting reads the lean serving panel (`warehouse.reads.serving_panel`: the columns the period's
fitted models read) unless a baseline must be refitted, which needs the full panel
(`forecast_assets.serving`). A ticker with a stored recursion state of the period's model
(`warehouse.forecast_state`: the LSTM's, or a restored volatility baseline's) is read only after
the state's row and its forecaster continues from it; every other ticker is read over its whole
history."""

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import polars as pl

from forecast_assets import serving
from forecast_core.columns import DATE, HORIZON, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.models import continuation
from forecast_core.models.forecaster import ForecastTask, rows_between
from forecast_core.models.lstm import artifacts
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.serving.forecasts import make_forecasts
from forecast_core.serving.periods import period_key, period_start_of
from warehouse import forecast_state, reads


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
    #: Tickers whose forecaster continues from a stored state: (their rows after each state's
    #: `as_of`, the states); `panel` holds the other tickers. None: every ticker is in `panel`.
    continued: tuple[pl.DataFrame, pl.DataFrame] | None = None

    @property
    def period(self) -> str:
        return period_key(self.period_start)

    def forecasts(
        self, cfg: ForecastConfig, created_at: dt.datetime
    ) -> tuple[pl.DataFrame, dict[str, list[str]], pl.DataFrame]:
        """`forecasts` rows for the batch's sessions, made by the period's serving plan
        (`forecast_assets.serving.serving_plan`), which model served which tickers, and the
        serving models' recursion state to store for the next run (`warehouse.forecast_state`)."""
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
        first, last = self.days[0], self.days[-1]

        def made(panel: pl.DataFrame, forecaster, quantiles=None) -> pl.DataFrame:
            return make_forecasts(
                panel,
                forecaster,
                task,
                first,
                last,
                row["model_version"],
                created_at,
                cfg.calendar,
                quantiles,
            )

        frames, states = [], []
        for forecaster, served in plan:
            if not hasattr(forecaster, "forecast"):  # a point baseline: no recursion to continue
                frames.append(made(self.panel.filter(pl.col(TICKER).is_in(served)), forecaster))
                continue
            for panel, carry in self._parts(forecaster.name, served):
                q, state = forecaster.forecast(panel, first, last, carry)
                frames.append(made(panel, forecaster, q))
                states.append(
                    state.select(TICKER, pl.lit(forecaster.name).alias("model"), pl.exclude(TICKER))
                )
        rows = (
            pl.concat(frames)
            .with_columns(pl.lit(self.prices_vintage, pl.Int64).alias("prices_vintage"))
            .sort("as_of_date", TICKER, HORIZON)
        )
        state = pl.concat(states, how="diagonal_relaxed").sort(TICKER) if states else pl.DataFrame()
        return rows, {forecaster.name: served for forecaster, served in plan}, state

    def _parts(self, model: str, served: list[str]) -> list[tuple[pl.DataFrame, pl.DataFrame | None]]:
        """`model`'s tickers `served` as (panel, carry) parts: those it continues from a state of
        its own, and the rest (over their whole history)."""
        mine = pl.col(TICKER).is_in(served)
        if self.continued is None:
            return [(self.panel.filter(mine), None)]
        tail, carry = self.continued
        carry = carry.filter(mine, pl.col("model") == model)
        own = pl.col(TICKER).is_in(carry[TICKER].implode())
        parts = [(tail.filter(own), carry), (self.panel.filter(mine), None)]
        return [(panel, carry) for panel, carry in parts if panel.height]

    def panels(self) -> list[pl.DataFrame]:
        """`panel`, and the continued tickers' rows where there are some."""
        return [self.panel, *([self.continued[0]] if self.continued else [])]

    def tickers(self) -> list[str]:
        """The tickers with a panel row in the batch's sessions."""
        found = pl.concat([rows_between(p, self.days[0], self.days[-1])[TICKER] for p in self.panels()])
        return found.unique().sort().to_list()


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
            batch = _lean_batch(path, cfg, period_start, days, row, lstm, vintage, rewritten)
            task = ForecastTask(batch.feature_columns, cfg.horizons, cfg.quantiles)
            if serving.needs_refit(row, lstm, task, cfg, batch.tickers(), rewritten):
                batch = None
        if batch is None:
            panel, feature_cols = reads.panel_known_at(path, cfg, days[-1])
            batch = PeriodBatch(period_start, days, row, lstm, panel, feature_cols, vintage, rewritten)
        dated = pl.concat([p[DATE].unique() for p in batch.panels()])
        missing = sorted(set(days) - set(dated.to_list()))
        if missing:
            raise dg.Failure(
                f"no features for sessions {missing[:10]}: materialize raw_prices and features for them"
            )
        yield batch


def _lean_batch(
    path: str,
    cfg: ForecastConfig,
    period_start: dt.date,
    days: list[dt.date],
    row: dict,
    lstm: LSTMForecaster,
    vintage: int,
    rewritten: bool,
) -> PeriodBatch:
    """The batch on the serving panel: the tickers with a usable stored state (before the first
    session, with the rows after it that the model's first forecast reads: the LSTM's window)
    continue from it and are read after it only; the rest over their whole history."""
    columns = serving.serving_columns(reads.feature_table_columns(path))
    carry = forecast_state.stored(path, row["model_version"])
    continued = None
    if carry.height:
        since = (row["model_version"], carry["as_of"].min())
        tail, _ = reads.serving_panel(path, cfg, days[-1], columns, days[0], continued=since)
        need = pl.when(pl.col("model") == lstm.name).then(lstm.rows_before).otherwise(0)
        usable = continuation.continuable(tail, carry, days[0], need)
        if usable:
            keep = pl.col(TICKER).is_in(usable)
            continued = (tail.filter(keep), carry.filter(keep))
    rest = None  # every ticker
    if continued is not None:
        usable = set(continued[1][TICKER].to_list())
        rest = [t for t in reads.tickers_with_features(path, days[0], days[-1]) if t not in usable]
    panel, feature_cols = reads.serving_panel(path, cfg, days[-1], columns, days[0], tickers=rest)
    return PeriodBatch(period_start, days, row, lstm, panel, feature_cols, vintage, rewritten, continued)
