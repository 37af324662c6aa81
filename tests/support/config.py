"""The tiny pipeline configuration and TOML files of overrides.

The tiny configuration runs every asset on three tickers of the embedded sample in seconds: a
history from 2018, two folds of 60 test sessions, a 10-session lookback and an 8-unit LSTM trained
for at most 3 epochs of 10 steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forecast_core.config import load_config

#: Overrides of `forecast_core.config` defaults, nested like the TOML file.
TINY_CONFIG: dict[str, Any] = {
    "universe": {"tickers": ["AAPL", "MSFT", "KO"], "exogenous": ["^GSPC"]},
    "source": {"start_date": "2018-01-02"},
    "folds": {"n_folds": 2, "test_sessions": 60, "val_sessions": 40, "min_train_sessions": 250},
    "model": {"lookback": 10, "hidden_size": 8},
    "train": {"steps_per_epoch": 10, "max_epochs": 3, "batch_size": 64, "patience": 2},
}


#: For the tests that start Dagster processes (`dagster dev`, an instance on PostgreSQL, run
#: launchers beside each other): two tickers and the index from 2019, two small folds, a tiny
#: LSTM, so the whole pipeline takes a minute or two in a subprocess.
PROCESS_CONFIG: dict[str, Any] = {
    "universe": {"tickers": ["AAPL", "KO"], "exogenous": ["^GSPC"]},
    "source": {"start_date": "2019-01-02"},
    "folds": {"n_folds": 2, "test_sessions": 40, "val_sessions": 40, "min_train_sessions": 250},
    "model": {"lookback": 8, "hidden_size": 8},
    "train": {"steps_per_epoch": 5, "max_epochs": 2, "batch_size": 32},
}


def _toml_value(value: Any) -> str:
    # Strings, numbers, booleans and lists of them are spelled the same in JSON and TOML.
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: { "GE" = { last = "2020-06-30" } }
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def toml_text(values: dict[str, Any]) -> str:
    """`values` (nested like `TINY_CONFIG`) as the text of a TOML file of overrides, unchecked."""
    top = [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    sections = [
        f"[{name}]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in table.items())
        for name, table in values.items()
        if isinstance(table, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(sections) + "\n"


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    """Write `values` (nested like `TINY_CONFIG`) as a TOML file of overrides, unchecked."""
    path.write_text(toml_text(values))
    return path


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """`write_toml`, then load it: fail here, naming the setting, rather than inside a Dagster run."""
    write_toml(path, values)
    load_config(path)
    return path


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, one section deep (`{"train": {"max_epochs": 1}}`)."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in overrides.items():
        if isinstance(v, dict):
            merged[k] = {**merged.get(k, {}), **v}
        else:
            merged[k] = v
    return merged


#: `PROCESS_CONFIG` as TOML text, for a configuration file a subprocess reads.
PROCESS_TOML = toml_text(PROCESS_CONFIG)
