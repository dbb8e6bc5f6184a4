"""The agent's exception tree, in one place so callers know what to catch.

- ``GiamsatError``: base of everything the agent raises on purpose.
  - ``ConfigError``: a configuration (or inventory) file is invalid; carries every problem found.
  - ``CollectError``: a collector could not produce a result for a target. Its ``reason`` is a short
    token from a bounded set, safe to use as a label value; ``message`` is for logs only.
  - ``StartupError``: the agent cannot start (port in use, missing permission); names the remedy.
"""

from __future__ import annotations

from dataclasses import dataclass


class GiamsatError(Exception):
    """Base class for errors the agent raises deliberately."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file: where, and what."""

    file: str
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = self.key or "(top level)"
        return f"{where}: {key}: {self.message}"


class ConfigError(GiamsatError):
    """A configuration file is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CollectError(GiamsatError):
    """A collection failed. ``reason`` is a bounded label value; ``message`` goes to logs only."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        self.message = message or reason
        super().__init__(self.message)


class StartupError(GiamsatError):
    """The agent cannot start; the message says how to fix it."""
