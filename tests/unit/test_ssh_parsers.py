"""The SSH collector's pure parsers and config models, on recorded outputs (GNU, busybox) and edge cases."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from collectors.ssh import parsers
from collectors.ssh.metrics import command_families, filesystem_families
from collectors.ssh.settings import CommandModule, SSHAuth, SSHSettings, SSHTarget
from tests.helpers import collect_once

DF_GNU_T = """Filesystem              Type     1024-blocks     Used Available Capacity Mounted on
devtmpfs                devtmpfs    12334460        0  12334460       0% /dev
/dev/vda                ext4       264212084 24743296  81647616      24% /
/dev/vdb1               xfs            10000     2000      8000      20% /srv/my data
tmpfs                   tmpfs         102400        0    102400       0% /run
"""
DF_BUSYBOX = """Filesystem           1024-blocks    Used Available Capacity Mounted on
/dev/root                 30000     10000     18000  36% /
tmpfs                     64000        0     64000   0% /tmp
"""


def samples(fams: list, name: str) -> dict[tuple, float]:  # type: ignore[type-arg]
    return {tuple(sorted(s.labels.items())): s.value for f in fams for s in f.samples if s.name == name}


def test_df_gnu_with_type_and_spaces_in_mount_point() -> None:
    rows = {r.mountpoint: r for r in parsers.parse_df(DF_GNU_T)}
    root = rows["/"]
    assert (root.device, root.fstype) == ("/dev/vda", "ext4")
    assert root.size_bytes == 264212084 * 1024
    assert root.free_bytes == (264212084 - 24743296) * 1024
    assert root.avail_bytes == 81647616 * 1024
    assert rows["/srv/my data"].fstype == "xfs"


def test_df_busybox_without_type_and_512_blocks() -> None:
    rows = parsers.parse_df(DF_BUSYBOX)
    assert [(r.mountpoint, r.fstype, r.size_bytes) for r in rows] == [
        ("/", "", 30000 * 1024),
        ("/tmp", "", 64000 * 1024),
    ]
    posix = "Filesystem 512-blocks Used Available Capacity Mounted on\n/dev/sda1 2000 1000 1000 50% /\n"
    assert parsers.parse_df(posix)[0].size_bytes == 2000 * 512
    for bad in ("", "Filesystem Size Used\n/dev/sda1 1G 1G\n", "Filesystem 1024-blocks\nonly junk here\n"):
        with pytest.raises(parsers.ParseError):
            parsers.parse_df(bad)


def test_filesystem_families_apply_node_exporter_exclusions() -> None:
    fams = filesystem_families(parsers.parse_df(DF_GNU_T))
    mounts = {dict(k)["mountpoint"] for k in samples(fams, "node_filesystem_size_bytes")}
    assert mounts == {"/", "/srv/my data"}  # /dev and /run are excluded by mount point
    fams = filesystem_families(parsers.parse_df(DF_GNU_T), mount_points_exclude="^/dev($|/)")
    mounts = {dict(k)["mountpoint"] for k in samples(fams, "node_filesystem_size_bytes")}
    assert mounts == {"/", "/srv/my data", "/run"}


# ---------------------------------------------------------------------------------------------------
# user-defined parsers
# ---------------------------------------------------------------------------------------------------
def module(**data: object) -> CommandModule:
    return CommandModule.model_validate({"command": ["x"], **data})


def test_number_parser() -> None:
    spec = module(parser="number", metrics=[{"name": "temp_celsius", "labels": {"sensor": "cpu"}}])
    assert samples(command_families("t", spec, " 42.5\n"), "temp_celsius") == {(("sensor", "cpu"),): 42.5}
    for bad in ("", "nan", "inf", "12 13", "abc"):
        with pytest.raises(parsers.ParseError):
            command_families("t", spec, bad)


def test_regex_parser_with_label_groups_and_limits() -> None:
    text = "queue a 5\nqueue b 7\nnoise\n"
    spec = module(
        parser="regex",
        pattern=r"^queue (?P<name>\w+) (?P<n>\d+)$",
        metrics=[{"name": "queue_length", "value": "n", "label_groups": {"queue": "name"}}],
    )
    got = samples(command_families("q", spec, text), "queue_length")
    assert got == {(("queue", "a"),): 5, (("queue", "b"),): 7}
    with pytest.raises(parsers.ParseError, match="matched nothing"):
        command_families("q", spec, "nothing here")
    with pytest.raises(parsers.ParseError, match="same labels"):
        command_families("q", spec, "queue a 1\nqueue a 2\n")
    small = spec.model_copy(update={"max_series": 1})
    with pytest.raises(parsers.ParseError, match="max_series"):
        command_families("q", small, text)


def test_keyvalue_and_json_parsers() -> None:
    kv = module(
        parser="keyvalue",
        separator=":",
        metrics=[
            {"name": "conns", "value": "active"},
            {"name": "up_total", "value": "restarts", "type": "counter"},
        ],
    )
    fams = command_families("kv", kv, "# comment\nactive: 12\nrestarts : 3\n")
    assert samples(fams, "conns")[()] == 12
    assert samples(fams, "up_total")[()] == 3
    with pytest.raises(parsers.ParseError):
        command_families("kv", kv, "active 12\n")

    js = module(
        parser="json", metrics=[{"name": "v", "value": "data.items.-1.value"}, {"name": "ok", "value": "ok"}]
    )
    fams = command_families("js", js, '{"data": {"items": [{"value": 1}, {"value": "2.5"}]}, "ok": false}')
    assert samples(fams, "v")[()] == 2.5
    assert samples(fams, "ok")[()] == 0
    for bad in ('{"data": {}}', "not json", '{"data": {"items": [{"value": [1]}]}, "ok": 1}'):
        with pytest.raises(parsers.ParseError):
            command_families("js", js, bad)


@given(st.text(max_size=300))
def test_parsers_raise_only_parse_error_on_any_text(text: str) -> None:
    """Remote output is untrusted: garbage must give ParseError (parse_error), never another exception."""
    fns: list[Callable[[str], object]] = [
        parsers.parse_df,
        parsers.parse_number,
        parsers.parse_json,
        parsers.parse_keyvalue,
    ]
    for fn in fns:
        with contextlib.suppress(parsers.ParseError):
            fn(text)
    assert isinstance(parsers.parse_regex(text, re.compile(r"(?P<a>\d+)")), list)


# ---------------------------------------------------------------------------------------------------
# config models: mistakes are refused with a message that says what to do
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "u"}, "exactly one of key_file or password"),
        ({"username": "u", "key_file": "/k", "password": "p"}, "exactly one of key_file or password"),
        ({"username": "u", "password": "p", "passphrase": "x"}, "passphrase is only used with key_file"),
        ({"username": "u", "key_file": "/k", "keyfile": "/k"}, "Extra inputs"),
    ],
)
def test_auth_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SSHAuth.model_validate(data)


def test_auth_password_from_file_is_secret(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    f.chmod(0o600)
    auth = SSHAuth.model_validate({"username": "u", "password_file": str(f)})
    assert auth.password is not None and auth.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(auth)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"parser": "regex", "metrics": [{"name": "a", "value": "x"}]}, "needs a pattern"),
        (
            {"parser": "regex", "pattern": "(\\d+)", "metrics": [{"name": "a", "value": "x"}]},
            "no named groups",
        ),
        (
            {"parser": "regex", "pattern": "(?P<x>\\d+", "metrics": [{"name": "a", "value": "x"}]},
            "does not compile",
        ),
        ({"parser": "regex", "pattern": "(?P<x>\\d+)", "metrics": [{"name": "a", "value": "y"}]}, "no group"),
        ({"parser": "json", "metrics": [{"name": "a"}]}, "'value' is required"),
        ({"parser": "number", "pattern": "x", "metrics": [{"name": "a"}]}, "only used by the regex"),
        (
            {"parser": "keyvalue", "metrics": [{"name": "a", "value": "k", "label_groups": {"l": "k"}}]},
            "label_groups",
        ),
        ({"parser": "number", "metrics": [{"name": "a", "type": "counter"}]}, "must end in _total"),
        ({"parser": "number", "metrics": [{"name": "a-b"}]}, "not a valid Prometheus metric name"),
        ({"parser": "number", "metrics": [{"name": "ssh_up"}]}, "collector's own"),
        ({"parser": "number", "metrics": [{"name": "a", "labels": {"target": "x"}}]}, "reserved"),
        ({"parser": "number", "metrics": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"parser": "number", "metrics": []}, "at least 1"),
        ({"parser": "yaml", "metrics": [{"name": "a"}]}, "number"),
    ],
)
def test_command_module_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        module(**data)


def test_settings_and_target_validation() -> None:
    one = {"command": ["x"], "parser": "number", "metrics": [{"name": "a"}]}
    with pytest.raises(ValidationError, match="built in"):
        SSHSettings.model_validate({"commands": {"linux": one}})
    with pytest.raises(ValidationError, match="defined by both"):
        SSHSettings.model_validate({"commands": {"m1": one, "m2": one}})
    with pytest.raises(ValidationError, match="module name"):
        SSHSettings.model_validate({"commands": {"Bad-Name": one}})
    settings = SSHSettings.model_validate({"connect_timeout": "1500ms", "command_timeout": "1m"})
    assert (settings.connect_timeout, settings.command_timeout) == (1.5, 60.0)
    base = {"name": "n", "site": "s", "address": "h", "auth": "a"}
    assert SSHTarget.model_validate(base).modules == ["linux"]
    with pytest.raises(ValidationError, match="repeat"):
        SSHTarget.model_validate({**base, "modules": ["linux", "linux"]})
    with pytest.raises(ValidationError):
        SSHTarget.model_validate({**base, "port": 70000})


def write_ed25519_key(path: Path) -> Path:
    """An unencrypted OpenSSH private key, as ssh-keygen -t ed25519 -N '' writes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.config import load_config

    # what the example's header has made first, in the directory it is checked from
    write_ed25519_key(tmp_path / "state" / "id_ed25519")
    (tmp_path / "state" / "ssh_known_hosts").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIAMSAT_ROUTER_PASSWORD", "x")
    loaded = load_config(Path(__file__).resolve().parents[2] / "config" / "ssh.example.yml")
    assert [t.name for t in loaded.config.targets_of("ssh")] == ["huyen-a-web", "huyen-a-mail"]


def test_targets_are_checked_against_auths_and_modules(tmp_path: Path) -> None:
    from collectors.ssh.collector import SSHCollector

    key = write_ed25519_key(tmp_path / "k")
    settings = SSHSettings.model_validate(
        {
            "auths": {"monitor": {"username": "u", "key_file": str(key)}},
            "commands": {"ntp": {"command": ["x"], "parser": "number", "metrics": [{"name": "a"}]}},
        }
    )
    base = {"site": "s", "address": "h"}
    targets = [
        SSHTarget.model_validate({**base, "name": "ok", "auth": "monitor", "modules": ["linux", "ntp"]}),
        SSHTarget.model_validate({**base, "name": "bad", "auth": "monitr", "modules": ["ntp", "nope"]}),
    ]
    problems = SSHCollector.check_targets(settings, targets)
    assert [(i, key) for i, key, _ in problems] == [(1, "auth"), (1, "modules")]
    assert "known: monitor" in problems[0][2]
    assert SSHCollector.pool_size(settings) == settings.max_concurrency + 2


def test_unknown_auth_is_a_collector_error(tmp_path: Path) -> None:
    import asyncio
    import logging

    from agent.kernel.collector import BlockingRunner, CollectorContext
    from agent.kernel.errors import CollectError
    from collectors.ssh.collector import SSHCollector

    ctx = CollectorContext("ssh", tmp_path, BlockingRunner("t", 1), logging.getLogger("t"))
    collector = SSHCollector(SSHSettings.model_validate({}), ctx)
    target = SSHTarget.model_validate({"name": "n", "site": "s", "address": "127.0.0.1", "auth": "none"})
    with pytest.raises(CollectError) as err:
        asyncio.run(collect_once(collector, target))
    collector.ctx.blocking.shutdown()
    assert err.value.reason == "config"


def test_reading_the_configuration_does_not_import_paramiko() -> None:
    """paramiko (and cryptography) load when the ssh collector starts, not for every agent."""
    import subprocess
    import sys

    code = "import sys, agent.config, collectors; print('paramiko' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_deadline_alarms_fire_in_order_survive_a_blocked_action_and_cancel() -> None:
    """The shared alarm clock behind every SSH deadline (collectors.ssh.client._Watchdog)."""
    import threading
    import time

    from collectors.ssh.client import _Watchdog

    release = threading.Event()
    second_ran = threading.Event()
    cancelled_ran = threading.Event()
    try:
        with _Watchdog(time.monotonic() + 0.01, lambda: cancelled_ran.set()):
            pass  # left before the deadline: cancelled

        # The first action blocks (a channel close on a wedged connection); the second must still run.
        def block() -> None:
            release.wait()

        with _Watchdog(time.monotonic() + 0.05, block, second_ran.set) as dog:
            assert second_ran.wait(10)
            assert dog.fired.is_set()
    finally:
        release.set()
    assert not cancelled_ran.is_set()
