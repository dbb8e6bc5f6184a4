"""The mistakes and hostile files a configuration meets: duplicate keys, deep nesting, empty documents.

Each is refused with the file, the line and the key, exit 2, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from agent.config import load_config
from agent.kernel.errors import ConfigError
from exporters.webconfig import WebConfig
from tests.helpers import GIAMSAT

SITES = """\
sites:
  - {id: tinh, name: "Tỉnh Lào Cai", level: province}
"""


def write(tmp_path: Path, text: str, name: str = "giamsat.yml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return [str(p) for p in exc.value.problems]


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GIAMSAT, "check-config", str(path)], capture_output=True, text=True, timeout=60)


def test_a_key_given_twice_names_both_lines(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        SITES
        + """\
targets:
  tcp:
    - {name: a, site: tinh, address: 127.0.0.1, port: 1}
  icmp: []
  tcp:
    - {name: b, site: tinh, address: 127.0.0.1, port: 2}
agent:
  interval: 5s
  interval: 10s
""",
    )
    assert problems(p) == [
        f"{p}:7: targets.tcp: duplicate key: also given at line 4; YAML would keep only the last one, "
        "so give it once",
        f"{p}:11: agent.interval: duplicate key: also given at line 10; YAML would keep only the last one, "
        "so give it once",
    ]
    done = check_config(p)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "targets.tcp: duplicate key: also given at line 4" in done.stderr


def test_merge_keys_and_the_same_key_in_two_mappings_are_not_duplicates(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        SITES
        + """\
x-base: &base {site: tinh, timeout: 2s}
targets:
  tcp:
    - {<<: *base, name: a, address: 127.0.0.1, port: 1}
    - {<<: *base, name: b, address: 127.0.0.1, port: 2, timeout: 1s}
""",
    )
    with pytest.raises(ConfigError) as exc:  # x-base is an unknown key, and the only problem
        load_config(p)
    assert [pr.key for pr in exc.value.problems] == ["x-base"]


def test_web_config_with_a_duplicated_user_list_is_refused(tmp_path: Path) -> None:
    # node_exporter refuses this file too: which users may log in must not depend on key order
    web = write(
        tmp_path,
        """\
basic_auth_users:
  alice: $2y$10$abcdefghijklmnopqrstuuJ5x0nV5d3vZC0VqA2cVb9y8G2kX9yq2
basic_auth_users:
  mallory: $2y$10$abcdefghijklmnopqrstuuJ5x0nV5d3vZC0VqA2cVb9y8G2kX9yq2
""",
        "web.yml",
    )
    with pytest.raises(ConfigError) as exc:
        WebConfig.load(web)
    assert [str(p) for p in exc.value.problems] == [
        f"{web}:3: basic_auth_users: duplicate key: also given at line 1; YAML would keep only the last "
        "one, so give it once"
    ]


@pytest.mark.parametrize("depth", [70, 900, 5000])
def test_deep_nesting_is_a_clean_error(tmp_path: Path, depth: int) -> None:
    p = write(tmp_path, SITES + "targets: " + "[" * depth + "]" * depth + "\n")
    [problem] = problems(p)
    assert problem.endswith("nested more than 64 levels deep")
    done = check_config(p)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr


def test_deep_mappings_are_refused_at_their_key(tmp_path: Path) -> None:
    p = write(tmp_path, SITES + "agent:" + "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(80)) + " 1\n")
    [problem] = problems(p)
    assert problem.startswith(f"{p}: agent.k0.k1...: nested more than 64 levels deep")


@pytest.mark.parametrize("text", ["", "\n\n", "# giamsat configuration\n", "---\n", "--- # truncated\n"])
def test_an_empty_document_is_not_a_configuration(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    [problem] = problems(p)
    assert "the file is empty" in problem
    assert check_config(p).returncode == 2


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n", "agent\n"])
def test_a_document_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    assert problems(p) == [f"{p}:1: (top level): the file must be a YAML mapping (key: value)"]


def test_every_missing_secret_is_reported_at_its_own_line_in_file_order(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        SITES
        + """\
collectors:
  snmp:
    auths:
      v3:
        version: 3
        username: monitor
        priv_password_file: /nonexistent/priv
        password_file: /nonexistent/auth
      v2:
        community_env: GIAMSAT_TEST_UNSET_VARIABLE
        community: inline
""",
    )
    expected = [
        f"{p}:9: collectors.snmp.auths.v3.priv_password_file: cannot read /nonexistent/priv: "
        "No such file or directory",
        f"{p}:10: collectors.snmp.auths.v3.password_file: cannot read /nonexistent/auth: "
        "No such file or directory",
        f"{p}:12: collectors.snmp.auths.v2.community_env: environment variable GIAMSAT_TEST_UNSET_VARIABLE "
        "is not set",
        f"{p}:13: collectors.snmp.auths.v2.community: give only one of community_env, community",
    ]
    assert problems(p) == expected
    # the same answer whatever the hash seed (a set used to decide which one was reported)
    for seed in ("0", "1", "2", "3"):
        env = {k: v for k, v in os.environ.items() if k != "GIAMSAT_TEST_UNSET_VARIABLE"}
        done = subprocess.run(
            [GIAMSAT, "check-config", str(p)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 2
        assert [line.strip() for line in done.stderr.splitlines()[1:]] == expected
