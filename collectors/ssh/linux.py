"""The SSH ``linux`` module: a remote host's /proc and /sys, read over SSH into a ``Snapshot`` and fed
to the host collector's own parts, so an agentless host yields the series a local one does.

One command copies every file the parts read (``grep`` prints each line after its file name and a NUL,
so names need no escaping and several files come back in one answer); a second one takes statvfs of
the mount points left after node_exporter's excludes (``stat -f``), apart because a hung NFS mount may
stall it. Parts that need this machine's own syscalls or programs (timex, systemd) are not run.
"""

from __future__ import annotations

import shlex

from prometheus_client.core import Metric

from collectors.host.files import Clock, Snapshot, StatFS, parse_grep_dump
from collectors.host.options import Options
from collectors.host.parts import filesystem
from collectors.host.registry import PARTS

#: parts a remote host cannot give over SSH: adjtimex is a syscall, systemctl a local program
LOCAL_ONLY = ("timex", "systemd")
#: parts fed by the first command; filesystem needs the second
FILE_PARTS = tuple(n for n in PARTS if n not in (*LOCAL_ONLY, "filesystem"))
_STAT_FORMAT = "%s %b %f %a %c %d %n"


def _globs() -> list[str]:
    out: list[str] = []
    for name in (*FILE_PARTS, "filesystem"):
        for p in PARTS[name].paths:
            if p not in out:
                out.append(p)
    return out


def files_command() -> list[str]:
    """``sh -c`` script printing every file the parts read as ``path NUL line`` lines.

    The globs are this module's constants, expanded by the remote shell (never user input). ``-d skip``
    keeps grep out of directories and symlinked subtrees; unmatched globs and unreadable files are
    skipped silently. The clock, ``uname -m`` (for kernels without /proc/sys/kernel/arch) and the
    hwmon device links come as pseudo-files.
    """
    script = (
        "export LC_ALL=C; "
        f"grep -a -s -H -Z -d skip -D skip -e '' -- {' '.join(_globs())}; "
        "printf '@clock\\0%s\\n' \"$(date '+%s.%N %Z %z')\"; "
        "printf '@arch\\0%s\\n' \"$(uname -m)\"; "
        'for d in /sys/class/hwmon/*; do [ -e "$d/device" ] && '
        'printf \'@link\\0%s %s\\n\' "$d/device" "$(readlink -f "$d/device")"; done; '
        "exit 0"
    )
    return ["sh", "-c", script]


def parse_snapshot(data: bytes) -> Snapshot:
    files = parse_grep_dump(data)
    clock: Clock | None = None
    links: dict[str, str] = {}
    arch = ""
    for raw in data.split(b"\n"):
        key, sep, rest = raw.partition(b"\0")
        if not sep or not key.startswith(b"@"):
            continue
        text = rest.decode("utf-8", "replace")
        if key == b"@clock":
            clock = _clock(text)
        elif key == b"@arch":
            arch = text.strip()
        elif key == b"@link":
            link, _, target = text.partition(" ")
            if target:
                links[link] = target
    if arch and "/proc/sys/kernel/arch" not in files:
        files["/proc/sys/kernel/arch"] = arch + "\n"
    return Snapshot(files, clock=clock, links=links)


def _clock(text: str) -> Clock | None:
    """``date '+%s.%N %Z %z'`` -> the remote clock (busybox date may print %N as is: seconds only)."""
    parts = text.split()
    if len(parts) != 3:
        return None
    try:
        now = float(parts[0]) if parts[0].replace(".", "", 1).isdigit() else float(parts[0].split(".")[0])
        sign = -1 if parts[2].startswith("-") else 1
        offset = sign * (int(parts[2][1:3]) * 3600 + int(parts[2][3:5]) * 60)
    except (ValueError, IndexError):
        return None
    return Clock(now, parts[1], float(offset))


def mount_points(snap: Snapshot, opts: Options) -> list[str]:
    return [m.mountpoint for m in filesystem.selected(filesystem.mounts(snap), opts)]


def stat_command(mounts: list[str]) -> list[str]:
    """statvfs of each mount point; a mount that fails is left out of the answer (device_error 1)."""
    return ["sh", "-c", f'stat -f -c {shlex.quote(_STAT_FORMAT)} -- "$@" 2>/dev/null; exit 0', "sh", *mounts]


def parse_stats(text: str, mounts: list[str]) -> dict[str, StatFS | None]:
    out: dict[str, StatFS | None] = dict.fromkeys(mounts)
    wanted = set(mounts)
    for line in text.splitlines():
        parts = line.split(" ", 6)
        if len(parts) != 7 or parts[6] not in wanted:
            continue
        try:
            bsize, blocks, bfree, bavail, files, ffree = (float(p) for p in parts[:6])
        except ValueError:
            continue
        out[parts[6]] = StatFS(bsize, blocks, bfree, bavail, files, ffree)
    return out


def file_families(snap: Snapshot, opts: Options) -> list[Metric]:
    out: list[Metric] = []
    for name in FILE_PARTS:
        out += PARTS[name].collect(snap, opts)
    return out


def filesystem_families(snap: Snapshot, opts: Options, stats: dict[str, StatFS | None]) -> list[Metric]:
    snap.stats = dict(stats)
    return filesystem.collect(snap, opts)
