"""``giamsat run`` and ``once`` exit even when a blocking call never returns (a stat() on a hung NFS
mount): neither asyncio's executor shutdown nor the interpreter's join of pool threads may hold it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from tests.helpers import ROOT

PROGRAM = textwrap.dedent(
    """
    import asyncio, concurrent.futures, threading
    from agent.cli import run_until_done
    from agent.logging import setup_logging

    setup_logging("info", "logfmt")
    never = threading.Event()

    async def main() -> int:
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="giamsat-host")
        pool.submit(never.wait)                  # like a BlockingRunner thread stuck in a syscall
        asyncio.get_running_loop().run_in_executor(None, never.wait)  # like asyncio.to_thread
        await asyncio.sleep(0.1)
        return {rc}

    rc = run_until_done(main(), grace=0.5)
    print("returned", rc, flush=True)
    """
)


def run_program(rc: int) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(rc=rc)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    return done, time.monotonic() - t0


def test_stuck_threads_do_not_hold_the_exit() -> None:
    done, took = run_program(3)
    assert done.returncode == 3, done.stderr
    assert took < 10, took
    assert "exiting with blocking calls that never returned" in done.stderr
    assert "giamsat-host" in done.stderr
    assert "returned" not in done.stdout  # exited from inside run_until_done, output flushed before


def test_clean_run_returns_normally() -> None:
    program = "from agent.cli import run_until_done\nimport asyncio\n"
    program += "async def main():\n    await asyncio.to_thread(sum, [1, 2])\n    return 0\n"
    program += "print('returned', run_until_done(main()))\n"
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout == "returned 0\n", done.stderr
    assert "never returned" not in done.stderr
