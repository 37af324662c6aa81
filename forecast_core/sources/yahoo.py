"""Yahoo Finance through yfinance: downloads, error classification (transient or bad data) and
redaction of secrets from provider errors."""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE,
    CLOSE,
    DATE,
    HIGH,
    LOW,
    OPEN,
    PRICE_COLUMNS,
    TICKER,
    VOLUME,
)  # fmt: skip
from forecast_core.errors import PriceDataError, TransientSourceError
from forecast_core.sources.base import EXCHANGE_TZ, LIST_LIMIT, PRICE_FIELDS, listing, requested_tickers
from forecast_core.sources.validation import validate_prices

# --- Yahoo Finance ------------------------------------------------------------------------------

#: yfinance's column names -> ours. Other fields (dividends, splits) are ignored.
_YF_FIELDS = {
    "Open": OPEN,
    "High": HIGH,
    "Low": LOW,
    "Close": CLOSE,
    "Adj Close": ADJ_CLOSE,
    "Volume": VOLUME,
}
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
_YF_HINTS = (
    re.compile(r"^Failed to get ticker '([^']+)' reason: (.+)$", re.DOTALL),
    re.compile(r"^\$([^:\s]+): (.+)$", re.DOTALL),
)

_DOWNLOAD_LOCK = threading.Lock()

#: Secrets an HTTP error's text can carry (its URL): Yahoo's session crumb and other tokens in the
#: query, and user:password in a (proxy) URL. `_redact` removes them before a message is raised,
#: since raised messages end up in the run's event log.
_SECRET_QUERY = re.compile(
    r"(?i)\b(crumb|token|api_?key|key|password|passwd|secret|sig|signature)=[^&\s'\"]+"
)
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
        requested = requested_tickers(tickers, start, end)
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
                list(requested),
                start=start,
                end=end + dt.timedelta(days=1),
                auto_adjust=False,
                actions=False,
                progress=False,
                threads=self.threads,
                timeout=self.timeout_s,
                group_by="column",
                multi_level_index=True,
                ignore_tz=True,
            )
        except Exception as exc:
            what = f"yfinance download of {listing(requested)} for {span} failed"
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


def _raise_ticker_errors(failures: dict[str, list[str]], hints: dict[str, list[str]], span: str) -> None:
    """`TransientSourceError` if any failure looks transient, else `PriceDataError`."""
    if not failures:
        return

    def looks_transient(ticker: str) -> bool:
        texts = [*failures[ticker], *hints.get(ticker, [])]
        return any(_TRANSIENT_TEXT.search(t.replace(ticker, "")) for t in texts)

    by_message: dict[str, list[str]] = {}
    for ticker, messages in failures.items():
        by_message.setdefault(_redact("; ".join(dict.fromkeys(messages)))[:300], []).append(ticker)
    details = listing([f"{listing(ts)}: {m}" for m, ts in by_message.items()])
    transient = [t for t in failures if looks_transient(t)]
    if transient:
        raise TransientSourceError(
            f"yfinance could not download {listing(transient)} for {span} (worth retrying): {details}"
        )
    raise PriceDataError(f"yfinance reported errors for {listing(list(failures))} for {span}: {details}")


def _split_columns(raw: pd.DataFrame, requested: list[str]) -> dict[str, pd.DataFrame]:
    """yfinance fields per ticker, from (Price, Ticker), (Ticker, Price) or flat columns."""
    cols = raw.columns
    known = set(_YF_FIELDS) | _YF_IGNORED
    unknown = PriceDataError(
        f"yfinance returned an unrecognised column layout for {listing(requested)}: "
        f"columns seen {listing([str(c) for c in cols])}"
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
                f"{listing([str(c) for c in cols])}) for {len(requested)} tickers: "
                f"{listing(requested)}"
            )
        out = {requested[0]: raw.rename(columns=str)}
    elif len(cols) == 0 and raw.empty:
        return {}
    else:
        raise unknown
    for ticker, sub in out.items():
        if not sub.columns.is_unique:
            raise PriceDataError(f"yfinance returned repeated columns for {ticker}: {list(sub.columns)}")
        if "Close" not in sub.columns and "Adj Close" not in sub.columns:
            raise PriceDataError(
                f"yfinance returned neither Close nor Adj Close for {ticker}: columns {list(sub.columns)}"
            )
    return out


def _session_dates(index: pd.Index) -> np.ndarray:
    """`datetime64[D]` exchange-local dates: tz-aware stamps are converted to New York first."""
    if not isinstance(index, pd.DatetimeIndex):
        if len(index) == 0:
            return np.array([], dtype="datetime64[D]")
        raise PriceDataError(
            f"yfinance returned a {type(index).__name__} index "
            f"({listing([str(v) for v in index])}), expected dates"
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
    prices = [c for c in PRICE_FIELDS if c in fields]
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
            for r in partial.head(LIST_LIMIT).iter_rows(named=True)
        ]
        more = partial.height - len(described)
        raise PriceDataError(
            "yfinance returned partial prices (some fields NaN): "
            + ", ".join(described)
            + (f" and {more} more" if more > 0 else "")
        )
    return frame.with_columns(pl.col(VOLUME).fill_nan(None))
