"""The volatility prior the LSTM learns on top of: a classical volatility model's scale per row.

The network does not forecast returns in their own units. For each row t and horizon h a prior
gives the h-session scale `scale_h(t)` (the standard deviation it forecasts for the return from t
to t + h, known after the close of t), the network predicts quantiles of the standardised target
`z = R_h / scale_h(t)`, and its forecasts are rescaled, `q_tau(R_h) = scale_h(t) * q_tau(z)`. The
priors (`model.sigma_prior`):

- `ewma`:  RiskMetrics, `scale_h = sigma_t * sqrt(h)` (the `ewma_vol` baseline's sigma);
- `gjr`:   GJR-GARCH(1,1) per ticker (the `gjr_garch` baseline), `scale_h = sqrt(sum of the h
           one-step variance forecasts)`;
- `blend`: the `vol_blend` baseline's combination of the two.

`standardised_quantiles` turns training z values into the prior's empirical z-quantiles, the
head's starting point: an untrained network returns exactly the prior's bands.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import numpy as np
import polars as pl

from forecast_core.config import ForecastConfig
from forecast_core.models.forecaster import ForecastTask, in_key_order
from forecast_core.models.volatility import (
    PanelVariances,
    standardised_quantiles,  # noqa: F401 - the head's start
)

#: `model.sigma_prior` -> the baseline whose scale the LSTM standardises by.
PRIOR_BASELINES = {"ewma": "ewma_vol", "gjr": "gjr_garch", "blend": "vol_blend"}


class ScaleModel(Protocol):
    """A fitted volatility baseline that gives every panel row its h-session scale."""

    name: str

    def fit(self, panel: pl.DataFrame, train_end: dt.date, val=None) -> ScaleModel: ...

    def scales(self, panel: pl.DataFrame) -> np.ndarray:
        """`<float64>[rows, H]` for the panel's rows in (ticker, date) order; NaN in warm-up."""
        ...

    def scales_and_state(
        self, panel: pl.DataFrame, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, PanelVariances]:
        """`scales` and the variance recursions after every row, continued from `carry` (per
        ticker, `volatility.CARRY_COLUMNS`) where given."""
        ...

    def state(self) -> dict: ...


def make_prior(kind: str, task: ForecastTask, cfg: ForecastConfig) -> ScaleModel:
    """The unfitted volatility baseline that `model.sigma_prior = kind` names."""
    from forecast_core.models.baselines import make_baseline

    return make_baseline(PRIOR_BASELINES[kind], task, cfg)


def prior_from_state(kind: str, task: ForecastTask, cfg: ForecastConfig, state: dict) -> ScaleModel:
    """A prior restored from `state()` (parameters fitted at retrain time, never refitted)."""
    from forecast_core.models.baselines import BASELINES

    return BASELINES[PRIOR_BASELINES[kind]].from_state(task, cfg, state)


def sorted_panel(panel: pl.DataFrame) -> pl.DataFrame:
    """The panel in (ticker, date) order, the order every `scales` array follows."""
    return in_key_order(panel)
