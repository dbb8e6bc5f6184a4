"""Writes the package's copyright file: giamsat's licence and, for every bundled distribution, its own."""

from __future__ import annotations

import sys
from email.parser import Parser
from pathlib import Path

HEADER = """\
giamsat, monitoring agent for provincial e-government networks.

Copyright: {years} giamsat contributors
License: Apache-2.0
 On Debian systems the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

Bundled Python distributions
----------------------------
The program runs in its own tree, /usr/lib/giamsat, with the Python distributions below installed
unmodified from their wheels (only the symbols of compiled modules are stripped). Each one's copyright
notice and licence text are in its *.dist-info directory under
{site}.

"""


def licence(meta: dict[str, str], classifiers: list[str]) -> str:
    expr = meta.get("License-Expression") or ""
    if expr:
        return expr
    lic = (meta.get("License") or "").strip()
    if lic and "\n" not in lic and len(lic) < 80:
        return lic
    found = [c.split(" :: ")[-1] for c in classifiers if c.startswith("License ::")]
    return ", ".join(found) or "see its licence file"


def main(site: Path, shown_site: str, years: str) -> None:
    out = [HEADER.format(site=shown_site, years=years)]
    for info in sorted(site.glob("*.dist-info"), key=lambda p: p.name.lower()):
        msg = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        meta = {k: str(v) for k, v in msg.items()}
        name, version = meta.get("Name", info.name), meta.get("Version", "")
        if name == "giamsat-agent":
            continue
        out.append(f" {name} {version}: {licence(meta, msg.get_all('Classifier') or [])}\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
