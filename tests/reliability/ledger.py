"""What the reliability suite tried and what it saw, counted for the README (see report.py).

`record("faults_simulated")` adds one; counters named `losses_*` count broken guarantees (a partial
write, a mixed state after a crash, a reader error, a half-written partition, a run that differs on
re-run): the goal is zero, and each test asserts it after recording it.
"""

from __future__ import annotations

import collections

#: counter name -> count, for this pytest session (one process: the report runs without xdist).
LEDGER: collections.Counter[str] = collections.Counter()


def record(name: str, n: int = 1) -> None:
    LEDGER[name] += n
