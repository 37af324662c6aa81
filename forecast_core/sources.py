"""Price sources behind one interface: the embedded sample, Yahoo Finance (yfinance) and files.

Every source's `fetch` returns the raw_prices schema without `ingested_at` (`FETCH_COLUMNS`, in that
order, sorted by ticker and date, only rows in [start, end]) after passing it through
`validate_prices`, the single place that decides a frame is fit to write. Bad data raises
`PriceDataError` naming the tickers and dates concerned and is never retried; a failure worth
retrying (connection error, timeout, rate limit) raises `TransientSourceError`. Requested tickers
are checked with `validate_ticker` (`ConfigError`) before anything is read.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import re
import threading
from collections.abc import Callable, Collection, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE, CLOSE, DATE, HIGH, INGESTED_AT, LOW, OPEN, PRICE_COLUMNS, RAW_PRICE_COLUMNS, SOURCE,
    TICKER, VOLUME,
)  # fmt: skip
from forecast_core.config import ForecastConfig, validate_ticker
from forecast_core.errors import ConfigError, PriceDataError, TransientSourceError

#: The columns `fetch` returns, in order: raw_prices without `ingested_at`.
FETCH_COLUMNS = tuple(c for c in RAW_PRICE_COLUMNS if c != INGESTED_AT)
FETCH_SCHEMA = pl.Schema(
    {TICKER: pl.String, DATE: pl.Date, **{c: pl.Float64 for c in PRICE_COLUMNS}, SOURCE: pl.String}
)

#: Dates are the exchange's local session dates; "today" (for the future-date check) is taken here.
EXCHANGE_TZ = "America/New_York"
SAMPLE_FILE = "sp500_20_adj_close_1990_2022.parquet"

_PRICE_FIELDS = (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE)
_LIST_LIMIT = 10


@runtime_checkable
class PriceSource(Protocol):
    """Daily prices for tickers over an inclusive date range, in the `FETCH_COLUMNS` schema."""

    name: str

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame: ...


def make_source(cfg: ForecastConfig) -> PriceSource:
    """The source `cfg.source.kind` names."""
    s = cfg.source
    if s.kind == "sample":
        return SampleSource()
    if s.kind == "yfinance":
        return YFinanceSource(timeout_s=s.timeout_s)
    if s.kind == "file" and s.path:
        return FileSource(s.path)
    raise ConfigError(f"invalid setting source.kind = {s.kind!r} (path {s.path!r})")


# --- messages -----------------------------------------------------------------------------------


def _listing(items: Sequence[object], limit: int = _LIST_LIMIT) -> str:
    """`A, B, C and 7 more`: at most `limit` items."""
    shown = ", ".join(str(i) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def _rows(frame: pl.DataFrame, *values: str) -> str:
    """`AAPL 2020-01-02 close=-1.0, ...` for the first rows of `frame`, with `values` columns."""
    items = [
        " ".join([f"{row[TICKER]} {row[DATE]}", *(f"{c}={row[c]}" for c in values)])
        for row in frame.head(_LIST_LIMIT).iter_rows(named=True)
    ]
    more = frame.height - len(items)
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def _requested(tickers: Sequence[str], start: dt.date, end: dt.date) -> list[str]:
    """Validated, de-duplicated tickers; `ConfigError` for a bad ticker or an empty range."""
    if isinstance(tickers, str):
        raise ConfigError(f"tickers must be a sequence of tickers, not the string {tickers!r}")
    requested = [validate_ticker(t) for t in dict.fromkeys(tickers)]
    if not requested:
        raise ConfigError("no tickers requested")
    if start > end:
        raise ConfigError(f"invalid date range {start}..{end}: start is after end")
    return requested


def exchange_today() -> dt.date:
    """Today's date on the exchange (America/New_York)."""
    return dt.datetime.now(ZoneInfo(EXCHANGE_TZ)).date()


# --- validation ---------------------------------------------------------------------------------


def validate_prices(
    df: pl.DataFrame,
    tickers: Sequence[str],
    start: dt.date,
    end: dt.date,
    source_name: str,
    *,
    today: dt.date | None = None,
) -> pl.DataFrame:
    """Return `df` normalised to `FETCH_SCHEMA` (source = `source_name`), sorted by ticker and date.

    Raises `ConfigError` for an invalid requested ticker, and `PriceDataError` naming the tickers
    and dates for: missing columns, null keys, unrequested or empty tickers, and rows that are
    duplicated, outside [start, end], after `today`, without close and adj_close, with a
    non-finite or non-positive price or a negative volume.
    """
    requested = _requested(tickers, start, end)
    span = f"{start}..{end}"
    missing = [c for c in (TICKER, DATE) if c not in df.columns]
    if CLOSE not in df.columns and ADJ_CLOSE not in df.columns:
        missing.append(f"{CLOSE} or {ADJ_CLOSE}")
    if missing:
        raise PriceDataError(
            f"{source_name} prices for {_listing(requested)} lack required column(s) "
            f"{', '.join(missing)}; columns seen: {', '.join(df.columns) or 'none'}"
        )
    out = _normalise(df, source_name)
    if out.is_empty():
        raise PriceDataError(
            f"{source_name} prices came back empty: no rows at all for {_listing(requested)} "
            f"in {span}"
        )

    null_keys = out.with_row_index("row").filter(pl.col(TICKER).is_null() | pl.col(DATE).is_null())
    if null_keys.height:
        described = [f"row {r['row']} (ticker={r[TICKER]}, date={r[DATE]})"
                     for r in null_keys.head(_LIST_LIMIT + 1).iter_rows(named=True)]
        raise PriceDataError(
            f"{source_name} prices have a null ticker or date in {null_keys.height} row(s): "
            f"{_listing(described)}"
        )

    seen = set(out.get_column(TICKER).unique().to_list())
    unrequested = sorted(seen - set(requested))
    if unrequested:
        raise PriceDataError(
            f"{source_name} returned tickers that were not requested: "
            f"{_listing([repr(t) for t in unrequested])} (requested: {_listing(requested)})"
        )
    empty = [t for t in requested if t not in seen]
    if empty:
        raise PriceDataError(
            f"{source_name} prices for {_listing(empty)} came back empty for {span}"
        )

    problems = _row_problems(out, start, end, today or exchange_today())
    if problems:
        raise PriceDataError(f"{source_name} prices are not fit to write: " + "; ".join(problems))
    return out.sort(TICKER, DATE)


def _normalise(df: pl.DataFrame, source_name: str) -> pl.DataFrame:
    """Cast to `FETCH_SCHEMA` (absent price columns become null), set `source`, order columns."""
    schema = df.schema
    if not (schema[TICKER] in (pl.String, pl.Null) or isinstance(schema[TICKER], pl.Categorical)):
        raise PriceDataError(f"{source_name} prices: column {TICKER} has type {schema[TICKER]}")
    date = pl.col(DATE)
    if isinstance(schema[DATE], pl.Datetime):
        date = date.dt.date()
    elif schema[DATE] not in (pl.Date, pl.Null):
        raise PriceDataError(
            f"{source_name} prices: column {DATE} has type {schema[DATE]}, expected Date"
        )
    exprs = [pl.col(TICKER).cast(pl.String), date.cast(pl.Date)]
    for c in PRICE_COLUMNS:
        if c not in schema:
            exprs.append(pl.lit(None, dtype=pl.Float64).alias(c))
        elif schema[c].is_numeric() or schema[c] == pl.Null:
            exprs.append(pl.col(c).cast(pl.Float64))
        else:
            raise PriceDataError(f"{source_name} prices: column {c} has type {schema[c]}")
    exprs.append(pl.lit(source_name, dtype=pl.String).alias(SOURCE))
    return df.select(exprs).select(FETCH_COLUMNS)


def _row_problems(out: pl.DataFrame, start: dt.date, end: dt.date, today: dt.date) -> list[str]:
    """One description per kind of bad row, naming the first tickers and dates."""
    problems = []

    def check(what: str, mask: pl.Series | pl.Expr, *values: str) -> None:
        bad = out.filter(mask)
        if bad.height:
            problems.append(f"{what}: {_rows(bad, *values)}")

    check(f"dates outside the requested range {start}..{end}", ~pl.col(DATE).is_between(start, end))
    check(f"future dates (after {today})", pl.col(DATE) > today)
    dup = out.select(TICKER, DATE).is_duplicated()
    dup_rows = out.filter(dup).unique([TICKER, DATE], maintain_order=True)
    if dup_rows.height:
        problems.append(f"duplicate (ticker, date) rows: {_rows(dup_rows)}")
    check("rows with neither close nor adj_close",
          pl.col(CLOSE).is_null() & pl.col(ADJ_CLOSE).is_null())
    for c in _PRICE_FIELDS:
        col = pl.col(c)
        check(f"non-finite or non-positive {c}",
              col.is_not_null() & (~col.is_finite() | (col <= 0)), c)
    vol = pl.col(VOLUME)
    check("negative or non-finite volume",
          vol.is_not_null() & (~vol.is_finite() | (vol < 0)), VOLUME)
    return problems


def require_sessions(
    frame: pl.DataFrame, sessions: Sequence[dt.date], listed: Collection[str], source_name: str
) -> None:
    """Raise `PriceDataError` naming each (ticker, session) of `sessions` absent from `frame`.

    A ticker in `listed` (it has prices before the first session) needs every session; any other
    ticker every session from its first row on (it may have been listed inside the range). A
    missing last session is usually one the source has not published yet (a late close): nothing
    is written, and a later run fetches it. `frame` is a validated `fetch` result.
    """
    if not sessions:
        return
    have = frame.group_by(TICKER).agg(pl.col(DATE).min().alias("first"), pl.col(DATE).alias("dates"))
    missing: list[str] = []
    for ticker, first, dates in have.sort(TICKER).iter_rows():
        since = sessions[0] if ticker in listed else first
        present = set(dates)
        missing += [f"{ticker} {d}" for d in sessions if d >= since and d not in present]
    if missing:
        raise PriceDataError(
            f"{source_name} prices lack {len(missing)} session(s) of {sessions[0]}..{sessions[-1]}: "
            f"{_listing(missing)} (not published yet, or a gap in the source's data); nothing was "
            "written, run again once the source has them"
        )


# --- the embedded sample ------------------------------------------------------------------------


@functools.cache
def _sample_frame() -> pl.DataFrame:
    resource = resources.files("forecast_core").joinpath("data", SAMPLE_FILE)
    with resources.as_file(resource) as path:
        return pl.read_parquet(path)


class SampleSource:
    """The packaged sample: 20 S&P 500 stocks and ^GSPC, adj_close only, 1990-01-02..2022-12-28."""

    name = "sample"

    def tickers(self) -> list[str]:
        return sorted(_sample_frame().get_column(TICKER).unique().to_list())

    def last_date(self) -> dt.date:
        """The last session the sample holds (2022-12-28)."""
        return _sample_frame().get_column(DATE).max()

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        requested = _requested(tickers, start, end)
        available = self.tickers()
        unknown = [t for t in requested if t not in available]
        if unknown:
            raise PriceDataError(
                f"ticker(s) {_listing(unknown)} are not in the embedded sample; "
                f"it has {', '.join(available)}"
            )
        frame = _sample_frame().filter(
            pl.col(TICKER).is_in(requested) & pl.col(DATE).is_between(start, end)
        )
        return validate_prices(frame, requested, start, end, self.name)


# --- CSV / Parquet files ------------------------------------------------------------------------

#: ISO date, optionally followed by a time (and offset) that is dropped, never converted.
_ISO_DATE = (r"^\d{4}-\d{2}-\d{2}"
             r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")


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
        requested = _requested(tickers, start, end)
        frame = self._parse(self._read())
        present = set(frame.get_column(TICKER).unique().to_list())
        absent = [t for t in requested if t not in present]
        if absent:
            raise PriceDataError(
                f"price file {str(self.path)!r} has no rows for {_listing(absent)}; "
                f"it has {_listing(sorted(present))}"
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
            raise ConfigError(
                f"price file {str(p)!r} has suffix {p.suffix!r}; expected .csv or .parquet"
            )
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
                f"{where} lacks column(s) {', '.join(missing)}; "
                f"columns seen: {', '.join(raw.columns)}"
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
                f"header not counted): {_listing(rows)}"
            )
        return frame


def _bad_values(original: pl.Series, bad: pl.Series) -> str:
    """`row 3 '2020-13-01', row 7 'x'` (rows numbered from 1, header not counted)."""
    rows = [f"row {i + 1} {v!r}" for i, v in zip(bad.arg_true().to_list(), original.filter(bad))]
    return _listing(rows)


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


# --- Yahoo Finance ------------------------------------------------------------------------------

#: yfinance's column names -> ours. Other fields (dividends, splits) are ignored.
_YF_FIELDS = {"Open": OPEN, "High": HIGH, "Low": LOW, "Close": CLOSE, "Adj Close": ADJ_CLOSE,
              "Volume": VOLUME}
_YF_IGNORED = frozenset({"Dividends", "Stock Splits", "Capital Gains", "Repaired?"})

#: Words in an error message that mark a failure worth retrying.
_TRANSIENT_TEXT = re.compile(
    r"rate.?limit|too many requests|\b429\b|timed? ?out|timeout|connection|failed to connect|"
    r"could not resolve|dnserror|ssl ?error|reset by peer|remote end closed|temporar|"
    r"currently down|chunkedencoding|\b50[234]\b",
    re.IGNORECASE,
)

#: Lines yfinance logs for failed tickers: the summary `['AAPL', 'MSFT']: <error>`, and hints.
_YF_SUMMARY = re.compile(r"^\[([^\]]*)\]: (.+)$", re.DOTALL)
_YF_HINTS = (re.compile(r"^Failed to get ticker '([^']+)' reason: (.+)$", re.DOTALL),
             re.compile(r"^\$([^:\s]+): (.+)$", re.DOTALL))

_DOWNLOAD_LOCK = threading.Lock()

#: Secrets an HTTP error's text can carry (its URL): Yahoo's session crumb and other tokens in the
#: query, and user:password in a (proxy) URL. `_redact` removes them before a message is raised,
#: since raised messages end up in the run's event log.
_SECRET_QUERY = re.compile(r"(?i)\b(crumb|token|api_?key|key|password|passwd|secret|sig|signature)=[^&\s'\"]+")
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@'\"]+:[^/\s@'\"]+@")


def _redact(text: str) -> str:
    """`text` without URL credentials and secret query parameters (`crumb=<redacted>`)."""
    text = _URL_CREDENTIALS.sub(r"\1<redacted>@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", text)


def _redact_exception(exc: BaseException) -> None:
    """Redact the string arguments of `exc` and of the exceptions it chains, in place."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.args = tuple(_redact(a) if isinstance(a, str) else a for a in e.args)
        todo += [e.__cause__, e.__context__]


class _YahooErrorLog(logging.Handler):
    """Collects the per-ticker errors that `yfinance.download` logs instead of raising."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.failures: dict[str, list[str]] = {}
        self.hints: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        summary = _YF_SUMMARY.match(message)
        if summary:
            for ticker in re.findall(r"'([^']*)'", summary.group(1)):
                self.failures.setdefault(ticker.upper(), []).append(summary.group(2))
            return
        for pattern in _YF_HINTS:
            hint = pattern.match(message)
            if hint:
                self.hints.setdefault(hint.group(1).upper(), []).append(hint.group(2))
                return


@functools.cache
def _transient_types() -> tuple[type[BaseException], ...]:
    """Exception classes that mean "try again later", from whichever HTTP stacks are installed."""
    found: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, names in (
        ("requests.exceptions", ("ConnectionError", "Timeout", "ChunkedEncodingError")),
        ("curl_cffi.requests.exceptions", ("ConnectionError", "Timeout", "ChunkedEncodingError")),
        ("yfinance.exceptions", ("YFRateLimitError",)),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pragma: no cover - optional HTTP stack absent
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _transient_types()):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    library = type(exc).__module__.split(".")[0]
    http_stack = library in ("yfinance", "curl_cffi", "requests")
    return http_stack and bool(_TRANSIENT_TEXT.search(str(exc)))


def _shared_errors() -> dict[str, str] | None:
    """`yfinance.shared._ERRORS` (filled by yfinance < 1.0; still defined, but unused, in 1.7)."""
    try:
        shared = importlib.import_module("yfinance.shared")
    except ImportError:  # pragma: no cover - yfinance absent and a fake download injected
        return None
    errors = getattr(shared, "_ERRORS", None)
    return errors if isinstance(errors, dict) else None


def _yfinance_download(*args: Any, **kwargs: Any) -> pd.DataFrame | None:
    """`yfinance.download` with yfinance's exception hiding off for the call.

    With `yf.config.debug.hide_exceptions` on (the default), a timeout on the price request is
    reported as "possibly delisted; no price data found", indistinguishable from bad data; off, the
    real exception's repr reaches the failed-download log, where it can be classified. (yfinance
    1.7 `multi._download_one` tries this itself but sets `config.network.hide_exceptions`, which
    nothing reads.) Calls are serialised because the setting is process-wide.
    """
    import yfinance as yf

    config = getattr(yf, "config", None)
    with _DOWNLOAD_LOCK:
        if config is None:  # pragma: no cover - yfinance < 1.0
            return yf.download(*args, **kwargs)
        previous = config.debug.hide_exceptions
        config.debug.hide_exceptions = False
        try:
            return yf.download(*args, **kwargs)
        finally:
            config.debug.hide_exceptions = previous


class YFinanceSource:
    """Daily prices from Yahoo Finance via `yfinance.download` (unadjusted OHLC, Adj Close, Volume).

    `download` replaces `yfinance.download` (tests pass fakes). `threads` is yfinance's: serial by
    default, since Yahoo rate-limits bursts and a daily batch of a few dozen tickers takes seconds.
    """

    name = "yfinance"

    def __init__(
        self,
        download: Callable[..., pd.DataFrame | None] | None = None,
        timeout_s: float = 30.0,
        threads: bool | int = False,
    ) -> None:
        self._download = download
        self.timeout_s = timeout_s
        self.threads = threads

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        requested = _requested(tickers, start, end)
        raw = self._call_download(requested, start, end)
        frame, fields = _yahoo_to_long(raw, requested)
        frame = _drop_missing_rows(frame.filter(pl.col(DATE).is_between(start, end)), fields)
        return validate_prices(frame, requested, start, end, self.name)

    def _call_download(self, requested: list[str], start: dt.date, end: dt.date) -> Any:
        """Run the download; raise for the exception or the per-ticker errors it reports."""
        span = f"{start}..{end}"
        download = self._download or _yfinance_download
        shared = _shared_errors()
        if shared is not None:
            shared.clear()  # yfinance < 1.0 resets it per call too; entries left over are stale
        log = _YahooErrorLog()
        logger = logging.getLogger("yfinance")
        logger.addHandler(log)
        try:
            raw = download(
                list(requested), start=start, end=end + dt.timedelta(days=1), auto_adjust=False,
                actions=False, progress=False, threads=self.threads, timeout=self.timeout_s,
                group_by="column", multi_level_index=True, ignore_tz=True,
            )
        except Exception as exc:
            what = f"yfinance download of {_listing(requested)} for {span} failed"
            _redact_exception(exc)  # it is chained below, and the run's event log prints causes
            if _is_transient(exc):
                raise TransientSourceError(f"{what} (worth retrying): {exc!r}") from exc
            if type(exc).__module__.startswith("yfinance"):
                raise PriceDataError(f"{what}: {exc!r}") from exc
            raise
        finally:
            logger.removeHandler(log)
        failures = {t: list(m) for t, m in log.failures.items()}
        for ticker, message in (_shared_errors() or {}).items():
            failures.setdefault(str(ticker).upper(), []).append(str(message))
        failed = {t: failures[t] for t in requested if t in failures}
        _raise_ticker_errors(failed, log.hints, span)
        return raw


def _raise_ticker_errors(
    failures: dict[str, list[str]], hints: dict[str, list[str]], span: str
) -> None:
    """`TransientSourceError` if any failure looks transient, else `PriceDataError`."""
    if not failures:
        return

    def looks_transient(ticker: str) -> bool:
        texts = [*failures[ticker], *hints.get(ticker, [])]
        return any(_TRANSIENT_TEXT.search(t.replace(ticker, "")) for t in texts)

    by_message: dict[str, list[str]] = {}
    for ticker, messages in failures.items():
        by_message.setdefault(_redact("; ".join(dict.fromkeys(messages)))[:300], []).append(ticker)
    details = _listing([f"{_listing(ts)}: {m}" for m, ts in by_message.items()])
    transient = [t for t in failures if looks_transient(t)]
    if transient:
        raise TransientSourceError(
            f"yfinance could not download {_listing(transient)} for {span} (worth retrying): "
            f"{details}"
        )
    raise PriceDataError(
        f"yfinance reported errors for {_listing(list(failures))} for {span}: {details}"
    )


def _split_columns(raw: pd.DataFrame, requested: list[str]) -> dict[str, pd.DataFrame]:
    """yfinance fields per ticker, from (Price, Ticker), (Ticker, Price) or flat columns."""
    cols = raw.columns
    known = set(_YF_FIELDS) | _YF_IGNORED
    unknown = PriceDataError(
        f"yfinance returned an unrecognised column layout for {_listing(requested)}: "
        f"columns seen {_listing([str(c) for c in cols])}"
    )
    if isinstance(cols, pd.MultiIndex):
        if cols.nlevels != 2:
            raise unknown
        levels = [{str(v) for v in cols.get_level_values(i)} for i in (0, 1)]
        fields_at = [i for i in (0, 1) if levels[i] and levels[i] <= known]
        if len(fields_at) != 1:
            raise unknown
        ticker_level = 1 - fields_at[0]
        out = {}
        for ticker in dict.fromkeys(cols.get_level_values(ticker_level)):
            sub = raw.xs(ticker, axis=1, level=ticker_level)
            sub.columns = [str(c) for c in sub.columns]
            out[str(ticker).upper()] = sub
    elif len(cols) and {str(c) for c in cols} <= known:
        if len(requested) != 1:
            raise PriceDataError(
                f"yfinance returned a single-ticker frame (columns "
                f"{_listing([str(c) for c in cols])}) for {len(requested)} tickers: "
                f"{_listing(requested)}"
            )
        out = {requested[0]: raw.rename(columns=str)}
    elif len(cols) == 0 and raw.empty:
        return {}
    else:
        raise unknown
    for ticker, sub in out.items():
        if not sub.columns.is_unique:
            raise PriceDataError(
                f"yfinance returned repeated columns for {ticker}: {list(sub.columns)}"
            )
        if "Close" not in sub.columns and "Adj Close" not in sub.columns:
            raise PriceDataError(
                f"yfinance returned neither Close nor Adj Close for {ticker}: "
                f"columns {list(sub.columns)}"
            )
    return out


def _session_dates(index: pd.Index) -> np.ndarray:
    """`datetime64[D]` exchange-local dates: tz-aware stamps are converted to New York first."""
    if not isinstance(index, pd.DatetimeIndex):
        if len(index) == 0:
            return np.array([], dtype="datetime64[D]")
        raise PriceDataError(
            f"yfinance returned a {type(index).__name__} index "
            f"({_listing([str(v) for v in index])}), expected dates"
        )
    if index.tz is not None:
        index = index.tz_convert(EXCHANGE_TZ).tz_localize(None)
    return index.normalize().to_numpy().astype("datetime64[D]")


def _yahoo_to_long(raw: Any, requested: list[str]) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """Long frame (NaN kept) and the fields yfinance returned, from whatever `download` gave."""
    if raw is None:
        raw = pd.DataFrame()
    if not isinstance(raw, pd.DataFrame):
        raise PriceDataError(f"yfinance returned a {type(raw).__name__}, expected a DataFrame")
    per_ticker = _split_columns(raw, requested)
    dates = pl.Series(DATE, _session_dates(raw.index), dtype=pl.Date)
    frames, fields = [], set()
    for ticker, sub in per_ticker.items():
        data: dict[str, Any] = {DATE: dates}
        for field, name in _YF_FIELDS.items():
            if field in sub.columns:
                try:
                    data[name] = sub[field].to_numpy(dtype="float64", na_value=np.nan)
                except (TypeError, ValueError) as exc:
                    raise PriceDataError(
                        f"yfinance returned non-numeric {field} values for {ticker}: {exc}"
                    ) from exc
                fields.add(name)
        frames.append(pl.DataFrame(data).with_columns(pl.lit(ticker, pl.String).alias(TICKER)))
    empty = pl.DataFrame(schema={TICKER: pl.String, DATE: pl.Date})
    frame = pl.concat([empty, *frames], how="diagonal_relaxed")
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c) for c in PRICE_COLUMNS if c not in frame.columns
    )
    present = tuple(c for c in PRICE_COLUMNS if c in fields)
    return frame.select(TICKER, DATE, *PRICE_COLUMNS), present


def _drop_missing_rows(frame: pl.DataFrame, fields: tuple[str, ...]) -> pl.DataFrame:
    """Drop rows with no data for their ticker (failed tickers, other tickers' sessions).

    A row is empty when every price is NaN and volume is NaN or 0 (yfinance's own rule). A row
    with some but not all prices NaN is bad data: `PriceDataError` naming ticker, date and fields.
    """
    prices = [c for c in _PRICE_FIELDS if c in fields]
    if not prices:
        return frame
    nan = [pl.col(c).is_nan() for c in prices]
    volume = pl.col(VOLUME)
    no_volume = (volume.is_nan() | (volume == 0)) if VOLUME in fields else pl.lit(True)
    frame = frame.filter(~(pl.all_horizontal(nan) & no_volume))
    partial = frame.filter(pl.any_horizontal(nan))
    if partial.height:
        described = [
            f"{r[TICKER]} {r[DATE]} ({', '.join(c for c in prices if np.isnan(r[c]))} NaN)"
            for r in partial.head(_LIST_LIMIT).iter_rows(named=True)
        ]
        more = partial.height - len(described)
        raise PriceDataError(
            "yfinance returned partial prices (some fields NaN): " + ", ".join(described)
            + (f" and {more} more" if more > 0 else "")
        )
    return frame.with_columns(pl.col(VOLUME).fill_nan(None))
