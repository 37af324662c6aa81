"""Price validation: the single place that decides a fetched frame is fit to write.

`validate_prices` normalises a source's frame to `FETCH_COLUMNS` and refuses bad rows naming the
tickers and dates; `require_sessions` refuses a frame that lacks exchange sessions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE,
    CLOSE,
    DATE,
    PRICE_COLUMNS,
    SOURCE,
    TICKER,
    VOLUME,
)  # fmt: skip
from forecast_core.config import UniverseConfig
from forecast_core.errors import PriceDataError
from forecast_core.sources.base import (
    FETCH_COLUMNS,
    LIST_LIMIT,
    PRICE_FIELDS,
    exchange_today,
    listing,
    requested_tickers,
    row_listing,
)

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
    requested = requested_tickers(tickers, start, end)
    span = f"{start}..{end}"
    missing = [c for c in (TICKER, DATE) if c not in df.columns]
    if CLOSE not in df.columns and ADJ_CLOSE not in df.columns:
        missing.append(f"{CLOSE} or {ADJ_CLOSE}")
    if missing:
        raise PriceDataError(
            f"{source_name} prices for {listing(requested)} lack required column(s) "
            f"{', '.join(missing)}; columns seen: {', '.join(df.columns) or 'none'}"
        )
    out = _normalise(df, source_name)
    if out.is_empty():
        raise PriceDataError(
            f"{source_name} prices came back empty: no rows at all for {listing(requested)} in {span}"
        )

    null_keys = out.with_row_index("row").filter(pl.col(TICKER).is_null() | pl.col(DATE).is_null())
    if null_keys.height:
        described = [
            f"row {r['row']} (ticker={r[TICKER]}, date={r[DATE]})"
            for r in null_keys.head(LIST_LIMIT + 1).iter_rows(named=True)
        ]
        raise PriceDataError(
            f"{source_name} prices have a null ticker or date in {null_keys.height} row(s): "
            f"{listing(described)}"
        )

    seen = set(out.get_column(TICKER).unique().to_list())
    unrequested = sorted(seen - set(requested))
    if unrequested:
        raise PriceDataError(
            f"{source_name} returned tickers that were not requested: "
            f"{listing([repr(t) for t in unrequested])} (requested: {listing(requested)})"
        )
    empty = [t for t in requested if t not in seen]
    if empty:
        raise PriceDataError(
            f"{source_name} prices for {listing(empty)} came back empty for {span}; if the source's "
            "data for them end before that (a delisting), declare their last session in the "
            'configuration ([universe.membership] TICKER = { last = "YYYY-MM-DD" })'
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
        raise PriceDataError(f"{source_name} prices: column {DATE} has type {schema[DATE]}, expected Date")
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
            problems.append(f"{what}: {row_listing(bad, *values)}")

    check(f"dates outside the requested range {start}..{end}", ~pl.col(DATE).is_between(start, end))
    check(f"future dates (after {today})", pl.col(DATE) > today)
    dup = out.select(TICKER, DATE).is_duplicated()
    dup_rows = out.filter(dup).unique([TICKER, DATE], maintain_order=True)
    if dup_rows.height:
        problems.append(f"duplicate (ticker, date) rows: {row_listing(dup_rows)}")
    check("rows with neither close nor adj_close", pl.col(CLOSE).is_null() & pl.col(ADJ_CLOSE).is_null())
    for c in PRICE_FIELDS:
        col = pl.col(c)
        check(f"non-finite or non-positive {c}", col.is_not_null() & (~col.is_finite() | (col <= 0)), c)
    vol = pl.col(VOLUME)
    check("negative or non-finite volume", vol.is_not_null() & (~vol.is_finite() | (vol < 0)), VOLUME)
    return problems


def require_sessions(
    frame: pl.DataFrame,
    sessions: Sequence[dt.date],
    listed: Collection[str],
    source_name: str,
    universe: UniverseConfig | None = None,
) -> None:
    """Raise `PriceDataError` naming each (ticker, session) of `sessions` absent from `frame`.

    A ticker's expected sessions are those inside its membership (`universe.membership`: from a
    declared first session, to a declared last one). Without a declared first session, a ticker
    in `listed` (it has prices before the first session) needs every session from the start, any
    other ticker every session from its first row on (it may have been listed inside the range).
    A missing last session is usually one the source has not published yet (a late close): nothing
    is written, and a later run fetches it. A ticker whose data stop while the others' go on was
    probably delisted: the error says so, and how to declare its last session. `frame` is a
    validated `fetch` result.
    """
    if not sessions:
        return
    have = frame.group_by(TICKER).agg(
        pl.col(DATE).min().alias("first"), pl.col(DATE).max().alias("last"), pl.col(DATE).alias("dates")
    )
    rows = {t: (first, last, set(dates)) for t, first, last, dates in have.iter_rows()}
    missing: list[str] = []
    ended: list[tuple[str, dt.date | None, int]] = []
    for ticker in sorted(set(rows) | set(listed)):
        first_row, last_row, present = rows.get(ticker, (None, None, set()))
        declared_first, declared_last = universe.listing(ticker) if universe else (None, None)
        since = declared_first or (sessions[0] if ticker in listed else first_row)
        until = min(declared_last or sessions[-1], sessions[-1])
        gaps = [d for d in sessions if since <= d <= until and d not in present]
        missing += [f"{ticker} {d}" for d in gaps]
        trailing = [d for d in gaps if last_row is None or d > last_row]
        if len(trailing) > 1:
            ended.append((ticker, last_row, len(trailing)))
    if missing:
        advice = (
            "nothing was written; run again once the source has them (not published yet, or a "
            "gap in the source's data)"
        )
        if ended:
            declare = ", ".join(f'{t} = {{ last = "{d or "YYYY-MM-DD"}" }}' for t, d, _ in ended[:LIST_LIMIT])
            stopped = listing(
                [f"{t} (last row {d or 'none'}, {n} sessions before {sessions[-1]})" for t, d, n in ended]
            )
            advice = (
                f"data stop early for {stopped}: if the ticker was delisted, or this source's data "
                f"for it end there, declare its last session in the configuration "
                f"([universe.membership] {declare}) and run again; otherwise {advice}"
            )
        raise PriceDataError(
            f"{source_name} prices lack {len(missing)} session(s) of {sessions[0]}..{sessions[-1]}: "
            f"{listing(missing)}; {advice}"
        )
