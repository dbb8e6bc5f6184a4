"""After a configuration is loaded the C heap's free pages go back to the system (glibc)."""

from __future__ import annotations

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
