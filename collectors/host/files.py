"""The one place host parts read from: text files under a root, so the same parsers run on the live
/proc and /sys, on a fixture tree in tests, and on a snapshot of a remote host's files read over SSH.

A file that is missing or unreadable reads as ``None`` (a part then reports nothing for it, as
node_exporter does on machines without that hardware); nothing here raises for an absent file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: A sysfs or procfs file larger than this is not one node_exporter reads; stop there.
MAX_FILE_BYTES = 4 * 2**20
_CHUNK = 65536


@dataclass(frozen=True)
class StatFS:
    """What the filesystem part needs of statvfs(3)."""

    bsize: float
    blocks: float
    bfree: float
    bavail: float
    files: float
    ffree: float


@dataclass(frozen=True)
class Clock:
    """The host's clock at collection: epoch seconds and its time zone (name, offset from UTC)."""

    now: float
    zone: str
    offset: float


class Files:
    """Files under ``root`` ("/" is this machine)."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)
        self.live = str(root) == "/"

    def _path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str | None:
        """The file's text, or None when it is missing or unreadable."""
        chunks: list[bytes] = []
        size = 0
        try:
            with open(self._path(path), "rb", buffering=0) as f:
                # small reads: /proc/sys refuses a read buffer of megabytes (ENOMEM)
                while size < MAX_FILE_BYTES:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except OSError:
            return None
        return b"".join(chunks).decode("utf-8", "replace")

    def listdir(self, path: str) -> list[str]:
        """Sorted entry names of a directory; empty when it is missing."""
        try:
            return sorted(os.listdir(self._path(path)))
        except OSError:
            return []

    def realpath(self, path: str) -> str:
        """Where a sysfs link leads, relative to the root (for hwmon chip names)."""
        full = os.path.realpath(self._path(path))
        root = os.path.realpath(self.root)
        return "/" + os.path.relpath(full, root) if root != "/" else full

    def statvfs(self, mountpoint: str) -> StatFS | None:
        """statvfs of a mount point; None when it fails (node_filesystem_device_error 1)."""
        try:
            st = os.statvfs(self._path(mountpoint))
        except OSError:
            return None
        return StatFS(st.f_bsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree)

    def uname(self) -> dict[str, str] | None:
        """uname(2) fields; on a tree other than this machine's, from /proc/sys/kernel."""
        domain = (self.read("/proc/sys/kernel/domainname") or "(none)").strip()
        if self.live:
            u = os.uname()
            return {
                "sysname": u.sysname,
                "release": u.release,
                "version": u.version,
                "machine": u.machine,
                "nodename": u.nodename,
                "domainname": domain,
            }
        return uname_from_proc(self, domain)

    def clock(self) -> Clock | None:
        now = time.time()
        lt = time.localtime(now)
        return Clock(now, lt.tm_zone, float(lt.tm_gmtoff))


def uname_from_proc(fs: Files, domain: str) -> dict[str, str] | None:
    """uname fields from /proc/sys/kernel, as a remote host or a fixture tree has them."""
    keys = {
        "sysname": "ostype",
        "release": "osrelease",
        "version": "version",
        "machine": "arch",
        "nodename": "hostname",
    }
    out: dict[str, str] = {}
    for label, name in keys.items():
        text = fs.read(f"/proc/sys/kernel/{name}")
        if text is None:
            return None
        out[label] = text.strip()
    out["domainname"] = domain
    return out


class Snapshot(Files):
    """Files read elsewhere (a remote host over SSH), held in memory: path -> text."""

    def __init__(
        self,
        files: Mapping[str, str],
        stats: Mapping[str, StatFS | None] | None = None,
        clock: Clock | None = None,
        links: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__("/")
        self.live = False
        self.files = dict(files)
        self.stats = dict(stats or {})
        self._clock = clock
        self.links = dict(links or {})
        dirs: dict[str, set[str]] = {}
        for p in self.files:
            parts = p.strip("/").split("/")
            for i in range(len(parts)):
                dirs.setdefault("/" + "/".join(parts[:i]), set()).add(parts[i])
        self.dirs = {k: sorted(v) for k, v in dirs.items()}

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def listdir(self, path: str) -> list[str]:
        return list(self.dirs.get("/" + path.strip("/"), []))

    def realpath(self, path: str) -> str:
        return self.links.get(path, path)

    def statvfs(self, mountpoint: str) -> StatFS | None:
        return self.stats.get(mountpoint)

    def uname(self) -> dict[str, str] | None:
        return uname_from_proc(self, (self.read("/proc/sys/kernel/domainname") or "(none)").strip())

    def clock(self) -> Clock | None:
        return self._clock


def parse_grep_dump(data: bytes, prefixes: Iterable[str] = ("/",)) -> dict[str, str]:
    """``grep -a -s -H -Z -r '' FILES...`` output -> {path: text}.

    Each line is the file name, a NUL, then one line of the file, so multi-line files come back whole
    and names need no escaping. Lines for paths outside ``prefixes`` are dropped.
    """
    allowed = tuple(prefixes)
    lines: dict[str, list[str]] = {}
    for raw in data.split(b"\n"):
        name, sep, rest = raw.partition(b"\0")
        if not sep:
            continue
        path = name.decode("utf-8", "replace")
        if not path.startswith(allowed):
            continue
        lines.setdefault(path, []).append(rest.decode("utf-8", "replace"))
    return {p: "\n".join(v) + "\n" for p, v in lines.items()}
