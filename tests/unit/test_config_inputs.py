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


def csv_problems(tmp_path: Path, csv_text: str, yaml_text: str = "sites_file: sites.csv\n") -> list[str]:
    (tmp_path / "sites.csv").write_text(csv_text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, yaml_text))
    return [str(p).removeprefix(f"{tmp_path / 'sites.csv'}: ") for p in exc.value.problems]


def test_csv_short_row_says_which_columns_are_missing(tmp_path: Path) -> None:
    found = csv_problems(tmp_path, "id,name,level,parent\ntinh,Tỉnh,province\nhuyen-a,Huyện A\n")
    # a row without its optional last column (parent) is fine; one without level is not
    assert found == ["row 3: only 2 of the 4 columns (id,name,level,parent): level missing"]


def test_csv_extra_values_are_an_error_naming_them(tmp_path: Path) -> None:
    found = csv_problems(tmp_path, "id;name;level;parent\ntinh;Tỉnh;province;\nxa-1;Xã A; B;commune;tinh\n")
    assert found == [
        "row 3: more values than the 4 columns (id,name,level,parent): extra 'tinh'; "
        "a name with a ';' in it must be quoted (\"...\")"
    ]


@pytest.mark.parametrize(
    ("site_id", "suggestion"),
    [("xã-an-bình", "xa-an-binh"), ("Đồng Văn", "dong-van"), ("phường đông kinh", "phuong-dong-kinh")],
)
def test_csv_id_with_diacritics_suggests_the_ascii_id(tmp_path: Path, site_id: str, suggestion: str) -> None:
    found = csv_problems(tmp_path, f"id,name,level,parent\ntinh,Tỉnh,province,\n{site_id},X,commune,tinh\n")
    assert found == [
        f"row 3.id: site id {site_id!r} has letters with diacritics or other non-ASCII characters: "
        f"ids go into labels and file names; use {suggestion!r}"
    ]


def test_yaml_site_id_errors_say_what_is_wrong(tmp_path: Path) -> None:
    p = write(tmp_path, 'sites:\n  - {id: "tỉnh lào cai", name: T, level: province}\n')
    assert problems(p) == [
        f"{p}:2: sites[0].id: site id 'tỉnh lào cai' has letters with diacritics or other non-ASCII "
        "characters: ids go into labels and file names; use 'tinh-lao-cai'"
    ]


def test_csv_duplicate_id_is_reported_at_the_duplicate_naming_the_first(tmp_path: Path) -> None:
    found = csv_problems(
        tmp_path,
        "id,name,level,parent\ntinh,Tỉnh,province,\nxa-1,Xã 1,commune,tinh\nxa-2,Xã 2,commune,tinh\n"
        "xa-1,Xã 1 bis,commune,tinh\n",
    )
    assert found == ["row 5.id: duplicate site id 'xa-1': first defined at row 3"]


def test_yaml_duplicate_id_is_reported_at_the_duplicate(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """\
sites:
  - {id: tinh, name: T, level: province}
  - {id: xa-1, name: A, level: commune, parent: tinh}
  - {id: xa-1, name: B, level: commune, parent: tinh}
""",
    )
    assert problems(p) == [f"{p}:4: sites[2].id: duplicate site id 'xa-1': first defined at sites[1]"]


def test_icmp_echoes_must_fit_the_timeout_the_target_inherits(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        SITES
        + """\
agent:
  timeout: 3s
collectors:
  icmp:
    interval: 10s
targets:
  icmp:
    - {name: a, site: tinh, address: 127.0.0.1, count: 5}
    - {name: b, site: tinh, address: 127.0.0.1, count: 2, interval: 2s}
    - {name: fits, site: tinh, address: 127.0.0.1, count: 7, timeout: 9s}
    - {name: fits-too, site: tinh, address: 127.0.0.1, count: 1}
""",
    )
    assert problems(p) == [
        f"{p}:10: targets.icmp[0].timeout: count, packet_interval and packet_timeout need 6s, which does "
        "not fit in the 3s timeout this target gets from collectors.icmp.timeout or agent.timeout; every "
        "probe would time out",
        f"{p}:11: targets.icmp[1].timeout: count, packet_interval and packet_timeout need 3s, which does "
        "not fit in the 2s timeout this target gets from interval (a run never outlasts its interval); "
        "every probe would time out",
    ]


# --- every file the configuration names is opened (and parsed) by check-config, as `run` will -------


def run_agent(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GIAMSAT, "run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def remote_write_with_tls(tmp_path: Path, tls: str) -> Path:
    return write(
        tmp_path,
        f"""\
agent:
  state_dir: {tmp_path / "state"}
remote_write:
  - name: central
    url: https://127.0.0.1:1/api/v1/write
    tls:
{textwrap.indent(textwrap.dedent(tls), "      ")}
""",
    )


def test_missing_remote_write_ca_file_fails_check_config_and_run_alike(tmp_path: Path) -> None:
    p = remote_write_with_tls(tmp_path, f"ca_file: {tmp_path / 'missing-ca.pem'}")
    expected = f"{p}:7: remote_write[0].tls.ca_file: cannot read {tmp_path / 'missing-ca.pem'}: No such file or directory"
    assert problems(p) == [expected]
    for done in (check_config(p), run_agent(p)):
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr


def test_tls_material_is_parsed_not_only_opened(tmp_path: Path) -> None:
    from tests.pki import CA

    (tmp_path / "pki").mkdir()
    (tmp_path / "other").mkdir()
    ca = CA(tmp_path / "pki")
    client = ca.issue("client", "xa-01", server=False)
    stranger = CA(tmp_path / "other", "another CA").issue("client", "xa-01", server=False)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    p = remote_write_with_tls(tmp_path, f"ca_file: {junk}")
    [found] = problems(p)
    assert found.startswith(f"{p}:7: remote_write[0].tls.ca_file: {junk} holds no usable PEM certificate")
    p = remote_write_with_tls(tmp_path, f"cert_file: {client.cert}\nkey_file: {stranger.key}")
    [found] = problems(p)
    assert found.startswith(
        f"{p}:7: remote_write[0].tls: cannot load the certificate and key from {client.cert}"
    )
    good = remote_write_with_tls(
        tmp_path, f"ca_file: {ca.pair.cert}\ncert_file: {client.cert}\nkey_file: {client.key}"
    )
    assert load_config(good).config.remote_write[0].tls.ca_file == ca.pair.cert


def test_ssh_key_files_are_loaded(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage_key"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    p = write(
        tmp_path,
        SITES
        + f"""\
collectors:
  ssh:
    auths:
      missing: {{username: u, key_file: {tmp_path / "nope"}}}
      garbage: {{username: u, key_file: {garbage}}}
""",
    )
    found = problems(p)
    assert found[0] == (
        f"{p}:6: collectors.ssh.auths.missing: cannot read {tmp_path / 'nope'}: No such file or directory"
    )
    assert found[1].startswith(f"{p}:7: collectors.ssh.auths.garbage: key_file: cannot load {garbage}: ")
    assert len(found) == 2


@pytest.mark.parametrize("tofu", [False, True])
def test_a_missing_known_hosts_file_is_named_unless_first_use_creates_it(tmp_path: Path, tofu: bool) -> None:
    known = tmp_path / "known_hosts"
    p = write(
        tmp_path,
        SITES
        + f"collectors:\n  ssh:\n    known_hosts_file: {known}\n    trust_on_first_use: {str(tofu).lower()}\n",
    )
    if tofu:
        load_config(p)
        return
    assert problems(p) == [
        f"{p}:5: collectors.ssh.known_hosts_file: cannot read {known}: No such file or directory; "
        "without it every host is refused (or set trust_on_first_use)"
    ]
    known.touch()
    load_config(p)


def test_a_textfile_directory_that_is_missing_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, SITES + f"collectors:\n  textfile:\n    directory: {tmp_path / 'prom'}\n")
    assert problems(p) == [
        f"{p}:5: collectors.textfile.directory: cannot read the directory {tmp_path / 'prom'}: "
        "No such file or directory"
    ]
    (tmp_path / "prom").mkdir()
    assert load_config(p).config.collector_settings("textfile")


def test_run_reports_an_unexpected_error_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent import cli
    from agent.lifecycle import Agent

    async def broken(self: Agent) -> int:
        raise RuntimeError("the buffer directory vanished")

    monkeypatch.setattr(Agent, "run", broken)
    monkeypatch.setattr(cli, "setup_logging", lambda *a: None)  # the test session's logging stays as is
    p = write(tmp_path, SITES)
    assert cli.main(["run", "--config.file", str(p)]) == 1
    err = capsys.readouterr().err
    assert "giamsat: stopped by an unexpected error: RuntimeError: the buffer directory vanished\n" in err
    assert "Traceback" not in err
