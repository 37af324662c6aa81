"""Exceptions with messages that name the problem (which ticker, which date, which setting)."""


class ForecastError(Exception):
    """Base class for every error the job raises on purpose."""


class ConfigError(ForecastError, ValueError):
    """A setting is invalid; the message names the setting and the value."""


class PriceDataError(ForecastError, ValueError):
    """A price source returned data that must not be written (the message names tickers and dates)."""


class TransientSourceError(ForecastError):
    """A price source failed in a way worth retrying (connection error, rate limit, timeout)."""


class InsufficientDataError(ForecastError, ValueError):
    """Not enough history for the requested operation (lookback, folds, a model's training)."""


class NotFittedError(ForecastError, RuntimeError):
    """A forecaster was asked to predict before `fit` (or before its artifact was loaded)."""
