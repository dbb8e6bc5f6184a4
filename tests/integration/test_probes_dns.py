"""DNS probe against a real dnsmasq started on loopback (free port, no upstream, local records only)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.integration.probes_support import free_port, run, run_config, value, write_config


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("dnsmasq")
    proc = subprocess.Popen(
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            f"--pid-file={tmp / 'pid'}",
            "--local=/huyen.test/",
            "--host-record=wan.huyen.test,198.18.31.5",
            "--address=/portal.huyen.test/198.18.31.6",
            "--txt-record=info.huyen.test,giamsat",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    q = dns.message.make_query("wan.huyen.test", "A")
    for _ in range(50):
        if proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("dnsmasq did not answer")


def test_dns_answers_rcodes_and_transports(dnsmasq: int, tmp_path: Path) -> None:
    common = {"server": "127.0.0.1", "port": dnsmasq}
    cfg = write_config(
        tmp_path,
        {
            "dns": [
                {
                    "name": "a",
                    **common,
                    "query_name": "wan.huyen.test",
                    "expect_answer": ["\\sA\\s198\\.18\\.31\\.5$"],
                },
                {
                    "name": "tcp",
                    **common,
                    "query_name": "portal.huyen.test",
                    "transport": "tcp",
                    "expect_answer": ["198\\.18\\.31\\.6"],
                },
                {
                    "name": "txt",
                    **common,
                    "query_name": "info.huyen.test",
                    "query_type": "TXT",
                    "expect_answer": ["giamsat"],
                },
                {
                    "name": "wrong",
                    **common,
                    "query_name": "wan.huyen.test",
                    "expect_answer": ["198\\.18\\.31\\.99"],
                },
                {"name": "nx", **common, "query_name": "nothing.huyen.test"},
                {"name": "nx_ok", **common, "query_name": "nothing.huyen.test", "valid_rcodes": ["NXDOMAIN"]},
                {
                    "name": "dead",
                    "server": "127.0.0.1",
                    "port": free_port(),
                    "query_name": "x.test",
                    "timeout": "1s",
                },
            ]
        },
    )
    res = run(run_config(cfg))
    assert all(r.success for r in res.values())
    a = res["a"].families
    assert value(a, "probe_success") == 1
    assert value(a, "probe_dns_answer_rrs") == 1
    assert value(a, "probe_dns_rcode") == 0
    assert value(a, "probe_dns_query_succeeded") == 1
    req = value(a, "probe_dns_duration_seconds", phase="request")
    assert req is not None and req > 0
    assert value(res["tcp"].families, "probe_success") == 1
    assert value(res["txt"].families, "probe_success") == 1
    assert value(res["wrong"].families, "probe_failure_reason", reason="answer_mismatch") == 1
    assert value(res["nx"].families, "probe_dns_rcode") == 3
    assert value(res["nx"].families, "probe_failure_reason", reason="rcode") == 1
    assert value(res["nx_ok"].families, "probe_success") == 1
    dead = res["dead"].families
    assert value(dead, "probe_success") == 0
    assert value(dead, "probe_dns_query_succeeded") == 0
    # an unconnected UDP socket never sees the port-unreachable error, so a dead resolver is a timeout
    assert value(dead, "probe_failure_reason", reason="timeout") == 1
