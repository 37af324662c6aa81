"""The analyst that test_concurrent_readers.py runs beside a pipeline run:
`python -m tests.reliability.reader WAREHOUSE N_TICKERS N_HORIZONS STOP_FILE` queries the read
replica (`warehouse.replica`) in a loop, one connection per round, until STOP_FILE exists, then
prints a JSON summary: queries run, rounds, snapshots seen, errors, and anomalies (a half-written
partition: a forecast session without every ticker and horizon, a price session without every
ticker, a model without its artifact).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from warehouse.replica import connect_replica, replica_path


def main() -> None:
    warehouse, n_tickers, n_horizons, stop = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        Path(sys.argv[4]),
    )
    replica = replica_path(warehouse)
    queries = rounds = 0
    snapshots: set[tuple[int, int]] = set()
    errors: list[str] = []
    anomalies: list[str] = []
    while not stop.exists():
        if not replica.exists():  # nothing published yet
            time.sleep(0.01)
            continue
        try:
            with connect_replica(warehouse) as con:
                info = os.stat(replica)
                snapshots.add((info.st_ino, info.st_mtime_ns))
                tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
                queries += 1
                for day, n in con.execute(
                    "SELECT as_of_date, count(*) FROM forecasts GROUP BY ALL HAVING count(*) <> ?",
                    [n_tickers * n_horizons],
                ).fetchall():
                    anomalies.append(f"forecasts {day}: {n} rows")
                latest = con.execute("SELECT count(*) FROM latest_forecasts").fetchone()[0]
                if latest not in (0, n_tickers * n_horizons):
                    anomalies.append(f"latest_forecasts: {latest} rows")
                for day, n in con.execute(
                    "SELECT date, count(*) FROM raw_prices GROUP BY ALL HAVING count(*) <> ?", [n_tickers + 1]
                ).fetchall():
                    anomalies.append(f"raw_prices {day}: {n} tickers")
                orphans = con.execute(
                    "SELECT count(*) FROM models ANTI JOIN model_artifacts USING (model_version)"
                ).fetchone()[0]
                if orphans:
                    anomalies.append(f"{orphans} model(s) without an artifact")
                queries += 4
                if "features" in tables:
                    con.execute("SELECT ticker, max(date) FROM features GROUP BY ALL").fetchall()
                    queries += 1
                rounds += 1
        except Exception as exc:  # noqa: BLE001 - every error is the finding, reported below
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.005)
    print(
        json.dumps(
            {
                "queries": queries,
                "rounds": rounds,
                "snapshots": len(snapshots),
                "errors": errors[:20],
                "n_errors": len(errors),
                "anomalies": anomalies[:20],
                "n_anomalies": len(anomalies),
            }
        )
    )


if __name__ == "__main__":
    main()
