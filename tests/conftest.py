"""Suite-wide rules: in CI (root, every server installed) a skipped test is a failure."""

from __future__ import annotations

import os

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped:
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; in CI every test must run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
