"""Typed reads the pipeline uses: prices, features, targets, folds, models, as polars frames."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from forecast_core.columns import DATE, PRICE, TICKER, target_column
from forecast_core.config import ForecastConfig
from forecast_core.data.features import Inputs, build_features, build_targets, feature_columns
from forecast_core.data.panel import assemble_panel, targets_wide
from forecast_core.data.spilled_panel import Panel, SpilledPanel
from forecast_core.data.universe import within_membership
from forecast_core.evaluation.folds import Fold, folds_from_frame
from warehouse import vintages
from warehouse.db import WarehouseError, connect
from warehouse.io import Writer, read_sql, read_table, table_exists

Path = str | os.PathLike[str] | None


#: Tickers each panel read assembles at a time (`panel_known_at`, `labelled_panel`,
#: `panel_from_vintage`): beside the panel itself, only one chunk's prices, features and targets
#: are held (about 1.5 GB at 500 tickers x 20 years), whatever the universe.
PANEL_CHUNK_TICKERS = 500


def _dated(until: dt.date | None, tickers: list[str] | None) -> tuple[str, list]:
    """The predicate and parameters of rows dated <= until (any date without it) of `tickers`
    (every ticker without them)."""
    dated = "date <= ?" if until else "TRUE"
    where = f"{dated} AND {IN_TICKERS}" if tickers is not None else dated
    return where, [*([until] if until else []), *([tickers] if tickers is not None else [])]


def prices(path: Path, until: dt.date | None = None, tickers: list[str] | None = None) -> pl.DataFrame:
    """raw_prices rows dated <= until (of `tickers`; None: all), sorted by ticker and date."""
    where, params = _dated(until, tickers)
    return read_table("raw_prices", where, params, path, order_by="ticker, date")


def prices_vintage(path: Path) -> int:
    """The price vintage every read of raw_prices sees now (`warehouse.vintages`; 0 before any)."""
    if not table_exists("price_vintages", path):
        return 0
    with connect(path, read_only=True) as con:
        return vintages.current_vintage(con)


def history_rewritten_since(path: Path, vintage: int | None) -> bool:
    """Whether a price vintage newer than `vintage` rewrote or removed stored prices (None: not
    known, so it may have)."""
    if vintage is None:
        return True
    rows = read_sql(
        "SELECT count(*) AS n FROM price_vintages WHERE vintage > ? AND len(tickers_changed) > 0",
        [vintage],
        path,
    )
    return bool(rows["n"][0])


def prices_as_of(
    path: Path, vintage: int, until: dt.date | None = None, tickers: list[str] | None = None
) -> pl.DataFrame:
    """The prices exactly as price vintage `vintage` stored them (the `prices_as_of` macro), dated
    <= until (of `tickers`; None: all), sorted by ticker and date."""
    where, params = _dated(until, tickers)
    return read_sql(
        f"SELECT * EXCLUDE (vintage) FROM prices_as_of(?) WHERE {where} ORDER BY ticker, date",
        [vintage, *params],
        path,
    )


def features(path: Path, until: dt.date | None = None, tickers: list[str] | None = None) -> pl.DataFrame:
    if not table_exists("features", path):
        raise WarehouseError("the features table does not exist yet: materialize `features` first")
    where, params = _dated(until, tickers)
    return read_table("features", where, params, path, order_by="ticker, date")


def targets(
    path: Path, horizons: tuple[int, ...], until: dt.date | None = None, tickers: list[str] | None = None
) -> pl.DataFrame:
    """Wide targets (`target_h{h}`) for the configured horizons."""
    where, params = _dated(until, tickers)
    return targets_wide(read_table("targets", where, params, path), horizons)


def _ticker_chunks(tickers) -> list[list[str] | None]:
    """`tickers` sorted, `PANEL_CHUNK_TICKERS` at a time; [None] (every ticker, one read) when
    there are none, so that an empty table still gives its frame's columns."""
    names = sorted(tickers)
    if not names:
        return [None]
    return [names[i : i + PANEL_CHUNK_TICKERS] for i in range(0, len(names), PANEL_CHUNK_TICKERS)]


def _feature_tickers(path: Path, until: dt.date | None) -> list[str]:
    if not table_exists("features", path):
        raise WarehouseError("the features table does not exist yet: materialize `features` first")
    where, params = _dated(until, None)
    return read_sql(f"SELECT DISTINCT ticker FROM features WHERE {where}", params, path)[TICKER].to_list()


def tickers_with_features(path: Path, start: dt.date, end: dt.date) -> list[str]:
    """The tickers with a features row dated in [start, end], sorted."""
    frame = read_sql(
        "SELECT DISTINCT ticker FROM features WHERE date BETWEEN ? AND ? ORDER BY ticker", [start, end], path
    )
    return frame[TICKER].to_list()


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The chunks' panels, in ticker order (each chunk's tickers sort after the previous')."""
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed")


def _panel(
    chunks: Iterator[tuple[pl.DataFrame, tuple[str, ...]]], spill_to: Path
) -> tuple[Panel, tuple[str, ...]]:
    """The chunks' panels as one frame, or spilled to the directory `spill_to` (a chunk at a time,
    so that only one chunk is in memory), and the feature columns."""
    columns: list[tuple[str, ...]] = [()]

    def parts() -> Iterator[pl.DataFrame]:
        for part, names in chunks:
            columns[0] = names
            yield part

    if spill_to is None:
        return _concat(list(parts())), columns[0]
    return SpilledPanel.write(parts(), pathlib.Path(spill_to)), columns[0]


def panel_known_at(
    path: Path, cfg: ForecastConfig, cutoff: dt.date, spill_to: Path = None
) -> tuple[Panel, tuple[str, ...]]:
    """The modelling panel as it was known after the close of `cutoff`, and its feature columns:
    features up to it, and targets recomputed from prices up to it (a label whose horizon ends
    later is null, not peeked at). What training and forecasting read. Assembled
    `PANEL_CHUNK_TICKERS` tickers at a time (a ticker's rows depend on its own prices only); with
    `spill_to` (a directory), written there a chunk at a time as a `SpilledPanel`."""
    universe = list(cfg.universe.tickers)

    def chunks() -> Iterator[tuple[pl.DataFrame, tuple[str, ...]]]:
        for names in _ticker_chunks(_feature_tickers(path, cutoff)):
            stored = within_membership(prices(path, until=cutoff, tickers=names), cfg.universe)
            feats = features(path, until=cutoff, tickers=names)
            targets_of = build_targets(stored.filter(pl.col(TICKER).is_in(universe)), cfg.horizons)
            yield assemble_panel(feats, targets_of, stored), feature_columns(feats)

    return _panel(chunks(), spill_to)


def feature_table_columns(path: Path) -> tuple[str, ...]:
    """The feature columns of the stored `features` table, in its order (no row is read)."""
    if not table_exists("features", path):
        raise WarehouseError("the features table does not exist yet: materialize `features` first")
    return feature_columns(read_sql("SELECT * FROM features LIMIT 0", [], path))


def serving_panel(
    path: Path,
    cfg: ForecastConfig,
    cutoff: dt.date,
    columns: tuple[str, ...],
    priced_from: dt.date,
    *,
    continued: tuple[str, dt.date] | None = None,
    tickers: Sequence[str] | None = None,
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The rows of `panel_known_at(path, cfg, cutoff)` with only the feature `columns` (in the
    table's order), `price` on the sessions from `priced_from` (null before), the targets null,
    and every feature column's name.

    For forecasting the sessions priced_from..cutoff with fitted models that read no label, no
    price and only these columns (the LSTM, a volatility baseline: `make_forecasts` reads the
    price of the sessions it forecasts): the same rows as `panel_known_at` (a row is kept when
    every feature is present and finite, tested in the query), whose values are the same, without
    holding every feature of the whole history or rebuilding the targets from every price.

    `continued` (a model version and the earliest `as_of` of its `forecast_state` rows): only the
    rows of the tickers with a state of that version, dated after the state's `as_of` (what
    continuing from it reads). `tickers`: those tickers only."""
    names = feature_table_columns(path)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise WarehouseError(f"the features table has no columns {unknown} (it has {list(names)})")
    picked = [c for c in names if c in columns]
    join = (
        "JOIN forecast_state s ON s.ticker = f.ticker AND s.model_version = ? AND f.date > s.as_of "
        if continued
        else ""
    )
    # The constant bound lets the scan skip the history before every state.
    after = " AND f.date > ?" if continued else ""
    among = " AND f.ticker IN (SELECT unnest(?::VARCHAR[]))" if tickers is not None else ""
    panel = read_sql(
        f"SELECT f.ticker, f.date{_select_list(picked)}, p.price FROM features f {join}LEFT JOIN "
        "(SELECT ticker, date, coalesce(adj_close, close) AS price FROM raw_prices WHERE date BETWEEN ? AND ?) p "
        f"ON p.ticker = f.ticker AND p.date = f.date WHERE f.date <= ?{after}{among} AND {_all_finite(names)} "
        "ORDER BY f.ticker, f.date",
        [
            *([continued[0]] if continued else []),
            priced_from,
            cutoff,
            cutoff,
            *([continued[1]] if continued else []),
            *([list(tickers)] if tickers is not None else []),
        ],
        path,
    )
    if cfg.universe.membership:
        # `panel_known_at` takes each row's price from the prices inside the ticker's membership.
        inside = within_membership(panel.select(TICKER, DATE).with_row_index("_row"), cfg.universe)["_row"]
        member = pl.Series(np.zeros(panel.height, dtype=bool))
        member[inside.to_numpy()] = True
        panel = panel.with_columns(pl.when(member).then(pl.col(PRICE)).alias(PRICE))
    targets = [pl.lit(None, pl.Float64).alias(target_column(h)) for h in cfg.horizons]
    return panel.with_columns(targets).select(
        TICKER, DATE, *picked, *(target_column(h) for h in cfg.horizons), PRICE
    ), names


def _select_list(columns: list[str]) -> str:
    """`, f."a", f."b"` for feature columns of the features table (aliased f)."""
    return "".join(f", f.{_quoted(c)}" for c in columns)


def _all_finite(columns: tuple[str, ...]) -> str:
    """The predicate `complete_rows` applies: every feature column present and finite."""
    return " AND ".join(f"{_quoted(c)} IS NOT NULL AND isfinite({_quoted(c)}::DOUBLE)" for c in columns)


def _quoted(column: str) -> str:
    """A feature column's name as a SQL identifier (the names come from the table's own schema)."""
    if '"' in column:
        raise WarehouseError(f"feature column {column!r} cannot be quoted as an identifier")
    return f'"{column}"'


def panel_from_vintage(
    path: Path, cfg: ForecastConfig, cutoff: dt.date, vintage: int, tickers: Sequence[str] | None = None
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """`panel_known_at` rebuilt from the prices of price vintage `vintage` (features recomputed
    from them; a feature at t uses prices up to t only, so this is what the features asset
    stored from that vintage). For reproducing a forecast after history was rewritten. `tickers`:
    those of the universe's tickers only (a ticker's rows depend on its own prices and the
    exogenous tickers', never on the other tickers)."""
    parts, columns = [], ()
    wanted = list(cfg.universe.tickers if tickers is None else tickers)
    for names in _ticker_chunks(wanted):
        # Each chunk with the exogenous tickers, whose features every ticker's rows join by date.
        read = None if names is None else [*names, *cfg.universe.exogenous]
        stored = within_membership(prices_as_of(path, vintage, until=cutoff, tickers=read), cfg.universe)
        feats = build_features(stored, cfg)
        chunk = stored.filter(pl.col(TICKER).is_in(names or wanted))
        parts.append(assemble_panel(feats, build_targets(chunk, cfg.horizons), stored))
        columns = feature_columns(feats)
    return _concat(parts), columns


def labelled_panel(
    path: Path, horizons: tuple[int, ...], until: dt.date | None = None, spill_to: Path = None
) -> tuple[Panel, tuple[str, ...]]:
    """Features, stored targets and price for rows dated <= `until`, and the feature columns.

    Not point in time: a row's label may be realised after `until` (up to the longest horizon
    later). For scoring test slices whose outcomes are known (walk-forward evaluation) and for
    laying out folds; training and forecasting read `panel_known_at`. Assembled
    `PANEL_CHUNK_TICKERS` tickers at a time (spilled to `spill_to` as `panel_known_at` does).
    """

    def chunks() -> Iterator[tuple[pl.DataFrame, tuple[str, ...]]]:
        for names in _ticker_chunks(_feature_tickers(path, until)):
            f = features(path, until, names)
            panel = assemble_panel(f, targets(path, horizons, until, names), prices(path, until, names))
            yield panel, feature_columns(f)

    return _panel(chunks(), spill_to)


def folds(path: Path) -> list[Fold]:
    frame = read_table("folds", path=path)
    if frame.height == 0:
        raise WarehouseError("the folds table is empty: materialize `walk_forward_folds` first")
    return folds_from_frame(frame)


_MODEL_WITH_ARTIFACT = "SELECT m.*, a.artifact FROM models m JOIN model_artifacts a USING (model_version) "


def latest_model(path: Path, period: str) -> dict | None:
    """The newest `models` row for a retrain period (with its artifact), or None."""
    rows = read_sql(
        _MODEL_WITH_ARTIFACT + "WHERE m.period = ? ORDER BY m.trained_at DESC LIMIT 1", [period], path
    )
    return rows.row(0, named=True) if rows.height else None


def model(path: Path, model_version: str) -> dict | None:
    """The `models` row of `model_version` (with its artifact), or None."""
    rows = read_sql(_MODEL_WITH_ARTIFACT + "WHERE m.model_version = ?", [model_version], path)
    return rows.row(0, named=True) if rows.height else None


# Reads inside the features asset's transaction (`Writer.read`): what it must recompute, and the
# bounded slices of prices it recomputes from (`forecast_core.data.refresh`, `.blocks`).

#: A bound parameter holding a list of tickers, as a predicate (a hash semi-join, not a list scan).
IN_TICKERS = "ticker IN (SELECT unnest(?::VARCHAR[]))"


def _exists(w: Writer, table: str) -> bool:
    found = w.read(
        "SELECT count(*) AS n FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = ?",
        [table],
    )
    return bool(found["n"][0])


def features_state(w: Writer) -> pl.DataFrame | None:
    """features_state rows, or None where the features table does not exist (nothing built)."""
    if not _exists(w, "features") or not _exists(w, "features_state"):
        return None
    return w.read("SELECT ticker, prices_vintage, membership, signature FROM features_state ORDER BY ticker")


def has_prices(w: Writer) -> bool:
    return bool(w.read("SELECT count(*) AS n FROM (SELECT 1 FROM raw_prices LIMIT 1)")["n"][0])


def current_vintage(w: Writer) -> int:
    """`prices_vintage` inside an open transaction."""
    return vintages.current_vintage(w.con)


def prices_stored_after(w: Writer, vintage: int, tickers: list[str]) -> pl.DataFrame:
    """(ticker, first_date): the first date of each ticker's price rows stored by a later vintage."""
    return w.read(
        f"SELECT ticker, min(date) AS first_date FROM raw_prices WHERE vintage > ? AND {IN_TICKERS} "
        "GROUP BY ticker ORDER BY ticker",
        [vintage, tickers],
    )


def tickers_rewritten_after(w: Writer, vintage: int) -> set[str]:
    """Tickers whose stored history a vintage newer than `vintage` rewrote or removed."""
    rows = w.read(
        "SELECT DISTINCT unnest(tickers_changed) AS ticker FROM price_vintages WHERE vintage > ?", [vintage]
    )
    return set(rows["ticker"].to_list()) if rows.height else set()


def price_inputs(w: Writer, tickers: list[str]) -> Inputs:
    """Which optional price columns hold values for these tickers (`features.Inputs`)."""
    n = w.read(
        "SELECT count(volume) AS volume, count(high) AS high, count(low) AS low, count(open) AS open, "
        f"count(close) AS close FROM raw_prices WHERE {IN_TICKERS}",
        [tickers],
    ).row(0, named=True)
    return Inputs(
        volume=n["volume"] > 0, range=n["high"] > 0 and n["low"] > 0, open=n["open"] > 0 and n["close"] > 0
    )


def prices_slice(w: Writer, tickers: list[str], since: dt.date | None) -> pl.DataFrame:
    """raw_prices rows of `tickers` dated >= since (all where None), sorted by ticker and date."""
    where, params = (
        (IN_TICKERS, [tickers]) if since is None else (f"{IN_TICKERS} AND date >= ?", [tickers, since])
    )
    return w.read(f"SELECT * EXCLUDE (vintage) FROM raw_prices WHERE {where} ORDER BY ticker, date", params)
