"""Prices from a user's CSV or Parquet file (the `file` source)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE,
    CLOSE,
    DATE,
    PRICE_COLUMNS,
    TICKER,
)  # fmt: skip
from forecast_core.errors import ConfigError, PriceDataError
from forecast_core.sources.base import listing, requested_tickers
from forecast_core.sources.validation import validate_prices

# --- CSV / Parquet files ------------------------------------------------------------------------

#: ISO date, optionally followed by a time (and offset) that is dropped, never converted.
_ISO_DATE = (
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)


def _column_name(name: str) -> str:
    """`" Adj Close"` -> `adj_close`."""
    return re.sub(r"\s+", "_", name.strip().lower())


class FileSource:
    """Prices from a CSV or Parquet file with columns date, ticker and close and/or adj_close.

    Column names are matched case-insensitively with spaces as underscores ("Adj Close"), so a
    yfinance or spreadsheet export reads as is. Optional: open, high, low, volume.
    """

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        requested = requested_tickers(tickers, start, end)
        frame = self._parse(self._read())
        present = set(frame.get_column(TICKER).unique().to_list())
        absent = [t for t in requested if t not in present]
        if absent:
            raise PriceDataError(
                f"price file {str(self.path)!r} has no rows for {listing(absent)}; "
                f"it has {listing(sorted(present))}"
            )
        frame = frame.filter(pl.col(TICKER).is_in(requested) & pl.col(DATE).is_between(start, end))
        return validate_prices(frame, requested, start, end, self.name)

    def last_date(self) -> dt.date:
        """The last date in the file."""
        return self._parse(self._read()).get_column(DATE).max()

    def _read(self) -> pl.DataFrame:
        p = self.path
        if not p.exists():
            raise ConfigError(f"price file {str(p)!r} does not exist")
        if p.is_dir():
            raise ConfigError(f"price file {str(p)!r} is a directory, not a CSV or Parquet file")
        suffix = p.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise ConfigError(f"price file {str(p)!r} has suffix {p.suffix!r}; expected .csv or .parquet")
        try:
            if suffix == ".csv":
                return pl.read_csv(p, infer_schema=False)
            return pl.read_parquet(p)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise PriceDataError(f"price file {str(p)!r} could not be read: {exc}") from exc

    def _parse(self, raw: pl.DataFrame) -> pl.DataFrame:
        """Normalised names; ticker, date (strict ISO) and float prices, every row checked."""
        where = f"price file {str(self.path)!r}"
        names = [_column_name(c) for c in raw.columns]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise PriceDataError(f"{where}: columns {raw.columns} clash once normalised: {clashes}")
        frame = raw.rename(dict(zip(raw.columns, names)))
        missing = [c for c in (DATE, TICKER) if c not in names]
        if CLOSE not in names and ADJ_CLOSE not in names:
            missing.append(f"{CLOSE} or {ADJ_CLOSE} (or 'Adj Close')")
        if missing:
            raise PriceDataError(
                f"{where} lacks column(s) {', '.join(missing)}; columns seen: {', '.join(raw.columns)}"
            )
        frame = frame.select([c for c in (TICKER, DATE, *PRICE_COLUMNS) if c in names])
        frame = frame.with_columns(
            pl.col(TICKER).cast(pl.String).str.strip_chars(),
            _parse_dates(frame.get_column(DATE), where),
            *(_parse_floats(frame.get_column(c), where) for c in PRICE_COLUMNS if c in names),
        )
        null_keys = frame.with_row_index("row", offset=1).filter(
            pl.col(TICKER).is_null() | (pl.col(TICKER) == "") | pl.col(DATE).is_null()
        )
        if null_keys.height:
            rows = null_keys.get_column("row").to_list()
            raise PriceDataError(
                f"{where}: {len(rows)} row(s) have no ticker or no date (rows numbered from 1, "
                f"header not counted): {listing(rows)}"
            )
        return frame


def _bad_values(original: pl.Series, bad: pl.Series) -> str:
    """`row 3 '2020-13-01', row 7 'x'` (rows numbered from 1, header not counted)."""
    rows = [f"row {i + 1} {v!r}" for i, v in zip(bad.arg_true().to_list(), original.filter(bad))]
    return listing(rows)


def _parse_dates(col: pl.Series, where: str) -> pl.Series:
    """Date column from Date, Datetime (time dropped) or ISO strings; anything else is an error."""
    if col.dtype == pl.Date:
        return col
    if isinstance(col.dtype, pl.Datetime):
        return col.dt.date()
    if col.dtype != pl.String:
        raise PriceDataError(f"{where}: column {DATE} has type {col.dtype}; expected ISO dates")
    text = col.str.strip_chars()
    parsed = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    bad = text.is_not_null() & (~text.str.contains(_ISO_DATE) | parsed.is_null())
    if bad.any():
        raise PriceDataError(
            f"{where}: {bad.sum()} unparseable date(s), expected YYYY-MM-DD (optionally with a "
            f"time): {_bad_values(col, bad)}"
        )
    return parsed.alias(DATE)


def _parse_floats(col: pl.Series, where: str) -> pl.Series:
    """Float64 from a numeric or string column; a string that is not a number is an error."""
    if col.dtype.is_numeric() or col.dtype == pl.Null:
        return col.cast(pl.Float64)
    if col.dtype != pl.String:
        raise PriceDataError(f"{where}: column {col.name} has type {col.dtype}; expected numbers")
    text = col.str.strip_chars()
    values = text.cast(pl.Float64, strict=False)
    bad = text.is_not_null() & (text != "") & values.is_null()
    if bad.any():
        raise PriceDataError(
            f"{where}: column {col.name} has {bad.sum()} value(s) that are not numbers: "
            f"{_bad_values(col, bad)}"
        )
    return values
