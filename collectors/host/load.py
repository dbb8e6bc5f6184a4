"""Load averages, as node_exporter's loadavg collector names them."""

from __future__ import annotations

import os

from prometheus_client.core import GaugeMetricFamily, Metric


def collect() -> list[Metric]:
    one, five, fifteen = os.getloadavg()
    return [
        GaugeMetricFamily("node_load1", "1m load average.", value=one),
        GaugeMetricFamily("node_load5", "5m load average.", value=five),
        GaugeMetricFamily("node_load15", "15m load average.", value=fifteen),
    ]
