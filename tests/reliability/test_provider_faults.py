"""Yahoo Finance misbehaving, through the `raw_prices` asset (not just the source): a fake
`yfinance.download` serves synthetic prices and injects one fault per scenario.

Every scenario starts from the same stored warehouse (history from 2022-11-01 to 2022-12-09) and
ingests 2022-12-12..2022-12-16 (or one session) with the fault. Its outcome is one of:
- `retried`: transient (connection error, rate limit, timeout); the asset raises
  TransientSourceError, Dagster's retry policy (the asset's real one, delays recorded and skipped)
  runs it again, and the attempt after the fault succeeds;
- `exhausted`: transient every time; the run fails after the policy's retries;
- `fails`: bad data; the run fails at once (no retry) with a message naming tickers and dates;
- `handled`: a harmless quirk (unsorted dates, time zones, column layouts) that is normalised.
No failed run changes the warehouse file (byte for byte), and the good run that follows stores
exactly the source's prices.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from pathlib import Path

import curl_cffi.requests.exceptions as curl_exceptions
import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest
import requests
import yfinance
import yfinance.shared
from yfinance.exceptions import YFRateLimitError

from forecast_assets.assets.prices import SOURCE_RETRY
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, LOW, OPEN, TICKER, VOLUME
from tests.reliability.ledger import record
from tests.support.pipeline import check_results, checks_passed, materialize
from tests.support.yahoo import (
    FIELDS,
    HISTORY_START,
    RUN,
    SEED,
    TICKERS,
    Corruption,
    FakeYahoo,
    defs_for,
    fresh_copy,
    ingest,
    raises,
    truth,
)
from warehouse import read_sql

#: The retry policy's delays are recorded, not slept (tests/reliability/conftest.py); each scenario
#: starts from a copy of the module's `seeded` warehouse.
pytestmark = pytest.mark.usefixtures("retry_delays")

LAST = RUN[1]
MID = dt.date(2022, 12, 14)
STORED = [TICKER, DATE, OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME]


# --- faults ---------------------------------------------------------------------------------------


def _ts(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day)


def logs(failed: list[str], error: str) -> Corruption:
    """yfinance 1.7: failed tickers are logged as `['A', 'B']: Error(...)` and come back NaN."""

    def fault(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
        logging.getLogger("yfinance").error("\n%d Failed download:", len(failed))
        logging.getLogger("yfinance").error("%s: %s", failed, error)
        out = frame.copy()
        for t in failed:
            out.loc[:, (slice(None), t)] = np.nan
        return out

    return fault


def set_cells(day: dt.date, ticker: str, fields: tuple[str, ...], value: float) -> Corruption:
    def fault(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
        out = frame.copy()
        for f in fields:
            out.loc[_ts(day), (f, ticker)] = value
        return out

    return fault


def drop_ticker(ticker: str) -> Corruption:
    return lambda frame, tickers: frame.drop(columns=ticker, level="Ticker")


def drop_dates(*days: dt.date) -> Corruption:
    return lambda frame, tickers: frame.drop(index=[_ts(d) for d in days if _ts(d) in frame.index])


def duplicate_date(day: dt.date) -> Corruption:
    return lambda frame, tickers: pd.concat([frame, frame.loc[[_ts(day)]]]).sort_index()


def reverse_rows(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    return frame.iloc[::-1]


def localize(tz: str, clock: str = "00:00") -> Corruption:
    def fault(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
        out = frame.copy()
        out.index = (out.index + pd.Timedelta(clock + ":00")).tz_localize(tz)
        return out

    return fault


def ticker_first(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """`group_by="ticker"`: columns (Ticker, Price)."""
    out = frame.copy()
    out.columns = out.columns.swaplevel(0, 1)
    return out.sort_index(axis=1)


def flat_when_alone(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """yfinance < 0.2.48: a one-ticker download has flat columns (Open, High, ...)."""
    return frame.droplevel("Ticker", axis=1) if len(tickers) == 1 else frame


def extra_level(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    out = frame.copy()
    out.columns = pd.MultiIndex.from_tuples([(f, t, "x") for f, t in out.columns])
    return out


def add_ticker(name: str, like: str) -> Corruption:
    def fault(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
        extra = frame.xs(like, axis=1, level="Ticker", drop_level=False).rename(columns={like: name})
        return pd.concat([frame, extra], axis=1)

    return fault


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str
    fault: Corruption
    outcome: str  # retried, exhausted, fails, handled
    expect: tuple[str, ...] = ()  # in the failure message
    times: int | None = None  # calls that see the fault (None: all)
    span: tuple[dt.date, dt.date] = RUN
    add: tuple[str, ...] = ()  # tickers added to the universe (their history is fetched alone)


RATE_LIMIT = "YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')"
TIMEOUT = "Timeout('Failed to perform, curl: (28) Operation timed out after 30001 milliseconds')"
EVERY = list(TICKERS)
SPAN = f"{RUN[0]}..{RUN[1]}"

FAULTS = [
    Fault(
        "connection_error",
        raises(
            requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='query2.finance.yahoo.com', port=443): Max retries exceeded"
            )
        ),
        "retried",
        times=2,
    ),
    Fault("rate_limit_raised", raises(YFRateLimitError()), "retried", times=1),
    Fault("rate_limit_logged", logs(EVERY, RATE_LIMIT), "retried", times=1),
    Fault(
        "timeout_raised",
        raises(curl_exceptions.Timeout("curl: (28) Operation timed out")),
        "retried",
        times=1,
    ),
    Fault("timeout_logged_one_ticker", logs(["KO"], TIMEOUT), "retried", times=3),
    Fault(
        "rate_limit_every_attempt",
        raises(YFRateLimitError()),
        "exhausted",
        ("TransientSourceError", "AAPL, MSFT, KO, ^GSPC", SPAN, "Too Many Requests"),
    ),
    Fault(
        "empty_frame",
        lambda frame, tickers: pd.DataFrame(),
        "fails",
        ("came back empty", "AAPL, MSFT, KO, ^GSPC", SPAN),
    ),
    Fault("ticker_missing", drop_ticker("KO"), "fails", ("KO came back empty", SPAN)),
    Fault(
        "ticker_delisted_logged",
        logs(["KO"], "YFPricesMissingError('$KO: possibly delisted; no price data found')"),
        "fails",
        ("KO", "possibly delisted", SPAN),
    ),
    Fault("nan_field", set_cells(MID, "MSFT", ("Close",), np.nan), "fails", ("MSFT 2022-12-14 (close NaN)",)),
    Fault(
        "nan_session_one_ticker",
        set_cells(MID, "MSFT", tuple(FIELDS), np.nan),
        "fails",
        ("MSFT 2022-12-14", "lack 1 session"),
    ),
    Fault("zero_price", set_cells(MID, "AAPL", ("Close",), 0.0), "fails", ("AAPL 2022-12-14 close=0.0",)),
    Fault("infinite_price", set_cells(MID, "KO", ("High",), np.inf), "fails", ("KO 2022-12-14 high=inf",)),
    Fault(
        "duplicated_date", duplicate_date(MID), "fails", ("duplicate (ticker, date) rows", "AAPL 2022-12-14")
    ),
    Fault("unrequested_ticker", add_ticker("GOOG", "AAPL"), "fails", ("not requested", "GOOG")),
    Fault(
        "three_level_columns", extra_level, "fails", ("unrecognised column layout", "AAPL, MSFT, KO, ^GSPC")
    ),
    Fault(
        "late_session_every_ticker",
        drop_dates(LAST),
        "fails",
        ("lack 4 session", "AAPL 2022-12-16", "^GSPC 2022-12-16", "not published yet"),
    ),
    Fault(
        "late_session_one_ticker",
        set_cells(LAST, "KO", tuple(FIELDS), np.nan),
        "fails",
        ("lack 1 session", "KO 2022-12-16"),
    ),
    Fault(
        "late_session_nightly",
        drop_dates(RUN[0]),
        "fails",  # the session after the stored ones
        ("came back empty", "AAPL, MSFT, KO, ^GSPC", "2022-12-12..2022-12-12"),
        span=(RUN[0], RUN[0]),
    ),
    Fault("unsorted_dates", reverse_rows, "handled"),
    Fault("tz_aware_new_york", localize("America/New_York"), "handled"),
    Fault("tz_aware_utc_at_the_open", localize("UTC", "14:30"), "handled"),
    Fault("ticker_price_columns", ticker_first, "handled"),
    Fault("multiindex_for_one_ticker", lambda frame, tickers: frame, "handled", add=("PEP",)),
    Fault("flat_columns_for_one_ticker", flat_when_alone, "handled", add=("PEP",)),
]


# --- what a run stored and reported ---------------------------------------------------------------


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(path: Path, until: dt.date) -> pl.DataFrame:
    return read_sql(
        f"SELECT {', '.join(STORED)} FROM raw_prices WHERE date <= ? ORDER BY ticker, date",
        [until],
        path=path,
    )


def expected(prices: pl.DataFrame, tickers: tuple[str, ...], until: dt.date) -> pl.DataFrame:
    return (
        prices.filter(pl.col(TICKER).is_in(tickers), pl.col(DATE) <= until).select(STORED).sort(TICKER, DATE)
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.get_step_failure_events() if e.step_key == "raw_prices"]
    assert len(failures) == 1, [e.step_key for e in result.get_step_failure_events()]
    data = failures[0].step_failure_data
    texts = [data.user_failure_data.description or ""] if data.user_failure_data else []
    error = data.error
    while error is not None:  # after the last retry: "Exceeded max_retries of 4", caused by the error
        texts.append(error.message)
        error = error.cause or error.context
    return "\n".join(texts)


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.is_step_up_for_retry)


# --- the scenarios ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", FAULTS, ids=lambda f: f.name)
def test_provider_fault_is_retried_or_fails_cleanly_and_the_next_good_run_recovers(
    case: Fault, seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_delays: list[float]
) -> None:
    record("faults_simulated")
    path = fresh_copy(seeded, tmp_path)
    defs = defs_for(tmp_path, case.add)
    tickers = (*TICKERS, *case.add)
    before = file_digest(path)
    source = FakeYahoo(truth(), case.fault, case.times)
    monkeypatch.setattr(yfinance, "download", source)

    result = ingest(defs, case.span)

    if case.outcome in ("retried", "handled"):
        assert result.success, failure_message(result)
        assert retries(result) == (case.times if case.outcome == "retried" else 0)
        record("transient_retries", retries(result))
        assert stored(path, case.span[1]).equals(expected(truth(), tickers, case.span[1]))
        assert checks_passed(result)
        if case.outcome == "retried":
            # The asset's own policy asked for exponential delays with jitter: 15 s +- 15 s, then 45 s +- 15 s...
            for attempt, delay in enumerate(retry_delays, start=1):
                base = (2**attempt - 1) * SOURCE_RETRY.delay
                assert base - SOURCE_RETRY.delay <= delay <= base + SOURCE_RETRY.delay
        return

    message = failure_message(result)
    for part in case.expect:
        assert part in message, (part, message)
    if case.outcome == "exhausted":
        assert retries(result) == SOURCE_RETRY.max_retries
        record("transient_retries", retries(result))
    else:
        assert retries(result) == 0  # bad data is not worth retrying
    assert not result.get_asset_check_evaluations()  # the checks never ran on a failed ingest
    unchanged = file_digest(path) == before
    record("losses_partial_write", int(not unchanged))
    assert unchanged, "a failed ingest changed the warehouse file"

    # The provider is fixed: the next run stores exactly its prices.
    monkeypatch.setattr(yfinance, "download", FakeYahoo(truth()))
    again = ingest(defs, case.span)
    assert again.success, failure_message(again)
    assert stored(path, case.span[1]).equals(expected(truth(), tickers, case.span[1]))
    record("recoveries")


def test_a_split_that_rewrites_history_blocks_the_run_until_history_is_reingested(
    seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSFT splits 2-for-1 before 2022-12-12: Yahoo now reports every earlier price halved (and
    volumes doubled). What the job does: the ingest stores the range as delivered (valid data), and
    the blocking check `history_matches_source`, which downloads the 5 stored sessions before the
    batch again, fails naming MSFT and the ratio, so features and forecasts do not run on two price
    scales. Re-materializing raw_prices over the stored range replaces the history; then the
    check passes."""
    record("faults_simulated")
    path = fresh_copy(seeded, tmp_path)
    defs = defs_for(tmp_path)
    split = truth().with_columns(
        *[
            pl.when(pl.col(TICKER) == "MSFT").then(pl.col(c) * 0.5).otherwise(pl.col(c)).alias(c)
            for c in (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE)
        ],
        pl.when(pl.col(TICKER) == "MSFT").then(pl.col(VOLUME) * 2).otherwise(pl.col(VOLUME)).alias(VOLUME),
    )
    monkeypatch.setattr(yfinance, "download", FakeYahoo(split))

    first = materialize(["raw_prices", "features"], defs, start=RUN[0], end=RUN[1], raise_on_error=False)
    check = check_results(first)["history_matches_source"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["tickers_revised"] == ["MSFT"] and meta["revised_values"] == 2 * 5
    assert "MSFT 2022-12-09 adj_close" in meta["examples"] and "(x0.5)" in meta["examples"]
    assert "features" not in {e.asset_key.path[-1] for e in first.get_asset_materialization_events()}
    mixed = stored(path, RUN[1]).filter(pl.col(TICKER) == "MSFT")
    assert mixed.filter(pl.col(DATE) < RUN[0]).equals(expected(truth(), ("MSFT",), SEED[1]))

    reingest = materialize(["raw_prices"], defs, start=HISTORY_START, end=RUN[1])
    assert checks_passed(reingest)
    assert stored(path, RUN[1]).equals(expected(split, TICKERS, RUN[1]))
    record("recoveries")
