"""State of the configured systemd units (the e-government services a server runs).

Asks ``systemctl show`` rather than D-Bus, so no extra dependency: one call for all units, bounded by
a timeout. Metric shape follows node_exporter's systemd collector: one series per possible state, the
current one set to 1.
"""

from __future__ import annotations

import subprocess

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.kernel.errors import CollectError
from collectors.host.files import Files
from collectors.host.options import Options

PATHS: tuple[str, ...] = ()
STATES = ("activating", "active", "deactivating", "failed", "inactive")
PROPERTIES = ("Id", "ActiveState", "SubState", "LoadState", "Type", "NRestarts")


def parse_show(text: str) -> list[dict[str, str]]:
    """``systemctl show -p ...`` output: blocks of KEY=VALUE separated by blank lines."""
    units: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                units.append(cur)
                cur = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            cur[key] = value
    if cur:
        units.append(cur)
    return units


def collect(fs: Files, opts: Options) -> list[Metric]:
    """Only this machine's units (systemctl runs here), only the configured ones."""
    units, systemctl, timeout = list(opts.systemd_units), opts.systemctl_path, opts.timeout
    if not units or not fs.live:
        return []
    try:
        proc = subprocess.run(
            [systemctl, "show", "--no-pager", f"--property={','.join(PROPERTIES)}", "--", *units],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CollectError("systemd_unavailable", f"{systemctl} not found") from None
    except subprocess.TimeoutExpired:
        raise CollectError("timeout", "systemctl show timed out") from None
    if proc.returncode != 0:
        raise CollectError(
            "systemd_unavailable", (proc.stderr.strip().splitlines() or ["systemctl failed"])[0]
        )
    state = GaugeMetricFamily("node_systemd_unit_state", "Systemd unit", labels=["name", "state", "type"])
    loaded = GaugeMetricFamily(
        "giamsat_systemd_unit_loaded",
        "Whether the unit file exists and is loaded (0: not-found or masked).",
        labels=["name"],
    )
    restarts = CounterMetricFamily(
        "node_systemd_service_restart", "Service unit count of Restart triggers", labels=["name"]
    )
    by_id = {u.get("Id", ""): u for u in parse_show(proc.stdout)}
    for name in units:
        u = by_id.get(name) or by_id.get(f"{name}.service") or {}
        active = u.get("ActiveState", "inactive")
        kind = u.get("Type", "")
        for s in STATES:
            state.add_metric([name, s, kind], 1.0 if s == active else 0.0)
        loaded.add_metric([name], 1.0 if u.get("LoadState") == "loaded" else 0.0)
        if u.get("NRestarts", "").isdigit():  # services only
            restarts.add_metric([name], float(u["NRestarts"]))
    return [state, loaded, *([restarts] if restarts.samples else [])]
