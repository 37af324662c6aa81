"""The CSV and Parquet file source: Yahoo-style headers, typed Parquet, and bad files named by row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from forecast_core.columns import DATE
from forecast_core.errors import ConfigError, PriceDataError
from forecast_core.sources import (
    FETCH_SCHEMA,
    FileSource,
)  # fmt: skip
from tests.support.sources import D1, D2, END, START

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
