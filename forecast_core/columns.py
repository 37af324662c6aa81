"""Column names of the long panel, in one place.

Every frame in the project is long: one row per (ticker, date). Names are constants here so that a
rename is one edit (the neuralforecast `[unique_id, ds, y]` convention, with our names).
"""

TICKER = "ticker"
DATE = "date"

OPEN = "open"
HIGH = "high"
LOW = "low"
CLOSE = "close"
ADJ_CLOSE = "adj_close"
VOLUME = "volume"
SOURCE = "source"
INGESTED_AT = "ingested_at"

#: The price every return is computed on: the adjusted close where the source has it, else close.
PRICE = "price"

PRICE_COLUMNS = (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME)
RAW_PRICE_COLUMNS = (TICKER, DATE, *PRICE_COLUMNS, SOURCE, INGESTED_AT)

HORIZON = "horizon"
FOLD = "fold"
MODEL = "model"


def target_column(horizon: int) -> str:
    """Name of the forward log-return target over `horizon` sessions: `target_h5`."""
    return f"target_h{horizon}"
