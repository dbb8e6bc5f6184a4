"""Memory settings of the C heap: trimmed after a configuration is applied, one arena for a large agent (glibc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from agent.lifecycle import release_free_memory


def test_a_large_configuration_trims_the_heap_where_glibc_is() -> None:
    assert release_free_memory(5000) is (platform.libc_ver()[0] == "glibc")


def test_a_small_configuration_does_not_import_ctypes_for_it() -> None:
    code = "import sys; from agent.lifecycle import release_free_memory as r; print(r(10), 'ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_a_large_configuration_shares_one_malloc_arena_unless_the_environment_says_otherwise() -> None:
    code = "from agent.lifecycle import limit_malloc_arenas as f; print(f(5000))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert run.stdout.split() == [str(platform.libc_ver()[0] == "glibc")]
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=env
    )
    assert run.stdout.split() == ["False"]
