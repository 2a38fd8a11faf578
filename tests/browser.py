"""Debian's Chromium, headless, for the tests that look at a page as a person would: the
DOM it rendered, and a screenshot. Offline: every host name fails to resolve, so a page
that needed anything from the network would show it."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: scripts/setup installs it (apt-get install chromium)",
)


def _run(page: Path, profile: Path, *flags: str) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-extensions", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
            *flags, page.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def rendered(page: Path, profile: Path) -> str:
    """The DOM of `page` once Chromium has loaded it."""
    return _run(page, profile, "--dump-dom")


def screenshot(page: Path, profile: Path, out: Path, width: int = 900, height: int = 2400) -> None:
    """A PNG of `page` at `width` x `height` CSS pixels."""
    _run(page, profile, f"--screenshot={out}", f"--window-size={width},{height}",
         "--hide-scrollbars")  # fmt: skip
    assert out.stat().st_size > 0


class Page(HTMLParser):
    """What a rendered report shows: the text of each element marked `data-fact`, and the
    cells of each table row marked with `data-<key>`."""

    def __init__(self, html: str, *row_keys: str) -> None:
        super().__init__()
        self.facts: dict[str, list[str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self._row_keys = row_keys
        self._open: list[tuple[str, str, list[str]]] = []  # (tag, fact, text)
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr":
            keys = [f"{key}={found[f'data-{key}']}" for key in self._row_keys if
                    f"data-{key}" in found]  # fmt: skip
            if keys:
                self._row = []
                self.rows.setdefault(" ".join(keys), []).append(self._row)
        if tag == "td" and self._row is not None:
            self._cell = []
        if "data-fact" in found:
            self._open.append((tag, str(found["data-fact"]), []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._row = None
        if self._open and self._open[-1][0] == tag:
            _, fact, text = self._open.pop()
            self.facts.setdefault(fact, []).append(" ".join("".join(text).split()))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, _, text in self._open:
            text.append(data)


def number(shown: str) -> float:
    """A number as the page prints it: '1,234.56 EUR', '80.0 %', '-3.20'."""
    return float(shown.split(maxsplit=1)[0].replace(",", ""))
