"""raw_prices on a `file` source with bad data: the run fails naming the ticker and the date, is
not retried, and writes nothing (the rows already stored stay as they were)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from forecast_core.columns import ADJ_CLOSE, DATE, TICKER
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import defs_on, materialize
from tests.support.synthetic import synthetic_prices
from warehouse import read_sql
from warehouse.io import table_exists

TICKERS = ("AAPL", "MSFT", "KO", "^GSPC")
HISTORY_START = dt.date(2022, 11, 1)


def price_file(path: Path, bad: tuple[str, dt.date, float] | None = None) -> Path:
    """Synthetic adjusted closes for the tiny universe, 2022-11-01..2022-12-30, as a CSV; `bad`
    replaces one (ticker, date)'s price."""
    prices = synthetic_prices(TICKERS, HISTORY_START, dt.date(2022, 12, 30)).select(TICKER, DATE, ADJ_CLOSE)
    if bad is not None:
        ticker, day, value = bad
        prices = prices.with_columns(
            pl.when((pl.col(TICKER) == ticker) & (pl.col(DATE) == day))
            .then(value)
            .otherwise(pl.col(ADJ_CLOSE))
            .alias(ADJ_CLOSE)
        )
    prices.write_csv(path)
    return path


@pytest.fixture
def file_defs(tmp_path: Path, warehouse_path: Path):
    def build(csv: Path) -> dg.Definitions:
        config = with_overrides(
            TINY_CONFIG,
            {"source": {"kind": "file", "path": str(csv), "start_date": HISTORY_START.isoformat()}},
        )
        return defs_on(warehouse_path, write_config(tmp_path / "file.toml", config))

    return build


def ingest(defs: dg.Definitions, start: str, end: str) -> dg.ExecuteInProcessResult:
    """raw_prices alone (no checks) over the sessions start..end, as one range run."""
    return materialize(
        ["raw_prices"],
        defs,
        checks=(),
        start=dt.date.fromisoformat(start),
        end=dt.date.fromisoformat(end),
        raise_on_error=False,
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failures = result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["raw_prices"]
    data = failures[0].step_failure_data
    # Bad data is not worth retrying: no retry (the policy would wait 15 s first).
    assert not any(e.is_step_up_for_retry for e in result.all_events)
    assert data.user_failure_data is not None  # a dg.Failure, not a crash
    return f"{data.user_failure_data.description}\n{data.error.message if data.error else ''}"


def stored(path: Path) -> pl.DataFrame:
    if not path.exists() or not table_exists("raw_prices", path):
        return pl.DataFrame(schema={TICKER: pl.String, DATE: pl.Date, ADJ_CLOSE: pl.Float64})
    return read_sql("SELECT ticker, date, adj_close FROM raw_prices ORDER BY ALL", path=path)


def test_a_bad_price_in_the_range_fails_naming_it_and_writes_nothing(tmp_path, warehouse_path, file_defs):
    defs = file_defs(price_file(tmp_path / "prices.csv", bad=("KO", dt.date(2022, 12, 14), -3.5)))
    first = ingest(defs, "2022-12-05", "2022-12-09")  # the bad row is outside this range
    assert first.success
    before = stored(warehouse_path)
    assert before[DATE].min() == HISTORY_START and before[DATE].max() == dt.date(2022, 12, 9)

    text = failure_text(ingest(defs, "2022-12-12", "2022-12-16"))
    assert "KO 2022-12-14" in text and "adj_close" in text and "-3.5" in text
    assert "AAPL" not in text and "MSFT" not in text  # only the offending row is named
    after = stored(warehouse_path)
    assert after.filter(pl.col(DATE) >= dt.date(2022, 12, 12)).height == 0
    assert after.equals(before)


def test_a_bad_price_in_a_new_tickers_history_fails_before_anything_is_written(
    tmp_path, warehouse_path, file_defs
):
    # First run: every ticker is new, so its history from source.start_date is fetched too.
    defs = file_defs(price_file(tmp_path / "prices.csv", bad=("MSFT", dt.date(2022, 11, 15), 0.0)))
    text = failure_text(ingest(defs, "2022-12-12", "2022-12-16"))
    assert "MSFT 2022-11-15" in text and "adj_close" in text
    assert stored(warehouse_path).height == 0


def test_a_ticker_whose_data_stop_gets_advice_to_declare_its_last_session(tmp_path, warehouse_path):
    """A delisting: KO's rows end on 2022-11-15 while the others go on. The run fails naming KO
    and saying how to declare its last session; declared, the same file ingests, and KO has no
    rows (and no missing sessions) after it."""
    full = synthetic_prices(TICKERS, HISTORY_START, dt.date(2022, 12, 30)).select(TICKER, DATE, ADJ_CLOSE)
    csv = tmp_path / "delisted.csv"
    full.filter((pl.col(TICKER) != "KO") | (pl.col(DATE) <= dt.date(2022, 11, 15))).write_csv(csv)
    source = {"kind": "file", "path": str(csv), "start_date": HISTORY_START.isoformat()}
    undeclared = with_overrides(TINY_CONFIG, {"source": source})
    defs = defs_on(warehouse_path, write_config(tmp_path / "undeclared.toml", undeclared))
    text = failure_text(ingest(defs, HISTORY_START.isoformat(), "2022-12-09"))
    assert "KO 2022-11-16" in text and "data stop early for KO (last row 2022-11-15" in text
    assert "declare its last session" in text and '[universe.membership] KO = { last = "2022-11-15" }' in text
    # A range after the last row (the nightly run): nothing at all for KO, the same advice.
    text = failure_text(ingest(defs, "2022-12-05", "2022-12-09"))
    assert "KO came back empty" in text and "declare their last session" in text
    assert not warehouse_path.exists() or stored(warehouse_path).height == 0

    universe = {**TINY_CONFIG["universe"], "membership": {"KO": {"last": "2022-11-15"}}}
    declared = with_overrides(TINY_CONFIG, {"source": source, "universe": universe})
    defs = defs_on(warehouse_path, write_config(tmp_path / "declared.toml", declared))
    result = ingest(defs, HISTORY_START.isoformat(), "2022-12-09")
    assert result.success
    rows = stored(warehouse_path)
    assert rows.filter(pl.col(TICKER) == "KO")[DATE].max() == dt.date(2022, 11, 15)
    assert rows.filter(pl.col(TICKER) == "AAPL")[DATE].max() == dt.date(2022, 12, 9)
