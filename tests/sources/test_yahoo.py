"""The Yahoo Finance source: yfinance conversion and failure modes (fake downloads, no network)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import curl_cffi.requests.exceptions as curl_exceptions
import numpy as np
import pandas as pd
import polars as pl
import pytest
import requests
import yfinance
import yfinance.shared
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError

from forecast_core.columns import CLOSE, DATE, SOURCE, TICKER, VOLUME
from forecast_core.errors import ConfigError, PriceDataError, TransientSourceError
from forecast_core.sources import (
    FETCH_COLUMNS,
    FETCH_SCHEMA,
    YFinanceSource,
)  # fmt: skip
from tests.support.sources import D1, D2, D3, END, START
from tests.support.yahoo import yahoo_frame

# --- fakes mimicking yfinance 1.7 -----------------------------------------------------------------


def bars(close: list[float], volume: float = 1e6) -> dict[str, list[float]]:
    """Consistent yfinance fields around `close` (NaN close -> NaN everywhere)."""
    c = np.array(close, dtype=float)
    return {
        "Adj Close": list(c * 0.9),
        "Close": list(c),
        "High": list(c + 1),
        "Low": list(c - 1),
        "Open": list(c + 0.5),
        "Volume": [np.nan if np.isnan(x) else volume for x in c],
    }


def fake_download(
    frame: pd.DataFrame | None = None,
    raises: BaseException | None = None,
    shared_errors: dict[str, str] | None = None,
    logged: list[str] = (),  # type: ignore[assignment]
) -> Callable[..., pd.DataFrame | None]:
    """A `download=` stand-in; records its calls, can fill `_ERRORS` or log like yfinance 1.7."""

    def download(tickers: list[str], **kwargs: Any) -> pd.DataFrame | None:
        download.calls.append((tickers, kwargs))  # type: ignore[attr-defined]
        if shared_errors:
            yfinance.shared._ERRORS.update(shared_errors)
        for line in logged:
            logging.getLogger("yfinance").error(line)
        if raises is not None:
            raise raises
        return frame

    download.calls = []  # type: ignore[attr-defined]
    return download


def fetch(frame: pd.DataFrame | None, tickers: tuple[str, ...] = ("AAPL", "MSFT"), **kw: Any) -> pl.DataFrame:
    return YFinanceSource(download=fake_download(frame, **kw)).fetch(tickers, START, END)


# --- yfinance: good frames ------------------------------------------------------------------------


def test_yfinance_multiindex_converts_to_long_schema() -> None:
    raw = yahoo_frame(
        {"AAPL": bars([10.0, 11.0, 12.0]), "MSFT": bars([20.0, 21.0, 22.0], 5e5)},
        ["2024-01-02", "2024-01-03", "2024-01-04"],
    )
    out = fetch(raw)
    assert out.columns == list(FETCH_COLUMNS)
    assert out.schema == FETCH_SCHEMA
    assert out.height == 6
    assert out.get_column(TICKER).to_list() == ["AAPL"] * 3 + ["MSFT"] * 3
    assert out.get_column(DATE).to_list() == [D1, D2, D3] * 2
    msft = out.filter(pl.col(TICKER) == "MSFT").row(1, named=True)
    assert msft == {
        TICKER: "MSFT",
        DATE: D2,
        "open": 21.5,
        "high": 22.0,
        "low": 20.0,
        "close": 21.0,
        "adj_close": pytest.approx(18.9),
        "volume": 5e5,
        SOURCE: "yfinance",
    }


def test_yfinance_download_gets_the_agreed_arguments() -> None:
    download = fake_download(yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"]))
    YFinanceSource(download=download, timeout_s=7).fetch(["AAPL"], START, END)
    [(tickers, kwargs)] = download.calls  # type: ignore[attr-defined]
    assert tickers == ["AAPL"]
    assert kwargs["start"] == START and kwargs["end"] == END + dt.timedelta(days=1)  # exclusive
    assert kwargs["auto_adjust"] is False and kwargs["actions"] is False
    assert kwargs["progress"] is False and kwargs["timeout"] == 7
    assert kwargs["group_by"] == "column" and kwargs["multi_level_index"] is True


@pytest.mark.parametrize(
    ("tz", "clock"), [("America/New_York", "00:00"), ("UTC", "05:00"), ("America/Los_Angeles", "21:00")]
)
def test_yfinance_tz_aware_index_keeps_the_exchange_date(tz: str, clock: str) -> None:
    # Midnight in New York, as yfinance may express it in another zone (the most common one among
    # the tickers): in Los Angeles it is 21:00 the day before, and must not shift the session.
    day = -1 if tz == "America/Los_Angeles" else 0
    stamps = [f"{d + dt.timedelta(days=day)} {clock}" for d in (D1, D2)]
    out = fetch(yahoo_frame({"AAPL": bars([10.0, 11.0])}, stamps, tz=tz), ("AAPL",))
    assert out.get_column(DATE).to_list() == [D1, D2]


def test_yfinance_single_ticker_multiindex_and_flat_frames() -> None:
    multi = yahoo_frame({"AAPL": bars([10.0, 11.0])}, ["2024-01-02", "2024-01-03"])
    flat = multi.droplevel(1, axis=1)
    for raw in (multi, flat):
        out = fetch(raw, ("AAPL",))
        assert out.get_column(CLOSE).to_list() == [10.0, 11.0]
        assert out.get_column(TICKER).unique().to_list() == ["AAPL"]


def test_yfinance_ticker_price_layout_matches_price_ticker() -> None:
    data = {"AAPL": bars([10.0, 11.0]), "MSFT": bars([20.0, 21.0])}
    dates = ["2024-01-02", "2024-01-03"]
    by_ticker = fetch(yahoo_frame(data, dates, ticker_first=True))
    assert by_ticker.equals(fetch(yahoo_frame(data, dates)))


def test_yfinance_unsorted_index_is_sorted() -> None:
    raw = yahoo_frame({"AAPL": bars([12.0, 10.0, 11.0])}, ["2024-01-04", "2024-01-02", "2024-01-03"])
    out = fetch(raw, ("AAPL",))
    assert out.get_column(DATE).to_list() == [D1, D2, D3]
    assert out.get_column(CLOSE).to_list() == [10.0, 11.0, 12.0]


def test_yfinance_drops_rows_that_are_all_nan_for_a_ticker() -> None:
    # The union index of two tickers: MSFT has no bar on 01-03 (e.g. a halt), AAPL does.
    raw = yahoo_frame(
        {"AAPL": bars([10.0, 11.0, 12.0]), "MSFT": bars([20.0, np.nan, 22.0])},
        ["2024-01-02", "2024-01-03", "2024-01-04"],
    )
    out = fetch(raw)
    assert out.filter(pl.col(TICKER) == "MSFT").get_column(DATE).to_list() == [D1, D3]
    assert out.filter(pl.col(TICKER) == "AAPL").height == 3


def test_yfinance_nan_volume_with_prices_becomes_null() -> None:
    data = bars([10.0, 11.0])
    data["Volume"] = [np.nan, 100.0]
    out = fetch(yahoo_frame({"AAPL": data}, ["2024-01-02", "2024-01-03"]), ("AAPL",))
    assert out.get_column(VOLUME).to_list() == [None, 100.0]


def test_yfinance_rows_after_end_are_dropped() -> None:
    # Yahoo sometimes appends the latest price after the requested end.
    raw = yahoo_frame({"AAPL": bars([10.0, 11.0])}, ["2024-01-05", "2024-01-08"])
    assert fetch(raw, ("AAPL",)).get_column(DATE).to_list() == [END]


# --- yfinance: bad data ---------------------------------------------------------------------------


def test_yfinance_duplicated_dates_name_ticker_and_date() -> None:
    raw = yahoo_frame({"AAPL": bars([10.0, 10.5, 11.0])}, ["2024-01-02", "2024-01-03", "2024-01-03"])
    with pytest.raises(PriceDataError, match=r"duplicate.*AAPL 2024-01-03"):
        fetch(raw, ("AAPL",))


def test_yfinance_all_nan_ticker_came_back_empty() -> None:
    raw = yahoo_frame(
        {"AAPL": bars([10.0, 11.0]), "MSFT": bars([np.nan, np.nan])}, ["2024-01-02", "2024-01-03"]
    )
    with pytest.raises(PriceDataError, match="MSFT came back empty") as info:
        fetch(raw)
    assert "AAPL" not in str(info.value)


def test_yfinance_partial_nan_row_names_ticker_date_and_fields() -> None:
    data = bars([10.0, 11.0])
    data["Close"][1] = np.nan
    with pytest.raises(PriceDataError, match=r"partial.*AAPL 2024-01-03 \(close NaN\)"):
        fetch(yahoo_frame({"AAPL": data}, ["2024-01-02", "2024-01-03"]), ("AAPL",))


def test_yfinance_empty_frame_names_every_ticker_and_the_range() -> None:
    empty = yahoo_frame({"AAPL": bars([]), "MSFT": bars([])}, [])  # what 1.7 returns offline
    for raw in (empty, pd.DataFrame(), None):
        with pytest.raises(PriceDataError, match=r"empty.*AAPL, MSFT in 2024-01-02\.\.2024-01-05"):
            fetch(raw)


@pytest.mark.parametrize("price", [0.0, -3.0, np.inf])
def test_yfinance_non_positive_or_infinite_price(price: float) -> None:
    data = bars([10.0, 11.0])
    data["Low"][1] = price
    with pytest.raises(PriceDataError, match=r"non-positive low: AAPL 2024-01-03 low="):
        fetch(yahoo_frame({"AAPL": data}, ["2024-01-02", "2024-01-03"]), ("AAPL",))


def test_yfinance_negative_volume() -> None:
    raw = yahoo_frame({"AAPL": bars([10.0], volume=-5.0)}, ["2024-01-02"])
    with pytest.raises(PriceDataError, match=r"volume: AAPL 2024-01-02 volume=-5.0"):
        fetch(raw, ("AAPL",))


def test_yfinance_unrequested_ticker_is_rejected() -> None:
    raw = yahoo_frame({"AAPL": bars([10.0]), "GOOG": bars([20.0])}, ["2024-01-02"])
    with pytest.raises(PriceDataError, match="not requested: 'GOOG'"):
        fetch(raw, ("AAPL",))


def test_yfinance_unknown_layout_describes_the_columns() -> None:
    raw = pd.DataFrame({"price": [1.0], "when": [2.0]}, index=pd.to_datetime(["2024-01-02"]))
    with pytest.raises(PriceDataError, match=r"unrecognised column layout.*price, when"):
        fetch(raw, ("AAPL",))
    three = yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"])
    three.columns = pd.MultiIndex.from_tuples([(*c, "x") for c in three.columns])
    with pytest.raises(PriceDataError, match="unrecognised column layout"):
        fetch(three, ("AAPL",))


def test_yfinance_flat_frame_for_several_tickers_is_rejected() -> None:
    flat = yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"]).droplevel(1, axis=1)
    with pytest.raises(PriceDataError, match="single-ticker frame.*AAPL, MSFT"):
        fetch(flat)


def test_yfinance_bad_ticker_is_rejected_before_download() -> None:
    download = fake_download(yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"]))
    with pytest.raises(ConfigError, match="DROP TABLE"):
        YFinanceSource(download=download).fetch(["AAPL", "A'; DROP TABLE x;--"], START, END)
    assert download.calls == []  # type: ignore[attr-defined]


# --- yfinance: transient failures and swallowed per-ticker errors ---------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("connection refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        curl_exceptions.DNSError("curl: (6) Could not resolve host: query2.finance.yahoo.com"),
        curl_exceptions.Timeout("curl: (28) Operation timed out"),
        TimeoutError("timed out"),
        YFRateLimitError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_yfinance_transient_exceptions_are_retryable(exc: Exception) -> None:
    pattern = r"AAPL, MSFT for 2024-01-02\.\.2024-01-05"
    with pytest.raises(TransientSourceError, match=pattern) as info:
        fetch(None, raises=exc)
    assert info.value.__cause__ is exc


def test_yfinance_other_exceptions_are_not_retryable() -> None:
    with pytest.raises(PriceDataError, match="AAPL.*possibly delisted"):
        fetch(None, ("AAPL",), raises=YFPricesMissingError("AAPL", ""))
    bug = KeyError("something else")
    with pytest.raises(KeyError) as info:
        fetch(None, raises=bug)
    assert info.value is bug


def test_yfinance_rate_limit_in_shared_errors_is_transient() -> None:
    raw = yahoo_frame({"AAPL": bars([10.0]), "MSFT": bars([np.nan])}, ["2024-01-02"])
    errors = {"MSFT": "YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')"}
    with pytest.raises(TransientSourceError, match=r"MSFT.*Too Many Requests") as info:
        fetch(raw, shared_errors=errors)
    assert "AAPL" not in str(info.value)


def test_yfinance_other_shared_error_is_bad_data_naming_ticker_and_message() -> None:
    raw = yahoo_frame({"AAPL": bars([10.0]), "MSFT": bars([np.nan])}, ["2024-01-02"])
    errors = {"MSFT": "$MSFT: possibly delisted; no price data found"}
    with pytest.raises(PriceDataError, match=r"MSFT: .*possibly delisted"):
        fetch(raw, shared_errors=errors)


def test_yfinance_stale_shared_errors_are_cleared() -> None:
    yfinance.shared._ERRORS["AAPL"] = "Too Many Requests"  # left over from an earlier call
    raw = yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"])
    assert fetch(raw, ("AAPL",)).height == 1


def test_yfinance_logged_failures_are_classified() -> None:
    # yfinance 1.7 no longer fills shared._ERRORS: download() only logs "[tickers]: error".
    empty = yahoo_frame({"AAPL": bars([]), "MSFT": bars([])}, [])
    dns = "['AAPL', 'MSFT']: DNSError('Failed to perform, curl: (6) Could not resolve host')"
    with pytest.raises(TransientSourceError, match=r"AAPL, MSFT: DNSError"):
        fetch(empty, logged=["\n2 Failed downloads:", dns])
    delisted = "['MSFT']: YFPricesMissingError('$MSFT: possibly delisted; no price data found')"
    raw = yahoo_frame({"AAPL": bars([10.0]), "MSFT": bars([np.nan])}, ["2024-01-02"])
    with pytest.raises(PriceDataError, match=r"MSFT: YFPricesMissingError"):
        fetch(raw, logged=[delisted])
    # A connection failure logged earlier explains a generic "no timezone found" summary.
    hint = "Failed to get ticker 'MSFT' reason: Connection reset by peer"
    tz = "['MSFT']: YFTzMissingError('$MSFT: possibly delisted; no timezone found')"
    with pytest.raises(TransientSourceError, match="MSFT"):
        fetch(raw, logged=[hint, tz])


def test_default_download_unhides_yfinance_exceptions_and_restores_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = []

    def download(*args: Any, **kwargs: Any) -> pd.DataFrame:
        seen.append(yfinance.config.debug.hide_exceptions)
        return yahoo_frame({"AAPL": bars([10.0])}, ["2024-01-02"])

    monkeypatch.setattr(yfinance, "download", download)
    before = yfinance.config.debug.hide_exceptions
    assert YFinanceSource().fetch(["AAPL"], START, END).height == 1
    assert seen == [False]
    assert yfinance.config.debug.hide_exceptions == before
