"""/proc/stat: node_exporter's cpu collector (seconds per cpu and mode) and stat collector."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options

PATHS = ("/proc/stat",)
#: USER_HZ: 100 on every Linux architecture node_exporter supports (it hardcodes it too)
USER_HZ = 100.0
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass
class ProcStat:
    cpu_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    guest_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)


_SCALARS = ("btime", "ctxt", "processes", "intr", "procs_running", "procs_blocked")


def parse_stat(text: str, user_hz: float = USER_HZ) -> ProcStat:
    """Per-cpu seconds per mode and the system-wide counters; lines that do not parse are skipped.

    Guest time is already inside user/nice, so it is reported apart, as node_exporter does.
    """
    st = ProcStat()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key.startswith("cpu") and key[3:].isdigit():
                values = [float(v) / user_hz for v in parts[1:]]
                if len(values) < 4:
                    continue
                st.cpu_seconds[key[3:]] = dict(zip(CPU_MODES, values, strict=False))
                if len(values) >= 9:
                    st.guest_seconds[key[3:]] = {
                        "user": values[8],
                        "nice": values[9] if len(values) >= 10 else 0.0,
                    }
            elif key in _SCALARS and len(parts) >= 2:
                st.scalars[key] = float(parts[1])
        except ValueError:
            continue
    return st


def cpu_families(st: ProcStat) -> list[Metric]:
    cpu = CounterMetricFamily(
        "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
    )
    guest = CounterMetricFamily(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        labels=["cpu", "mode"],
    )
    for c in sorted(st.cpu_seconds, key=int):
        for mode, seconds in st.cpu_seconds[c].items():
            cpu.add_metric([c, mode], seconds)
        for mode, seconds in st.guest_seconds.get(c, {}).items():
            guest.add_metric([c, mode], seconds)
    return [cpu, guest] if st.cpu_seconds else []


def stat_families(st: ProcStat) -> list[Metric]:
    spec = (
        ("btime", "node_boot_time_seconds", "Node boot time, in unixtime.", False),
        ("ctxt", "node_context_switches_total", "Total number of context switches.", True),
        ("processes", "node_forks_total", "Total number of forks.", True),
        ("intr", "node_intr_total", "Total number of interrupts serviced.", True),
        ("procs_running", "node_procs_running", "Number of processes in runnable state.", False),
        ("procs_blocked", "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", False),
    )  # fmt: skip
    out: list[Metric] = []
    for key, name, doc, counter in spec:
        if key not in st.scalars:
            continue
        v = st.scalars[key]
        out.append(
            CounterMetricFamily(name[: -len("_total")], doc, value=v)
            if counter
            else GaugeMetricFamily(name, doc, value=v)
        )
    return out


def collect_cpu(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/stat")
    return [] if text is None else cpu_families(parse_stat(text, opts.user_hz))


def collect_stat(fs: Files, opts: Options) -> list[Metric]:
    text = fs.read("/proc/stat")
    return [] if text is None else stat_families(parse_stat(text))
