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
from prometheus_client.samples import Sample


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
        if not isinstance(getattr(cls, "shape", None), MemberDescriptorType):
            cls.shape = cls  # each class is its own shape, unless its instances carry one (a slot)

    def sample_values(self) -> Sequence[float]:
        """The values of ``samples``, in order."""
        raise NotImplementedError


class LabelRows(Metric):
    """A family of one sample per row, ``(labels, value)``, whose label dicts its source keeps across
    scrapes (one dict per job for the agent's per-job health series): the exporter spells each dict's
    labels once while the dict lives, instead of 30 000 label sets on every scrape at 5 000 targets.
    The dicts are never changed once given and no two rows have equal labels; the lines are written
    with exactly these labels (no result's ``site``/``target`` is added).
    """

    def __init__(
        self, name: str, documentation: str, typ: str, rows: list[tuple[dict[str, str], float]]
    ) -> None:  # no Metric.__init__: its name checks ran once per family and scrape
        self.name, self.documentation, self.type, self.unit = name, documentation, typ, ""
        #: the name every sample has (a counter's ends in ``_total``)
        self.sample_name = name + "_total" if typ == "counter" else name
        self.rows = rows

    @property
    def samples(self) -> list[Sample]:  # type: ignore[override]
        name = self.sample_name
        return [Sample(name, labels, float(value)) for labels, value in self.rows]
