"""Shaped families: result families whose samples' names and labels are fixed, only values vary.

A probe reports the same families for a target every round (``probe_duration_seconds``, the phases, the
RTT figures, the histogram's buckets); only the numbers change. A family class that says so, by
deriving from ``ShapedFamily``, lets the exporter spell each sample's ``name{labels`` once per shape
and write just the values for every result after that, instead of walking samples and label dicts for
every target and round (at 5 000 ICMP targets that walk cost more than probing them).

The contract a shaped family keeps:

- every family with the same ``shape`` object has the same samples, in the same order, with the same
  names and the same labels (neither ``site`` nor ``target``), no timestamps and no ``_created``;
- ``sample_values()`` returns the samples' values in that order, as floats;
- ``samples`` still works (other readers, such as the series cap, link status and remote write, read
  families the usual way), and agrees with ``sample_values()``.

A shape is compared by identity and used as a dict key: by default the family's class (when the
class fixes the samples), or an object the collector makes once (``FamilyShape``) and each family
carries in a ``shape`` slot, when the samples depend on the collector's settings (a histogram's
buckets).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MemberDescriptorType
from typing import Any

from prometheus_client.core import Metric


class FamilyShape:
    """An identity token for families whose samples depend on a collector's settings."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"FamilyShape({self.what!r})"


class ShapedFamily(Metric):
    """A family whose samples' names and labels are fixed by ``shape``: see the module docstring."""

    __slots__ = ()
    shape: object

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("shape"), MemberDescriptorType) and not isinstance(
            getattr(cls, "shape", None), MemberDescriptorType
        ):
            cls.shape = cls  # each class is its own shape, unless its instances carry one

    def sample_values(self) -> Sequence[float]:
        """The values of ``samples``, in order."""
        raise NotImplementedError
