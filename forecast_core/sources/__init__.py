"""Price sources behind one interface: the embedded sample, Yahoo Finance (yfinance) and files.

Every source's `fetch` returns the raw_prices schema without `ingested_at` (`FETCH_COLUMNS`, in that
order, sorted by ticker and date, only rows in [start, end]) after passing it through
`validate_prices`, the single place that decides a frame is fit to write. Bad data raises
`PriceDataError` naming the tickers and dates concerned and is never retried; a failure worth
retrying (connection error, timeout, rate limit) raises `TransientSourceError`.

Modules: `base` (the interface, schema and messages), `validation`, `sample`, `files`, `yahoo`.
"""

from forecast_core.config import ForecastConfig
from forecast_core.errors import ConfigError
from forecast_core.sources.base import FETCH_COLUMNS, FETCH_SCHEMA, PriceSource, exchange_today
from forecast_core.sources.files import FileSource
from forecast_core.sources.sample import SampleSource
from forecast_core.sources.validation import require_sessions, validate_prices
from forecast_core.sources.yahoo import YFinanceSource

__all__ = [
    "FETCH_COLUMNS",
    "FETCH_SCHEMA",
    "FileSource",
    "PriceSource",
    "SampleSource",
    "YFinanceSource",
    "exchange_today",
    "make_source",
    "require_sessions",
    "validate_prices",
]


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
