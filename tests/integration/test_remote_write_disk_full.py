"""The remote-write buffer on a full disk, as the log shows it: one error when the disk fills, one line
when it has room again, not an error/info pair per append while results of different sizes alternate
between fitting and not."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path

import pytest

from exporters.remote_write import RemoteWriter
from tests.helpers import free_port
from tests.integration.test_remote_write import _rows, _settings


@pytest.mark.root
def test_a_full_disk_is_logged_once_per_change_of_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        url = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nobody listens: everything stays buffered
        now = int(time.time() * 1000)

        async def run() -> tuple[int, int]:
            w = RemoteWriter(_settings(url, buffer={"segment_size": 65536}), mnt)
            await w.start()
            stored = dropped = 0
            for i in range(600):  # a big result and a small one in turn, as the host and a probe job
                n = w.append(
                    _rows("rwtest_big" if i % 2 else "rwtest_small", 200 if i % 2 else 1, i, now + i)
                )
                stored, dropped = stored + (n > 0), dropped + (n == 0)
                if i % 20 == 0:
                    await asyncio.sleep(0)
            await w.close()
            return stored, dropped

        with caplog.at_level(logging.INFO, logger="giamsat.remote_write"):
            stored, dropped = asyncio.run(run())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
    assert dropped > 50 and stored > 200  # the small ones still fit, the big ones no longer do
    full = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert [r.levelname for r in full] == ["ERROR"], [r.getMessage() for r in full]
