"""raw_prices: daily prices per ticker and session, from the configured source."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from forecast_assets.metadata import OWNERS, add_partition_metadata, table_metadata
from forecast_assets.partitions import partition_dates
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import DATE, INGESTED_AT, TICKER
from forecast_core.data import calendar
from forecast_core.errors import ForecastError, TransientSourceError
from forecast_core.sources import make_source, require_sessions
from warehouse import read_sql, transaction
from warehouse.io import table_exists

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
    path = warehouse.resolved_path
    start, end = partition_dates(context, cfg.calendar)
    source = make_source(cfg)
    tickers = cfg.universe.all_tickers
    history_start = dt.date.fromisoformat(cfg.source.start_date)
    unstored = _new_tickers(path, tickers)
    new = [t for t in unstored if start > history_start]
    sessions = calendar.sessions(start, end, cfg.calendar)
    context.log.info(
        f"fetching {len(tickers)} tickers for {len(sessions):,} session(s) {start}..{end} from {source.name}"
        + (f"; new tickers {', '.join(new)} get their history from {history_start}" if new else "")
    )
    frame = source.fetch(tickers, start, end)
    history = source.fetch(new, history_start, start - dt.timedelta(days=1)) if new else None
    # Every session must be there (a late close, a dropped NaN row, a gap) before any write.
    listed = set(tickers) - set(unstored)
    if history is not None:
        before = calendar.sessions(history_start, start - dt.timedelta(days=1), cfg.calendar)
        require_sessions(history, before, frozenset(), source.name)
        listed |= set(history[TICKER].to_list())
    require_sessions(frame, sessions, listed, source.name)
    context.log.info(f"validated {frame.height:,} rows: every session present, prices positive; writing")
    now = pl.lit(dt.datetime.now(dt.UTC), pl.Datetime("us", "UTC")).alias(INGESTED_AT)
    with transaction(path) as w:
        w.replace(
            "raw_prices",
            frame.with_columns(now),
            "date BETWEEN ? AND ? AND list_contains(?, ticker)",
            [start, end, list(tickers)],
        )
        if history is not None:
            context.log.info(f"new tickers {new}: stored their history from {history_start}")
            w.replace(
                "raw_prices",
                history.with_columns(now),
                "date < ? AND list_contains(?, ticker)",
                [start, new],
            )
    stored = frame.height + (history.height if history is not None else 0)
    _partition_metadata(context, frame, start, end, source.name, stored, new)
    context.log.info(
        f"stored {stored:,} rows; recorded {len(context.partition_keys):,} session partition(s), "
        "each with its own row count"
    )
    return dg.MaterializeResult()


def _partition_metadata(
    context: dg.AssetExecutionContext,
    frame: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    source: str,
    stored: int,
    new: list[str],
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
        },
        partition_key=keys[-1],
    )
