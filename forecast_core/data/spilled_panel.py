"""The modelling panel on disk, read a few columns at a time: what keeps retraining and the fold
evaluation's memory from growing with every feature column of the universe.

A `SpilledPanel` is the panel (`panel.assemble_panel`'s frame, sorted by ticker and date) written
as one Parquet file per chunk of whole tickers, the chunks in ticker order. Every forecaster
narrows the panel to the columns it reads before anything else (`forecaster.panel_columns`);
given a `SpilledPanel`, that narrowing reads only those columns from disk (and, for a slice of
dates, only those rows), so the whole panel of every feature is never in memory at once. A model
that must read every feature (`ridge`) reads it a chunk of tickers at a time (`chunks`).

The job spills to a `tempfile.TemporaryDirectory` (under `TMPDIR`), removed when the step ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from forecast_core.columns import DATE, TICKER

#: Tickers per file at most: the smallest chunk a reader holds.
FILE_TICKERS = 100
#: Ticker-columns a chunk holds (whole files, one at least; about 40 KB per ticker-column over 20
#: years): 2,000 tickers of a volatility model's 5 columns (its recursions run across a chunk's
#: tickers at once, so their Python loop over the sessions runs once per chunk), 400 tickers of
#: ridge's 26 (keys, targets, the default 22 features).
CHUNK_TICKER_COLUMNS = 10_000


@dataclass(frozen=True)
class SpilledPanel:
    """Parquet `files` of whole tickers (`tickers[i]`: the sorted tickers of `files[i]`), each
    sorted by (ticker, date), in ticker order; `columns`: the panel's columns, in order. With
    `only`, the panel restricted to those tickers (`restrict`)."""

    files: tuple[Path, ...]
    tickers: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...]
    schema: dict[str, pl.DataType] = field(compare=False)
    only: frozenset[str] | None = None

    @classmethod
    def write(cls, parts: Iterable[pl.DataFrame], directory: Path) -> SpilledPanel:
        """Spill `parts` (panels of disjoint tickers, each sorted by ticker and date, in ticker
        order) to `directory`, a file per `FILE_TICKERS` tickers; an empty part is kept only if
        every part is empty, so that the panel still has its columns."""
        directory.mkdir(parents=True, exist_ok=True)
        files, tickers, schema, last = [], [], None, None
        for part in parts:
            schema = schema or dict(part.schema)
            if part.height == 0 and files:
                continue
            runs = part[TICKER].rle().struct.unnest()
            names, lengths = tuple(runs["value"].to_list()), runs["len"].to_list()
            if names and last is not None and names[0] <= last:
                raise ValueError(f"panel parts are not in ticker order: {names[0]!r} after {last!r}")
            last = names[-1] if names else last
            offset = 0
            for i in range(0, max(len(names), 1), FILE_TICKERS):
                rows = sum(lengths[i : i + FILE_TICKERS])
                path = directory / f"part-{len(files):05d}.parquet"
                part.slice(offset, rows).write_parquet(path, statistics=True)
                files.append(path)
                tickers.append(names[i : i + FILE_TICKERS])
                offset += rows
        if schema is None:
            raise ValueError("a spilled panel needs at least one part (an empty frame gives its columns)")
        return cls(tuple(files), tuple(tickers), tuple(schema), schema)

    @property
    def all_tickers(self) -> list[str]:
        """Every ticker of the panel (of `only`, where restricted), sorted."""
        return [t for names in self.tickers for t in names if self.only is None or t in self.only]

    def restrict(self, tickers: Sequence[str]) -> SpilledPanel:
        """The same panel with only the rows of `tickers` (no copy on disk)."""
        keep = frozenset(tickers) if self.only is None else self.only & frozenset(tickers)
        return replace(self, only=keep)

    def _scans(self, columns: Sequence[str]) -> Iterator[pl.LazyFrame]:
        """A scan per chunk: consecutive files of about `CHUNK_TICKER_COLUMNS` ticker-columns."""
        wanted = [c for c in dict.fromkeys(columns) if c in self.schema]
        per_chunk = max(1, CHUNK_TICKER_COLUMNS // max(len(wanted), 1))
        group: list[Path] = []
        count = 0
        for path, names in zip(self.files, self.tickers, strict=True):
            if self.only is not None and not self.only.intersection(names):
                continue
            group.append(path)
            count += len(names)
            if count >= per_chunk:
                yield self._scan(group, wanted)
                group, count = [], 0
        if group:
            yield self._scan(group, wanted)

    def _scan(self, files: list[Path], columns: list[str]) -> pl.LazyFrame:
        scan = pl.concat([pl.scan_parquet(f).select(columns) for f in files], how="vertical_relaxed")
        if self.only is not None:
            scan = scan.filter(pl.col(TICKER).is_in(sorted(self.only)))
        return scan

    def chunks(
        self, columns: Sequence[str], start: dt.date | None = None, end: dt.date | None = None
    ) -> Iterator[pl.DataFrame]:
        """The panel's `columns` (those it has, keys first if asked for) a chunk of whole tickers
        at a time (whole files, about `CHUNK_TICKER_COLUMNS` ticker-columns), in (ticker, date)
        order; with `start`/`end`, only rows dated in [start, end]."""
        for scan in self._scans(columns):
            if start is not None:
                scan = scan.filter(pl.col(DATE) >= start)
            if end is not None:
                scan = scan.filter(pl.col(DATE) <= end)
            yield scan.collect()

    def collect(
        self, columns: Sequence[str], start: dt.date | None = None, end: dt.date | None = None
    ) -> pl.DataFrame:
        """`chunks` as one frame (the columns asked for of every ticker: only a few of them)."""
        parts = list(self.chunks(columns, start, end))
        if not parts:
            return pl.DataFrame(
                schema={c: self.schema[c] for c in dict.fromkeys(columns) if c in self.schema}
            )
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed", rechunk=False)

    def column(self, name: str) -> pl.Series:
        return self.collect([name]).get_column(name)

    @property
    def height(self) -> int:
        return sum(scan.select(pl.len()).collect().item() for scan in self._scans([TICKER]))


#: A panel as the forecasters take it: in memory, or spilled.
Panel = pl.DataFrame | SpilledPanel


def panel_chunks(panel: Panel, columns: Sequence[str]) -> Iterator[pl.DataFrame]:
    """`columns` of the panel (those it has) a chunk of whole tickers at a time: one chunk for a
    frame in memory, a few files at a time for a spilled one (`SpilledPanel.chunks`)."""
    if isinstance(panel, SpilledPanel):
        yield from panel.chunks(columns)
    else:
        yield panel.select(c for c in dict.fromkeys(columns) if c in panel.columns)


def panel_column(panel: Panel, name: str) -> pl.Series:
    """One column of the panel (the only one read from a spilled panel)."""
    return panel.column(name) if isinstance(panel, SpilledPanel) else panel.get_column(name)


def complete_sessions(panel: Panel) -> list[dt.date]:
    """The dates on which some row of the panel has no null (features and every target known),
    sorted: what the walk-forward folds are laid out over. Read a chunk of tickers at a time."""
    dates: set[dt.date] = set()
    for part in panel_chunks(panel, panel.columns):
        dates.update(part.drop_nulls()[DATE].unique().to_list())
    return sorted(dates)


def panel_tickers(panel: Panel) -> list[str]:
    """The panel's tickers, sorted."""
    if isinstance(panel, SpilledPanel):
        return panel.all_tickers
    return panel[TICKER].unique().sort().to_list()


def restrict(panel: Panel, tickers: Sequence[str]) -> Panel:
    """The panel's rows of `tickers` (a filtered copy in memory; a view of a spilled panel)."""
    if isinstance(panel, SpilledPanel):
        return panel.restrict(tickers)
    return panel.filter(pl.col(TICKER).is_in(list(tickers)))
