"""The offline bundle and install.sh: built with `make bundle`, installed with no package index reachable.

The bundle is built once per module (it needs the package index, as a release build would); every
install afterwards runs with pip's configuration disabled and its index pointed at a closed port, so a
wheel missing from the bundle fails the test instead of being fetched quietly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH", "PYTHONHOME"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",  # discard port: nothing answers
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def run(cmd: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{cmd}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked bundle directory."""
    out = tmp_path_factory.mktemp("bundle")
    run(
        [
            "make",
            "-s",
            "bundle",
            f"BUILD={out / 'build'}",
            f"DIST={out / 'dist'}",
            f"PYTHON={sys.executable}",
        ],
        cwd=REPO,
    )
    (tarball,) = (out / "dist").glob("giamsat-*.tar.gz")
    with tarfile.open(tarball) as tf:
        tf.extractall(out / "unpacked", filter="data")
    (top,) = (out / "unpacked").iterdir()
    return top


def test_bundle_holds_installer_unit_and_every_wheel(bundle: Path) -> None:
    names = {p.name.split("-")[0].lower() for p in (bundle / "wheels").glob("*.whl")}
    for dist in ("giamsat_agent", "pydantic", "pydantic_core", "pysnmp", "paramiko", "bcrypt", "psutil"):
        assert dist in names
    assert os.access(bundle / "install.sh", os.X_OK)
    assert (bundle / "deploy" / "systemd" / "giamsat.service").is_file()
    # What the province's Prometheus, Alertmanager and Grafana need.
    assert (bundle / "deploy" / "prometheus" / "rules" / "giamsat.rules.yml").is_file()
    assert (bundle / "deploy" / "prometheus" / "alertmanager.yml").is_file()
    assert list((bundle / "deploy" / "grafana" / "dashboards").glob("*.json"))


def test_bundle_installs_into_a_fresh_venv_without_an_index(bundle: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    env = offline_env()
    run(
        [venv / "bin" / "pip", "install", "--no-index", "--find-links", bundle / "wheels", "giamsat-agent"],
        env=env,
    )
    r = run(
        [
            venv / "bin" / "python",
            "-c",
            "from agent.config import load_config; import exporters.webconfig, bcrypt;"
            f"print(load_config({str(bundle / 'deploy' / 'giamsat.yml')!r}).config.agent.state_dir)",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert r.stdout.strip() == "/var/lib/giamsat"
    r = run(
        [venv / "bin" / "giamsat", "check-config", bundle / "deploy" / "giamsat.yml"], env=env, cwd=tmp_path
    )
    assert "OK" in r.stdout


@pytest.mark.root
def test_install_sh_into_a_root_is_idempotent_and_uninstalls(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = offline_env()
    install = bundle / "install.sh"
    out = run([install, "--root", root], env=env).stdout
    assert "created system user giamsat" in out

    passwd = (root / "etc" / "passwd").read_text()
    uid = int(next(line.split(":")[2] for line in passwd.splitlines() if line.startswith("giamsat:")))
    assert (root / "opt/giamsat/bin/giamsat").is_file()
    assert os.readlink(root / "usr/local/bin/giamsat") == "/opt/giamsat/bin/giamsat"
    cfg = root / "etc/giamsat/giamsat.yml"
    assert cfg.stat().st_mode & 0o777 == 0o640
    assert (root / "etc/giamsat").stat().st_mode & 0o777 == 0o750
    state = root / "var/lib/giamsat"
    assert state.stat().st_uid == uid and state.stat().st_mode & 0o777 == 0o750
    unit = root / "etc/systemd/system/giamsat.service"
    assert "ExecStart=/opt/giamsat/bin/giamsat run --config.file=/etc/giamsat/giamsat.yml" in unit.read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/giamsat.service").is_symlink()
    share = root / "opt/giamsat/share/giamsat"
    assert (share / "prometheus/rules/giamsat.rules.yml").is_file()
    assert (share / "grafana/dashboards/province-overview.json").is_file()
    # The installed program runs and reads the installed config.
    r = run(
        [
            root / "opt/giamsat/bin/python",
            "-c",
            f"from agent.config import load_config; print(load_config({str(cfg)!r}).config.agent.site)",
        ],
        env=env,
    )
    assert r.stdout.strip() == "this-site"

    # Again: an operator's config edit and state survive; nothing fails.
    cfg.write_text(cfg.read_text() + "# edited by the operator\n")
    (state / "coverage.json").write_text("{}")
    out = run([install, "--root", root], env=env).stdout
    assert "keeping existing /etc/giamsat/giamsat.yml" in out
    assert "created system user" not in out
    assert cfg.read_text().endswith("# edited by the operator\n")
    assert passwd == (root / "etc" / "passwd").read_text()

    run([install, "--root", root, "--uninstall"], env=env)
    assert not (root / "opt/giamsat").exists() and not unit.exists()
    assert not (root / "usr/local/bin/giamsat").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/giamsat.service").exists()
    assert cfg.is_file() and (state / "coverage.json").is_file()

    run([install, "--root", root, "--uninstall", "--purge"], env=env)
    assert not (root / "etc/giamsat").exists() and not state.exists()
    assert "giamsat:" not in (root / "etc" / "passwd").read_text()


@pytest.mark.root
def test_install_sh_other_prefix_rewrites_the_unit(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    run([bundle / "install.sh", "--root", root, "--prefix", "/srv/giamsat", "--no-enable"], env=offline_env())
    unit = (root / "etc/systemd/system/giamsat.service").read_text()
    assert "ExecStart=/srv/giamsat/bin/giamsat run" in unit and "/opt/giamsat" not in unit
    assert (root / "srv/giamsat/bin/giamsat").is_file()
    assert not (root / "etc/systemd/system/multi-user.target.wants").exists()


def test_install_sh_refuses_bad_arguments(bundle: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [str(bundle / "install.sh"), "--root", str(tmp_path), "--purge"], capture_output=True, text=True
    )
    assert r.returncode != 0 and "--purge only goes with --uninstall" in r.stderr
    r = subprocess.run([str(bundle / "install.sh"), "--frobnicate"], capture_output=True, text=True)
    assert r.returncode != 0 and "unknown option --frobnicate" in r.stderr


@pytest.mark.root
def test_install_sh_from_the_source_tree(tmp_path: Path) -> None:
    """The online path (`sudo deploy/install.sh` in a checkout): pip builds and installs from the tree."""
    root = tmp_path / "root"
    out = run([REPO / "deploy" / "install.sh", "--root", root, "--no-enable"]).stdout
    assert "installed giamsat-agent from the source tree" in out
    r = run([root / "opt/giamsat/bin/giamsat", "check-config", root / "etc/giamsat/giamsat.yml"])
    assert "OK" in r.stdout
