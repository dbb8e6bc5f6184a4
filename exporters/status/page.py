"""``/``: the status page, rebuilt only when a site's state changes.

Served from the HTTP server's threads, like ``/metrics``: the agent hands over a snapshot
(``StatusSnapshot``) and the page reads nothing else, holds no lock of the agent's while it works, and
keeps one compiled template per language until the site states change. A request then costs a key
comparison, a join and the relative times; concurrent requests during a rebuild wait for it rather
than all rebuilding (``/metrics`` never waits for the page).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from exporters.status.i18n import negotiate
from exporters.status.model import PageModel, SiteTree, StatusSnapshot, build, detail_key
from exporters.status.render import Part, compile_page, fill


class StatusPage:
    """Renders ``/`` from snapshots, caching what depends only on the site states."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._tree: SiteTree | None = None  # held, so its id is never reused for another tree
        self._model: PageModel | None = None
        self._templates: dict[str, list[Part]] = {}
        self.builds = 0  # how many times the model was rebuilt (tests and the bench read it)

    def render(
        self,
        snap: StatusSnapshot,
        accept_language: str | None = None,
        asked: str | None = None,
        now: float | None = None,
        open_site: str | None = None,
    ) -> tuple[bytes, str]:
        """The page as UTF-8 and its language; ``open_site`` (``?open=``) is a subtree kept open, with
        the sites above it."""
        lang = negotiate(accept_language, snap.language, asked)
        template = self._template(snap, lang)
        opened = _with_ancestors(snap.tree, open_site) if open_site else ()
        body = fill(template, lang, time.time() if now is None else now, snap.health, opened)
        return body.encode("utf-8"), lang

    def _template(self, snap: StatusSnapshot, lang: str) -> list[Part]:
        key = detail_key(snap.sites)
        with self._lock:
            model = self._model
            if model is None or snap.tree is not self._tree or key != self._key:
                self._key, self._tree = key, snap.tree
                self._templates = {}
                model = self._model = build(snap.tree, snap.sites)
                self.builds += 1
            template = self._templates.get(lang)
            if template is None:
                template = self._templates[lang] = compile_page(model, lang)
            return template


def _with_ancestors(tree: SiteTree, key: str) -> set[str]:
    """``key`` (a site id, or ``<province id>/direct``) and the subtrees above it."""
    opened = {key}
    sid: str | None = key.split("/", 1)[0]
    while sid is not None and sid in tree.rows and len(opened) <= len(tree.rows):
        opened.add(sid)
        sid = tree.rows[sid].parent
    return opened
