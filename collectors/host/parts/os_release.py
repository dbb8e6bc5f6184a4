"""/etc/os-release: node_exporter's os collector (node_os_info, node_os_version)."""

from __future__ import annotations

import re
import shlex

from prometheus_client.core import GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/etc/os-release", "/usr/lib/os-release")
_INFO = ("build_id", "id", "id_like", "image_id", "image_version", "name", "pretty_name", "variant",
         "variant_id", "version", "version_codename", "version_id")  # fmt: skip
_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?")


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key.lower()] = " ".join(words)
    return out


def collect(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/etc/os-release")
    if text is None:
        text = fs.read("/usr/lib/os-release")
    if text is None:
        return []
    fields = parse_os_release(text)
    info = GaugeMetricFamily(
        "node_os_info",
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, "
        "name, pretty_name, variant, variant_id, version, version_codename, version_id.",
        labels=list(_INFO),
    )
    info.add_metric([fields.get(k, "") for k in _INFO], 1.0)
    out: list[Metric] = [info]
    m = _VERSION.match(fields.get("version_id", ""))
    if m:
        version = GaugeMetricFamily(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            labels=["id", "id_like", "name"],
        )
        version.add_metric(
            [fields.get("id", ""), fields.get("id_like", ""), fields.get("name", "")],
            float(f"{m.group(1)}.{m.group(2) or 0}"),
        )
        out.append(version)
    return out
