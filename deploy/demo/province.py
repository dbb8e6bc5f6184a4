#!/usr/bin/env python3
"""A simulated province in network namespaces, for the end-to-end test, ``make demo`` and ``make drill``.

Topology (addresses from 198.19.0.0/16 only; each link a veth pair, each site a namespace)::

    this host --- hub (Tỉnh, province) --+-- d1 (Huyện Vị Xuyên) --+-- c1, c2, c3
         |                               |
         +--- monitoring namespace       +-- d2 (Huyện Bắc Mê) ---+-- c4, c5
              (Prometheus, Alertmanager,                          +.. c6 never connected
               a webhook on its own 127.0.0.1:5001)

That is the ``demo`` province; ``province`` (``--size province``) is the one of the outage drill: 10
districts of 10 communes each, two communes never connected (111 sites).

The agent runs on this host and pings every site's router. ``cut(site)`` drops everything the parent's
router forwards to or from the site (an nftables rule in the parent's namespace); ``restore(site)``
removes it. ``loss(percent)`` makes every site's router drop that share of the echo requests sent to it,
at random (nftables ``numgen random``), so each site's own probe loses that share of its echoes
independently of the others; ``loss(0)`` ends it. ``teardown`` deletes every namespace and the root-side
veths.

The monitoring namespace (``monitor=True``) has its own loopback, so the shipped ``alertmanager.yml``
runs there unchanged: its receivers post to 127.0.0.1:5001, which is the namespace's own webhook, never
another session's. It reaches the agent over a veth (``agent_address``).

Parallel runs (several test sessions on one machine) must not share an address block: the block's
subnets are routed in this host's own namespace, where a second province with the same block either
takes the first one's traffic (its routes win) or deletes its routes on teardown (the first agent's
probes then leave through the default route). ``Province.claim`` takes a free block under an exclusive
lock held until ``teardown``; names carry a prefix as well. Standard library only: the demo runs it with
the system python as root.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: Where ``Province.claim`` keeps its per-block lock files.
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")  # noqa: S108


@dataclass(frozen=True)
class Node:
    code: str  # one or two characters, used in namespace and interface names
    site: str
    name: str
    level: str
    parent: str | None
    connected: bool = True


# (code, site id, name, level, parent site id, connected)
NODES = [
    Node("h", "hg", "Tỉnh Hà Giang", "province", None),
    Node("a", "vx", "Huyện Vị Xuyên", "district", "hg"),
    Node("b", "bm", "Huyện Bắc Mê", "district", "hg"),
    Node("1", "vx-daoduc", "Xã Đạo Đức", "commune", "vx"),
    Node("2", "vx-phulinh", "Xã Phú Linh", "commune", "vx"),
    Node("3", "vx-linhho", "Xã Linh Hồ", "commune", "vx"),
    Node("4", "bm-yenphu", "Xã Yên Phú", "commune", "bm"),
    Node("5", "bm-minhngoc", "Xã Minh Ngọc", "commune", "bm"),
    Node("6", "bm-lacnong", "Xã Lạc Nông", "commune", "bm", connected=False),
]


def province_nodes(districts: int = 10, communes: int = 10, never_connected: int = 2) -> list[Node]:
    """The drill's province: ``districts`` district-era nodes of ``communes`` communes each; the last
    commune of the first ``never_connected`` districts was never connected."""
    if not 1 <= districts <= 10 or not 1 <= communes <= 10:
        raise ValueError("at most 10 districts of 10 communes (addresses and interface names)")
    nodes = [Node("h", "hg", "Tỉnh Hà Giang", "province", None)]
    for k in range(districts):
        letter = "abcdefgijk"[k]  # not h (the hub), m (monitoring) or r (this host)
        d = f"d{k + 1:02d}"
        nodes.append(Node(letter, d, f"Huyện {k + 1}", "district", "hg"))
        for i in range(communes):
            gap = i == communes - 1 and k < never_connected
            nodes.append(
                Node(f"{letter}{i}", f"{d}-x{i + 1:02d}", f"Xã {k + 1}.{i + 1}", "commune", d, not gap)
            )
    return nodes


def _run(*cmd: str, check: bool = True, inp: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, input=inp, timeout=30)


def _ns(ns: str, *cmd: str, check: bool = True, inp: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run("ip", "netns", "exec", ns, *cmd, check=check, inp=inp)


@dataclass
class Province:
    """Addresses: root<->hub 198.19.<base>.0/30, root<->monitoring namespace 198.19.<base>.4/30;
    hub<->district k 198.19.<base+k>.0/30; district k's communes on 198.19.<base+10+k>.<4i>/30. Each
    site's router answers on its upstream address."""

    prefix: str
    base: int = 60
    nodes: list[Node] = field(default_factory=lambda: list(NODES))
    address: dict[str, str] = field(default_factory=dict)  # site id -> address the agent pings
    namespaces: list[str] = field(default_factory=list)
    lock_fd: int | None = None  # the block's lock (``claim``), released by ``teardown``
    monitor: bool = False  # whether ``build`` made the monitoring namespace

    @classmethod
    def claim(
        cls, prefix: str, bases: Iterable[int], lock_dir: Path = LOCK_DIR, nodes: list[Node] | None = None
    ) -> Province:
        """A province on the first block of ``bases`` that no other process holds or uses.

        The lock (one file per block, ``flock``: released by the kernel if the holder dies) keeps
        parallel claimers apart; the check for the block's addresses and routes in this namespace skips
        a block some run that does not take the lock is using.
        """
        bases = tuple(bases)
        lock_dir.mkdir(parents=True, exist_ok=True)
        for base in bases:
            fd = os.open(lock_dir / f"giamsat-province-198.19.{base}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            prov = cls(prefix, base, nodes=list(nodes or NODES), lock_fd=fd)
            if prov.in_use():
                os.close(fd)
                continue
            return prov
        raise RuntimeError(f"no free province address block among {bases}")

    def in_use(self) -> bool:
        """Whether this namespace already has an address or route in the block (another run's)."""
        for net in (f"198.19.{self.base}.0/24", *self.routed()):
            if _run("ip", "-4", "addr", "show", "to", net).stdout.strip():
                return True
            if _run("ip", "-4", "route", "show", "root", net).stdout.strip():
                return True
        return False

    def __post_init__(self) -> None:
        base = self.base
        self.address["hg"] = f"198.19.{base}.2"
        for k, district in enumerate(self.districts(), start=1):
            self.address[district.site] = f"198.19.{base + k}.2"
            for i, c in enumerate(self.children(district.site)):
                self.address[c.site] = f"198.19.{base + 10 + k}.{4 * i + 2}"

    def districts(self) -> list[Node]:
        return [n for n in self.nodes if n.level == "district"]

    def children(self, site: str) -> list[Node]:
        return [n for n in self.nodes if n.parent == site]

    def node(self, site: str) -> Node:
        return next(n for n in self.nodes if n.site == site)

    def routed(self) -> list[str]:
        """Subnets behind the hub that this host routes to it (only these: other tests use 198.19 too)."""
        n = len(self.districts())
        return [f"198.19.{self.base + k}.0/24" for k in (*range(1, n + 1), *range(11, 11 + n))]

    @property
    def agent_address(self) -> str:
        """This host's address on the monitoring namespace's link: where Prometheus there scrapes."""
        return f"198.19.{self.base}.5"

    @property
    def monitor_address(self) -> str:
        """The monitoring namespace's address, for this host to reach its Prometheus and Alertmanager."""
        return f"198.19.{self.base}.6"

    def ns(self, code: str) -> str:
        return f"{self.prefix}{code}"

    def _ifname(self, a: str, b: str) -> str:
        return f"{self.prefix}{a}{b}"

    def _link(self, a_ns: str | None, a_code: str, b_code: str, a_ip: str, b_ip: str) -> None:
        """veth between node a (``a_ns`` None: this host) and node b, /30 addresses."""
        ea, eb = self._ifname(a_code, b_code), self._ifname(b_code, a_code)
        _run("ip", "link", "add", ea, "type", "veth", "peer", "name", eb)
        _run("ip", "link", "set", eb, "netns", self.ns(b_code))
        if a_ns is not None:
            _run("ip", "link", "set", ea, "netns", a_ns)
            _ns(a_ns, "ip", "addr", "add", f"{a_ip}/30", "dev", ea)
            _ns(a_ns, "ip", "link", "set", ea, "up")
        else:
            _run("ip", "addr", "add", f"{a_ip}/30", "dev", ea)
            _run("ip", "link", "set", ea, "up")
        _ns(self.ns(b_code), "ip", "addr", "add", f"{b_ip}/30", "dev", eb)
        _ns(self.ns(b_code), "ip", "link", "set", eb, "up")

    def build(self, monitor: bool = False) -> None:
        longest = max(len(n.code) for n in self.nodes)
        if len(self.prefix) + 1 + longest > 15:
            raise ValueError(f"prefix too long for interface names (max {14 - longest})")
        base = self.base
        try:
            for n in self.nodes:
                if n.connected:
                    _run("ip", "netns", "add", self.ns(n.code))
                    self.namespaces.append(self.ns(n.code))
                    _ns(self.ns(n.code), "ip", "link", "set", "lo", "up")
            for n in self.nodes:
                if n.level != "commune":
                    _ns(self.ns(n.code), "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # this host <-> hub
            self._link(None, "r", "h", f"198.19.{base}.1", f"198.19.{base}.2")
            for net in self.routed():
                # add, not replace, and on our own veth: never take over another run's route
                _run("ip", "route", "add", net, "via", f"198.19.{base}.2", "dev", self._ifname("r", "h"))
            _ns(self.ns("h"), "ip", "route", "add", "default", "via", f"198.19.{base}.1")
            for k, district in enumerate(self.districts(), start=1):
                code = district.code
                up_net, down_net = base + k, base + 10 + k
                self._link(self.ns("h"), "h", code, f"198.19.{up_net}.1", f"198.19.{up_net}.2")
                _ns(self.ns(code), "ip", "route", "add", "default", "via", f"198.19.{up_net}.1")
                _ns(
                    self.ns("h"), "ip", "route", "add", f"198.19.{down_net}.0/24", "via", f"198.19.{up_net}.2"
                )
                for i, c in enumerate(self.children(district.site)):
                    a_ip, b_ip = f"198.19.{down_net}.{4 * i + 1}", self.address[c.site]
                    if not c.connected:
                        # never installed: the district router answers "host unreachable" for it
                        _ns(
                            self.ns(code),
                            "ip",
                            "route",
                            "add",
                            "unreachable",
                            f"198.19.{down_net}.{4 * i}/30",
                        )
                        continue
                    self._link(self.ns(code), code, c.code, a_ip, b_ip)
                    _ns(self.ns(c.code), "ip", "route", "add", "default", "via", a_ip)
            if monitor:
                _run("ip", "netns", "add", self.ns("m"))
                self.namespaces.append(self.ns("m"))
                self.monitor = True
                _ns(self.ns("m"), "ip", "link", "set", "lo", "up")
                self._link(None, "r", "m", self.agent_address, self.monitor_address)
        except BaseException:
            self.teardown()
            raise

    def _parent_link(self, site: str) -> tuple[str, str]:
        """(namespace of the site's parent router, the parent's interface towards the site)."""
        node = self.node(site)
        if node.parent is None:
            raise ValueError(f"{site} is the hub: cut a district or a commune")
        parent = self.node(node.parent)
        return self.ns(parent.code), self._ifname(parent.code, node.code)

    def cut(self, site: str) -> None:
        """Drop everything the parent forwards to or from a site (its link is cut)."""
        ns, ifname = self._parent_link(site)
        rules = (
            f"table inet gs_cut_{self.node(site).code} {{\n  chain cut {{\n"
            "    type filter hook forward priority 0;\n"
            f'    iifname "{ifname}" drop\n    oifname "{ifname}" drop\n  }}\n}}\n'
        )
        _ns(ns, "nft", "-f", "-", inp=rules)

    def restore(self, site: str) -> None:
        ns, _ = self._parent_link(site)
        _ns(ns, "nft", "delete", "table", "inet", f"gs_cut_{self.node(site).code}", check=False)

    def loss(self, percent: int) -> None:
        """Every site's router drops ``percent`` % of the echo requests sent to it, at random (0: none)."""
        for n in self.nodes:
            if not n.connected:
                continue
            _ns(self.ns(n.code), "nft", "delete", "table", "inet", "gs_loss", check=False)
            if percent:
                rules = (
                    "table inet gs_loss {\n  chain loss {\n    type filter hook input priority 0;\n"
                    f"    icmp type echo-request numgen random mod 100 < {int(percent)} drop\n  }}\n}}\n"
                )
                _ns(self.ns(n.code), "nft", "-f", "-", inp=rules)

    def teardown(self, by_name: bool = False) -> None:
        """Remove what ``build`` made; ``by_name``: every name this province would use (``down`` from a
        shell, where the process that built it is gone)."""
        # Our routes go with our veth; deleting by destination alone could remove another run's.
        if by_name or self.namespaces:
            _run("ip", "link", "del", self._ifname("r", "h"), check=False)
            _run("ip", "link", "del", self._ifname("r", "m"), check=False)
        names = self.namespaces
        if by_name:
            names = [self.ns(n.code) for n in self.nodes if n.connected] + [self.ns("m")]
        for ns in names:
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces = []
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def snmpd_conf(self) -> str:
        """snmpd.conf for Vị Xuyên's router (run in its namespace): IF-MIB of its real interfaces, and a
        UPS behind it whose UPS-MIB values are fixed with ``override`` (mains, battery normal, 87%)."""
        return (
            f"agentaddress udp:{self.address['vx']}:161\n"
            "rocommunity public\n"
            "override .1.3.6.1.2.1.33.1.2.1.0 integer 2\n"
            "override .1.3.6.1.2.1.33.1.2.4.0 integer 87\n"
            "override .1.3.6.1.2.1.33.1.4.1.0 integer 3\n"
        )

    def config(self, state_dir: Path, interval: str = "15s", snmp: bool = True) -> str:
        """A giamsat configuration: the inventory, one ICMP uplink per site probed as a province would
        (3 echoes every ``interval``), and SNMP to Vị Xuyên's router and UPS (see ``snmpd_conf``)."""
        lines = [
            "# Generated by deploy/demo/province.py: a simulated province.",
            "agent:",
            "  site: hg",
            f"  state_dir: {json.dumps(str(state_dir))}",
            f"  interval: {interval}",
            "  timeout: 10s",
            "collectors:",
            "  host: {}",
        ]
        if snmp:
            lines += [
                "  snmp:",
                "    auths: {demo: {version: 2, community: public}}",
                "    request_timeout: 400ms   # a cut-off device is snmp_up 0 well within the job timeout",
                "    retries: 1",
            ]
        lines.append("sites:")
        for n in self.nodes:
            parent = f", parent: {n.parent}" if n.parent else ""
            lines.append(
                f"  - {{id: {n.site}, name: {json.dumps(n.name, ensure_ascii=False)}, level: {n.level}{parent}, "
                f"uplinks: [{n.site}-wan]}}"
            )
        lines += ["targets:", "  icmp:"]
        for n in self.nodes:
            lines.append(
                f"    - {{name: {n.site}-wan, site: {n.site}, address: {self.address[n.site]}, count: 3, "
                "packet_interval: 1s, packet_timeout: 2s}"
            )
        if snmp:
            vx = self.address["vx"]
            lines += [
                "  snmp:",
                f"    - {{name: vx-router, site: vx, address: {vx}, auth: demo, modules: [system, if_mib]}}",
                f"    - {{name: vx-ups, site: vx, address: {vx}, auth: demo, modules: [ups]}}",
            ]
        return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["up", "down", "cut", "restore", "loss", "config", "snmpd-conf"])
    p.add_argument("--prefix", default="gsdemo")
    p.add_argument("--site", default="vx", help="district or commune to cut or restore")
    p.add_argument("--percent", type=int, default=20, help="loss: share of echoes dropped (0 ends it)")
    p.add_argument("--state-dir", type=Path, default=Path("state"), help="the agent's state_dir")
    p.add_argument("--base", type=int, default=60, help="third octet of the first subnet (uses 13)")
    args = p.parse_args()
    prov = Province(args.prefix, args.base)
    if args.action == "up":
        prov.build()
        sys.stdout.write(prov.config(args.state_dir))
    elif args.action == "config":  # addresses are fixed: no namespaces needed
        sys.stdout.write(prov.config(args.state_dir))
    elif args.action == "snmpd-conf":
        sys.stdout.write(prov.snmpd_conf())
    elif args.action == "down":
        prov.teardown(by_name=True)
    elif args.action == "cut":
        prov.cut(args.site)
    elif args.action == "loss":
        prov.loss(args.percent)
    else:
        prov.restore(args.site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
