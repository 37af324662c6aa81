"""Generated sections of the documentation, and the one writer that puts them in their pages.

A generated section is the text between `<!-- name:start -->` and `<!-- name:end -->` in a page
under docs/. Three commands render them from measured results, and all three write through
`write_sections`, which replaces what is between a section's markers and nothing else:

    python -m forecast_assets.report --docs docs/     leaderboard, backtest-table, demo-timings
    python -m bench.report --docs docs/               bench, universe, training-scale, fold-publication
    python -m tests.reliability.report --docs docs/   reliability
    python -m bench.lstm_study --report docs/studies/*.json --docs docs/   lstm-study

`--docs` takes the docs folder (each section goes to its page in `PAGES`) or one Markdown file
(every section of the command goes there, which must have its markers).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: section name -> the page under docs/ that holds it
PAGES: dict[str, str] = {
    "leaderboard": "evaluation.md",
    "backtest-table": "evaluation.md",
    "lstm-study": "evaluation.md",
    "demo-timings": "performance.md",
    "bench": "performance.md",
    "universe": "performance.md",
    "training-scale": "performance.md",
    "fold-publication": "performance.md",
    "reliability": "reliability.md",
}


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section `name`."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str, where: str = "the page") -> str:
    """`text` with what is between section `name`'s markers replaced by `body`.

    Raises `SystemExit` naming the page unless each marker occurs exactly once, start before end."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"{where} needs exactly one {start} ... {end} section")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return head + start + "\n" + body.strip("\n") + "\n" + end + tail


def page_for(target: str | os.PathLike[str], name: str) -> Path:
    """Where section `name` goes: `target` itself if it is a file, else its page under `target`."""
    target = Path(target)
    if target.is_dir():
        if name not in PAGES:
            raise SystemExit(f"no docs page is known for section {name!r}: pass the page itself")
        return target / PAGES[name]
    return target


def _updated_pages(target: str | os.PathLike[str], sections: Mapping[str, str]) -> dict[Path, str]:
    pages: dict[Path, str] = {}
    for name, body in sections.items():
        page = page_for(target, name)
        if page not in pages:
            if not page.is_file():
                raise SystemExit(f"{page} does not exist")
            pages[page] = page.read_text()
        pages[page] = replace_section(pages[page], name, body, where=str(page))
    return pages


def check_sections(target: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Raise `SystemExit` now, before a long run, if `write_sections` could not write `names`."""
    _updated_pages(target, dict.fromkeys(names, ""))


def write_sections(target: str | os.PathLike[str], sections: Mapping[str, str]) -> list[Path]:
    """Write every `name -> body` of `sections` between its markers, in the docs folder or the one
    page `target`. Every page is checked before any is written, so a missing marker changes
    nothing. Returns the pages written."""
    pages = _updated_pages(target, sections)
    for page, text in pages.items():
        page.write_text(text)
    return list(pages)


def add_docs_argument(parser: argparse.ArgumentParser) -> None:
    """The `--docs` option every report command shares."""
    parser.add_argument(
        "--docs",
        type=Path,
        metavar="DOCS",
        help="write the sections into the docs folder DOCS (each into its page; e.g. docs/) or into "
        "the one Markdown file DOCS, instead of printing them",
    )
