"""Secrets hygiene: canary secrets planted in every secret field are found nowhere the agent writes.

Every ``SecretStr`` field of every model reachable from the configuration (the collector table builds
it) and of the web config is enumerated; each must have a canary recipe in ``RECIPES`` below, so a new
secret field without one fails here and gets covered. The canaries are given inline, as ``_file`` and
as ``_env``, and the agent is driven through success and failure paths: ``check-config`` (valid and
broken files), ``once``, ``run`` at debug log level with scrapes of /metrics, /, /probe, /snmp, a
reload with a broken file, then the process's argv, its log and its state directory are searched.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import signal
import subprocess
import threading
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from pydantic import BaseModel, Field, SecretStr

from agent.config import Config, full_config_model, load_config
from agent.kernel.model import Model
from collectors import COLLECTORS
from exporters.webconfig_file import WebConfigFile
from tests.helpers import GIAMSAT, free_port, http_get, stop_process, wait_for

# --------------------------------------------------------------------------------------------------
# enumerating secret fields
# --------------------------------------------------------------------------------------------------


def secret_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of every SecretStr reachable from ``model``: ``[]`` for list items, ``*`` for dict values."""
    out: set[str] = set()
    for name, f in model.model_fields.items():
        out |= _paths_of(f.annotation, f"{prefix}{name}")
    return out


def _paths_of(ann: Any, path: str) -> set[str]:
    if ann is SecretStr:
        return {path}
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return secret_paths(ann, path + ".")
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (list, tuple, set, frozenset):
        return set().union(*(_paths_of(a, path + "[]") for a in args if a is not Ellipsis))
    if origin is dict:
        return _paths_of(args[1], path + ".*")
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        return set().union(*(_paths_of(a, path) for a in args))
    return set()


# --------------------------------------------------------------------------------------------------
# canary recipes: how to plant a canary in each secret field, with a config that loads
# --------------------------------------------------------------------------------------------------


@dataclass
class Lab:
    """Per-test material recipes may use (closed ports on loopback, a directory for key files)."""

    dir: Path
    closed_udp: int
    closed_tcp: int
    snmp_port: int
    receiver_port: int = 0  # a remote-write receiver started by the test (remote_write_receiver)
    receiver: Receiver | None = None
    values: dict[str, str] = field(default_factory=dict)  # "<kind>.<field>" -> canary planted there
    extra_texts: list[str] = field(default_factory=list)  # further secret material to search for


@dataclass(frozen=True)
class Recipe:
    """Config fragments (under collectors/targets) with ``{secret:<field>}`` placeholders for canaries."""

    kind: str
    covers: frozenset[str]
    build: Callable[[Lab], dict[str, Any]]


def _snmp(lab: Lab) -> dict[str, Any]:
    return {
        "collectors": {
            "snmp": {
                "auths": {
                    "v2": {"version": 2, "community": "{secret:community}"},
                    "v3": {
                        "version": 3,
                        "username": "canary-user",
                        "security_level": "authPriv",
                        "password": "{secret:password}",
                        "priv_password": "{secret:priv_password}",
                    },
                }
            }
        },
        "targets": {
            "snmp": [
                # Answered by a real snmpd holding the canary credentials (success path) ...
                {"name": "dev-v2", "site": "here", "address": "127.0.0.1", "port": lab.snmp_port, "auth": "v2"},
                {"name": "dev-v3", "site": "here", "address": "127.0.0.1", "port": lab.snmp_port, "auth": "v3"},
                # ... and by nobody (failure path).
                {"name": "dev-gone", "site": "here", "address": "127.0.0.1", "port": lab.closed_udp, "auth": "v2"},
            ]
        },
    }  # fmt: skip


def _ssh(lab: Lab) -> dict[str, Any]:
    key = lab.dir / "id_canary"  # created by plant(), encrypted with the passphrase canary
    return {
        "collectors": {
            "ssh": {
                "trust_on_first_use": True,
                "auths": {
                    "pw": {"username": "canary", "password": "{secret:password}"},
                    # Logs in for real to an sshd started by the test (success path), see sshd_with_canaries.
                    "key": {"username": "root", "key_file": str(key), "passphrase": "{secret:passphrase}"},
                },
            }
        },
        "targets": {
            "ssh": [
                {
                    "name": "host-pw",
                    "site": "here",
                    "address": "127.0.0.1",
                    "port": lab.closed_tcp,
                    "auth": "pw",
                },
                {
                    "name": "host-key",
                    "site": "here",
                    "address": "127.0.0.1",
                    "port": lab.closed_tcp,
                    "auth": "key",
                },
            ]
        },
    }


def _remote_write(lab: Lab) -> dict[str, Any]:
    url = f"http://127.0.0.1:{lab.receiver_port}/api/v1/write"
    return {
        "remote_write": [
            {"name": "rw-basic", "url": url, "basic_auth": {"username": "agent", "password": "{secret:password}"},
             "batch_send_deadline": "1s"},
            {"name": "rw-bearer", "url": url, "bearer_token": "{secret:bearer_token}", "batch_send_deadline": "1s"},
        ]
    }  # fmt: skip


# Layouts as the snmp and ssh collectors define them (collectors.<kind>.auths, targets naming an auth).
RECIPES = [
    Recipe(
        "snmp",
        frozenset(
            {
                "collectors.snmp.auths.*.community",
                "collectors.snmp.auths.*.password",
                "collectors.snmp.auths.*.priv_password",
            }
        ),
        _snmp,
    ),
    Recipe(
        "ssh",
        frozenset({"collectors.ssh.auths.*.password", "collectors.ssh.auths.*.passphrase"}),
        _ssh,
    ),
    Recipe(
        "remote_write",
        frozenset({"remote_write[].basic_auth.password", "remote_write[].bearer_token"}),
        _remote_write,
    ),
]


def _present(kind: str) -> bool:
    return kind in COLLECTORS or kind in Config.model_fields


# Every collector kind's sections (the loader builds a model with only the kinds a file uses).
CONFIG_SECRET_PATHS = secret_paths(full_config_model())


def test_every_secret_field_has_a_canary_recipe() -> None:
    covered = set().union(*(r.covers for r in RECIPES))
    missing = sorted(CONFIG_SECRET_PATHS - covered)
    assert not missing, f"secret fields without a canary recipe in {__file__}: {missing}"
    assert secret_paths(WebConfigFile) == {"basic_auth_users.*"}


def test_enumeration_finds_nested_secrets() -> None:
    class Inner(Model):
        token: SecretStr

    class Outer(Model):
        a: SecretStr | None = None
        by_name: dict[str, Inner] = Field(default_factory=dict)
        items: list[Inner] = Field(default_factory=list)

    assert secret_paths(Outer) == {"a", "by_name.*.token", "items[].token"}


# --------------------------------------------------------------------------------------------------
# planting
# --------------------------------------------------------------------------------------------------

BASE = {
    "agent": {"site": "here", "interval": "5s", "timeout": "3s"},
    "sites": [{"id": "here", "name": "Here", "level": "province"}],
    "collectors": {"host": {"parts": ["loadavg"]}},
}


@dataclass
class Planted:
    config: Path
    canaries: list[str]
    env: dict[str, str]
    web_password: str


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fill(node: Any, source: str, lab: Lab, canaries: list[str], env: dict[str, str], kind: str) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if isinstance(v, str) and v.startswith("{secret:"):
                value = "CANARY" + secrets.token_hex(12)
                canaries.append(value)
                lab.values.setdefault(f"{kind}.{k}", value)
                if source == "inline":
                    out[k] = value
                elif source == "file":
                    p = lab.dir / f"secret-{len(canaries)}"
                    p.write_text(value + "\n")
                    p.chmod(0o600)
                    out[f"{k}_file"] = str(p)
                else:
                    var = f"GS_CANARY_{len(canaries)}"
                    env[var] = value
                    out[f"{k}_env"] = var
            else:
                out[k] = _fill(v, source, lab, canaries, env, kind)
        return out
    if isinstance(node, list):
        return [_fill(x, source, lab, canaries, env, kind) for x in node]
    return node


def plant(lab: Lab, source: str, name: str = "giamsat.yml") -> Planted:
    """A valid config with a canary in every secret field of every collector present, plus a web config."""
    canaries: list[str] = []
    env: dict[str, str] = {}
    data = dict(BASE)
    for recipe in RECIPES:
        if _present(recipe.kind):
            data = _merge(data, _fill(recipe.build(lab), source, lab, canaries, env, recipe.kind))
    # The ssh key-file recipe needs a real encrypted key whose passphrase is the canary.
    ssh_key = lab.dir / "id_canary"
    if "ssh" in COLLECTORS and not ssh_key.exists():
        passphrase = _ssh_passphrase(data, env)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(ssh_key)],
            check=True,
            timeout=30,
        )
        body = "".join(ssh_key.read_text().splitlines()[1:-1])
        lab.extra_texts.append(body[20:60])
    # Web config: a bcrypt hash (secret in exporter-toolkit's format) of a canary password.
    web_password = "CANARYPW" + secrets.token_hex(8)
    web_hash = bcrypt.hashpw(web_password.encode(), bcrypt.gensalt(4)).decode()
    canaries += [web_password, web_hash]
    web = lab.dir / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": web_hash}}))
    web.chmod(0o600)
    data = _merge(data, {"agent": {"web_config_file": str(web), "state_dir": str(lab.dir / "state")}})
    cfg = lab.dir / name
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return Planted(cfg, canaries, env, web_password)


def _ssh_passphrase(data: dict[str, Any], env: dict[str, str]) -> str:
    auth = data["collectors"]["ssh"]["auths"]["key"]
    if "passphrase" in auth:
        return str(auth["passphrase"])
    if "passphrase_file" in auth:
        return Path(auth["passphrase_file"]).read_text().strip()
    return env[auth["passphrase_env"]]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    import socket

    ports = []
    for _ in range(2):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            ports.append(u.getsockname()[1])
    return Lab(tmp_path, ports[0], free_port(), ports[1])


@contextmanager
def snmpd_with_canaries(lab: Lab) -> Iterator[None]:
    """A real net-snmp agent that accepts the planted community and v3 user (when snmp is registered)."""
    if "snmp" not in COLLECTORS:
        yield
        return
    d = lab.dir / "snmpd"
    (d / "persist").mkdir(parents=True)
    v = lab.values
    (d / "snmpd.conf").write_text(
        f"agentaddress udp:127.0.0.1:{lab.snmp_port}\n[snmp] persistentDir {d / 'persist'}\n"
        f"rocommunity {v['snmp.community']} 127.0.0.1\nsysName canary-agent\n"
        f"createUser canary-user SHA-256 {v['snmp.password']} AES {v['snmp.priv_password']}\n"
        "rouser canary-user priv\n"
    )
    env = dict(os.environ, SNMP_PERSISTENT_DIR=str(d / "persist"), SNMPCONFPATH=str(d), MIBS="")
    proc = subprocess.Popen(
        ["snmpd", "-f", "-Lf", str(d / "snmpd.log"), "-C", "-c", str(d / "snmpd.conf"), "-p", str(d / "pid")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: "canary-agent"
            in subprocess.run(
                ["snmpget", "-v2c", "-c", v["snmp.community"], "-t", "0.5", "-r", "0", f"127.0.0.1:{lab.snmp_port}",
                 "1.3.6.1.2.1.1.5.0"],
                capture_output=True, text=True, env=env,
            ).stdout,
            15,
            what="snmpd answering",
        )  # fmt: skip
        yield
    finally:
        stop_process(proc)


@contextmanager
def sshd_with_canaries(lab: Lab, planted: Planted) -> Iterator[None]:
    """A real sshd accepting the passphrase-protected canary key; points target host-key at it."""
    if "ssh" not in COLLECTORS:
        yield
        return
    from tests.integration.sshd_server import start_sshd

    key = lab.dir / "id_canary"
    server = start_sshd(lab.dir / "sshd", key.with_suffix(".pub"), key)
    try:
        data = yaml.safe_load(planted.config.read_text())
        for t in data["targets"]["ssh"]:
            if t["name"] == "host-key":
                t["port"] = server.port
        planted.config.write_text(yaml.safe_dump(data, sort_keys=False))
        yield
    finally:
        server.stop()


def assert_ssh_succeeded(exposition: str) -> None:
    """With ssh registered, the key whose passphrase is a canary opened a real session."""
    if "ssh" not in COLLECTORS:
        return
    line = next(
        (ln for ln in exposition.splitlines() if ln.startswith("ssh_up{") and 'target="host-key"' in ln), ""
    )
    assert line.endswith((" 1.0", " 1")), line


@dataclass
class Receiver:
    port: int
    authorized: dict[str, int]  # "basic"/"bearer" -> writes accepted with the canary credentials


@contextmanager
def remote_write_receiver(lab: Lab) -> Iterator[Receiver]:
    """A remote-write endpoint that accepts only the canary credentials (204), else 401."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    rec = Receiver(0, {"basic": 0, "bearer": 0})

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization") or ""
            basic = (
                "Basic "
                + base64.b64encode(f"agent:{lab.values.get('remote_write.password')}".encode()).decode()
            )
            kind = (
                "basic"
                if auth == basic
                else "bearer"
                if auth == f"Bearer {lab.values.get('remote_write.bearer_token')}"
                else ""
            )
            if kind:
                rec.authorized[kind] += 1
            self.send_response(204 if kind else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    rec.port = lab.receiver_port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        srv.shutdown()
        srv.server_close()


def assert_snmp_succeeded(exposition: str) -> None:
    """With snmp registered, the devices behind the real snmpd answered: the canary credentials worked."""
    if "snmp" not in COLLECTORS:
        return
    for target in ("dev-v2", "dev-v3"):
        line = next(
            (
                ln
                for ln in exposition.splitlines()
                if ln.startswith("snmp_up{") and f'target="{target}"' in ln
            ),
            "",
        )
        assert line.endswith((" 1.0", " 1")), (target, line)


def assert_clean(where: str, text: str | bytes, canaries: list[str], extra: list[str] = ()) -> None:  # type: ignore[assignment]
    blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for c in [*canaries, *extra]:
        assert c not in blob, f"secret leaked into {where}"
        # Also base64 (a Basic auth header echoed back would be the password in base64).
        assert base64.b64encode(c.encode()).decode()[:16] not in blob, f"secret leaked (base64) into {where}"


def giamsat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GIAMSAT, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


# --------------------------------------------------------------------------------------------------
# the paths
# --------------------------------------------------------------------------------------------------

SOURCES = ["inline", "file", "env"]


@pytest.mark.parametrize("source", SOURCES)
def test_check_config_and_once_never_print_secrets(lab: Lab, source: str) -> None:
    p = plant(lab, source)
    (lab.dir / "state").mkdir()
    r = giamsat("check-config", str(p.config), env=p.env)
    assert r.returncode == 0, r.stderr
    assert_clean("check-config output", r.stdout + r.stderr, p.canaries, lab.extra_texts)
    # Success paths (host; SNMP targets behind a real snmpd), failure paths (closed ports, SSH).
    with snmpd_with_canaries(lab), sshd_with_canaries(lab, p):
        r = giamsat("once", "--config.file", str(p.config), "--log.level", "debug", env=p.env)
    assert "node_load1" in r.stdout
    assert_snmp_succeeded(r.stdout)
    assert_ssh_succeeded(r.stdout)
    assert_clean("once output", r.stdout + r.stderr, p.canaries, lab.extra_texts)


@pytest.mark.parametrize("source", SOURCES)
def test_config_errors_never_print_secrets(lab: Lab, source: str) -> None:
    p = plant(lab, source)
    good = yaml.safe_load(p.config.read_text())
    broken_variants = [
        {**good, "agnet": {}},  # an unknown key elsewhere in a file full of secrets
        {**good, "sites": [{"id": "here", "name": "Here", "level": "nation"}]},
    ]
    # Each secret given twice (inline and _file), and as the wrong type.
    text = p.config.read_text()
    for canary in p.canaries[:-2]:
        if source == "inline":
            broken_variants.append(yaml.safe_load(text.replace(f": {canary}", f": [{canary}]")))
    for i, variant in enumerate(broken_variants):
        bad = lab.dir / f"bad-{i}.yml"
        bad.write_text(yaml.safe_dump(variant, sort_keys=False))
        r = giamsat("check-config", str(bad), env=p.env)
        assert r.returncode == 2, (variant, r.stdout, r.stderr)
        assert_clean("config error", r.stdout + r.stderr, p.canaries, lab.extra_texts)
        with pytest.raises(Exception) as ei:
            load_config(bad)
        assert_clean("ConfigError text", str(ei.value), p.canaries)
    # A web config that does not load: its secret hash is not echoed either.
    web = yaml.safe_load((lab.dir / "web.yml").read_text())
    web["basic_auth_users"]["prometheus"] = web["basic_auth_users"]["prometheus"][:-1]
    bad_web = lab.dir / "bad-web.yml"
    bad_web.write_text(yaml.safe_dump(web))
    from exporters.webconfig import WebConfig

    with pytest.raises(Exception) as ei:
        WebConfig.load(bad_web)
    assert_clean("web config error", str(ei.value), p.canaries)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def running(lab: Lab) -> Iterator[tuple[Running, Planted]]:
    with remote_write_receiver(lab) as rec:
        lab.receiver = rec
        p = plant(lab, "file")
        with snmpd_with_canaries(lab), sshd_with_canaries(lab, p):
            yield from _run_agent(lab, p)


def _run_agent(lab: Lab, p: Planted) -> Iterator[tuple[Running, Planted]]:
    port = free_port()
    log = lab.dir / "agent.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(p.config), "--web.listen-address", f"127.0.0.1:{port}",
             "--log.level", "debug"],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **p.env},
        )  # fmt: skip
    r = Running(proc, f"http://127.0.0.1:{port}", log)
    auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{p.web_password}".encode()).decode()}
    try:
        wait_for(lambda: http_get(r.url + "/-/ready", headers=auth)[0] == 200, 30, what="agent ready")
        yield r, p
    finally:
        stop_process(proc)


def test_running_agent_never_exposes_secrets(lab: Lab, running: tuple[Running, Planted]) -> None:
    r, p = running
    auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{p.web_password}".encode()).decode()}
    bad_auth = {
        "Authorization": "Basic " + base64.b64encode(f"prometheus:{p.web_password}x".encode()).decode()
    }
    time_ok = wait_for(
        lambda: "giamsat_collector_success" in http_get(r.url + "/metrics", headers=auth)[1], 30
    )
    assert time_ok
    pages = []
    for path in ["/metrics", "/", "/probe?module=snmp&target=dev-v2", "/snmp?target=dev-v3&module=if_mib",
                 "/probe?module=ssh&target=host-key", "/-/ready", "/nope"]:  # fmt: skip
        for headers in (auth, bad_auth, {}):
            status, body, hdrs = http_get(r.url + path, headers=headers)
            pages.append(f"{path} {status} {hdrs} {body}")
    assert_clean("HTTP responses", "\n".join(pages), p.canaries, lab.extra_texts)

    # A reload with a broken file full of secrets: the answer and the log stay clean.
    good = p.config.read_text()
    broken = yaml.safe_load(good)
    broken["agnet"] = {}
    p.config.write_text(yaml.safe_dump(broken, sort_keys=False))
    for headers in (auth, {}):
        req = urllib.request.Request(r.url + "/-/reload", data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
        assert_clean("reload response", body, p.canaries, lab.extra_texts)
    before = r.log.read_text().count("reload rejected")
    os.kill(r.proc.pid, signal.SIGHUP)
    wait_for(lambda: r.log.read_text().count("reload rejected") > before, 20, what="SIGHUP reload rejected")
    p.config.write_text(good)

    cmdline = Path(f"/proc/{r.proc.pid}/cmdline").read_bytes()
    assert_clean("argv", cmdline, p.canaries, lab.extra_texts)
    stop_process(r.proc)
    assert_clean("log", r.log.read_bytes(), p.canaries, lab.extra_texts)
    for f in (lab.dir / "state").rglob("*"):
        if f.is_file():
            assert_clean(f"state file {f.name}", f.read_bytes(), p.canaries, lab.extra_texts)


# --------------------------------------------------------------------------------------------------
# world-readable secret files
# --------------------------------------------------------------------------------------------------


class _Demo(Model):
    password: SecretStr


def test_world_readable_secret_file_warns_without_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "password"
    secret.write_text("CANARY-world-readable\n")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="giamsat.config"):
        m = _Demo.model_validate({"password_file": str(secret)})
    assert m.password.get_secret_value() == "CANARY-world-readable"
    warnings = [r for r in caplog.records if "readable by every user" in r.getMessage()]
    assert len(warnings) == 1
    assert getattr(warnings[0], "file", None) == str(secret)
    assert getattr(warnings[0], "key", None) == "password_file"
    assert all("CANARY" not in r.getMessage() and "CANARY" not in str(r.__dict__) for r in caplog.records)

    caplog.clear()
    secret.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="giamsat.config"):
        _Demo.model_validate({"password_file": str(secret)})
    assert not [r for r in caplog.records if "readable by every user" in r.getMessage()]


if "ssh" in COLLECTORS or "snmp" in COLLECTORS:  # defined once a collector with a secret field exists

    def test_world_readable_secret_warning_reaches_the_cli(tmp_path: Path) -> None:
        """Through the real loader and CLI: the warning names key and file, never the content."""
        secret = tmp_path / "secret"
        secret.write_text("CANARY-public-secret\n")
        secret.chmod(0o644)
        if "ssh" in COLLECTORS:
            key = "password_file"
            extra: dict[str, Any] = {
                "collectors": {"ssh": {"auths": {"pub": {"username": "u", key: str(secret)}}}},
                "targets": {"ssh": [{"name": "d", "site": "here", "address": "127.0.0.1", "auth": "pub"}]},
            }
        else:
            key = "community_file"
            extra = {
                "collectors": {"snmp": {"auths": {"pub": {"version": 2, key: str(secret)}}}},
                "targets": {"snmp": [{"name": "d", "site": "here", "address": "127.0.0.1", "auth": "pub"}]},
            }
        cfg = tmp_path / "giamsat.yml"
        cfg.write_text(yaml.safe_dump(_merge(BASE, extra)))
        r = giamsat("check-config", str(cfg), env={})
        assert r.returncode == 0, r.stderr
        assert "readable by every user" in r.stderr and str(secret) in r.stderr and key in r.stderr
        assert "CANARY" not in r.stdout + r.stderr
