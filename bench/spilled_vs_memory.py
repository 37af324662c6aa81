"""The LSTM on the spilled panel against the panel in memory, side by side in one process.

`python -m bench.spilled_vs_memory N [REPEATS]` builds the panel of N synthetic tickers x 20
years (`bench.scale_training.chunked_panel`), reads it whole into memory as well, and for each
repeat fits `LSTMForecaster` (4 epochs, no early stop) on the last fold and forecasts its test
slice, on the panel in memory and then on the spilled one; prints the seconds of each (the fit,
its training loop, the test forecasts). The first fit of the process also compiles; the GJR
fits of the prior are remembered after the first (`fit_gjr_remembered`), so compare the
training loops and the forecasts, not the fits.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time


def main(n_tickers: int, repeats: int = 2) -> None:
    from bench.scale_training import YEARS, chunked_panel
    from bench.synthetic import config_for, synthetic_prices
    from forecast_core.data.spilled_panel import complete_sessions
    from forecast_core.evaluation.folds import walk_forward_folds
    from forecast_core.evaluation.walk_forward import _test_forecasts
    from forecast_core.models.forecaster import ForecastTask
    from forecast_core.models.lstm.forecaster import LSTMForecaster

    cfg = config_for(n_tickers)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=4, patience=100))
    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        spilled, columns = chunked_panel(synthetic_prices(n_tickers, YEARS), cfg, 250, spill)
        in_memory = spilled.collect(spilled.columns)
        task = ForecastTask(columns, cfg.horizons, cfg.quantiles)
        fold = walk_forward_folds(complete_sessions(spilled), cfg.folds, cfg.purge_sessions)[-1]
        for _ in range(repeats):
            for name, panel in (("memory", in_memory), ("spilled", spilled)):
                t = time.perf_counter()
                model = LSTMForecaster(task, cfg).fit(panel, fold.train_end, fold.val)
                fit_s, t = time.perf_counter() - t, time.perf_counter()
                _test_forecasts(model, panel, fold)
                print(
                    f"{name}: fit {fit_s:.1f} s, training loop {model.result.seconds:.1f} s, "
                    f"test forecasts {time.perf_counter() - t:.1f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)
