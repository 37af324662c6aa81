"""What a features run must recompute, from what the warehouse holds (pure: frames in, a plan out).

The features asset records, per ticker, the price vintage and the configuration its stored
features were built from (`features_state`). Against the prices now stored:
- no state, or another feature configuration (`signature`) -> full rebuild;
- an exogenous ticker whose history a later vintage rewrote, or whose membership changed -> full
  rebuild (every ticker's market features change);
- a target ticker with no state (new), a rewritten history or a changed membership -> its whole
  history;
- a ticker with price rows stored by a later vintage (new sessions, a backfilled gap) -> from its
  first such date; new exogenous rows move every ticker's start to theirs;
- a ticker no longer configured -> its features and targets are deleted (as a full rebuild, which
  computes the configured tickers only, would leave them).
Recomputation starts at a block (`forecast_core.data.blocks`), so it equals the full recompute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data import blocks
from forecast_core.data.features import Inputs


@dataclass(frozen=True)
class Group:
    """Tickers recomputed from the same date: `since` None means their whole history."""

    since: dt.date | None
    tickers: tuple[str, ...]


@dataclass(frozen=True)
class RefreshPlan:
    mode: Literal["full", "incremental"]
    reason: str
    groups: tuple[Group, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(t for g in self.groups for t in g.tickers)


def signature(cfg: ForecastConfig, inputs: Inputs) -> str:
    """A digest of everything that decides the feature columns and their values (besides prices)."""
    spec = {
        "features": dataclasses.asdict(cfg.features),
        "ewma_lambda": cfg.ewma_lambda,
        "exogenous": list(cfg.universe.exogenous),
        "horizons": list(cfg.horizons),
        "inputs": dataclasses.asdict(inputs),
        "blocks": [blocks.BLOCK_YEARS, blocks.WARMUP_YEARS],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def membership_text(cfg: ForecastConfig) -> dict[str, str]:
    """ticker -> "first..last" (empty where open) for every configured ticker."""
    spans = {t: (first or "", last or "") for t, first, last in cfg.universe.membership}
    return {t: "..".join(spans.get(t, ("", ""))) for t in cfg.universe.all_tickers}


def state_frame(cfg: ForecastConfig, vintage: int, sig: str) -> pl.DataFrame:
    """The features_state rows after a run: every configured ticker built from `vintage`."""
    members = membership_text(cfg)
    return pl.DataFrame(
        {
            TICKER: list(members),
            "prices_vintage": [vintage] * len(members),
            "membership": list(members.values()),
            "signature": [sig] * len(members),
        },
        schema={
            TICKER: pl.String,
            "prices_vintage": pl.Int64,
            "membership": pl.String,
            "signature": pl.String,
        },
    )


def full(cfg: ForecastConfig, reason: str) -> RefreshPlan:
    return RefreshPlan("full", reason, (Group(None, tuple(cfg.universe.tickers)),))


def plan_refresh(
    cfg: ForecastConfig,
    sig: str,
    state: pl.DataFrame | None,
    dirty: pl.DataFrame,
    rewritten: set[str],
) -> RefreshPlan:
    """The plan for this run.

    state: features_state (ticker, prices_vintage, membership, signature), None where there are
    no stored features; dirty: (ticker, first_date) of price rows stored by a vintage newer than
    the state's; rewritten: tickers whose stored history such a vintage rewrote or removed.
    """
    if state is None or state.is_empty():
        return full(cfg, "no features stored yet")
    if (state["signature"] != sig).any():
        return full(cfg, "the feature configuration changed")
    members = membership_text(cfg)
    known = dict(zip(state[TICKER].to_list(), state["membership"].to_list(), strict=True))
    first_dirty = dict(zip(dirty[TICKER].to_list(), dirty["first_date"].to_list(), strict=True))
    for exo in cfg.universe.exogenous:
        if exo in rewritten:
            return full(cfg, f"the history of exogenous ticker {exo} was rewritten")
        if known.get(exo) != members[exo]:
            return full(cfg, f"exogenous ticker {exo} is new or its membership changed")
    exo_dates = [first_dirty[e] for e in cfg.universe.exogenous if e in first_dirty]
    exo_since = min(exo_dates) if exo_dates else None
    since: dict[str, dt.date | None] = {}
    for t in cfg.universe.tickers:
        if t not in known or known[t] != members[t] or t in rewritten:
            since[t] = None
            continue
        dates = [d for d in (first_dirty.get(t), exo_since) if d is not None]
        if dates:
            since[t] = min(dates)
    configured = set(cfg.universe.all_tickers)
    removed = tuple(sorted(t for t in known if t not in configured))
    by_block: dict[int | None, list[str]] = {}
    for t, d in since.items():
        by_block.setdefault(None if d is None else blocks.block_of(d), []).append(t)
    groups = tuple(
        Group(
            None if key is None else min(since[t] for t in names),  # type: ignore[type-var]
            tuple(names),
        )
        for key, names in sorted(by_block.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
    )
    reason = "new prices" if groups else "nothing new"
    return RefreshPlan("incremental", reason, groups, removed)


def first_dates(frame: pl.DataFrame) -> pl.DataFrame:
    """(ticker, first_date) of a (ticker, date) frame."""
    return frame.group_by(TICKER).agg(pl.col(DATE).min().alias("first_date"))
