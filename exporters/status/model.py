"""What the status page shows, as data: the site tree with each site's state, counts per state at each
level, the problems (outages and what they cut off) and the coverage gaps, ordered for triage.

Built only when a site's state, reason, since-time or failing uplinks change (``StatusPage`` keys its
cache on them), never per request. The inputs are plain read-only snapshots the agent hands over
(``StatusSnapshot``): this package reads no live object.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

STATES = ("down", "unreachable", "gap", "unknown", "up")
"""Every site state, in triage order (worst first)."""
RANK = {s: i for i, s in enumerate(STATES)}
PROBLEMS = frozenset({"down", "unreachable"})
LEVELS = ("province", "district", "commune")


class SiteDetail(Protocol):
    """One site's state as the site tracker reports it (``agent.sites.SiteDetail``)."""

    @property
    def state(self) -> str: ...
    @property
    def since(self) -> float | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def failing(self) -> tuple[tuple[str, str], ...]: ...


@dataclass(frozen=True, slots=True)
class SiteRow:
    """One site of the inventory."""

    id: str
    name: str
    level: int  # index into LEVELS: 0 province, 1 district-era node, 2 commune
    parent: str | None


class SiteTree:
    """The inventory as the page walks it; built once per configuration and shared by every request."""

    def __init__(self, rows: Sequence[SiteRow]) -> None:
        self.rows: dict[str, SiteRow] = {r.id: r for r in rows}
        self.children: dict[str, list[str]] = {sid: [] for sid in self.rows}
        self.roots: list[str] = []
        #: names in Vietnamese alphabetical order, computed once per inventory
        self.collation: dict[str, str] = {sid: collation_key(r.name) for sid, r in self.rows.items()}
        for r in self.rows.values():
            if r.parent is None or r.parent not in self.rows:
                self.roots.append(r.id)
            else:
                self.children[r.parent].append(r.id)


def collation_key(name: str) -> str:
    """Sorts Vietnamese names as a reader expects: accents after the bare letter (Đạo after Dào, before
    Em), rather than by code point (which puts every Đ after Z)."""
    folded = unicodedata.normalize("NFD", name.casefold())
    base = "".join(ch for ch in folded if not unicodedata.combining(ch)).replace("đ", "d\x7f")
    return base + "\x00" + folded  # the accents decide between names equal without them


@dataclass(frozen=True, slots=True)
class CollectorHealth:
    """How one collector kind's jobs ran: the agent's own health, not the sites'."""

    kind: str
    jobs: int
    ok: int
    failing: int
    pending: int
    newest_success: float  # 0: never
    errors: tuple[tuple[str, int], ...]  # (reason, jobs failing with it), most frequent first


@dataclass(frozen=True, slots=True)
class AgentHealth:
    version: str
    config: str
    reload_ok: bool
    reload_success_timestamp: float
    first_round_done: bool
    collectors: tuple[CollectorHealth, ...]


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything one request of ``/`` reads, taken at once from the running agent."""

    tree: SiteTree
    sites: Mapping[str, SiteDetail]
    health: AgentHealth
    language: str = "auto"  # the configured override: auto, vi or en


@dataclass(frozen=True, slots=True)
class _Unknown:
    state: str = "unknown"
    since: float | None = None
    reason: str = "no_result"
    failing: tuple[tuple[str, str], ...] = ()


UNKNOWN: SiteDetail = _Unknown()


@dataclass
class Node:
    """A site with its state, its children (worst first) and the states below it, per level."""

    row: SiteRow
    detail: SiteDetail
    children: list[Node] = field(default_factory=list)
    #: level -> state -> number of sites of that level below this one
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    #: the worst state in this subtree (itself included), as a RANK
    worst: int = RANK["up"]

    @property
    def has_problem(self) -> bool:
        return self.worst <= RANK["unreachable"]


@dataclass
class Problem:
    """An outage: a down or unreachable site whose parent is not, and the sites cut off behind it."""

    node: Node
    behind: list[Node]


@dataclass
class PageModel:
    roots: list[Node]
    problems: list[Problem]
    gaps: list[Node]
    totals: dict[int, dict[str, int]]  # level -> state -> sites


def detail_key(
    sites: Mapping[str, SiteDetail],
) -> tuple[tuple[str, float | None, str, tuple[tuple[str, str], ...]], ...]:
    """What the page depends on, comparable: the model is rebuilt only when this changes."""
    return tuple((d.state, d.since, d.reason, d.failing) for d in sites.values())


def build(tree: SiteTree, sites: Mapping[str, SiteDetail]) -> PageModel:
    """The page's data for ``tree`` in the states ``sites``."""
    nodes = {sid: Node(row, sites.get(sid, UNKNOWN)) for sid, row in tree.rows.items()}
    totals: dict[int, dict[str, int]] = {}
    order = _order(tree)
    roots = [_fill(nodes, tree, sid, totals, order) for sid in tree.roots]
    roots.sort(key=order)
    problems: list[Problem] = []
    gaps: list[Node] = []
    for node in _walk(roots):
        st = node.detail.state
        if st == "gap":
            gaps.append(node)
        parent = nodes.get(node.row.parent) if node.row.parent else None
        if st in PROBLEMS and (parent is None or parent.detail.state not in PROBLEMS):
            behind = [n for n in _walk(node.children) if n.detail.state in PROBLEMS]
            problems.append(Problem(node, behind))
    # Widest outages first (a district before a commune), then the oldest.
    problems.sort(key=lambda p: (RANK[p.node.detail.state], p.node.row.level, -len(p.behind), _since(p.node)))
    return PageModel(roots, problems, gaps, totals)


def _fill(
    nodes: dict[str, Node],
    tree: SiteTree,
    sid: str,
    totals: dict[int, dict[str, int]],
    order: Callable[[Node], tuple[int, int, str]],
) -> Node:
    # Iterative post-order: an inventory may be deep enough to exhaust recursion in a hostile config.
    root = nodes[sid]
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if not done:
            stack.append((node, True))
            node.children = [nodes[c] for c in tree.children[node.row.id]]
            stack.extend((c, False) for c in node.children)
            continue
        st = node.detail.state
        bucket = totals.setdefault(node.row.level, dict.fromkeys(STATES, 0))
        bucket[st] = bucket.get(st, 0) + 1
        worst = RANK.get(st, RANK["unknown"])
        counts: dict[int, dict[str, int]] = {}
        for c in node.children:
            worst = min(worst, c.worst)
            mine = counts.setdefault(c.row.level, dict.fromkeys(STATES, 0))
            mine[c.detail.state] = mine.get(c.detail.state, 0) + 1
            for level, sub in c.counts.items():
                into = counts.setdefault(level, dict.fromkeys(STATES, 0))
                for s, n in sub.items():
                    into[s] = into.get(s, 0) + n
        node.counts = counts
        node.worst = worst
        node.children.sort(key=order)
    return root


def _order(tree: SiteTree) -> Callable[[Node], tuple[int, int, str]]:
    """Problems first: the worst state in the subtree, then the site's own state, then by name."""
    names = tree.collation

    def key(node: Node) -> tuple[int, int, str]:
        return (node.worst, RANK.get(node.detail.state, RANK["unknown"]), names[node.row.id])

    return key


def _since(node: Node) -> float:
    return node.detail.since or 0.0


def _walk(nodes: list[Node]) -> list[Node]:
    """Every node of these subtrees, parents before children, in display order."""
    out: list[Node] = []
    stack = list(reversed(nodes))
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.children))
    return out
