"""The asset checks' logic on small hand-built frames: each finds what it should, names the ticker
and date, and passes clean data. The raw_prices checks are also run as Dagster invokes them, on a
small warehouse, for the evidence they attach as metadata."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from forecast_assets.checks import (
    FORECAST_CHECKS,
    duplicate_sessions,
    forecast_check_results,
    missing_sessions,
    no_duplicate_sessions,
    no_missing_sessions,
    non_positive_prices,
    plausible_jumps,
    positive_prices,
    price_jumps,
)  # fmt: skip
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, INGESTED_AT, LOW, OPEN, SOURCE, TICKER, VOLUME
from forecast_core.config import config_from_dict
from forecast_core.data import calendar
from tests.support.config import write_config
from warehouse import transaction

D = calendar.sessions(dt.date(2022, 12, 19), dt.date(2022, 12, 30))  # 2022-12-26 is a holiday
assert dt.date(2022, 12, 26) not in D and len(D) == 9
CFG = config_from_dict({"universe": {"tickers": ["AAA", "BBB"], "exogenous": ["^GSPC"]}})


def prices(
    rows: dict[str, list[float | None]], days: list[dt.date] = D, column: str = ADJ_CLOSE
) -> pl.DataFrame:
    """raw_prices rows (without ingested_at): `column` from `rows[ticker]` on `days`, other prices
    null (as the sample has them)."""
    frames = [
        pl.DataFrame(
            {TICKER: [t] * len(v), DATE: days[: len(v)], column: v}, schema_overrides={column: pl.Float64}
        )
        for t, v in rows.items()
    ]
    out = pl.concat(frames)
    for c in (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME):
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, pl.Float64).alias(c))
    return out.with_columns(pl.lit("test").alias(SOURCE)).select(
        TICKER, DATE, OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME, SOURCE
    )


CLEAN = prices(
    {"AAA": [10.0 + i for i in range(9)], "BBB": [50.0 - i for i in range(9)], "^GSPC": [4000.0] * 9}
)


# --- duplicate_sessions -------------------------------------------------------------------------


def test_duplicate_sessions_names_the_repeated_keys():
    dup = pl.concat([CLEAN, CLEAN.filter((pl.col(TICKER) == "BBB") & (pl.col(DATE) == D[3]))])
    assert duplicate_sessions(dup).rows() == [("BBB", D[3], 2)]
    assert duplicate_sessions(CLEAN).height == 0


# --- non_positive_prices ------------------------------------------------------------------------


@pytest.mark.parametrize("column", [OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE])
@pytest.mark.parametrize("value", [0.0, -1.5, math.nan, math.inf])
def test_non_positive_prices_finds_a_bad_value_in_any_price_column(column, value):
    bad = CLEAN.with_columns(
        pl.when((pl.col(TICKER) == "AAA") & (pl.col(DATE) == D[5]))
        .then(value)
        .otherwise(pl.col(column))
        .alias(column)
    )
    assert non_positive_prices(bad).rows() == [("AAA", D[5])]


def test_non_positive_prices_passes_clean_data_and_ignores_missing_fields():
    assert CLEAN[OPEN].is_null().all()  # absent fields (the sample has adj_close only) are not errors
    assert non_positive_prices(CLEAN).height == 0
    assert non_positive_prices(prices({"AAA": [1.0, 2.0]}, column=CLOSE)).height == 0


# --- missing_sessions ---------------------------------------------------------------------------


def test_missing_sessions_names_the_gaps_and_the_absent_tickers():
    gappy = CLEAN.filter(~((pl.col(TICKER) == "AAA") & pl.col(DATE).is_in([D[2], D[4]]))).filter(
        pl.col(TICKER) != "BBB"
    )
    assert sorted(missing_sessions(gappy, ("AAA", "BBB", "^GSPC"), "XNYS"), key=str) == [
        ("AAA", D[2]),
        ("AAA", D[4]),
        ("BBB", None),
    ]


def test_missing_sessions_passes_clean_data_across_a_holiday():
    assert missing_sessions(CLEAN, ("AAA", "BBB", "^GSPC"), "XNYS") == []
    # A ticker that starts (IPO) or stops later than the others is not missing sessions either.
    late = CLEAN.filter(~((pl.col(TICKER) == "AAA") & (pl.col(DATE) < D[4])))
    assert missing_sessions(late, ("AAA", "BBB", "^GSPC"), "XNYS") == []


# --- price_jumps --------------------------------------------------------------------------------


def test_price_jumps_flags_large_moves_since_a_date_only():
    jumpy = prices({"AAA": [10, 10, 30, 30, 30, 30, 5, 5, 5], "BBB": [50.0] * 9})  # x3 on D[2], /6 on D[6]
    found = price_jumps(jumpy, D[0], 0.75)
    assert found.select(TICKER, DATE).rows() == [("AAA", D[2]), ("AAA", D[6])]
    assert found["log_return"].to_list() == pytest.approx([math.log(3), math.log(5 / 30)])
    assert price_jumps(jumpy, D[3], 0.75).select(TICKER, DATE).rows() == [("AAA", D[6])]
    assert price_jumps(jumpy, D[0], 2.0).height == 0
    assert price_jumps(CLEAN, D[0], 0.75).height == 0


def test_price_jumps_does_not_compare_across_tickers():
    # BBB starts at 1000 right after AAA ends at 10: not a jump, another ticker.
    two = prices({"AAA": [10.0] * 9, "BBB": [1000.0] * 9})
    assert price_jumps(two, D[0], 0.75).height == 0


# --- forecast_check_results ---------------------------------------------------------------------


def forecasts(days: list[dt.date] = D[:2]) -> pl.DataFrame:
    """Consistent forecasts for CFG's tickers and horizons on `days`."""
    rows = [
        {
            "as_of_date": d,
            TICKER: t,
            "horizon": h,
            "model_version": "v",
            "model": "lstm",
            "target_date": calendar.add_sessions(d, h),
            "last_close": 100.0,
            "pred_log_return": 0.001,
            "q10": -0.02 * h,
            "q50": 0.001,
            "q90": 0.02 * h,
        }
        for d in days
        for t in CFG.universe.tickers
        for h in CFG.horizons
    ]
    return pl.DataFrame(rows).with_columns(
        (pl.col("last_close") * pl.col(q).exp()).alias(f"{q}_close") for q in ("q10", "q50", "q90")
    )


def results(frame: pl.DataFrame, days: list[dt.date] = D[:2]) -> dict[str, dg.AssetCheckResult]:
    out = {r.check_name: r for r in forecast_check_results(frame, CFG, days)}
    assert set(out) == {spec.name for spec in FORECAST_CHECKS}
    return out


def edit(frame: pl.DataFrame, day: dt.date, ticker: str, horizon: int, **values: float) -> pl.DataFrame:
    at = (pl.col("as_of_date") == day) & (pl.col(TICKER) == ticker) & (pl.col("horizon") == horizon)
    return frame.with_columns(
        pl.when(at).then(pl.lit(v)).otherwise(pl.col(c)).alias(c) for c, v in values.items()
    )


def test_forecast_checks_pass_complete_consistent_forecasts():
    for name, r in results(forecasts()).items():
        assert r.passed, (name, r.metadata)


@pytest.mark.parametrize("column", ["q90_close", "pred_log_return", "last_close"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_forecasts_finite_names_the_bad_row(column, value):
    r = results(edit(forecasts(), D[1], "BBB", 5, **{column: value}))
    assert not r["forecasts_finite"].passed
    assert r["forecasts_finite"].metadata["non_finite_rows"].value == 1
    assert r["forecasts_finite"].metadata["examples"].value == f"{D[1]} BBB 5"
    assert r["complete_forecasts"].passed


def test_quantiles_ordered_names_the_crossed_rows():
    crossed = edit(edit(forecasts(), D[0], "AAA", 1, q10=0.01), D[1], "BBB", 5, q50=0.5)
    r = results(crossed)
    assert not r["quantiles_ordered"].passed
    assert r["quantiles_ordered"].metadata["crossed_rows"].value == 2
    assert r["quantiles_ordered"].metadata["examples"].value == f"{D[0]} AAA 1, {D[1]} BBB 5"
    assert r["forecasts_finite"].passed and r["complete_forecasts"].passed


def test_complete_forecasts_names_what_is_missing():
    frame = forecasts().filter(
        ~((pl.col(TICKER) == "AAA") & (pl.col("horizon") == 5) & (pl.col("as_of_date") == D[1]))
    )
    r = results(frame)
    assert not r["complete_forecasts"].passed
    assert r["complete_forecasts"].metadata["examples"].value == f"{D[1]} AAA 5"
    # A session of the partition without any forecast is missing for every ticker and horizon.
    r = results(forecasts(), D[:3])
    assert r["complete_forecasts"].metadata["missing"].value == len(CFG.universe.tickers) * len(CFG.horizons)
    assert str(D[2]) in r["complete_forecasts"].metadata["examples"].value
    # Exogenous tickers get no forecasts and are not expected to.
    assert "^GSPC" not in r["complete_forecasts"].metadata["examples"].value


# --- the raw_prices checks as Dagster runs them -------------------------------------------------


def store(path: Path, frame: pl.DataFrame, ingested_at: dt.datetime) -> None:
    with transaction(path) as w:
        w.replace(
            "raw_prices",
            frame.with_columns(pl.lit(ingested_at, pl.Datetime("us", "UTC")).alias(INGESTED_AT)),
            "date BETWEEN ? AND ?",
            [frame[DATE].min(), frame[DATE].max()],
        )


def test_price_checks_report_tickers_and_dates_as_metadata(tmp_path: Path, warehouse_path: Path):
    config = write_config(
        tmp_path / "checks.toml", {"universe": {"tickers": ["AAA", "BBB"], "exogenous": ["^GSPC"]}}
    )
    warehouse, pipeline = WarehouseResource(path=str(warehouse_path)), PipelineConfig(config_file=str(config))
    first = dt.datetime(2022, 12, 23, 23, tzinfo=dt.UTC)
    store(warehouse_path, CLEAN.filter(pl.col(DATE) <= D[4]), first)
    for check in (
        no_duplicate_sessions(warehouse=warehouse),
        positive_prices(warehouse=warehouse),
        no_missing_sessions(warehouse=warehouse, pipeline=pipeline),
        plausible_jumps(warehouse=warehouse, pipeline=pipeline),
    ):
        assert check.passed, check.metadata

    # The next batch: AAA's D[6] is negative, AAA jumps to 80 on D[8], BBB skips D[7].
    batch = (
        CLEAN.filter(pl.col(DATE) > D[4])
        .with_columns(
            pl.when((pl.col(TICKER) == "AAA") & (pl.col(DATE) == D[6]))
            .then(-1.0)
            .when((pl.col(TICKER) == "AAA") & (pl.col(DATE) == D[8]))
            .then(80.0)
            .otherwise(pl.col(ADJ_CLOSE))
            .alias(ADJ_CLOSE)
        )
        .filter(~((pl.col(TICKER) == "BBB") & (pl.col(DATE) == D[7])))
    )
    store(warehouse_path, batch, first + dt.timedelta(days=7))

    positive = positive_prices(warehouse=warehouse)
    assert not positive.passed
    assert positive.metadata["bad_rows"].value == 1
    assert positive.metadata["checked_rows"].value == batch.height  # the latest batch only
    assert positive.metadata["examples"].value == f"AAA {D[6]}"

    missing = no_missing_sessions(warehouse=warehouse, pipeline=pipeline)
    assert not missing.passed
    assert missing.metadata["examples"].value == f"BBB {D[7]}"

    jumps = plausible_jumps(warehouse=warehouse, pipeline=pipeline)
    assert not jumps.passed and jumps.severity == dg.AssetCheckSeverity.WARN
    assert f"AAA {D[8]}" in jumps.metadata["examples"].value

    assert no_duplicate_sessions(warehouse=warehouse).passed  # the primary key forbids them
