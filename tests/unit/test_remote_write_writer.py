"""RemoteWriter start/close: nothing stays open after a failed or cancelled start."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from exporters.remote_write import RemoteWriter
from exporters.remote_write_settings import RemoteWriteSettings
from exporters.wal import Buffer
from tests.helpers import free_port

T0 = 1_700_000_000_000


def test_start_cancelled_during_the_buffer_scan_leaves_the_buffer_unlocked(tmp_path: Path) -> None:
    """Guards shutdown or a reload timeout hitting start() while it scans a big backlog in a thread:
    the scan finishes in its thread after the cancellation; start() waits for it and closes, so neither
    the lock nor the tail segment stays open (a close racing the scan thread leaked the tail's fd)."""
    settings = RemoteWriteSettings.model_validate(
        {"name": "t", "url": f"http://127.0.0.1:{free_port()}/api/v1/write"}  # nothing listens
    )
    d = tmp_path / "remote_write" / "t"
    b = Buffer(d, max_bytes=1 << 30, segment_bytes=1 << 20, max_age=None)
    b.open()
    keys = [(("__name__", f"m{j}"), ("site", "xa")) for j in range(50)]
    for i in range(40_000):  # ~20 MiB: the scan takes a while
        b.append([(k, float(i), T0 + i) for k in keys])
    b.close()

    async def run() -> int:
        w = RemoteWriter(settings, tmp_path)
        task = asyncio.create_task(w.start())
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()  # still scanning when cancelled, else this test proves nothing
        again = RemoteWriter(settings, tmp_path)
        await again.start()  # BufferLockedError if the cancelled start left the buffer open
        pending = again.pending
        await again.close()
        await asyncio.sleep(0.5)  # a scan thread still running would now hold files of the buffer
        return pending

    assert asyncio.run(run()) == 40_000 * 50
    assert _open_files_under(d) == []


def _open_files_under(d: Path) -> list[str]:
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(d)):
            out.append(target)
    return out
