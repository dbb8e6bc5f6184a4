"""The dropped-samples reasons: the metric, its HELP, the code and docs/remote_write.md name the same
set, and every reason is exported at 0 before anything was dropped."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from exporters.remote_write import RemoteWriter
from exporters.remote_write_settings import DROP_REASONS, RemoteWriteSettings
from tests.helpers import ROOT

#: functions that take a drop reason, and the position of the reason among their arguments
REASON_ARG = {"_drop": 0, "_drop_oldest": 0, "note_dropped": 0, "_count_drop": 1}


def reasons_in_code() -> set[object]:
    """Every literal reason the sender and the buffer pass when they drop samples."""
    found: set[object] = set()  # a dict key may be any constant: not narrowed to str, so a stray one fails
    for path in (ROOT / "exporters" / "remote_write.py", ROOT / "exporters" / "wal.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                pos = REASON_ARG.get(name)
                if pos is not None and len(node.args) > pos:
                    arg = node.args[pos]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.add(arg.value)
                for kw in node.keywords:
                    if kw.arg == "dropped" and isinstance(kw.value, ast.Dict):
                        found |= {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "reason" for t in node.targets
            ):
                found |= {
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value.isidentifier()
                }
    return found


def test_the_code_drops_only_for_declared_reasons() -> None:
    found = reasons_in_code()
    assert {"buffer_full", "corrupt", "disk_full", "reload", "too_old", "write_error"} <= found
    assert found <= set(DROP_REASONS), found - set(DROP_REASONS)


def test_docs_list_the_same_reasons() -> None:
    doc = (ROOT / "docs" / "remote_write.md").read_text(encoding="utf-8")
    [row] = [
        line for line in doc.splitlines() if line.startswith("| `giamsat_remote_write_samples_dropped_total")
    ]
    listed = re.findall(r"`([a-z_]+)`", row.split("|")[3])
    assert listed == list(DROP_REASONS)


def test_every_reason_is_exported_at_zero_from_the_start(tmp_path: Path) -> None:
    settings = RemoteWriteSettings.model_validate({"name": "central", "url": "http://127.0.0.1:1/write"})
    writer = RemoteWriter(settings, tmp_path)
    [family] = [m for m in writer.collect() if m.name == "giamsat_remote_write_samples_dropped"]
    totals = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert totals == dict.fromkeys(DROP_REASONS, 0)
    assert family.documentation == f"Samples given up on, by reason ({', '.join(DROP_REASONS)})."
