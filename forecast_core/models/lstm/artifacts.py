"""Model artifacts: an LSTM forecaster <-> bytes (Flax msgpack), and their sha256.

The artifact holds everything prediction needs: parameters, the per-ticker scalers, the feature
columns in order, and the configuration. Loading it back gives bit-identical predictions.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flax import serialization

from forecast_core.config import config_from_dict
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.windows import Scalers

FORMAT_VERSION = 1


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def to_bytes(model: LSTMForecaster) -> bytes:
    """Serialize a fitted LSTM forecaster."""
    if model.params is None or model.scalers is None:
        raise ValueError("cannot serialize an LSTM that has not been fitted")
    s = model.scalers
    state = {
        "format_version": FORMAT_VERSION,
        "params": serialization.to_state_dict(model.params),
        "scalers": {
            "feature_mean": np.asarray(s.feature_mean),
            "feature_std": np.asarray(s.feature_std),
            "target_scale": np.asarray(s.target_scale),
        },
        "meta": json.dumps(
            {
                "tickers": list(s.tickers),
                "feature_columns": list(model.task.feature_columns),
                "config": model.cfg.to_dict(),
            }
        ),
    }
    return serialization.msgpack_serialize(state)


def from_bytes(blob: bytes) -> LSTMForecaster:
    """Load a forecaster saved by `to_bytes`."""
    state = serialization.msgpack_restore(blob)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported artifact format {state.get('format_version')!r}")
    meta = json.loads(state["meta"])
    cfg = config_from_dict(_tuples(meta["config"]))
    task = ForecastTask(tuple(meta["feature_columns"]), cfg.horizons, cfg.quantiles)
    model = LSTMForecaster(task, cfg)
    sc = state["scalers"]
    model.scalers = Scalers(
        tickers=tuple(meta["tickers"]),
        feature_mean=sc["feature_mean"],
        feature_std=sc["feature_std"],
        target_scale=sc["target_scale"],
    )
    model.params = state["params"]
    return model


def _tuples(d: dict) -> dict:
    """JSON lists back to the tuples the config uses."""
    return {
        k: _tuples(v) if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v for k, v in d.items()
    }
