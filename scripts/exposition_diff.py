"""Compare two /metrics answers series by series, ignoring values that are timings or readings of the host.

For refactors that must not change what users see: run the agent before and after on the same config
(e.g. config/example.yml), save each scrape, then `python scripts/exposition_diff.py before.txt after.txt`.
Every series (name and labels) and HELP/TYPE line must match; values must match too, except for series
whose name says they measure time or the host (seconds, timestamps, durations, RTTs, node_*, bytes).
Sample order within the file is ignored (jobs finish in a different order from run to run). Exit 0 when
the two are the same in that sense, 1 with a unified diff otherwise.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

VOLATILE = re.compile(r"seconds|timestamp|duration|rtt|^node_|_bytes|hop_limit|stddev")


def normalised(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line:
            out.append(line)
            continue
        key, _, value = line.rpartition(" ")
        if VOLATILE.search(key.split("{", 1)[0]):
            value = "<varies>"
        out.append(f"{key} {value}")
    return sorted(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: exposition_diff.py BEFORE AFTER", file=sys.stderr)
        return 2
    a, b = (normalised(Path(p)) for p in argv)
    diff = list(difflib.unified_diff(a, b, argv[0], argv[1], lineterm=""))
    print("\n".join(diff) if diff else "same series, same values (timings aside)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
