"""Price sources: yfinance conversion and failure modes (fake downloads, no network), the embedded
sample, CSV/Parquet files, and the shared `validate_prices`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
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

from forecast_core import sources
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, OPEN, SOURCE, TICKER, VOLUME
from forecast_core.config import SAMPLE_TICKERS, config_from_dict
from forecast_core.errors import ConfigError, PriceDataError, TransientSourceError
from forecast_core.sources import (
    FETCH_COLUMNS,
    FETCH_SCHEMA,
    FileSource,
    PriceSource,
    SampleSource,
    YFinanceSource,
    make_source,
    validate_prices,
)  # fmt: skip

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
START, END = D1, dt.date(2024, 1, 5)
TODAY = dt.date(2024, 6, 28)
FIELDS = ("Adj Close", "Close", "High", "Low", "Open", "Volume")


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


def yahoo_frame(
    data: dict[str, dict[str, list[float]]],
    dates: list[str],
    tz: str | None = None,
    ticker_first: bool = False,
) -> pd.DataFrame:
    """Columns MultiIndex (Price, Ticker) sorted as `yf.download(group_by="column")` returns."""
    columns = sorted((f, t) for t, fields in data.items() for f in fields)
    frame = pd.DataFrame(
        {col: data[col[1]][col[0]] for col in columns},
        index=pd.DatetimeIndex(pd.to_datetime(dates), name="Date"),
    )
    frame.columns = pd.MultiIndex.from_tuples(columns, names=["Price", "Ticker"])
    if tz is not None:
        frame.index = frame.index.tz_localize(tz)
    if ticker_first:
        frame.columns = frame.columns.swaplevel(0, 1)
    return frame


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


@pytest.fixture(autouse=True)
def _isolated_yfinance_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yfinance.shared, "_ERRORS", {})


@pytest.fixture(autouse=True)
def _fixed_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.validation, "exchange_today", lambda: TODAY)


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


# --- validate_prices ------------------------------------------------------------------------------


def good_frame() -> pl.DataFrame:
    return pl.DataFrame({TICKER: ["AAPL", "AAPL", "MSFT"], DATE: [D1, D2, D1], ADJ_CLOSE: [10.0, 11.0, 20.0]})


def check(frame: pl.DataFrame, tickers: tuple[str, ...] = ("AAPL", "MSFT")) -> pl.DataFrame:
    return validate_prices(frame, tickers, START, END, "test", today=TODAY)


def test_validate_normalises_schema_order_and_sorting() -> None:
    out = check(good_frame().reverse().with_columns(pl.col(DATE).cast(pl.Datetime)))
    assert out.schema == FETCH_SCHEMA
    assert out.get_column(TICKER).to_list() == ["AAPL", "AAPL", "MSFT"]
    assert out.get_column(DATE).to_list() == [D1, D2, D1]
    assert out.get_column(SOURCE).unique().to_list() == ["test"]
    assert out.get_column(CLOSE).null_count() == 3


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda f: f.drop(DATE), r"lack required column\(s\) date"),
        (lambda f: f.drop(ADJ_CLOSE), r"close or adj_close"),
        (
            lambda f: f.with_columns(
                pl.when(pl.col(TICKER) == "MSFT").then(None).otherwise(pl.col(DATE)).alias(DATE)
            ),
            r"null .*row 2 \(ticker=MSFT",
        ),
        (
            lambda f: f.with_columns(
                pl.lit(None, pl.Float64).alias(ADJ_CLOSE), pl.Series(CLOSE, [1.0, 1.0, None])
            ),
            r"neither close nor adj_close: MSFT 2024-01-02",
        ),
        (
            lambda f: f.with_columns(pl.Series(ADJ_CLOSE, [10.0, float("nan"), 20.0])),
            r"non-finite or non-positive adj_close: AAPL 2024-01-03 adj_close=nan",
        ),
        (
            lambda f: f.with_columns(pl.Series(VOLUME, [1.0, -1.0, 1.0])),
            r"negative or non-finite volume: AAPL 2024-01-03 volume=-1.0",
        ),
        (
            lambda f: f.with_columns(pl.Series(DATE, [D1, dt.date(2023, 12, 29), D1])),
            r"outside the requested range 2024-01-02\.\.2024-01-05: AAPL 2023-12-29",
        ),
        (lambda f: pl.concat([f, f.tail(1)]), r"duplicate \(ticker, date\) rows: MSFT 2024-01-02"),
        (lambda f: f.filter(pl.col(TICKER) == "AAPL"), r"MSFT came back empty for 2024-01-02\.\.2024-01-05"),
        (lambda f: f.clear(), r"no rows at all for AAPL, MSFT in 2024-01-02\.\.2024-01-05"),
        (lambda f: f.with_columns(pl.lit("'; DROP").alias(TICKER)), r"not requested: \"'; DROP\""),
        (lambda f: f.with_columns(pl.Series(ADJ_CLOSE, ["a", "b", "c"])), r"adj_close has type"),
    ],
    ids=[
        "no-date",
        "no-price-column",
        "null-date",
        "no-close",
        "nan",
        "neg-volume",
        "range",
        "duplicate",
        "empty-ticker",
        "empty-frame",
        "unrequested",
        "string-prices",
    ],
)
def test_validate_rejects(mutate: Callable[[pl.DataFrame], pl.DataFrame], pattern: str) -> None:
    with pytest.raises(PriceDataError, match=pattern):
        check(mutate(good_frame()))


def test_validate_rejects_future_dates() -> None:
    future = pl.DataFrame({TICKER: ["AAPL"], DATE: [D2], ADJ_CLOSE: [1.0]})
    with pytest.raises(PriceDataError, match=r"future dates \(after 2024-01-02\): AAPL 2024-01-03"):
        validate_prices(future, ["AAPL"], START, END, "test", today=D1)


def test_validate_caps_the_listing() -> None:
    days = [dt.date(2024, 1, d) for d in range(2, 17)]
    frame = pl.DataFrame({TICKER: ["AAPL"] * 15, DATE: days, ADJ_CLOSE: [-1.0] * 15})
    with pytest.raises(PriceDataError, match=r"AAPL 2024-01-11 adj_close=-1.0 and 5 more$"):
        validate_prices(frame, ["AAPL"], D1, days[-1], "test", today=TODAY)


def test_validate_rejects_bad_requested_tickers_and_ranges() -> None:
    with pytest.raises(ConfigError, match="DROP TABLE"):
        check(good_frame(), ("AAPL", "A'; DROP TABLE x;--"))
    with pytest.raises(ConfigError, match="start is after end"):
        validate_prices(good_frame(), ["AAPL"], END, START, "test")


# --- the embedded sample --------------------------------------------------------------------------


def test_sample_full_range_has_every_ticker_and_session() -> None:
    tickers = (*SAMPLE_TICKERS, "^GSPC")
    out = SampleSource().fetch(tickers, dt.date(1990, 1, 2), dt.date(2022, 12, 28))
    assert out.schema == FETCH_SCHEMA
    assert out.height == 21 * 8313
    assert out.group_by(TICKER).len().get_column("len").unique().to_list() == [8313]
    assert out.get_column(SOURCE).unique().to_list() == ["sample"]
    assert out.get_column(ADJ_CLOSE).null_count() == 0
    assert out.get_column(CLOSE).null_count() == out.height
    assert out.get_column(OPEN).null_count() == out.height


def test_sample_filters_tickers_and_dates() -> None:
    out = SampleSource().fetch(["MSFT", "^GSPC"], dt.date(2020, 1, 1), dt.date(2020, 1, 10))
    assert out.get_column(TICKER).unique(maintain_order=True).to_list() == ["MSFT", "^GSPC"]
    assert out.get_column(DATE).unique().sort().to_list() == [
        dt.date(2020, 1, d) for d in (2, 3, 6, 7, 8, 9, 10)
    ]


def test_sample_unknown_ticker_lists_the_sample() -> None:
    with pytest.raises(PriceDataError, match=r"NVDA.*not in the embedded sample.*AAPL.*\^GSPC"):
        SampleSource().fetch(["AAPL", "NVDA"], START, END)


# --- CSV and Parquet files ------------------------------------------------------------------------

FILE_ROWS = {
    "Date": ["2024-01-02", "2024-01-03", "2024-01-02", "2024-01-03"],
    "Ticker": ["AAPL", "AAPL", "MSFT", "MSFT"],
    "Adj Close": [10.0, 11.0, 20.0, 21.0],
}


def write(tmp_path: Path, rows: dict[str, list[Any]], name: str = "prices.csv") -> Path:
    path = tmp_path / name
    frame = pl.DataFrame(rows)
    frame.write_csv(path) if path.suffix == ".csv" else frame.write_parquet(path)
    return path


@pytest.mark.parametrize("name", ["prices.csv", "prices.parquet"])
def test_file_source_reads_yahoo_style_headers(tmp_path: Path, name: str) -> None:
    out = FileSource(write(tmp_path, FILE_ROWS, name)).fetch(["MSFT"], START, D2)
    assert out.schema == FETCH_SCHEMA
    assert out.rows() == [
        ("MSFT", D1, None, None, None, None, 20.0, None, "file"),
        ("MSFT", D2, None, None, None, None, 21.0, None, "file"),
    ]


def test_file_source_drops_time_of_day_and_reads_typed_parquet(tmp_path: Path) -> None:
    rows = {
        **FILE_ROWS,
        "Date": ["2024-01-02T00:00:00", "2024-01-03 16:00", "2024-01-02", "2024-01-03T00:00:00-05:00"],
    }
    assert FileSource(write(tmp_path, rows)).fetch(["AAPL", "MSFT"], START, END).get_column(
        DATE
    ).to_list() == [D1, D2, D1, D2]
    typed = {
        **FILE_ROWS,
        "Date": [
            dt.datetime(2024, 1, 2, 9),
            dt.datetime(2024, 1, 3, 16),
            dt.datetime(2024, 1, 2),
            dt.datetime(2024, 1, 3),
        ],
    }
    out = FileSource(write(tmp_path, typed, "typed.parquet")).fetch(["AAPL"], START, END)
    assert out.get_column(DATE).to_list() == [D1, D2]


def test_file_source_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path, {"Date": ["2024-01-02"], "Symbol": ["AAPL"], "Price": [1.0]})
    pattern = r"lacks column\(s\) ticker, close or adj_close"
    with pytest.raises(PriceDataError, match=pattern) as info:
        FileSource(path).fetch(["AAPL"], START, END)
    assert "prices.csv" in str(info.value)


def test_file_source_unparseable_dates_name_rows_and_values(tmp_path: Path) -> None:
    rows = {**FILE_ROWS, "Date": ["2024-01-02", "2024-13-01", "01/02/2024", "2024-01-03"]}
    pattern = r"prices\.csv.*row 2 '2024-13-01', row 3 '01/02/2024'"
    with pytest.raises(PriceDataError, match=pattern):
        FileSource(write(tmp_path, rows)).fetch(["AAPL"], START, END)


def test_file_source_non_numeric_prices_name_rows(tmp_path: Path) -> None:
    rows = {**FILE_ROWS, "Adj Close": ["10", "n/a", "20", "21"]}
    with pytest.raises(PriceDataError, match=r"adj_close .* not numbers: row 2 'n/a'"):
        FileSource(write(tmp_path, rows)).fetch(["AAPL"], START, END)


def test_file_source_duplicates_and_non_positive_prices(tmp_path: Path) -> None:
    dup = {k: [*v, v[0]] for k, v in FILE_ROWS.items()}
    with pytest.raises(PriceDataError, match=r"duplicate .*AAPL 2024-01-02"):
        FileSource(write(tmp_path, dup)).fetch(["AAPL", "MSFT"], START, END)
    neg = {**FILE_ROWS, "Adj Close": [10.0, 0.0, 20.0, -21.0]}
    with pytest.raises(PriceDataError, match=r"AAPL 2024-01-03 adj_close=0.0, MSFT 2024-01-03"):
        FileSource(write(tmp_path, neg)).fetch(["AAPL", "MSFT"], START, END)


def test_file_source_requested_ticker_absent_from_file(tmp_path: Path) -> None:
    with pytest.raises(PriceDataError, match=r"no rows for GOOG; it has AAPL, MSFT"):
        FileSource(write(tmp_path, FILE_ROWS)).fetch(["AAPL", "GOOG"], START, END)


def test_file_source_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        FileSource(tmp_path).fetch(["AAPL"], START, END)
    with pytest.raises(ConfigError, match=r"does not exist"):
        FileSource(tmp_path / "nope.csv").fetch(["AAPL"], START, END)
    (tmp_path / "prices.xlsx").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"prices\.xlsx.*suffix '\.xlsx'"):
        FileSource(tmp_path / "prices.xlsx").fetch(["AAPL"], START, END)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(PriceDataError, match=r"broken\.parquet.*could not be read"):
        FileSource(tmp_path / "broken.parquet").fetch(["AAPL"], START, END)


def test_file_source_rejects_sql_metacharacters_before_reading(tmp_path: Path) -> None:
    # The path does not exist: a ConfigError about the ticker proves nothing was read first.
    with pytest.raises(ConfigError, match=r"invalid ticker \"A'; DROP TABLE x;--\""):
        FileSource(tmp_path / "missing.csv").fetch(["A'; DROP TABLE x;--"], START, END)


# --- make_source ----------------------------------------------------------------------------------


def test_make_source_follows_config(tmp_path: Path) -> None:
    assert isinstance(make_source(config_from_dict({})), SampleSource)
    yf_source = make_source(config_from_dict({"source": {"kind": "yfinance", "timeout_s": 5.0}}))
    assert isinstance(yf_source, YFinanceSource) and yf_source.timeout_s == 5.0
    path = str(tmp_path / "p.csv")
    file_source = make_source(config_from_dict({"source": {"kind": "file", "path": path}}))
    assert isinstance(file_source, FileSource) and str(file_source.path) == path
    made = (make_source(config_from_dict({})), yf_source, file_source)
    assert all(isinstance(s, PriceSource) for s in made)
    assert [s.name for s in made] == ["sample", "yfinance", "file"]
