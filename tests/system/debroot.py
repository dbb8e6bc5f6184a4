"""A pristine Debian 12 root for the system tests, built once with debootstrap and cached outside the repo.

Building it fetches Debian packages from the configured mirror (an install step, like apt-get); the
tests then boot overlay copies of it with no network but their own loopback. The cache key is the
recipe below, so changing the recipe builds a new root.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("GIAMSAT_TEST_CACHE", "/var/cache/giamsat-tests"))
SUITE = "bookworm"
# What the package needs already installed (apt installs a local .deb with no network), an init, and
# D-Bus, through which the host collector's `systemctl show` reaches systemd as a non-root user.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "passwd", "procps", "libgcc-s1"]
# Units that would only try the network or scan disks in a throw-away container.
MASKED = ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "dpkg-db-backup.timer"]
# ICMP datagram sockets off for everyone, so an ICMP probe that works proves the unit's CAP_NET_RAW.
SYSCTL = "net.ipv4.ping_group_range = 1 0\n"


def mirror() -> str:
    """The first Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        m = re.search(r"^URIs:\s*(\S+)", src.read_text(), re.M)
        if m and "security" not in m.group(1):
            return m.group(1)
    with contextlib.suppress(OSError):
        m = re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+\s+main", Path("/etc/apt/sources.list").read_text(), re.M
        )
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def recipe_key() -> str:
    text = repr((SUITE, PACKAGES, MASKED, SYSCTL, "minbase"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(dest: Path) -> None:
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(dest),
        mirror(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        log = dest / "debootstrap" / "debootstrap.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise RuntimeError(
            f"debootstrap failed ({' '.join(cmd)}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}{tail}"
        )
    # Nothing is fetched inside the container: drop the downloaded packages and the index.
    shutil.rmtree(dest / "var/cache/apt/archives", ignore_errors=True)
    (dest / "var/cache/apt/archives/partial").mkdir(parents=True)
    for lists in (dest / "var/lib/apt/lists").glob("*_*"):
        lists.unlink()
    for unit in MASKED:
        link = dest / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (dest / "etc/sysctl.d/90-giamsat-tests.conf").write_text(SYSCTL)


def pristine_root() -> tuple[Path, float | None]:
    """The cached root (built now if absent) and how long building it took (None: it was cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    final = CACHE / f"debian12-{recipe_key()}"
    with _locked(CACHE / ".lock"):
        if (final / "ok").exists():
            return final / "root", None
        for old in CACHE.glob("debian12-*"):  # roots of earlier recipes
            shutil.rmtree(old, ignore_errors=True)
        tmp = CACHE / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.monotonic()
        _build(tmp / "root")
        (tmp / "ok").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        tmp.rename(final)
        return final / "root", time.monotonic() - t0
