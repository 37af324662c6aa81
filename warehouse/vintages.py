"""Price vintages: every ingest that changes stored prices is recorded, and what it replaced kept.

`store_prices` replaces a slice of `raw_prices` (the rows matching a `WHERE` clause) with fetched
rows the way `Writer.replace` would, but touches only what differs:
- rows whose values (open, high, low, close, adj_close, volume) are unchanged keep their row and
  their vintage (`ingested_at` says the source confirmed them now);
- if anything else differs, a new vintage (the next integer) is recorded in `price_vintages`
  (time, source, sha256 of the rows it wrote, counts, span, tickers whose history it rewrote);
  stored rows it rewrites or removes move to `raw_prices_replaced` (`replaced_by` = the vintage)
  and the rows it writes carry `vintage`;
- nothing differs: no vintage, no write.

So `FROM prices_as_of(v)` (views.sql) returns the prices exactly as vintage v left them, and
`current_vintage` is the vintage of the prices every read of `raw_prices` sees now.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import polars as pl

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, PRICE_COLUMNS, TICKER

#: The stored columns a vintage compares (`_SAME` spells them out); `source` and `ingested_at`
#: are bookkeeping.
VALUE_COLUMNS = PRICE_COLUMNS
_SAME = (
    "s.open IS NOT DISTINCT FROM i.open AND s.high IS NOT DISTINCT FROM i.high "
    "AND s.low IS NOT DISTINCT FROM i.low AND s.close IS NOT DISTINCT FROM i.close "
    "AND s.adj_close IS NOT DISTINCT FROM i.adj_close AND s.volume IS NOT DISTINCT FROM i.volume"
)


@dataclass(frozen=True)
class VintageChange:
    """What one `store_prices` call changed. `vintage` is None when nothing changed.

    `revisions`: one row per ticker whose stored history was rewritten or removed (ticker,
    sessions, first_date, last_date, largest_log_change: the signed log(new / old) of the price
    returns are computed on where its magnitude is largest; null when every row was removed).
    """

    vintage: int | None
    rows_inserted: int
    rows_changed: int
    rows_removed: int
    revisions: pl.DataFrame
    #: Every row written matches the slice's `WHERE` clause (so the slice describes the change).
    in_scope: bool = True

    @property
    def rewrote_history(self) -> bool:
        return self.rows_changed + self.rows_removed > 0


def content_sha256(frame: pl.DataFrame) -> str:
    """sha256 of the (ticker, date, value columns) of `frame`, sorted by ticker and date: the same
    rows give the same digest whatever their order, chunking or polars version."""
    rows = frame.select(TICKER, DATE, *VALUE_COLUMNS).sort(TICKER, DATE)
    digest = hashlib.sha256()
    digest.update("\0".join(rows[TICKER].to_list()).encode())
    digest.update(rows[DATE].to_physical().to_numpy().astype("<i4").tobytes())
    for c in VALUE_COLUMNS:
        column = rows[c]
        digest.update(column.is_null().to_numpy().tobytes())
        digest.update(column.fill_null(0.0).to_numpy().astype("<f8").tobytes())
    return digest.hexdigest()


def current_vintage(con: duckdb.DuckDBPyConnection) -> int:
    """The newest recorded vintage (0 when none: prices stored before vintages, or no prices)."""
    ((vintage,),) = con.execute("SELECT coalesce(max(vintage), 0) FROM price_vintages").fetchall()
    return int(vintage)


def store_prices(
    con: duckdb.DuckDBPyConnection,
    frame: pl.DataFrame,
    where: str,
    params: Sequence[Any],
    source: str,
    now: dt.datetime,
) -> VintageChange:
    """Make the rows of raw_prices matching `where` equal to `frame` (raw_prices columns without
    `vintage`), inside the caller's open transaction, recording a vintage if anything changed."""
    con.register("_incoming", frame)
    try:
        return _store(con, list(params), where, source, now)
    finally:
        con.unregister("_incoming")


def _store(
    con: duckdb.DuckDBPyConnection, params: list, where: str, source: str, now: dt.datetime
) -> VintageChange:
    scope = f"(SELECT * FROM raw_prices WHERE {where})"
    # Stored rows the frame does not repeat exactly: rewritten (same key) or removed.
    replaced = con.sql(
        f"SELECT s.*, EXISTS (SELECT 1 FROM _incoming i WHERE i.ticker = s.ticker AND i.date = s.date) AS rewritten "
        f"FROM {scope} s WHERE NOT EXISTS (SELECT 1 FROM _incoming i WHERE i.ticker = s.ticker "
        f"AND i.date = s.date AND {_SAME})",
        params=params,
    ).pl()
    # Frame rows that are not already stored exactly: new keys or new values.
    written = con.sql(
        f"SELECT i.* FROM _incoming i WHERE NOT EXISTS (SELECT 1 FROM {scope} s WHERE s.ticker = i.ticker "
        f"AND s.date = i.date AND {_SAME})",
        params=params,
    ).pl()
    # Rows the source confirmed unchanged are stamped as fetched now (their vintage stays).
    con.execute(f"UPDATE raw_prices SET ingested_at = ? WHERE {where}", [now, *params])
    if replaced.height == 0 and written.height == 0:
        return VintageChange(None, 0, 0, 0, _revisions(replaced, written))
    ((in_scope,),) = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT ({where})) = 0 FROM _incoming", params
    ).fetchall()
    vintage = current_vintage(con) + 1
    rewritten = replaced.filter(pl.col("rewritten"))
    con.register(
        "_replaced", replaced.drop("rewritten").with_columns(pl.lit(vintage, pl.Int64).alias("replaced_by"))
    )
    con.execute("INSERT INTO raw_prices_replaced BY NAME SELECT * FROM _replaced")
    con.execute(
        "DELETE FROM raw_prices WHERE EXISTS "
        "(SELECT 1 FROM _replaced r WHERE r.ticker = raw_prices.ticker AND r.date = raw_prices.date)"
    )
    con.unregister("_replaced")
    con.register("_written", written.with_columns(pl.lit(vintage, pl.Int64).alias("vintage")))
    con.execute("INSERT INTO raw_prices BY NAME SELECT * FROM _written")
    con.unregister("_written")
    revisions = _revisions(replaced, written)
    con.execute(
        "INSERT INTO price_vintages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            vintage,
            now,
            source,
            content_sha256(written),
            written.height - rewritten.height,
            rewritten.height,
            replaced.height - rewritten.height,
            written[DATE].min() if written.height else None,
            written[DATE].max() if written.height else None,
            revisions[TICKER].to_list(),
        ],
    )
    return VintageChange(
        vintage,
        written.height - rewritten.height,
        rewritten.height,
        replaced.height - rewritten.height,
        revisions,
        bool(in_scope),
    )


def _revisions(replaced: pl.DataFrame, written: pl.DataFrame) -> pl.DataFrame:
    """Per ticker whose stored history changed: the sessions, their span, and the largest change
    of the return price (adj_close, else close) as a signed log(new / old)."""

    def price(frame: pl.DataFrame) -> pl.Expr:
        return pl.coalesce(pl.col(ADJ_CLOSE), pl.col(CLOSE)) if frame.height else pl.lit(None, pl.Float64)

    old = replaced.select(TICKER, DATE, price(replaced).alias("old"))
    new = written.select(TICKER, DATE, price(written).alias("new"))
    return (
        old.join(new, on=[TICKER, DATE], how="left")
        .with_columns((pl.col("new") / pl.col("old")).log().alias("log_change"))
        .group_by(TICKER)
        .agg(
            pl.len().alias("sessions"),
            pl.col(DATE).min().alias("first_date"),
            pl.col(DATE).max().alias("last_date"),
            # The largest change, signed: log(new / old) where |log(new / old)| is largest (a
            # removed row has none; null where the vintage only removed rows).
            pl.col("log_change").get(pl.col("log_change").abs().arg_max()).alias("largest_log_change"),
        )
        .sort(TICKER)
    )


def describe(change: VintageChange, limit: int = 10) -> str:
    """One line for the run's log: what the vintage changed, ticker by ticker."""
    if change.vintage is None:
        return "no stored price changed: no new vintage"
    head = (
        f"vintage {change.vintage}: {change.rows_inserted:,} new rows, {change.rows_changed:,} rewritten, "
        f"{change.rows_removed:,} removed"
    )
    if not change.rewrote_history:
        return head
    items = [
        f"{t} {n} session(s) {a}..{b}"
        + (f" (largest change x{np.exp(m):.4g}, log {m:+.4g})" if m is not None else "")
        for t, n, a, b, m in change.revisions.head(limit).iter_rows()
    ]
    more = change.revisions.height - len(items)
    return (
        head
        + "; history rewritten for "
        + ", ".join(items)
        + (f" and {more} more tickers" if more > 0 else "")
    )
