"""The DuckDB warehouse: schema and views as SQL, connections, reads and transactional writes."""

from warehouse.db import SCHEMA_VERSION, connect, ensure_schema, warehouse_path
from warehouse.io import read_sql, read_table, transaction

__all__ = [
    "SCHEMA_VERSION",
    "connect",
    "ensure_schema",
    "read_sql",
    "read_table",
    "transaction",
    "warehouse_path",
]
