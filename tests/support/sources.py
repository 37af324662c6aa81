"""The dates the price-source tests share: three sessions of January 2024, a fetch range around
them, and the exchange's "today" the tests pin (tests/sources/conftest.py)."""

from __future__ import annotations

import datetime as dt

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
START, END = D1, dt.date(2024, 1, 5)
TODAY = dt.date(2024, 6, 28)
