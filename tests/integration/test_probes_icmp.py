"""ICMP probe against real hosts in network namespaces (198.18.30.0/24, 198.18.31.0/24) and loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_config
from agent.kernel.pipeline import Pipeline
from agent.kernel.results import JobResult
from agent.kernel.store import Store
from agent.scheduler import Runner
from collectors.probes.icmp_engine import IcmpEngine
from tests.helpers import GIAMSAT, exclusive_addresses
from tests.integration.probes_support import (
    HOST_IP,
    LAB_BLOCK,
    ROUTER_B,
    TARGET_IP,
    Lab,
    destroy_lab,
    in_ns,
    make_lab,
    run,
    run_config,
    value,
    write_config,
)

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with exclusive_addresses(LAB_BLOCK):
        lab = make_lab()
        try:
            yield lab
        finally:
            destroy_lab(lab)


def test_reply_through_router_reports_rtt_loss_and_hop_limit(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, {"icmp": [{"name": "wan", "address": TARGET_IP, "count": 4, "packet_interval": "20ms"}]}
    )
    fams = run(run_config(cfg))["wan"].families
    assert value(fams, "probe_success") == 1
    assert value(fams, "probe_icmp_packets_sent") == 4
    assert value(fams, "probe_icmp_packets_received") == 4
    assert value(fams, "probe_icmp_packet_loss_ratio") == 0
    rmin, ravg, rmax = (value(fams, f"probe_icmp_rtt_{s}_seconds") for s in ("min", "avg", "max"))
    assert rmin is not None and ravg is not None and rmax is not None
    assert 0 < rmin <= ravg <= rmax < 1
    assert value(fams, "probe_icmp_rtt_stddev_seconds") is not None
    assert value(fams, "probe_icmp_reply_hop_limit") == 63  # one router between us and the target
    assert value(fams, "probe_icmp_response_duration_seconds_count") == 4
    assert value(fams, "probe_failure_reason") is None


def test_ttl_exceeded_is_reported_as_such(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        {"icmp": [{"name": "wan", "address": TARGET_IP, "count": 2, "packet_interval": "10ms", "ttl": 1}]},
    )
    fams = run(run_config(cfg))["wan"].families
    assert value(fams, "probe_success") == 0
    assert value(fams, "probe_failure_reason", reason="ttl_exceeded") == 1
    # each echo gets its error: the round's 2 and the 7 of the confirmation burst
    assert value(fams, "probe_icmp_errors", reason="ttl_exceeded") == 9


def test_host_unreachable_is_reported_as_such(lab: Lab, tmp_path: Path) -> None:
    lab.nft(
        lab.router,
        "forward",
        "ip daddr 198.18.31.9 reject with icmp type host-unreachable",
        "ip daddr 198.18.31.10 reject with icmp type admin-prohibited",
    )
    try:
        cfg = write_config(
            tmp_path,
            {
                "icmp": [
                    {"name": "gone", "address": "198.18.31.9", "count": 2, "packet_interval": "10ms"},
                    {"name": "filtered", "address": "198.18.31.10", "count": 1},
                    {"name": "ok", "address": TARGET_IP, "count": 1},
                ]
            },
        )
        res = run(run_config(cfg))
    finally:
        lab.flush_nft(lab.router)
    # the reasons are built in the engine's reader callback and still carry probe="icmp" (docs/probes.md)
    assert value(res["gone"].families, "probe_failure_reason", reason="host_unreachable", probe="icmp") == 1
    assert (
        value(res["gone"].families, "probe_icmp_errors", reason="host_unreachable", probe="icmp") or 0
    ) >= 1
    assert (
        value(res["filtered"].families, "probe_failure_reason", reason="admin_prohibited", probe="icmp") == 1
    )
    assert value(res["ok"].families, "probe_success") == 1
    # blackbox_exporter's three phases and address hash
    assert [
        s.labels["phase"]
        for f in res["ok"].families
        for s in f.samples
        if s.name == "probe_icmp_duration_seconds"
    ] == [
        "resolve",
        "setup",
        "rtt",
    ]
    assert value(res["ok"].families, "probe_ip_addr_hash", probe="icmp") is not None


def test_outage_by_link_down_gives_probe_success_0_then_recovers(lab: Lab, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        {
            "icmp": [
                {
                    "name": "wan",
                    "address": TARGET_IP,
                    "count": 2,
                    "packet_interval": "10ms",
                    "packet_timeout": "1s",
                }
            ]
        },
    )
    assert value(run(run_config(cfg))["wan"].families, "probe_success") == 1
    in_ns(lab.target, "ip", "link", "set", lab.target_if, "down")
    try:
        down = run(run_config(cfg))["wan"]
    finally:
        in_ns(lab.target, "ip", "link", "set", lab.target_if, "up")
        in_ns(lab.target, "ip", "route", "replace", "default", "via", ROUTER_B)
    assert down.success  # a down target is data, not a collector failure
    assert value(down.families, "probe_success") == 0
    assert value(down.families, "probe_icmp_packet_loss_ratio") == 1
    assert value(down.families, "probe_failure_reason") == 1
    # The link needs a moment after `up` (carrier, the router's neighbour entry): it must recover within
    # a few probes, each one a full probe with its own timeout.
    for _attempt in range(5):
        if value(run(run_config(cfg))["wan"].families, "probe_success") == 1:
            break
    else:
        pytest.fail("the probe did not recover after the link came back")


def test_30_percent_loss_is_measured_within_tolerance(lab: Lab, tmp_path: Path) -> None:
    # Drop 30% of echo requests at the target. 600 echoes: binomial sd is 1.9 points, so +-7 points is
    # about 3.7 sd (a false failure about once in 5000 runs).
    lab.nft(lab.target, "input", "icmp type echo-request numgen random mod 100 < 30 drop")
    try:
        cfg = write_config(
            tmp_path,
            {
                "icmp": [
                    {
                        "name": f"wan{i}",
                        "address": TARGET_IP,
                        "count": 200,
                        "packet_interval": "5ms",
                        "packet_timeout": "1s",
                    }
                    for i in range(3)
                ]
            },
        )
        res = run(run_config(cfg))
    finally:
        lab.flush_nft(lab.target)
    sent = sum(value(r.families, "probe_icmp_packets_sent") or 0 for r in res.values())
    received = sum(value(r.families, "probe_icmp_packets_received") or 0 for r in res.values())
    assert sent == 600
    loss = 1 - received / sent
    assert 0.23 <= loss <= 0.37, loss
    for r in res.values():
        ratio = value(r.families, "probe_icmp_packet_loss_ratio")
        assert ratio is not None and 0.1 < ratio < 0.5
        assert value(r.families, "probe_success") == 1


def test_blackholed_target_does_not_delay_others(lab: Lab) -> None:
    lab.nft(lab.router, "forward", "ip daddr 198.18.31.77 drop")

    async def scenario() -> list[str]:
        engine = IcmpEngine("auto")
        await engine.start()
        try:
            dead = asyncio.create_task(engine.ping("198.18.31.77", count=1, timeout=3.0), name="dead")
            live = [
                asyncio.create_task(engine.ping(TARGET_IP, count=1, timeout=3.0), name=f"live{i}")
                for i in range(5)
            ]
            order: list[str] = []
            for fut in asyncio.as_completed([dead, *live]):
                r = await fut
                order.append("dead" if r.received == 0 else "live")
            return order
        finally:
            await engine.close()

    try:
        order = run(scenario())
    finally:
        lab.flush_nft(lab.router)
    assert order == ["live"] * 5 + ["dead"]


def test_blackholed_target_in_a_batch_does_not_hold_back_the_others(lab: Lab, tmp_path: Path) -> None:
    """The agent probes all ICMP targets sharing an interval in one scheduler batch; each result is
    still recorded (and served) as soon as that target is done, and the dead one fails alone as data."""
    lab.nft(lab.router, "forward", "ip daddr 198.18.31.77 drop")
    echo = {"count": 2, "packet_interval": "10ms", "packet_timeout": "3s"}
    cfg = write_config(
        tmp_path,
        {
            "icmp": [
                {"name": "dead", "address": "198.18.31.77", **echo},
                *({"name": f"live{i}", "address": TARGET_IP, **echo} for i in range(3)),
                {"name": "other", "address": ROUTER_B, "count": 1},  # other echo settings, same batch
            ]
        },
    )

    async def scenario() -> tuple[list[str], bool, dict[str, JobResult]]:
        store = Store()
        runner = Runner(load_config(cfg), Pipeline(store))
        order: list[str] = []
        live_in = asyncio.Event()

        def listener(r: JobResult) -> None:
            order.append(r.target or "")
            if len(order) == 4:
                live_in.set()

        runner.pipeline.subscribe(listener)
        await runner.open()
        try:
            (batch,) = runner.batches
            assert [j.target_name for j in batch.jobs] == ["dead", "live0", "live1", "live2", "other"]
            task = asyncio.create_task(runner.run_batch(batch))
            await asyncio.wait_for(live_in.wait(), 10)
            running = not task.done()
            served = store.get("icmp/live1")  # what /probe?target=live1 would serve now
            assert served is not None and value(served.families, "probe_success") == 1
            results = {r.target or "": r for r in await task}
        finally:
            await runner.close()
        return order, running, results

    try:
        order, running, results = run(scenario())
    finally:
        lab.flush_nft(lab.router)
    assert running  # the four live results were in while the dead target was still being waited for
    assert sorted(order[:4]) == ["live0", "live1", "live2", "other"] and order[4] == "dead"
    dead = results["dead"]
    assert dead.success  # a dead target is data, not a collector failure
    assert value(dead.families, "probe_success") == 0
    assert value(dead.families, "probe_failure_reason", reason="timeout") == 1
    assert value(dead.families, "probe_icmp_packets_sent") == 9  # 2 + the 7-echo confirmation burst
    for name in ("live0", "live1", "live2", "other"):
        assert value(results[name].families, "probe_success") == 1, name
        assert results[name].duration < dead.duration


def test_a_round_that_used_most_of_its_timeout_is_still_confirmed(lab: Lab, tmp_path: Path) -> None:
    """The round of a dead target left 0.5 s of its 1 s timeout (less the reporting margin): the
    confirmation burst is squeezed into it rather than left out (a target reported down on one round's
    loss), and the result still comes within the timeout. A live target beside it is unaffected."""
    lab.nft(lab.router, "forward", "ip daddr 198.18.31.77 drop")
    echo = {"count": 2, "packet_interval": "10ms", "packet_timeout": "400ms", "timeout": "1s"}
    cfg = write_config(
        tmp_path,
        {
            "icmp": [
                {"name": "dead", "address": "198.18.31.77", **echo},
                {"name": "live", "address": TARGET_IP, **echo},
            ]
        },
    )
    try:
        results = run(run_config(cfg))
    finally:
        lab.flush_nft(lab.router)
    dead = results["dead"]
    assert value(dead.families, "probe_success") == 0
    assert value(dead.families, "probe_icmp_packets_sent") == 9  # 2 + the 7-echo confirmation burst
    assert dead.duration < 1.0
    assert value(results["live"].families, "probe_success") == 1
    assert value(results["live"].families, "probe_icmp_packets_sent") == 2


@pytest.mark.parametrize("mode", ["dgram", "raw"])
def test_socket_modes_inside_a_namespace(lab: Lab, mode: str) -> None:
    """Datagram (unprivileged) and raw sockets: replies, TTL exceeded via IP_RECVERR / embedded headers."""
    lab.nft(lab.router, "forward", "ip daddr 198.18.30.9 reject with icmp type host-unreachable")
    spec = {
        "mode": mode,
        "probes": [
            {"address": HOST_IP, "count": 3, "interval": 0.01, "timeout": 2.0},
            {"address": HOST_IP, "count": 2, "interval": 0.01, "timeout": 2.0, "ttl": 1},
            {"address": "198.18.30.9", "count": 2, "interval": 0.01, "timeout": 2.0},
            {
                "address": HOST_IP,
                "count": 2,
                "interval": 0.01,
                "timeout": 2.0,
                "payload_size": 1400,
                "dont_fragment": True,
            },
        ],
    }
    try:
        out = in_ns(lab.target, sys.executable, "-m", "tests.integration.icmp_ns_helper", json.dumps(spec))
    finally:
        lab.flush_nft(lab.router)
    data = json.loads(out.stdout)
    assert data["mode"] == mode
    ok, ttl, unreach, big = data["results"]
    assert (ok["sent"], ok["received"], ok["hop_limit"]) == (3, 3, 63)
    assert ttl["received"] == 0 and ttl["errors"] == {"ttl_exceeded": 2}
    assert unreach["received"] == 0 and unreach["errors"] == {"host_unreachable": 2}
    assert big["received"] == 2


def test_frag_needed_when_dont_fragment_exceeds_the_path_mtu(lab: Lab) -> None:
    """A smaller MTU on the router's far link: DF echoes bigger than it get 'fragmentation needed'."""
    rb = f"gp{lab.router[3:-1]}rb"
    in_ns(lab.router, "ip", "link", "set", rb, "mtu", "1000")
    in_ns(lab.target, "ip", "link", "set", lab.target_if, "mtu", "1000")

    async def scenario() -> tuple[object, object]:
        engine = IcmpEngine("auto")
        await engine.start()
        try:
            return await asyncio.gather(
                engine.ping(
                    TARGET_IP, count=2, interval=0.01, timeout=2.0, payload_size=1200, dont_fragment=True
                ),
                engine.ping(TARGET_IP, count=2, interval=0.01, timeout=2.0, payload_size=1200),
            )
        finally:
            await engine.close()

    try:
        df, frag = run(scenario())
    finally:
        in_ns(lab.router, "ip", "link", "set", rb, "mtu", "1500")
        in_ns(lab.target, "ip", "link", "set", lab.target_if, "mtu", "1500")
        subprocess.run(["ip", "route", "flush", "cache"], check=False)
    assert df.received == 0 and set(df.errors) == {"frag_needed"}
    assert frag.received == 2  # without DF the router fragments


def test_many_loopback_targets_v4_and_v6_are_demultiplexed(tmp_path: Path) -> None:
    targets = [
        {
            "name": f"lo{i}",
            "address": f"127.30.{i // 200}.{i % 200 + 1}",
            "count": 3,
            "packet_interval": "10ms",
        }
        for i in range(400)
    ]
    targets.append({"name": "v6", "address": "::1", "count": 3, "packet_interval": "10ms"})
    res = run(run_config(write_config(tmp_path, {"icmp": targets})))
    assert len(res) == 401
    for name, r in res.items():
        assert value(r.families, "probe_icmp_packets_received") == 3, name
    assert value(res["v6"].families, "probe_ip_protocol") == 6
    assert value(res["lo0"].families, "probe_ip_protocol") == 4


def test_unresolvable_name_is_a_failed_probe(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"icmp": [{"name": "x", "address": "no-such-host.invalid", "count": 1}]})
    r = run(run_config(cfg))["x"]
    assert r.success
    assert value(r.families, "probe_failure_reason", reason="resolve") == 1


def test_no_usable_socket_is_a_startup_error_naming_both_remedies(tmp_path: Path) -> None:
    """`giamsat once` without CAP_NET_RAW, in a fresh namespace where ping sockets are not allowed
    (net.ipv4.ping_group_range defaults to "1 0"): a clear error naming both fixes, not a traceback."""
    cfg = write_config(tmp_path, {"icmp": [{"name": "lo", "address": "127.0.0.1", "count": 1}]})
    out = subprocess.run(
        [
            "unshare",
            "--net",
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            GIAMSAT,
            "once",
            "--config.file",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode != 0
    assert "cannot open an ICMP socket" in out.stderr
    assert "net.ipv4.ping_group_range" in out.stderr and "CAP_NET_RAW" in out.stderr
    assert "Traceback" not in out.stderr


V6_NS_SCRIPT = """
ip link set lo up
sysctl -qw net.ipv4.ping_group_range="0 2147483647"
nft -f - <<'NFT'
table inet gs {
  chain filt {
    type filter hook input priority 0;
    ip6 daddr ::1 icmpv6 type echo-request meta length > 300 reject with icmpv6 type addr-unreachable
  }
}
NFT
exec "$@"
"""


@pytest.mark.parametrize("mode", ["dgram", "raw"])
def test_ipv6_replies_and_errors_in_a_fresh_namespace(mode: str, tmp_path: Path) -> None:
    """ICMPv6 in both socket modes: ::1 answers small echoes; big ones are rejected (address unreachable)."""
    script = tmp_path / "v6.sh"
    script.write_text(V6_NS_SCRIPT)
    spec = {
        "mode": mode,
        "probes": [
            {"address": "::1", "count": 2, "interval": 0.01, "timeout": 1.0},
            {"address": "::1", "count": 2, "interval": 0.01, "timeout": 1.0, "payload_size": 400},
        ],
    }
    out = subprocess.run(
        [
            "unshare",
            "--net",
            "sh",
            str(script),
            sys.executable,
            "-m",
            "tests.integration.icmp_ns_helper",
            json.dumps(spec),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["mode"] == mode
    ok, rejected = data["results"]
    assert (ok["sent"], ok["received"]) == (2, 2)
    assert rejected["received"] == 0 and rejected["errors"] == {"host_unreachable": 2}


def test_packet_rate_cap_spreads_sends() -> None:
    """max_packets_per_second holds back a burst (a lower bound on time, so a slow machine cannot fail it)."""

    async def scenario() -> tuple[int, float]:
        engine = IcmpEngine("auto", max_packets_per_second=200)
        await engine.start()
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            results = await asyncio.gather(
                *(engine.ping(f"127.31.0.{i + 1}", count=1, timeout=1.0) for i in range(60))
            )
            return sum(r.received for r in results), loop.time() - t0
        finally:
            await engine.close()

    received, took = run(scenario())
    assert received == 60
    assert took >= 0.2  # 60 echoes at 200/s need at least 0.25 s less one 50 ms window
