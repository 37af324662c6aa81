"""Model artifacts: an LSTM forecaster <-> bytes (Flax msgpack), and their sha256.

The artifact holds everything prediction needs: the ensemble members' parameters (stacked), the
fitted volatility prior's state (its parameters are fitted at retrain time and only filtered
afterwards), the prior's z-quantiles, the input scaler and vocabulary, the feature columns in
order, and the configuration. Loading it back gives bit-identical predictions.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flax import serialization

from forecast_core.config import config_from_dict
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.prior import prior_from_state
from forecast_core.models.lstm.windows import Scalers

FORMAT_VERSION = 2


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def to_bytes(model: LSTMForecaster) -> bytes:
    """Serialize a fitted LSTM forecaster."""
    if not model.fitted:
        raise ValueError("cannot serialize an LSTM that has not been fitted")
    s = model.scalers
    state = {
        "format_version": FORMAT_VERSION,
        "params": serialization.to_state_dict(model.params),
        "scalers": {"input_mean": np.asarray(s.input_mean), "input_std": np.asarray(s.input_std)},
        "prior_z": np.asarray(model.prior_z_),
        "meta": json.dumps(
            {
                "tickers": list(s.tickers),
                "inputs": list(s.inputs),
                "feature_columns": list(model.task.feature_columns),
                "config": model.cfg.to_dict(),
                "prior": model.prior.state(),
            }
        ),
    }
    return serialization.msgpack_serialize(state)


def from_bytes(blob: bytes) -> LSTMForecaster:
    """Load a forecaster saved by `to_bytes`."""
    state = serialization.msgpack_restore(blob)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported artifact format {state.get('format_version')!r} (this code reads "
            f"{FORMAT_VERSION}): retrain the period's model (materialize its lstm_model partition)"
        )
    meta = json.loads(state["meta"])
    cfg = config_from_dict(_tuples(meta["config"]))
    task = ForecastTask(tuple(meta["feature_columns"]), cfg.horizons, cfg.quantiles)
    model = LSTMForecaster(task, cfg)
    sc = state["scalers"]
    model.scalers = Scalers(
        tickers=tuple(meta["tickers"]),
        inputs=tuple(meta["inputs"]),
        input_mean=sc["input_mean"],
        input_std=sc["input_std"],
    )
    model.prior = prior_from_state(cfg.model.sigma_prior, task, cfg, meta["prior"])
    model.prior_z_ = np.asarray(state["prior_z"])
    model.params = state["params"]
    return model


def _tuples(d: dict) -> dict:
    """JSON lists back to the tuples the config uses."""
    return {
        k: _tuples(v) if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v for k, v in d.items()
    }
