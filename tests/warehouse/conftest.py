"""The warehouse tests' fixture: a fresh warehouse file under `tmp_path`."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse import connect, ensure_schema


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh warehouse file with the schema applied."""
    path = tmp_path / "wh.duckdb"
    with connect(path) as con:
        ensure_schema(con)
    return path
