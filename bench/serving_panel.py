"""The forecast's panel read against the full modelling panel, on a `bench.universe_nightly` warehouse.

`python -m bench.serving_panel DIR full|lean` (a fresh process each, for its own peak memory)
reads, at the warehouse's last session of features, `reads.panel_known_at` (full: every feature,
targets rebuilt from every price) or `reads.serving_panel` (lean: the columns the LSTM and the
volatility baselines read, what `daily_forecasts` reads where nothing is refitted), and prints
JSON: rows, columns, seconds, the frame's size and the process's peak RSS.
"""

from __future__ import annotations

import sys
import time

from bench._subprocess import emit


def measure(folder: str, mode: str) -> dict:
    from forecast_assets import serving
    from forecast_core.config import load_config
    from warehouse import read_sql, reads

    path, cfg = f"{folder}/w.duckdb", load_config(f"{folder}/config.toml")
    day = read_sql("SELECT max(date) AS d FROM features", [], path)["d"][0]
    t = time.perf_counter()
    if mode == "full":
        panel, _ = reads.panel_known_at(path, cfg, day)
    else:
        columns = serving.serving_columns(reads.feature_table_columns(path))
        panel, _ = reads.serving_panel(path, cfg, day, columns, day)
    return {
        "mode": mode,
        "day": str(day),
        "rows": panel.height,
        "columns": panel.width,
        "seconds": round(time.perf_counter() - t, 2),
        "frame_mb": round(panel.estimated_size() / 2**20),
    }


if __name__ == "__main__":
    emit(measure(sys.argv[1], sys.argv[2]))
