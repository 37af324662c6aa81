"""`make ui`: `dagster dev -w workspace.yaml` (the UI and the daemon), stopped within seconds.

    python -m forecast_assets.ui [dagster dev options, e.g. -p 3001]

On Ctrl-C or SIGTERM `dagster dev` asks the webserver and the daemon to stop and then waits up to
60 s for each: the webserver waits for the browser's open connections to close (a UI tab keeps
one open), the daemon for its threads, so it often took close to a minute. This wrapper forwards
the signal, gives them `GRACE_S` seconds, then stops what is left of the process group (webserver,
daemon, code server, and the run workers of runs still going, which a stopped instance could not
follow anyway).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRACE_S = 15.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(ROOT / "workspace.yaml"), *args]
    proc = subprocess.Popen(command, start_new_session=True)
    stopping = {"at": None}

    def stop(signum, _frame) -> None:
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            print(f"\nstopping dagster dev (at most {GRACE_S:.0f}s) ...", flush=True)
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stopping["at"] is not None and time.monotonic() - stopping["at"] > GRACE_S:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                code = proc.wait()
                break
    # Whatever dagster dev left in its group (a code server, run workers) goes with it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0 if stopping["at"] is not None else code


if __name__ == "__main__":
    sys.exit(main())
