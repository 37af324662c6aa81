"""A catalogue of bad inputs, one row each: every one fails with the error type it should, a
message that names the culprit (the setting, ticker, date, row, table or path), and leaves the
warehouse as it was (its content unchanged, or no file at all).

Most rows go through the `raw_prices` asset as the job runs it (`dg.materialize` of a partition
range, on a `file` source of synthetic prices), so that "nothing was written" is tested where a
write would happen; the rest exercise a source, the warehouse writer and the model directly. To add
a case, add a row to `CASES`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from forecast_assets.definitions import build_defs
from forecast_core.columns import ADJ_CLOSE, DATE, TICKER
from forecast_core.errors import ConfigError, InsufficientDataError, PriceDataError
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.sources import FileSource
from tests.reliability.ledger import record
from tests.support.config import TINY_CONFIG, with_overrides, write_toml
from tests.support.pipeline import RANGE_END, RANGE_START
from tests.support.small_lstm import CFG as LSTM_CFG
from tests.support.small_lstm import small_setup
from tests.support.synthetic import synthetic_prices
from warehouse import connect, transaction
from warehouse.db import WarehouseError

TICKERS = ("AAPL", "MSFT", "KO", "^GSPC")
HISTORY_START = dt.date(2022, 11, 1)
SPAN = (dt.date(2022, 12, 12), dt.date(2022, 12, 16))
BAD_DAY = dt.date(2022, 12, 14)


# --- inputs -------------------------------------------------------------------------------------


def prices_csv(path: Path, mutate: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> Path:
    """Synthetic closes of TICKERS from HISTORY_START to 2022-12-30 as strings (as a CSV holds them)."""
    prices = synthetic_prices(TICKERS, HISTORY_START, dt.date(2022, 12, 30), seed=3)
    frame = prices.select(TICKER, pl.col(DATE).cast(pl.String), pl.col(ADJ_CLOSE).cast(pl.String))
    (mutate(frame) if mutate else frame).write_csv(path)
    return path


def set_value(ticker: str, day: dt.date, column: str, value: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    hit = (pl.col(TICKER) == ticker) & (pl.col(DATE) == day.isoformat())
    return lambda f: f.with_columns(pl.when(hit).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


def ingest(
    tmp: Path,
    overrides: dict[str, Any] | None = None,
    mutate: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    warehouse: str | None = None,
    config_text: str | None = None,
    span: tuple[dt.date, dt.date] = SPAN,
) -> None:
    """The raw_prices asset, as a run of partitions `span` executes it, on a file source."""
    csv = prices_csv(tmp / "prices.csv", mutate)
    config = tmp / "config.toml"
    if config_text is not None:
        config.write_text(config_text)
    else:
        base = with_overrides(
            TINY_CONFIG,
            {"source": {"kind": "file", "path": str(csv), "start_date": HISTORY_START.isoformat()}},
        )
        write_toml(config, with_overrides(base, overrides or {}))
    defs = build_defs(str(config), warehouse or str(tmp / "w.duckdb"))  # a bad configuration fails here
    dg.materialize(
        defs.assets,
        selection=["raw_prices"],
        resources=defs.resources,
        tags={RANGE_START: span[0].isoformat(), RANGE_END: span[1].isoformat()},
    )


def seed(tmp: Path) -> None:
    """A warehouse with prices up to 2022-12-09 (the first run also stores the history)."""
    ingest(tmp, span=(dt.date(2022, 12, 5), dt.date(2022, 12, 9)))


def newer_schema(tmp: Path) -> None:
    seed(tmp)
    with connect(tmp / "w.duckdb") as con:
        con.execute("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
        con.execute("CHECKPOINT")


def write_rows(
    tmp: Path, table: str, frame: pl.DataFrame, where: str = "TRUE", params: list | None = None
) -> None:
    with transaction(tmp / "w.duckdb") as w:
        w.replace(table, frame, where, params or [])


def price_rows(tmp: Path, n: int = 2, extra: dict[str, Any] | None = None) -> pl.DataFrame:
    rows = {
        TICKER: ["AAPL"] * n,
        DATE: [dt.date(2022, 12, 19)] * n,
        "adj_close": [1.0] * n,
        "source": ["test"] * n,
        "ingested_at": [dt.datetime(2022, 12, 19, tzinfo=dt.UTC)] * n,
    }
    return pl.DataFrame({**rows, **(extra or {})})


def lookback_longer_than_history(tmp: Path) -> None:
    panel, task, folds = small_setup()  # about 330 sessions
    cfg = dataclasses.replace(LSTM_CFG, model=dataclasses.replace(LSTM_CFG.model, lookback=1000))
    LSTMForecaster(task, cfg).fit(panel, folds[0].train_end, folds[0].val)


# --- the catalogue --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    act: Callable[[Path], object]
    error: type[BaseException]
    culprit: str  # a substring of the message that names what is wrong
    setup: Callable[[Path], None] | None = None  # a warehouse to start from


def bad_config(**overrides: Any) -> Callable[[Path], None]:
    return lambda tmp: ingest(tmp, overrides)


def bad_file(mutate: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    return lambda tmp: ingest(tmp, mutate=mutate)


def universe(*tickers: str) -> dict[str, Any]:
    return {"tickers": list(tickers), "exogenous": ["^GSPC"]}


CASES = [
    # configuration
    Case("horizon_zero", bad_config(horizons=[0]), ConfigError, "horizons = (0,)"),
    Case("horizon_negative", bad_config(horizons=[-1, 5]), ConfigError, "horizons = (-1, 5)"),
    Case("horizons_unsorted", bad_config(horizons=[5, 1]), ConfigError, "horizons = (5, 1)"),
    # quantiles are fixed (the q10/q50/q90 columns): any quantiles setting is refused by name
    Case(
        "quantiles_setting",
        bad_config(quantiles=[0.1, 0.5, 1.5]),
        ConfigError,
        "setting quantiles is not configurable",
    ),
    Case(
        "quantiles_setting_default_values",
        bad_config(quantiles=[0.1, 0.5, 0.9]),
        ConfigError,
        "setting quantiles is not configurable",
    ),
    Case("empty_universe", bad_config(universe={"tickers": []}), ConfigError, "universe.tickers = ()"),
    Case(
        "ticker_with_quote",
        bad_config(universe=universe("AAPL", "KO'")),
        ConfigError,
        'invalid ticker "KO\'"',
    ),
    Case(
        "ticker_with_semicolon",
        bad_config(universe=universe("AAPL; DROP TABLE raw_prices")),
        ConfigError,
        "'AAPL; DROP TABLE raw_prices'",
    ),
    Case(
        "ticker_with_path_separator",
        bad_config(universe=universe("../../etc/passwd")),
        ConfigError,
        "'../../etc/passwd'",
    ),
    Case("ticker_with_newline", bad_config(universe=universe("AAPL\n")), ConfigError, "'AAPL\\n'"),
    Case("ticker_lower_case", bad_config(universe=universe("aapl")), ConfigError, "'aapl'"),
    Case("unknown_setting", bad_config(model={"hidden": 64}), ConfigError, "unknown setting model.'hidden'"),
    Case("unknown_section", bad_config(optimiser={"lr": 1}), ConfigError, "unknown setting 'optimiser'"),
    Case(
        "bad_toml",
        lambda tmp: ingest(tmp, config_text="horizons = [1, 5\n[model]\n"),
        ConfigError,
        "is not valid TOML",
    ),
    Case(
        "unknown_source_kind",
        bad_config(source={"kind": "bloomberg"}),
        ConfigError,
        "source.kind = 'bloomberg'",
    ),
    Case(
        "start_date_not_iso",
        bad_config(source={"start_date": "01/11/2022"}),
        ConfigError,
        "source.start_date = '01/11/2022'",
    ),
    Case(
        "source_path_with_quote",
        bad_config(source={"path": "prices'; DROP TABLE x.csv"}),
        ConfigError,
        'source.path = "prices\'; DROP TABLE x.csv"',
    ),
    Case("dropout_one", bad_config(model={"dropout": 1.0}), ConfigError, "model.dropout = 1.0"),
    Case("unknown_calendar", bad_config(calendar="MOON"), ConfigError, "calendar = 'MOON'"),
    # sources
    Case(
        "zero_price",
        bad_file(set_value("KO", BAD_DAY, ADJ_CLOSE, "0")),
        PriceDataError,
        "KO 2022-12-14 adj_close=0.0",
    ),
    Case(
        "negative_price",
        bad_file(set_value("MSFT", BAD_DAY, ADJ_CLOSE, "-3.5")),
        PriceDataError,
        "MSFT 2022-12-14 adj_close=-3.5",
    ),
    Case(
        "infinite_price",
        bad_file(set_value("AAPL", BAD_DAY, ADJ_CLOSE, "inf")),
        PriceDataError,
        "AAPL 2022-12-14 adj_close=inf",
    ),
    Case(
        "nan_price",
        bad_file(set_value("AAPL", BAD_DAY, ADJ_CLOSE, "NaN")),
        PriceDataError,
        "AAPL 2022-12-14 adj_close=nan",
    ),
    Case(
        "price_not_a_number", bad_file(set_value("KO", BAD_DAY, ADJ_CLOSE, "12,5")), PriceDataError, "'12,5'"
    ),
    Case(
        "unparseable_date",
        bad_file(set_value("KO", BAD_DAY, DATE, "2022-13-45")),
        PriceDataError,
        "'2022-13-45'",
    ),
    Case(
        "duplicate_rows",
        bad_file(lambda f: pl.concat([f, f.filter(pl.col(DATE) == BAD_DAY.isoformat())])),
        PriceDataError,
        "duplicate (ticker, date) rows: AAPL 2022-12-14",
    ),
    Case(
        "missing_session",
        bad_file(lambda f: f.filter((pl.col(TICKER) != "KO") | (pl.col(DATE) != BAD_DAY.isoformat()))),
        PriceDataError,
        "KO 2022-12-14",
    ),
    Case(
        "file_missing_price_columns",
        bad_file(lambda f: f.drop(ADJ_CLOSE)),
        PriceDataError,
        "lacks column(s) close or adj_close",
    ),
    Case(
        "file_missing_ticker",
        bad_file(lambda f: f.filter(pl.col(TICKER) != "MSFT")),
        PriceDataError,
        "no rows for MSFT",
    ),
    Case("unknown_ticker", bad_config(universe=universe("AAPL", "ZZZZ")), PriceDataError, "no rows for ZZZZ"),
    Case(
        "file_source_is_a_directory",
        lambda tmp: ingest(tmp, {"source": {"path": str(tmp)}}),
        ConfigError,
        "is a directory",
    ),
    Case(
        "future_dates",
        lambda tmp: FileSource(
            prices_csv(
                tmp / "p.csv",
                lambda f: f.with_columns(
                    pl.when(pl.col(DATE) == "2022-12-30")
                    .then(pl.lit("2099-01-05"))
                    .otherwise(pl.col(DATE))
                    .alias(DATE)
                ),
            )
        ).fetch(["KO"], dt.date(2022, 12, 1), dt.date(2099, 12, 31)),
        PriceDataError,
        "KO 2099-01-05",
    ),
    Case(
        "range_reversed",
        lambda tmp: FileSource(prices_csv(tmp / "p.csv")).fetch(
            ["KO"], dt.date(2022, 12, 16), dt.date(2022, 12, 12)
        ),
        ConfigError,
        "2022-12-16..2022-12-12",
    ),
    # warehouse
    Case(
        "warehouse_path_is_a_directory",
        lambda tmp: ingest(tmp, warehouse=str(tmp)),
        ConfigError,
        "is a directory",
    ),
    Case(
        "warehouse_path_bad_suffix",
        lambda tmp: ingest(tmp, warehouse=str(tmp / "w.csv")),
        ConfigError,
        "must end in .duckdb",
    ),
    Case(
        "warehouse_path_with_semicolon",
        lambda tmp: ingest(tmp, warehouse=str(tmp / "w;rm -rf.duckdb")),
        ConfigError,
        "w;rm -rf.duckdb",
    ),
    Case("warehouse_of_a_newer_schema", ingest, WarehouseError, "schema version 99", setup=newer_schema),
    Case(
        "warehouse_not_duckdb",
        lambda tmp: ingest(tmp),
        WarehouseError,
        "not a valid DuckDB",
        setup=lambda tmp: (tmp / "w.duckdb").write_bytes(b"PAR1 not a database" * 64),
    ),
    Case(
        "write_to_unknown_table",
        lambda tmp: write_rows(tmp, "raw_prices; DROP TABLE forecasts", price_rows(tmp, 1)),
        WarehouseError,
        "'raw_prices; DROP TABLE forecasts'",
        setup=seed,
    ),
    Case(
        "write_unknown_column",
        lambda tmp: write_rows(tmp, "raw_prices", price_rows(tmp, 1, {"evil": [1]})),
        WarehouseError,
        "['evil']",
        setup=seed,
    ),
    Case(
        "write_duplicate_keys",
        lambda tmp: write_rows(tmp, "raw_prices", price_rows(tmp, 2), "date = ?", [dt.date(2022, 12, 19)]),
        duckdb.ConstraintException,
        "AAPL",
        setup=seed,
    ),
    # model
    Case(
        "lookback_longer_than_history",
        lookback_longer_than_history,
        InsufficientDataError,
        "full lookback of 1000 sessions",
    ),
]


def warehouse_state(path: Path) -> str | None:
    """None without a readable warehouse file; else a digest of every table's rows."""
    if not path.is_file():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return hashlib.sha256(path.read_bytes()).hexdigest()  # not a database: its bytes
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        rows = {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables}
    finally:
        con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it (the asset wraps bad data in a dg.Failure)."""
    chain = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return chain


def test_the_catalogue_has_at_least_25_distinct_cases() -> None:
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_fails_clearly_before_any_write(case: Case, tmp_path: Path) -> None:
    record("bad_inputs_tried")
    warehouse = tmp_path / "w.duckdb"
    if case.setup is not None:
        case.setup(tmp_path)
    before = warehouse_state(warehouse)

    with pytest.raises(BaseException) as info:
        case.act(tmp_path)

    chain = causes(info.value)
    assert any(isinstance(e, case.error) for e in chain), f"{case.error.__name__} expected, got {chain!r}"
    message = "\n".join(str(e) for e in chain)
    assert case.culprit in message, (case.culprit, message)
    unchanged = warehouse_state(warehouse) == before
    record("losses_bad_input_written", int(not unchanged))
    assert unchanged, "the warehouse changed"
