"""The shipped SNMP modules (``system``, ``if_mib``, ``host_resources``, ``ups``), one YAML file each.

They use the same format as user-defined modules in ``collectors.snmp.modules``, so each file is also an
example of how to write one.
"""

from __future__ import annotations

from importlib import resources

import yaml

from collectors.snmp.config import Module

NAMES = ("system", "if_mib", "host_resources", "ups")


def _load(name: str) -> Module:
    text = resources.files(__name__).joinpath(f"{name}.yml").read_text(encoding="utf-8")
    return Module.model_validate(yaml.safe_load(text))


SHIPPED: dict[str, Module] = {name: _load(name) for name in NAMES}
