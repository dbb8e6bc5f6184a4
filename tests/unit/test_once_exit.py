"""``giamsat once`` exit codes are the ones its --help lists: nothing to collect is a usage error (2),
not an empty success."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helpers import GIAMSAT

SITES = "sites:\n  - {id: tinh, name: T, level: province}\n"


def once(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GIAMSAT, "once", "--config.file", str(cfg), *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_exit_codes() -> None:
    done = subprocess.run([GIAMSAT, "once", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "exit status:" in done.stdout
    for line in ("  0  every job ran", "  1  a collector failed", "  2  the configuration is invalid"):
        assert line in done.stdout


@pytest.mark.parametrize(
    ("extra", "kind", "why"),
    [
        ("", "snmp", "it has no targets (targets.snmp is empty or missing)"),
        ("targets:\n  tcp: []\n", "tcp", "it has no targets (targets.tcp is empty or missing)"),
        ("collectors:\n  host:\n    enabled: false\n", "host", "collectors.host.enabled is false"),
    ],
)
def test_a_collector_with_nothing_to_collect_exits_2(tmp_path: Path, extra: str, kind: str, why: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(SITES + extra)
    done = once(cfg, "--collector", kind)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"{cfg}: nothing to collect for {kind}: {why}\n"


def test_a_down_target_is_data_and_exits_0(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        SITES
        + textwrap.dedent(
            """\
            targets:
              tcp:
                - {name: closed, site: tinh, address: 127.0.0.1, port: 9, timeout: 2s}
            """
        )
    )
    done = once(cfg, "--collector", "tcp")
    assert done.returncode == 0, done.stderr
    assert 'probe_success{probe="tcp",site="tinh",target="closed"} 0.0' in done.stdout


def test_an_invalid_configuration_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(SITES + "agent: {intervall: 5s}\n")
    done = once(cfg)
    assert done.returncode == 2 and "agent.intervall: unknown key" in done.stderr
