"""An HTML page's text as a reader sees it (tags dropped, entities decoded, cells and blocks apart),
and its start tags: for checks of the status page, as served or as Chromium's --dump-dom gives it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCKS = frozenset(
    [
        "p",
        "div",
        "section",
        "h1",
        "h2",
        "table",
        "tr",
        "td",
        "th",
        "li",
        "ul",
        "details",
        "summary",
        "header",
        "nav",
    ]
)


class PageText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.parts))


def parse(page: str) -> PageText:
    p = PageText()
    p.feed(page)
    p.close()
    return p


def section(page: str, name: str) -> str:
    """The inside of ``<section id="name">``."""
    m = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert m, f"no section {name!r}"
    return m.group(1)
