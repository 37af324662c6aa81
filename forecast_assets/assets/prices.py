"""raw_prices: daily prices per ticker and session, from the configured source."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from forecast_assets.metadata import OWNERS, add_partition_metadata, frame_table, table_metadata
from forecast_assets.partitions import partition_dates
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import DATE, INGESTED_AT, TICKER
from forecast_core.config import UniverseConfig
from forecast_core.data import calendar
from forecast_core.data.universe import membership_frame, within_membership
from forecast_core.errors import ForecastError, TransientSourceError
from forecast_core.sources import make_source, require_sessions
from warehouse import read_sql, transaction, vintages
from warehouse.io import table_exists
from warehouse.vintages import VintageChange

#: Network-facing: transient source errors are retried with exponential backoff and jitter (any
#: other ForecastError fails at once: see `raw_prices`).
SOURCE_RETRY = dg.RetryPolicy(
    max_retries=4, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def _new_tickers(path: str, tickers: tuple[str, ...]) -> list[str]:
    """Configured tickers with no stored history (they get their whole history on this run)."""
    if not Path(path).exists() or not table_exists("raw_prices", path):
        return list(tickers)
    have = set(read_sql("SELECT DISTINCT ticker FROM raw_prices", path=path)[TICKER].to_list())
    return [t for t in tickers if t not in have]


def raw_prices_asset(trading_days: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`raw_prices` on the job's session partitions (`forecast_assets.definitions.build_defs`)."""
    return dg.asset(
        partitions_def=trading_days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=SOURCE_RETRY,
        group_name="ingest",
        kinds={"duckdb", "polars"},
        pool="warehouse_write",
        owners=OWNERS,
        tags={"layer": "ingest"},
        metadata=table_metadata("raw_prices"),
    )(raw_prices)


def raw_prices(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Daily prices (open, high, low, close, adjusted close, volume) for the universe and the
    exogenous tickers, one partition per NYSE session. A range of partitions is one run and one
    download. Every frame is validated before it is written (bad data fails the run with the
    tickers and dates named, and is not retried); transient source errors are retried. A ticker
    newly added to the configuration gets its whole history on its first run."""
    try:
        return _ingest(context, warehouse, pipeline)
    except TransientSourceError:
        raise  # the retry policy retries it
    except ForecastError as exc:
        # Bad data, a bad setting or an unusable warehouse: retrying would only wait for minutes.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _ingest(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    cfg = pipeline.load()
    universe = cfg.universe
    path = warehouse.resolved_path
    start, end = partition_dates(context, cfg.calendar)
    source = make_source(cfg)
    history_start = dt.date.fromisoformat(cfg.source.start_date)
    before_start = start - dt.timedelta(days=1)
    # Only members are fetched: a ticker delisted before the range (or listed after it) has none.
    tickers = [t for t in universe.all_tickers if _member_during(universe, t, start, end)]
    if not tickers:
        raise ForecastError(
            f"no configured ticker is a member of the universe in {start}..{end} "
            "(see universe.membership): nothing to ingest"
        )
    unstored = _new_tickers(path, tickers)
    new = [
        t
        for t in unstored
        if start > history_start and _member_during(universe, t, history_start, before_start)
    ]
    sessions = calendar.sessions(start, end, cfg.calendar)
    context.log.info(
        f"fetching {len(tickers)} tickers for {len(sessions):,} session(s) {start}..{end} from {source.name}"
        + (f"; new tickers {', '.join(new)} get their history from {history_start}" if new else "")
    )
    frame = within_membership(source.fetch(tickers, start, end), universe)
    history = within_membership(source.fetch(new, history_start, before_start), universe) if new else None
    # Every session inside each ticker's membership must be there (a late close, a dropped NaN
    # row, a gap) before any write.
    listed = set(tickers) - set(unstored)
    if history is not None:
        before = calendar.sessions(history_start, before_start, cfg.calendar)
        require_sessions(history, before, frozenset(), source.name, universe)
        listed |= set(history[TICKER].to_list())
    require_sessions(frame, sessions, listed, source.name, universe)
    context.log.info(f"validated {frame.height:,} rows: every session present, prices positive; writing")
    now = dt.datetime.now(dt.UTC)
    stamped = pl.lit(now, pl.Datetime("us", "UTC")).alias(INGESTED_AT)
    incoming = frame if history is None else pl.concat([history, frame])
    with transaction(path) as w:
        change = w.store_prices(
            incoming.with_columns(stamped),
            "(date BETWEEN ? AND ? AND list_contains(?::VARCHAR[], ticker)) "
            "OR (date < ? AND list_contains(?::VARCHAR[], ticker))",
            [start, end, tickers, start, new],
            source.name,
            now,
        )
        w.replace("universe_membership", membership_table(universe))
    context.log.info(vintages.describe(change))
    if history is not None:
        context.log.info(f"new tickers {new}: stored their history from {history_start}")
    _partition_metadata(context, frame, start, end, source.name, incoming.height, new, change)
    context.log.info(
        f"stored {incoming.height:,} rows; recorded {len(context.partition_keys):,} session partition(s), "
        "each with its own row count"
    )
    return dg.MaterializeResult()


def _member_during(universe: UniverseConfig, ticker: str, start: dt.date, end: dt.date) -> bool:
    """Whether `ticker`'s membership overlaps [start, end]."""
    first, last = universe.listing(ticker)
    return (first is None or first <= end) and (last is None or last >= start)


def membership_table(universe: UniverseConfig) -> pl.DataFrame:
    """universe_membership rows: every configured ticker, its role and its declared span."""
    targets = set(universe.tickers)
    return membership_frame(universe).with_columns(
        pl.col(TICKER).is_in(list(targets)).replace_strict({True: "target", False: "exogenous"}).alias("role")
    )


def _partition_metadata(
    context: dg.AssetExecutionContext,
    frame: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    source: str,
    stored: int,
    new: list[str],
    change: VintageChange,
) -> None:
    """Each session partition's own metadata (its rows and tickers), and the run's range summary
    once, on the range's last partition (not copied onto every partition of a backfill)."""
    per_day = frame.group_by(DATE).agg(pl.len().alias("rows"), pl.col(TICKER).n_unique().alias("tickers"))
    counts = {d.isoformat(): (r, t) for d, r, t in per_day.iter_rows()}
    keys = context.partition_keys
    per_partition = {}
    for key in keys:
        rows, tickers = counts.get(key, (0, 0))
        per_partition[key] = {
            "dagster/row_count": dg.MetadataValue.int(rows),
            "tickers": dg.MetadataValue.int(tickers),
        }
    add_partition_metadata(context, per_partition)
    context.add_asset_metadata(
        {
            "run_range": dg.MetadataValue.text(f"{start}..{end} ({len(keys):,} sessions)"),
            "run_rows": dg.MetadataValue.int(stored),
            "source": dg.MetadataValue.text(source),
            "new_tickers": dg.MetadataValue.json(new),
            "prices_vintage": dg.MetadataValue.int(change.vintage or 0),
            "vintage_change": dg.MetadataValue.text(vintages.describe(change)),
            "history_rewritten": dg.MetadataValue.bool(change.rewrote_history),
            **({"revisions": frame_table(change.revisions)} if change.rewrote_history else {}),
        },
        partition_key=keys[-1],
    )
