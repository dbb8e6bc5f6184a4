"""Every file in config/ passes its check exactly as its header says.

A header says ``Check it with:`` followed by the command on the same line, or by indented command lines
(``#   ...``) run one after the other. They run in a scratch directory holding a copy of config/, with
the ``giamsat`` of this checkout first on PATH, so what a header tells an operator is what is tested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import GIAMSAT, ROOT

EXAMPLES = sorted((ROOT / "config").glob("*.yml"))


def header_commands(path: Path) -> list[str]:
    """The shell commands of the file's ``Check it with`` header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*Check it with[^:]*:\s*(.*)$", line)
        if m is None:
            continue
        if m.group(1).strip():
            return [m.group(1).strip()]
        commands = []
        for follow in lines[i + 1 :]:
            if not follow.startswith("#   "):
                break
            commands.append(follow[1:].strip())
        return commands
    return []


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "example.yml",
        "probes.example.yml",
        "remote_write.example.yml",
        "sites-example.yml",
        "snmp.example.yml",
        "ssh.example.yml",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_check_config_as_its_header_says(example: Path, tmp_path: Path) -> None:
    commands = header_commands(example)
    assert commands, f"{example.name}: no 'Check it with:' command in its header"
    assert "giamsat check-config" in commands[-1], commands
    shutil.copytree(ROOT / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIAMSAT_")}
    env["PATH"] = f"{Path(GIAMSAT).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{example.name}: `{command}` exited {done.returncode}:\n{done.stderr}"
    assert re.search(r": OK \(\d+ sites, \d+ targets\)$", done.stdout.strip()), done.stdout
    assert "Traceback" not in done.stderr
