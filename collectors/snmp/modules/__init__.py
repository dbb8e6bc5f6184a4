"""The shipped SNMP modules.

- snmp_exporter's own generated modules (``snmp_exporter.yml``: ``if_mib``, ``ups_mib``, ``hrDevice``,
  ``hrStorage``, ``hrSystem``, ``system``), read as a user's ``snmp.yml`` is, so what a device gives by
  default equals what snmp_exporter gives;
- giamsat's own ``host_resources`` and ``ups`` (one YAML file each, in the format of user-defined
  modules under ``collectors.snmp.modules``): byte sizes and UPS state sets the shipped alert rules
  and dashboards read.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from collectors.snmp.config import Module
from collectors.snmp.exporter_config import ExModule, load_file

NAMES = ("host_resources", "ups")


def _load(name: str) -> Module:
    text = resources.files(__name__).joinpath(f"{name}.yml").read_text(encoding="utf-8")
    return Module.model_validate(yaml.safe_load(text))


SHIPPED: dict[str, Module] = {name: _load(name) for name in NAMES}

EXPORTER_FILE = Path(str(resources.files(__name__).joinpath("snmp_exporter.yml")))
SHIPPED_EXPORTER: dict[str, ExModule] = load_file(EXPORTER_FILE).modules
