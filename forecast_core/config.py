"""The job's one typed configuration, with commented defaults that run the demo on the sample.

Every setting lives here once. A TOML file (see `load_config`) overrides any field; the Dagster
resource `PipelineConfig` only points at such a file, so there is one set of defaults, not two.
Invalid values raise `ConfigError` naming the setting before anything is read or written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forecast_core.errors import ConfigError

#: Tickers as exchanges and Yahoo spell them: `AAPL`, `BRK-B`, `BRK.B`, `^GSPC`, `EURUSD=X`.
#: Nothing that could close a quote, end a statement or name a path gets through.
TICKER_PATTERN = re.compile(r"^\^?[A-Z0-9][A-Z0-9.\-=]{0,14}$")

#: The forecast quantile levels. Fixed, not a setting: the warehouse stores them as the columns
#: q10, q50, q90 (and their prices), the 80% band is q10..q90, and the checks, views and backtest
#: read those columns.
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)

SAMPLE_TICKERS = (
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
)  # fmt: skip


#: File paths in settings and the environment: letters, digits, spaces and . , + @ ~ : / \ ( ) _ -.
#: No quotes, semicolons, shell or glob characters, or control characters (a newline would forge
#: log lines); paths never enter SQL, and this keeps it so.
PATH_PATTERN = re.compile(r"^[\w .,+@~:/\\()\-]+$")
#: An ISO calendar date, nothing else (`date.fromisoformat` also takes 20220103 and 2022-W01-1).
ISO_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def validate_path(path: object, setting: str) -> str:
    """Return `path` if it matches `PATH_PATTERN`, else raise `ConfigError` naming the setting."""
    if not isinstance(path, str) or not PATH_PATTERN.fullmatch(path):
        raise ConfigError(
            f"invalid setting {setting} = {path!r}: expected a file path of letters, digits, spaces "
            "and . , + @ ~ : / \\ ( ) _ - (no quotes, semicolons or control characters)"
        )
    return path


def validate_ticker(ticker: object) -> str:
    """Return `ticker` if it matches `TICKER_PATTERN`, else raise `ConfigError` naming it."""
    if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker):  # `$` allows a final newline
        raise ConfigError(
            f"invalid ticker {ticker!r}: expected 1-15 upper-case letters, digits or . - =, "
            "optionally after a leading ^ (for example AAPL, BRK-B, ^GSPC)"
        )
    return ticker


@dataclass(frozen=True)
class UniverseConfig:
    # Tickers that get features and forecasts.
    tickers: tuple[str, ...] = SAMPLE_TICKERS
    # Tickers downloaded only to build market features for every target (an index, a rate, ...).
    exogenous: tuple[str, ...] = ("^GSPC",)
    # Each ticker's membership of the universe, where it does not span the whole history: its
    # first and/or last session (a listing, a delisting, or "this source's data end here"), as a
    # TOML table `[universe.membership]` of `TICKER = { first = "YYYY-MM-DD", last = "YYYY-MM-DD" }`.
    # Outside it no prices are expected, stored or forecast; inside it a missing session is an error.
    membership: tuple[tuple[str, str | None, str | None], ...] = ()

    def __post_init__(self) -> None:
        entries = _membership_entries(self.membership)
        object.__setattr__(self, "membership", entries)
        # ticker -> (first, last) as dates, for `listing` in O(1) (not a field: not compared or saved).
        spans = {
            t: (
                dt.date.fromisoformat(first) if first else None,
                dt.date.fromisoformat(last) if last else None,
            )
            for t, first, last in entries
        }
        object.__setattr__(self, "_spans", spans)

    @property
    def all_tickers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.tickers, *self.exogenous)))

    def listing(self, ticker: str) -> tuple[dt.date | None, dt.date | None]:
        """`ticker`'s first and last session as a member (None: open on that side)."""
        return self._spans.get(ticker, (None, None))

    def is_member(self, ticker: str, day: dt.date) -> bool:
        """Whether `ticker` is a member of the universe on session `day`."""
        first, last = self.listing(ticker)
        return (first is None or day >= first) and (last is None or day <= last)


def _membership_entries(value: object) -> tuple[tuple[str, str | None, str | None], ...]:
    """`[universe.membership]` as sorted (ticker, first, last) triples. Accepts the TOML table
    ({ticker: {first, last}}) or triples (a config saved with a model); `ConfigError` names a bad
    entry."""
    if isinstance(value, dict):
        triples = []
        for ticker, entry in value.items():
            if not isinstance(entry, dict) or not entry or set(entry) - {"first", "last"}:
                raise ConfigError(
                    f"invalid setting universe.membership.{ticker} = {entry!r}: expected a table "
                    '{ first = "YYYY-MM-DD", last = "YYYY-MM-DD" } with first and/or last'
                )
            triples.append((ticker, entry.get("first"), entry.get("last")))
    elif isinstance(value, tuple | list):
        triples = [tuple(t) for t in value]
    else:
        raise ConfigError(f"invalid setting universe.membership = {value!r}: expected a table of tickers")
    out = []
    for triple in triples:
        if len(triple) != 3:
            raise ConfigError(f"invalid universe.membership entry {triple!r}: expected (ticker, first, last)")
        ticker, first, last = triple
        for side, day in (("first", first), ("last", last)):
            _require(
                day is None or (isinstance(day, str) and bool(ISO_DATE_PATTERN.match(day)) and _is_date(day)),
                f"universe.membership.{ticker}.{side}",
                day,
                "an ISO date YYYY-MM-DD",
            )
        _require(
            first is None or last is None or first <= last,
            f"universe.membership.{ticker}",
            {"first": first, "last": last},
            "first <= last",
        )
        out.append((ticker, first, last))
    return tuple(sorted(out))


@dataclass(frozen=True)
class SourceConfig:
    # "sample" (the embedded real data set), "yfinance" (the real source) or "file" (CSV/Parquet).
    kind: Literal["sample", "yfinance", "file"] = "sample"
    # Path of the CSV or Parquet file when kind == "file".
    path: str | None = None
    # First session the job ingests (and first partition of the daily assets).
    start_date: str = "1990-01-02"
    # Seconds before one yfinance request gives up (a timeout is retried by the asset's policy).
    timeout_s: float = 30.0


@dataclass(frozen=True)
class FeatureConfig:
    # Log returns over these windows (sessions).
    return_windows: tuple[int, ...] = (1, 5, 20, 60)
    # Rolling standard deviation of daily log returns over these windows.
    volatility_windows: tuple[int, ...] = (5, 20, 60)
    # price / simple moving average - 1, for these windows.
    moving_average_windows: tuple[int, ...] = (20, 50, 200)
    # Wilder's RSI window.
    rsi_window: int = 14
    # MACD fast, slow and signal spans.
    macd_spans: tuple[int, int, int] = (12, 26, 9)
    # Bollinger band window (position inside +-2 standard deviations).
    bollinger_window: int = 20
    # Window of the volume z-score (only where the source has volume).
    volume_window: int = 20


@dataclass(frozen=True)
class FoldConfig:
    # Number of chronological walk-forward folds.
    n_folds: int = 5
    # Sessions in each test slice; the test slices tile the end of the history.
    test_sessions: int = 252
    # Sessions in each validation slice (early stopping), just before the test slice.
    val_sessions: int = 126
    # Sessions dropped between train/val and val/test; None means the longest horizon.
    purge_sessions: int | None = None
    # "expanding": train from the first usable session; "sliding": the last `train_sessions`.
    window: Literal["expanding", "sliding"] = "expanding"
    # Train length for the sliding window (ignored when expanding).
    train_sessions: int = 2520
    # A fold needs at least this many training sessions.
    min_train_sessions: int = 504


@dataclass(frozen=True)
class ModelConfig:
    # Sessions of features the LSTM reads before each forecast.
    lookback: int = 30
    # LSTM hidden units per layer.
    hidden_size: int = 32
    # Stacked LSTM layers.
    num_layers: int = 1
    # Size of the learned per-ticker embedding (0 disables it).
    ticker_embedding_dim: int = 4
    # Dropout on the last hidden state during training.
    dropout: float = 0.1
    # The volatility prior the network corrects: it predicts quantiles of R_h / scale_h with the
    # prior's h-session scale: "ewma" (RiskMetrics), "gjr" (GJR-GARCH(1,1)) or "blend" (both).
    sigma_prior: Literal["ewma", "gjr", "blend"] = "blend"
    # "learned": the network may move the median; "zero": the median stays the prior's (0), so
    # the point forecast is zero_return's and the network shapes the band only.
    median: Literal["learned", "zero"] = "learned"
    # Members of the seed ensemble (trained together, quantiles averaged).
    ensemble_size: int = 1


@dataclass(frozen=True)
class TrainConfig:
    # Windows per optimizer step.
    batch_size: int = 256
    # Peak learning rate of the warmup-cosine schedule (AdamW).
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    # Global gradient-norm clip.
    clip_norm: float = 1.0
    warmup_steps: int = 50
    # An "epoch" is `steps_per_epoch` random batches, so training cost does not grow with history.
    steps_per_epoch: int = 100
    max_epochs: int = 25
    # Stop after this many epochs without a better validation pinball loss.
    patience: int = 4
    # Validation windows scored after each epoch for early stopping: a larger validation slice
    # (126 sessions x 5,000 tickers is 630,000) is scored on this many, drawn once with `seed`,
    # so an epoch's cost does not grow with the universe. The gate scores every window.
    max_val_windows: int = 100_000
    # Seed of every PRNG key (initialisation, dropout, batch sampling).
    seed: int = 0


@dataclass(frozen=True)
class BacktestConfig:
    # The strategy rules of `forecast_core.backtest`, driven by each horizon-1 forecast made at a
    # session's close and traded at the next session's close. Long when the median forecast q50 is
    # > 0 and the band's lower edge q10 is > -max_downside (a log return), flat otherwise.
    max_downside: float = 0.03
    # Annualised volatility each position aims at: size = min(max_position, vol_target / sigma),
    # with sigma = (q90 - q10) / (2 * 1.2816) * sqrt(periods_per_year) (the band read as normal).
    vol_target: float = 0.15
    # Largest position, as a fraction of the ticker's capital (1: fully invested, no leverage).
    max_position: float = 1.0
    # Commission and fees, in basis points of the notional traded (|change in position|).
    cost_bps: float = 1.0
    # Slippage against the closing price, in basis points of the notional traded.
    slippage_bps: float = 2.0
    # Sessions per year, for CAGR, annualised volatility, Sharpe, Sortino and turnover.
    periods_per_year: int = 252


@dataclass(frozen=True)
class ForecastConfig:
    universe: UniverseConfig = field(default_factory=UniverseConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    # Forecast horizons in trading sessions.
    horizons: tuple[int, ...] = (1, 5)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    folds: FoldConfig = field(default_factory=FoldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    # Exchange calendar (exchange_calendars code) for sessions and partitions.
    calendar: str = "XNYS"
    # Ridge baseline L2 strength.
    ridge_alpha: float = 10.0
    # RiskMetrics decay of the ewma_vol baseline.
    ewma_lambda: float = 0.94
    # The gate serves the model with the lowest validation pinball among the LSTM and every
    # baseline; the LSTM serves when its validation pinball is at most (1 + tolerance) x the best
    # baseline's. 0: only when it is the lowest, so the job never publishes bands that its own
    # validation ranks below a baseline's.
    promotion_tolerance: float = 0.0
    # The LSTM is refused when it is worse than the previous period's model on the same
    # validation rows by more than this fraction (a likely failed training run).
    previous_model_tolerance: float = 0.01
    # A daily |log return| above this is flagged by the raw_prices jump check (a warning: it can
    # be real, like AAPL's -52% on 2000-09-29, or a bad print, like RRC's x3 on 1990-04-10).
    max_daily_log_return: float = 0.75

    def __post_init__(self) -> None:
        validate(self)

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)

    @property
    def purge_sessions(self) -> int:
        purge = self.folds.purge_sessions
        return self.max_horizon if purge is None else purge

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The forecast quantile levels: fixed (`QUANTILES`), not a setting."""
        return QUANTILES

    @property
    def median_index(self) -> int:
        return QUANTILES.index(0.5)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(condition: bool, setting: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"invalid setting {setting} = {value!r}: expected {expected}")


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _positive_ints(values: tuple[int, ...], setting: str) -> None:
    _require(len(values) > 0, setting, values, "at least one value")
    for v in values:
        _require(
            isinstance(v, int) and not isinstance(v, bool) and v > 0, setting, values, "positive integers"
        )


def validate(cfg: ForecastConfig) -> None:
    """Raise `ConfigError` for the first invalid setting, naming it."""
    u = cfg.universe
    _require(len(u.tickers) > 0, "universe.tickers", u.tickers, "at least one ticker")
    for t in u.all_tickers:
        validate_ticker(t)
    _require(len(set(u.tickers)) == len(u.tickers), "universe.tickers", u.tickers, "no duplicates")
    unknown = [t for t, _, _ in u.membership if t not in u.all_tickers]
    _require(not unknown, "universe.membership", unknown, "tickers of universe.tickers or universe.exogenous")
    _require(
        not set(u.tickers) & set(u.exogenous),
        "universe.exogenous",
        u.exogenous,
        "tickers that are not also forecast targets",
    )

    s = cfg.source
    _require(s.kind in ("sample", "yfinance", "file"), "source.kind", s.kind, "one of sample, yfinance, file")
    _require(s.kind != "file" or bool(s.path), "source.path", s.path, "a file path when kind = file")
    if s.path is not None:
        validate_path(s.path, "source.path")
    _require(
        isinstance(s.start_date, str)
        and bool(ISO_DATE_PATTERN.match(s.start_date))
        and _is_date(s.start_date),
        "source.start_date",
        s.start_date,
        "an ISO date YYYY-MM-DD",
    )

    _positive_ints(cfg.horizons, "horizons")
    _require(
        tuple(sorted(set(cfg.horizons))) == cfg.horizons,
        "horizons",
        cfg.horizons,
        "sorted, without duplicates",
    )
    f = cfg.features
    for name in ("return_windows", "volatility_windows", "moving_average_windows", "macd_spans"):
        _positive_ints(getattr(f, name), f"features.{name}")
    for name in ("rsi_window", "bollinger_window", "volume_window"):
        _positive_ints((getattr(f, name),), f"features.{name}")
    _require(f.macd_spans[0] < f.macd_spans[1], "features.macd_spans", f.macd_spans, "fast span < slow span")

    fo = cfg.folds
    for name in ("n_folds", "test_sessions", "val_sessions", "min_train_sessions", "train_sessions"):
        _positive_ints((getattr(fo, name),), f"folds.{name}")
    _require(fo.window in ("expanding", "sliding"), "folds.window", fo.window, "expanding or sliding")
    _require(
        fo.window != "sliding" or fo.train_sessions >= fo.min_train_sessions,
        "folds.train_sessions",
        fo.train_sessions,
        f"at least folds.min_train_sessions ({fo.min_train_sessions}) with the sliding window",
    )
    _require(
        fo.purge_sessions is None or fo.purge_sessions >= cfg.max_horizon,
        "folds.purge_sessions",
        fo.purge_sessions,
        f"at least the longest horizon ({cfg.max_horizon}) so no label crosses a slice",
    )

    m = cfg.model
    for name in ("lookback", "hidden_size", "num_layers"):
        _positive_ints((getattr(m, name),), f"model.{name}")
    _require(m.ticker_embedding_dim >= 0, "model.ticker_embedding_dim", m.ticker_embedding_dim, ">= 0")
    _require(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "in [0, 1)")
    _require(
        m.sigma_prior in ("ewma", "gjr", "blend"),
        "model.sigma_prior",
        m.sigma_prior,
        "one of ewma, gjr, blend",
    )
    _positive_ints((m.ensemble_size,), "model.ensemble_size")
    _require(m.median in ("learned", "zero"), "model.median", m.median, "learned or zero")

    t = cfg.train
    for name in ("batch_size", "steps_per_epoch", "max_epochs", "patience", "max_val_windows"):
        _positive_ints((getattr(t, name),), f"train.{name}")
    _require(
        t.learning_rate > 0 and math.isfinite(t.learning_rate),
        "train.learning_rate",
        t.learning_rate,
        "a positive number",
    )
    _require(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, ">= 0")
    _require(t.clip_norm > 0, "train.clip_norm", t.clip_norm, "> 0")
    _require(cfg.ridge_alpha > 0, "ridge_alpha", cfg.ridge_alpha, "> 0")
    _require(0.0 < cfg.ewma_lambda < 1.0, "ewma_lambda", cfg.ewma_lambda, "in (0, 1)")
    _require(cfg.max_daily_log_return > 0, "max_daily_log_return", cfg.max_daily_log_return, "> 0")
    _require(cfg.promotion_tolerance >= 0, "promotion_tolerance", cfg.promotion_tolerance, ">= 0")
    _require(
        cfg.previous_model_tolerance >= 0, "previous_model_tolerance", cfg.previous_model_tolerance, ">= 0"
    )

    b = cfg.backtest
    for name in ("max_downside", "vol_target", "cost_bps", "slippage_bps"):
        value = getattr(b, name)
        _require(
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0,
            f"backtest.{name}",
            value,
            "a finite number >= 0",
        )
    _require(b.vol_target > 0, "backtest.vol_target", b.vol_target, "> 0")
    _require(
        isinstance(b.max_position, int | float) and 0 < b.max_position <= 1,
        "backtest.max_position",
        b.max_position,
        "in (0, 1] (no leverage)",
    )
    _positive_ints((b.periods_per_year,), "backtest.periods_per_year")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from a TOML table, recursing into nested config sections."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if cls is ForecastConfig and key == "quantiles":
            raise ConfigError(
                f"setting {prefix}quantiles is not configurable: forecasts are stored as the "
                f"quantiles {', '.join(map(str, QUANTILES))} (columns q10, q50, q90); remove it"
            )
        if key not in known:
            raise ConfigError(f"unknown setting {prefix}{key!r}; known: {', '.join(sorted(known))}")
        sub = _SECTIONS.get(key) if cls is ForecastConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"setting {prefix}{key} must be a table, got {value!r}")
            kwargs[key] = _build(sub, value, f"{prefix}{key}.")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - dataclass signature mismatch
        raise ConfigError(f"invalid settings in {prefix or 'top level'}: {exc}") from exc


_SECTIONS: dict[str, type] = {
    "universe": UniverseConfig,
    "source": SourceConfig,
    "features": FeatureConfig,
    "folds": FoldConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "backtest": BacktestConfig,
}


def config_from_dict(values: dict[str, Any]) -> ForecastConfig:
    """Defaults overridden by `values` (nested like the TOML file); validated."""
    return _build(ForecastConfig, values, "")


def load_config(path: str | Path | None) -> ForecastConfig:
    """Read a TOML file of overrides (sections `[universe]`, `[model]`, ...); None gives defaults."""
    if path is None:
        return ForecastConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist or is not a file")
    try:
        values = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
    return config_from_dict(values)
