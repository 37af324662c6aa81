"""Dagster metadata the assets share: the warehouse tables' column schemas (from the COMMENTs of
warehouse/schema.sql), tables as Dagster table metadata, charts as images, code references.

The column schemas are read once, at definition time, by applying schema.sql to an in-memory
DuckDB and reading `duckdb_tables()` / `duckdb_columns()` (name, type, nullability, comment), so
the Definition tab shows every warehouse table's columns before anything is materialized, and the
materializations carry the same `dagster/column_schema`.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

SCHEMA_SQL = Path(__file__).resolve().parents[1] / "warehouse" / "schema.sql"
ROOT = Path(__file__).resolve().parents[1]
#: Owner and tags every asset carries (the UI's Owners and Tags columns, asset selection by tag).
OWNERS = ["team:forecasting"]


@functools.cache
def _catalog() -> tuple[dict[str, str], dict[str, list[tuple[str, str, bool, str | None]]]]:
    con = duckdb.connect()
    try:
        con.execute(SCHEMA_SQL.read_text())
        tables = dict(
            con.sql("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
        )
        columns: dict[str, list] = {}
        for table, name, dtype, nullable, comment in con.sql(
            "SELECT table_name, column_name, data_type, is_nullable, comment FROM duckdb_columns() "
            "WHERE schema_name = 'main' ORDER BY table_name, column_index"
        ).fetchall():
            columns.setdefault(table, []).append((name, dtype, nullable, comment))
    finally:
        con.close()
    return tables, columns


def table_description(table: str) -> str | None:
    """The table's COMMENT in schema.sql."""
    return _catalog()[0].get(table)


def column_schema(table: str) -> dg.TableSchema:
    """The warehouse table's columns (name, DuckDB type, NOT NULL, COMMENT) as a TableSchema."""
    columns = _catalog()[1].get(table)
    if not columns:
        raise KeyError(f"table {table} is not in {SCHEMA_SQL}")
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=dtype,
                description=comment,
                constraints=dg.TableColumnConstraints(nullable=nullable),
            )
            for name, dtype, nullable, comment in columns
        ]
    )


def frame_schema(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    """A polars frame's columns (for `features`, whose columns follow the configuration)."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(dtype), description=descriptions.get(name))
            for name, dtype in frame.schema.items()
        ]
    )


def table_metadata(table: str) -> dict[str, dg.MetadataValue]:
    """Definition metadata of an asset that writes `table`: its column schema and table name."""
    return {
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(table)),
        "dagster/table_name": dg.MetadataValue.text(f"warehouse.main.{table}"),
    }


def row_count(n: int) -> dict[str, dg.MetadataValue]:
    return {"dagster/row_count": dg.MetadataValue.int(int(n))}


def _cell(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_float():
        return "float"
    if dtype.is_integer():
        return "int"
    if dtype == pl.Boolean:
        return "bool"
    return "string"


def frame_table(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> dg.MetadataValue:
    """A (small) frame as Dagster table metadata, shown as a table in the UI."""
    if columns is not None:
        frame = frame.select([c for c in columns if c in frame.columns])
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=n, type=_column_type(t)) for n, t in frame.schema.items()]
    )
    records = [dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in frame.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=schema)


def image(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG as Markdown metadata (the UI renders it; there is no image metadata type)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def add_partition_metadata(
    context: dg.AssetExecutionContext, per_partition: dict[str, dict[str, dg.MetadataValue]]
) -> None:
    """Metadata of each partition of the run's range, on that partition's materialization only.

    Equivalent to `context.add_asset_metadata(metadata, partition_key=key)` per key, which on a
    range of N partitions costs O(N) each (it lists the range's keys and copies the accumulated
    metadata on every call): 8,313 sessions took minutes. This records them in one pass, through
    the step's metadata accumulator (Dagster 1.13 internals, pinned in pyproject), and falls back
    to the public call where those internals are not there."""
    keys = set(context.partition_keys)
    unknown = sorted(set(per_partition) - keys)
    if unknown:
        raise ValueError(f"partitions {unknown[:5]} are not in the run's range")
    try:
        from dagster._core.execution.context.metadata_logging import (
            AssetMetadataHandle,
            OutputMetadataAccumulator,
        )

        step = context.op_execution_context._step_execution_context  # noqa: SLF001
        accumulated = step._metadata_accumulator  # noqa: SLF001
        merged = dict(accumulated.per_output_metadata)
    except (AttributeError, ImportError):
        for key, metadata in per_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return
    asset_key = context.assets_def.key
    for key, metadata in per_partition.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # noqa: SLF001


def code_references(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with code references to the file and line of their functions (the UI's "Open
    in editor" links; `link_code_references_to_git` could turn them into repository links)."""
    return list(dg.with_source_code_references(list(assets)))
