"""Configured secrets kept out of text that came from outside before it is logged or exported.

A receiver or a proxy may quote the request's ``Authorization`` header in its error body; a device may
echo a community or password in its answer. Every secret a configuration holds is registered here when
its model is built (``agent.kernel.model.Model``), with the forms it travels in: as is, base64 (with and
without padding, standard and URL-safe), percent-encoded, and ``user:password`` in base64 as HTTP basic
auth sends it. ``redact`` replaces each with ``<secret>``, and the value after ``Basic``/``Bearer``
whatever it is. The log formatter runs every line through ``redact``; the exposition runs every label
value through ``redact_value`` (registered forms only).
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import quote

MASK = "<secret>"
#: Shorter secrets are not registered: masking every "abc" would garble ordinary text. (A secret that
#: is a word, the community "public", is masked wherever that word appears in outside text.)
MIN_LENGTH = 4
#: Credentials after an authentication scheme, whatever they are (a secret from elsewhere, too); only a
#: token that looks random (a digit, + or /, or a capital after its first letter) so prose is kept.
_SCHEME = r"(?P<scheme>\b(?:Basic|basic|BASIC|Bearer|bearer|BEARER)\s+)(?P<token>[A-Za-z0-9+/._~-]{8,}=*)(?![\w+/=.~-])"

_lock = threading.Lock()
_forms: set[str] = set()
_generation = 0
_pattern: re.Pattern[str] = re.compile(_SCHEME)
_secret_pattern: re.Pattern[str] | None = None


def _encodings(raw: bytes) -> set[str]:
    std = base64.b64encode(raw).decode("ascii")
    url = base64.urlsafe_b64encode(raw).decode("ascii")
    return {std, std.rstrip("="), url, url.rstrip("=")}


def register_secret(secret: str, user: str | None = None) -> None:
    """Know ``secret`` (and ``user:secret`` for basic auth) from now on, in every form it travels in."""
    if len(secret) < MIN_LENGTH:
        return
    forms = {secret, quote(secret, safe="")} | _encodings(secret.encode("utf-8"))
    if user is not None:
        forms |= _encodings(f"{user}:{secret}".encode())
    global _pattern, _secret_pattern, _generation
    with _lock:
        if forms <= _forms:
            return
        _forms.update(forms)
        _generation += 1
        # Longest first, so a form is never cut by a shorter one inside it.
        alternation = "|".join(re.escape(f) for f in sorted(_forms, key=len, reverse=True))
        _secret_pattern = re.compile(alternation)
        _pattern = re.compile(f"{alternation}|{_SCHEME}")


def generation() -> int:
    """Changes whenever a secret is registered: a label value redacted before may read differently now."""
    return _generation


def redact(text: str) -> str:
    """``text`` with every registered secret form and every Basic/Bearer credential replaced by MASK."""
    return _pattern.sub(_mask, text)


def _mask(m: re.Match[str]) -> str:
    scheme, token = m.group("scheme"), m.group("token")
    if scheme is None:
        return MASK
    if any(c.isdigit() or c in "+/" for c in token) or any(c.isupper() for c in token[1:]):
        return scheme + MASK
    return m.group(0)


def redact_value(text: str) -> str:
    """Registered secret forms only (for label values: cheap when none is registered)."""
    pattern = _secret_pattern
    return text if pattern is None else pattern.sub(MASK, text)
