"""/sys/devices/system/edac/mc: node_exporter's edac collector (ECC memory error counts)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from collectors.host.files import Files
from collectors.host.options import Options
from collectors.host.parts.common import read_number

PATHS = (
    "/sys/devices/system/edac/mc/mc*/ce_count",
    "/sys/devices/system/edac/mc/mc*/ue_count",
    "/sys/devices/system/edac/mc/mc*/csrow*/ce_count",
    "/sys/devices/system/edac/mc/mc*/csrow*/ue_count",
)


def collect(fs: Files, opts: Options) -> list[Metric]:
    base = "/sys/devices/system/edac/mc"
    ce = CounterMetricFamily(
        "node_edac_correctable_errors", "Total correctable memory errors.", labels=["controller"]
    )
    ue = CounterMetricFamily(
        "node_edac_uncorrectable_errors", "Total uncorrectable memory errors.", labels=["controller"]
    )
    row_ce = CounterMetricFamily(
        "node_edac_csrow_correctable_errors",
        "Total correctable memory errors for this csrow.",
        labels=["controller", "csrow"],
    )
    row_ue = CounterMetricFamily(
        "node_edac_csrow_uncorrectable_errors",
        "Total uncorrectable memory errors for this csrow.",
        labels=["controller", "csrow"],
    )
    for mc in fs.listdir(base):
        if not mc.startswith("mc") or not mc[2:].isdigit():
            continue
        ctl = mc[2:]
        for fam, name in ((ce, "ce_count"), (ue, "ue_count")):
            v = read_number(fs, f"{base}/{mc}/{name}")
            if v is not None:
                fam.add_metric([ctl], v)
        for row in fs.listdir(f"{base}/{mc}"):
            if not row.startswith("csrow") or not row[5:].isdigit():
                continue
            for fam, name in ((row_ce, "ce_count"), (row_ue, "ue_count")):
                v = read_number(fs, f"{base}/{mc}/{row}/{name}")
                if v is not None:
                    fam.add_metric([ctl, row[5:]], v)
    return [f for f in (ce, ue, row_ce, row_ue) if f.samples]
