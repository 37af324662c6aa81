"""What `forecast_scores` must (re)score, and its incremental write, inside one transaction.

A score is a function of its forecast row and two stored closes: the ticker's at the target date
and at the as-of date (`forecast_core.serving.forecasts.score_forecasts`). `forecast_scores_state`
records what the table was last brought up to: every forecast created up to `forecasts_created_at`
scored against the prices of vintage `prices_vintage`. Since then a score can change only where

- its forecast was rewritten or removed (a forecast run writes `created_at` = now), or
- a later price vintage rewrote or removed history of its ticker (`price_vintages.tickers_changed`),

and a forecast can gain a score only where it has none yet (its target date newly priced). So the
incremental run keeps every other score, deletes those, and scores the forecasts without a score
that are left, reading only the closes they need: the same rows as a full rebuild (`scored_at`
aside: when each row was scored). Without a state (a new or upgraded warehouse) it rebuilds in full.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from warehouse.io import Writer
from warehouse.vintages import current_vintage

#: The key of a forecast and of its score.
KEY = ("as_of_date", "ticker", "horizon", "model_version")
_SAME_KEY = (
    "f.as_of_date = s.as_of_date AND f.ticker = s.ticker AND f.horizon = s.horizon "
    "AND f.model_version = s.model_version"
)
#: A forecast (f) whose stored score (s) stays: the forecast is unchanged since it was scored
#: (created up to the state's time) and no vintage since rewrote its ticker's history
#: (parameters: that time, those tickers).
_KEPT = "f.created_at <= ? AND s.ticker NOT IN (SELECT unnest(?::VARCHAR[]))"
#: The stored scores that do not stay (what an incremental run deletes; same parameters).
_STALE = (
    "NOT EXISTS (SELECT 1 FROM forecasts f WHERE f.as_of_date = forecast_scores.as_of_date "
    "AND f.ticker = forecast_scores.ticker AND f.horizon = forecast_scores.horizon "
    "AND f.model_version = forecast_scores.model_version AND f.created_at <= ?) "
    "OR forecast_scores.ticker IN (SELECT unnest(?::VARCHAR[]))"
)


@dataclass(frozen=True)
class ScoringPlan:
    """What one `forecast_scores` run rescored: `mode` is "full" or "incremental"; `since` the
    state's forecast time; `rewritten` the tickers whose history a vintage since rewrote."""

    mode: str
    since: dt.datetime | None
    rewritten: list[str]
    prices_vintage: int
    forecasts_created_at: dt.datetime | None


def plan(w: Writer) -> ScoringPlan:
    """The run's plan from `forecast_scores_state` and the vintages since (full without a state)."""
    vintage = current_vintage(w.con)
    created = w.read("SELECT max(created_at) AS t FROM forecasts")["t"][0]
    state = w.read("SELECT prices_vintage, forecasts_created_at FROM forecast_scores_state")
    if state.height != 1 or state["forecasts_created_at"][0] is None:
        return ScoringPlan("full", None, [], vintage, created)
    since, scored_vintage = state["forecasts_created_at"][0], int(state["prices_vintage"][0])
    rewritten = w.read(
        "SELECT DISTINCT unnest(tickers_changed) AS ticker FROM price_vintages WHERE vintage > ? ORDER BY 1",
        [scored_vintage],
    )
    return ScoringPlan("incremental", since, rewritten["ticker"].to_list(), vintage, created)


def to_score(w: Writer, p: ScoringPlan) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The forecasts the run scores (every one in full; else those without a score that stays)
    and the raw_prices rows (ticker, date, adj_close, close) at their target and as-of dates."""
    if p.mode == "full":
        forecasts = w.read("SELECT * FROM forecasts")
    else:
        forecasts = w.read(
            f"SELECT * FROM forecasts f WHERE NOT EXISTS "
            f"(SELECT 1 FROM forecast_scores s WHERE {_SAME_KEY} AND {_KEPT})",
            [p.since, p.rewritten],
        )
    w.con.register("_to_score", forecasts.select("ticker", "as_of_date", "target_date"))
    try:
        prices = w.read(
            "SELECT ticker, date, adj_close, close FROM raw_prices p WHERE EXISTS (SELECT 1 FROM _to_score f "
            "WHERE f.ticker = p.ticker AND (f.target_date = p.date OR f.as_of_date = p.date)) "
            "ORDER BY ticker, date"
        )
    finally:
        w.con.unregister("_to_score")
    return forecasts, prices


def write(w: Writer, p: ScoringPlan, scores: pl.DataFrame) -> int:
    """Replace the scores the plan rescored with `scores` and record the new state; the rows
    inserted."""
    if p.mode == "full":
        inserted = w.replace("forecast_scores", scores)
    else:
        inserted = w.replace("forecast_scores", scores, _STALE, [p.since, p.rewritten])
    state = pl.DataFrame(
        {"prices_vintage": [p.prices_vintage], "forecasts_created_at": [p.forecasts_created_at]},
        schema={"prices_vintage": pl.Int64, "forecasts_created_at": pl.Datetime("us", "UTC")},
    )
    w.replace("forecast_scores_state", state)
    return inserted


def summary(w: Writer) -> tuple[dict, pl.DataFrame]:
    """The tables as written: {scores, forecasts, coverage_80, pinball} (means over every score;
    NaN without one), and per horizon: scored, coverage_80, pinball."""
    totals = w.read(
        "SELECT count(*) AS scores, (SELECT count(*) FROM forecasts) AS forecasts, "
        "coalesce(avg(covered_80::DOUBLE), 'nan'::DOUBLE) AS coverage_80, "
        "coalesce(avg(pinball), 'nan'::DOUBLE) AS pinball FROM forecast_scores"
    ).row(0, named=True)
    by_horizon = w.read(
        "SELECT horizon, count(*) AS scored, avg(covered_80::DOUBLE) AS coverage_80, avg(pinball) AS pinball "
        "FROM forecast_scores GROUP BY horizon ORDER BY horizon"
    )
    return totals, by_horizon
