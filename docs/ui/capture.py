"""Screenshots of the Dagster UI after `make demo`, with headless Chromium, into docs/ui/.

    DAGSTER_HOME=$PWD .venv/bin/python docs/ui/capture.py [--port 3123]

Starts `python -m forecast_assets.ui` (what `make ui` runs) on the instance in $DAGSTER_HOME (the
demo's), waits until the code location has loaded, captures the pages below with
`chromium --headless --screenshot` (loopback only), and stops the server. Needs Debian's
`chromium` (`apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
REPO = "__repository__@forecast_assets.definitions"
PAGES = {
    "overview_timeline": "/overview/activity/timeline",
    "runs": "/runs",
    "forecast_job_runs": f"/locations/{REPO}/jobs/forecast_job/runs",
    "raw_prices_partitions": "/assets/raw_prices?view=partitions",
    "raw_prices_definition": "/assets/raw_prices?view=definition",
    "daily_forecasts_events": "/assets/daily_forecasts?view=events",
    "fold_evaluation_events": "/assets/fold_evaluation?view=events",
}


def _ready(port: int) -> bool:
    query = json.dumps(
        {"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=query.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
    except OSError:
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=3123)
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time each page gets to load")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is not installed (apt-get install -y chromium)")
    # Dagster's first-visit "Join the community" dialog would cover every page: mark it seen
    # (the file Dagster itself writes once a user has dismissed it; git-ignored).
    nux = Path(os.environ.get("DAGSTER_HOME", ROOT)) / ".nux" / "nux.yaml"
    nux.parent.mkdir(parents=True, exist_ok=True)
    if not nux.exists():
        nux.write_text("seen: 1\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "forecast_assets.ui", "-p", str(args.port), "-h", "127.0.0.1"],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not _ready(args.port):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the UI did not come up")
            time.sleep(2)
        for name, path in PAGES.items():
            target = OUT / f"{name}.png"
            subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1600,1000",
                    f"--virtual-time-budget={args.wait_ms}",
                    f"--screenshot={target}",
                    f"http://127.0.0.1:{args.port}{path}",
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
            print(f"{target.relative_to(ROOT)}: {path}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
