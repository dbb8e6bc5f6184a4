"""Config and inventory errors: every class of mistake names the file, the line, the key and the problem."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import load_config
from agent.inventory import Level
from agent.kernel.errors import ConfigError
from tests.helpers import GIAMSAT

GOOD_SITES = """
sites:
  - {id: tinh, name: "Tỉnh Lào Cai", level: province}
  - {id: huyen-a, name: "Huyện A", level: district, parent: tinh}
  - {id: xa-1, name: "Xã Bản Phố", level: commune, parent: huyen-a}
  - {id: phuong-2, name: "Phường Cốc Lếu", level: commune, parent: tinh}
"""


def write(tmp_path: Path, text: str, name: str = "giamsat.yml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    return [str(p) for p in exc.value.problems]


def test_valid_config_keeps_vietnamese_names_and_optional_district_tier(tmp_path: Path) -> None:
    loaded = load_config(
        write(tmp_path, GOOD_SITES + "agent: {site: tinh, interval: 1m30s, timeout: 500ms}\n")
    )
    inv = loaded.inventory
    assert inv.sites["xa-1"].name == "Xã Bản Phố"
    assert inv.sites["phuong-2"].parent == "tinh"  # commune directly under the province (2025 reform)
    assert inv.sites["huyen-a"].level is Level.district
    assert inv.ancestors("xa-1") == ["huyen-a", "tinh"]
    assert sorted(inv.descendants("tinh")) == ["huyen-a", "phuong-2", "xa-1"]
    assert loaded.config.agent.interval == 90.0
    assert loaded.config.agent.timeout == 0.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "agent:\n  intervall: 30s\n",
            ["giamsat.yml:2: agent.intervall: unknown key; check its spelling"],
            id="unknown-key",
        ),
        pytest.param(
            "agent:\n  interval: soon\n",
            ["giamsat.yml:2: agent.interval: expected a duration such as 30s, 5m or 1h30m, got 'soon'"],
            id="bad-duration",
        ),
        pytest.param(
            "agent:\n  interval: 0s\n",
            ["giamsat.yml:2: agent.interval: duration must be greater than zero"],
            id="zero-duration",
        ),
        pytest.param(
            "agent:\n  listen_address: localhost\n",
            ["giamsat.yml:2: agent.listen_address: expected HOST:PORT"],
            id="bad-listen-address",
        ),
        pytest.param(
            GOOD_SITES + "  - {id: xa-1, name: dup, level: commune, parent: tinh}\n",
            ["sites[4].id: duplicate site id 'xa-1'"],
            id="duplicate-id",
        ),
        pytest.param(
            GOOD_SITES + "  - {id: xa-9, name: X, level: commune, parent: huyen-z}\n",
            ["giamsat.yml:7: sites[4].parent: unknown parent site 'huyen-z'"],
            id="unknown-parent",
        ),
        pytest.param(
            GOOD_SITES + "  - {id: huyen-b, name: B, level: district, parent: xa-1}\n",
            ["sites[4].level: a district cannot be under a commune ('xa-1')"],
            id="level-not-below-parent",
        ),
        pytest.param(
            "sites:\n  - {id: a, name: A, level: district, parent: b}\n  - {id: b, name: B, level: district, parent: a}\n",
            ["parent cycle: "],
            id="cycle",
        ),
        pytest.param(
            "sites:\n  - {id: a, name: A, level: county}\n",
            ["giamsat.yml:2: sites[0].level: level must be one of province, district, commune, got 'county'"],
            id="bad-level",
        ),
        pytest.param(
            "sites:\n  - {id: 'bad id!', name: A, level: province}\n",
            ["sites[0].id: site id 'bad id!' has characters other than ASCII letters"],
            id="bad-id",
        ),
        pytest.param(
            'sites:\n  - {id: "tinh\\n", name: A, level: province}\n',
            ["sites[0].id: site id 'tinh\\n' has characters other than ASCII letters"],
            id="id-with-trailing-newline",
        ),
        pytest.param(
            "sites:\n  - {name: A, level: province}\n",
            ["sites[0].id: required key is missing"],
            id="missing-id",
        ),
        pytest.param(
            GOOD_SITES + "agent: {site: nowhere}\n",
            ["agent.site: unknown site 'nowhere'"],
            id="agent-site-unknown",
        ),
        pytest.param(
            "sites:\n  - {id: a, name: A, level: province, uplinks: [wan]}\n",
            ["sites[0].uplinks[0]: no target is named 'wan'"],
            id="unknown-uplink",
        ),
        pytest.param("agent: [1, 2\n", ["giamsat.yml:2: (top level): invalid YAML"], id="yaml-syntax"),
        pytest.param(
            "- just\n- a list\n",
            ["giamsat.yml:1: (top level): the file must be a YAML mapping"],
            id="not-a-mapping",
        ),
        pytest.param(
            "collectors:\n  host:\n    parts: [cpu, gpu]\n",
            ["giamsat.yml:3: collectors.host.parts: unknown host part(s) ['gpu']"],
            id="collector-setting",
        ),
        pytest.param(
            "collectors:\n  host:\n    netdev_device_exclude: '^(lo'\n",
            ["collectors.host.netdev_device_exclude: invalid regular expression: missing )"],
            id="bad-regex",
        ),
        pytest.param(
            GOOD_SITES + "targets:\n  ssh:\n    - {name: h1, site: xa-1, address: 127.0.0.1, auth: nobody}\n",
            ["giamsat.yml:9: targets.ssh[0].auth: no auth 'nobody' under collectors.ssh.auths"],
            id="collector-cross-check",
        ),
        pytest.param(
            "collectors:\n  snmpp: {}\n",
            [
                "giamsat.yml:2: collectors.snmpp: unknown collector kind; known: blackbox, host, textfile, snmp, ssh, icmp, tcp, http, dns"
            ],
            id="unknown-collector",
        ),
    ],
)
def test_config_error_names_file_key_and_problem(tmp_path: Path, text: str, expected: list[str]) -> None:
    found = problems(tmp_path, text)
    for want in expected:
        assert any(want in p for p in found), f"{want!r} not in {found}"
    assert all(p.startswith(str(tmp_path / "giamsat.yml")) for p in found)


def test_all_problems_reported_not_just_the_first(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        sites:
          - {id: a, name: A, level: province}
          - {id: b, name: B, level: commune, parent: x}
          - {id: c, name: C, level: commune, parent: y}
        """,
    )
    assert len(found) == 2
    assert "sites[1].parent" in found[0] and "sites[2].parent" in found[1]


def test_unknown_sites_of_targets_are_reported_alongside_schema_errors(tmp_path: Path) -> None:
    """One run shows every problem: a schema error elsewhere does not hide a target's unknown site.
    A site that exists but is itself invalid is not called unknown."""
    found = problems(
        tmp_path,
        """
        agent: {timeout: -3s, site: nowhere}
        sites:
          - {id: tinh, name: T, level: province}
          - {id: xa-1, name: X, level: hamlet, parent: tinh}
        targets:
          icmp:
            - {name: a, address: 127.0.0.1, site: ghost}
            - {name: b, address: 127.0.0.1, site: xa-1}
            - {name: c, address: 127.0.0.1, site: tinh}
            - {name: d, address: 127.0.0.1, site: [not, a, string]}
        """,
    )
    keys = [p.split(": ")[1] for p in found]
    assert "agent.timeout" in keys and "sites[1].level" in keys, found
    assert "targets.icmp[3].site" in keys, found  # the schema's own error, reported once
    assert keys.count("targets.icmp[3].site") == 1, found
    unknown = [p for p in found if "unknown site" in p]
    assert len(unknown) == 2, found
    assert any("agent.site: unknown site 'nowhere'" in p for p in unknown), found
    assert any("targets.icmp[0].site: unknown site 'ghost'" in p for p in unknown), found


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yml: \(top level\): cannot read: No such file"):
        load_config(tmp_path / "nope.yml")


def test_sites_from_spreadsheet_csv_with_bom_and_semicolons(tmp_path: Path) -> None:
    csv = "id;name;level;parent;uplinks\ntinh;Tỉnh Hà Giang;province;;\nxa-1;Xã Lũng Cú;commune;tinh;\n\n"
    (tmp_path / "sites.csv").write_bytes(b"\xef\xbb\xbf" + csv.encode("utf-8"))
    loaded = load_config(write(tmp_path, "sites_file: sites.csv\n"))
    assert loaded.inventory.sites["xa-1"].name == "Xã Lũng Cú"
    assert loaded.inventory.sites["xa-1"].parent == "tinh"


def test_csv_and_yaml_sites_combine_and_errors_name_the_csv_row(tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_text(
        "id,name,level,parent\nxa-1,Xã A,commune,tinh\nxa-2,Xã B,hamlet,tinh\nxa-3,Xã C,commune,ghost\n"
    )
    found = problems(tmp_path, "sites_file: sites.csv\nsites:\n  - {id: tinh, name: T, level: province}\n")
    assert any(p.startswith(f"{tmp_path / 'sites.csv'}: row 3.level:") and "hamlet" in p for p in found), (
        found
    )
    assert any("row 4.parent: unknown parent site 'ghost'" in p and "sites.csv" in p for p in found), found


def test_csv_missing_column(tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_text("id,ten\n1,x\n")
    found = problems(tmp_path, "sites_file: sites.csv\n")
    assert any("header: missing column(s) name, level" in p for p in found)


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_bytes(
        "id,name,level,parent\nx,Xã,commune,\n".encode("cp1258", "replace") + b"\xff"
    )
    found = problems(tmp_path, "sites_file: sites.csv\n")
    assert any("not UTF-8 text" in p for p in found)


def test_check_config_prints_all_errors_and_exits_2(tmp_path: Path) -> None:
    p = write(tmp_path, "agent:\n  intervall: 30s\nsites:\n  - {id: a, name: A, level: commune, parent: q}\n")
    proc = subprocess.run([GIAMSAT, "check-config", str(p)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "2 problem(s)" in proc.stderr
    assert f"{p}:2: agent.intervall: unknown key" in proc.stderr
    assert "sites[0].parent: unknown parent site 'q'" in proc.stderr
    good = write(tmp_path, GOOD_SITES, "good.yml")
    ok = subprocess.run([GIAMSAT, "check-config", str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "OK (4 sites" in ok.stdout


def test_secret_from_file_env_and_world_readable_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pydantic import SecretStr

    from agent.kernel.model import Model

    class Auth(Model):
        password: SecretStr | None = None

    secret = tmp_path / "pw"
    secret.write_text("s3cret-canary\n")
    os.chmod(secret, 0o644)
    with caplog.at_level(logging.WARNING, logger="giamsat.config"):
        a = Auth.model_validate({"password_file": str(secret)})
    assert a.password is not None and a.password.get_secret_value() == "s3cret-canary"
    assert "s3cret-canary" not in repr(a)
    assert any("readable by every user" in r.getMessage() for r in caplog.records)
    os.chmod(secret, 0o600)
    os.environ["GIAMSAT_TEST_CREDS"] = str(tmp_path)  # as systemd's CREDENTIALS_DIRECTORY
    try:
        a = Auth.model_validate({"password_file": "${GIAMSAT_TEST_CREDS}/pw"})
        assert a.password is not None and a.password.get_secret_value() == "s3cret-canary"
    finally:
        del os.environ["GIAMSAT_TEST_CREDS"]
    os.environ["GIAMSAT_TEST_PW"] = "from-env"
    try:
        pw = Auth.model_validate({"password_env": "GIAMSAT_TEST_PW"}).password
        assert pw is not None and pw.get_secret_value() == "from-env"
    finally:
        del os.environ["GIAMSAT_TEST_PW"]
    with pytest.raises(ValueError, match="environment variable NOT_SET_ANYWHERE is not set"):
        Auth.model_validate({"password_env": "NOT_SET_ANYWHERE"})
    with pytest.raises(ValueError, match="give only one of password, password_file"):
        Auth.model_validate({"password": "x", "password_file": str(secret)})


LINKED = """
sites:
  - {id: tinh, name: "Tỉnh", level: province}
  - id: phuong-2
    name: "Phường Cốc Lếu"
    level: commune
    parent: tinh
    links: [{name: wan, address: 198.18.31.2, probes: %s}]
"""


def test_site_links_shorthand_expands_into_probe_targets_and_uplinks(tmp_path: Path) -> None:
    text = (
        LINKED % '[icmp, "tcp:22"]'
        + "targets:\n  icmp:\n    - {name: core, site: tinh, address: 127.0.0.1}\n"
    )
    loaded = load_config(write(tmp_path, text))
    cfg = loaded.config
    assert [t.name for t in cfg.targets_of("icmp")] == ["core", "phuong-2/wan"]
    assert [(t.name, t.port) for t in cfg.targets_of("tcp")] == [("phuong-2/wan:22", 22)]  # type: ignore[attr-defined]
    assert cfg.targets_of("icmp")[1].site == "phuong-2"
    # links without explicit uplinks are the site's uplinks
    assert loaded.inventory.sites["phuong-2"].uplinks == ("phuong-2/wan", "phuong-2/wan:22")


def test_site_links_shorthand_errors_are_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, LINKED % '["tcp"]')
    assert any("giamsat.yml:8: sites[1].links[0].probes: 'tcp' needs a port" in p for p in found), found


def test_loading_a_config_imports_only_the_collectors_it_uses(tmp_path: Path) -> None:
    # A fresh interpreter: the host-only agent must not pay for pysnmp, gufo, paramiko or dnspython.
    code = (
        "import sys; from agent.config import load_config; "
        f"lc = load_config({str(write(tmp_path, GOOD_SITES))!r}); "
        "print(lc.config.kinds, sorted(m for m in ('pysnmp', 'gufo', 'paramiko', 'dns', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "('host', 'textfile') []"
    used = write(
        tmp_path,
        GOOD_SITES + "targets:\n  ssh:\n    - {name: h, site: xa-1, address: 127.0.0.1, auth: a}\n",
        "ssh.yml",
    )
    with pytest.raises(ConfigError):  # auth 'a' is not defined: proves the ssh models were loaded and used
        load_config(used)


OPTIONAL_SCHEMA_MODULES = (
    "collectors.probes.links",
    "exporters.remote_write_settings",
    "exporters.webconfig_file",
)


def test_schemas_a_file_does_not_use_are_never_built(tmp_path: Path) -> None:
    # Every pydantic model costs resident memory (a host-only agent stays within about 40 MiB): the
    # site-links shorthand, remote write and the web config file are built only for files using them.
    plain = write(tmp_path, GOOD_SITES, "plain.yml")
    rich = write(
        tmp_path,
        LINKED % "[icmp]" + "remote_write:\n  - {name: central, url: 'http://127.0.0.1:1/api/v1/write'}\n",
        "rich.yml",
    )
    code = (
        "import sys; from agent.config import load_config; from exporters.webconfig import WebConfig; "
        "lc = load_config(sys.argv[1]); WebConfig.disabled(); "
        f"print(sorted(m for m in {OPTIONAL_SCHEMA_MODULES!r} if m in sys.modules), "
        "[t.name for t in lc.config.targets_of('icmp')], [r.name for r in lc.config.remote_write])"
    )
    run = [sys.executable, "-c", code]
    out = subprocess.run([*run, str(plain)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[] [] []"
    out = subprocess.run([*run, str(rich)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == (
        "['collectors.probes.links', 'exporters.remote_write_settings'] ['phuong-2/wan'] ['central']"
    )


def test_duplicate_remote_write_names_are_an_error_with_line_and_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        GOOD_SITES
        + "remote_write:\n"
        + "  - {name: central, url: 'http://127.0.0.1:1/api/v1/write'}\n"
        + "  - {name: central, url: 'http://127.0.0.2:1/api/v1/write'}\n",
    )
    assert len(found) == 1 and found[0].endswith(
        "giamsat.yml:9: remote_write[1].name: duplicate remote_write name 'central': "
        "names must be unique (each owns a buffer directory)"
    ), found


def test_links_and_remote_write_keys_are_still_checked_when_present(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD_SITES + "remote_write:\n  - {name: central, url: 'ftp://x', bogus: 1}\n")
    assert any("remote_write[0].bogus" in p for p in found), found
    found = problems(
        tmp_path, LINKED % "[icmp]" + "  - {id: x, name: X, level: commune, parent: tinh, links: [{}]}\n"
    )
    assert any("sites[2].links[0].name" in p for p in found), found


def test_a_probes_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    """check-config fails where the probe would: a target's tls_config.ca_file must load."""
    text = GOOD_SITES + (
        "targets:\n  http:\n    - {name: portal, site: tinh, url: 'https://127.0.0.1:8443/',\n"
        f"       tls_config: {{ca_file: {tmp_path / 'missing-ca.pem'}}}}}\n"
    )
    found = problems(tmp_path, text)
    assert any("targets.http[0].tls_config.ca_file" in p and "missing-ca.pem" in p for p in found), found
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    found = problems(tmp_path, text.replace("missing-ca.pem", "not-a-ca.pem"))
    assert any("no usable PEM certificate" in p for p in found), found
