"""Remote write against real receivers (Prometheus 2.x with the remote-write receiver, VictoriaMetrics):
outages, ``kill -9`` of the sender, lost acknowledgements, retry rules and a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters.remote_write import RemoteWriter
from exporters.remote_write_settings import RemoteWriteSettings
from tests.helpers import exclusive_addresses
from tests.integration.rwproxy import Proxy
from tests.integration.rwservers import (
    PrometheusReceiver,
    Receiver,
    VictoriaMetricsReceiver,
    free_port,
    kill9,
    stop_pid,
)
from tests.pki import CA

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600_000


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(kind: str, **kw: Any) -> Receiver:
        cls = PrometheusReceiver if kind == "prometheus" else VictoriaMetricsReceiver
        r = cls(tmp_path / f"{kind}{len(started)}", **kw)
        started.append(r)
        r.start()
        return r

    yield make
    for r in started:
        r.stop()


@pytest.fixture
def agents() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        stop_pid(p, 5)


def start_agent(
    procs: list[subprocess.Popen[bytes]], state: Path, status: Path, settings: dict[str, Any], **args: Any
) -> subprocess.Popen[bytes]:
    status.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tests.integration.rw_agent",
        "--state",
        str(state),
        "--status",
        str(status),
    ]
    argv += ["--settings", json.dumps(settings)]
    for k, v in args.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    procs.append(p)
    return p


def wait_status(
    status: Path, pred: Callable[[dict[str, Any]], bool], proc: subprocess.Popen[bytes], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = json.loads(status.read_text())
        except (OSError, ValueError):
            last = {}
        if last:
            assert_invariant(last)
            if pred(last):
                return last
        if proc.poll() is not None and not (last and pred(last)):
            raise AssertionError(f"agent exited ({proc.returncode}) before condition; last status {last}")
        time.sleep(0.02)
    raise AssertionError(f"condition not reached; last status {last}")


def assert_invariant(st: dict[str, Any]) -> None:
    dropped = sum(st["dropped"].values())
    assert st["appended"] == st["sent"] + dropped + st["pending"], st


def expected(series: int, first: int, last: int, t0: int, step: int) -> dict[str, list[tuple[int, float]]]:
    return {f"s{j}": [(t0 + i * step, float(i)) for i in range(first, last)] for j in range(series)}


def wait_for_samples(r: Receiver, selector: str, want: dict[str, list[tuple[int, float]]]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for _ in range(50):
        got = r.series_samples(selector)  # type: ignore[attr-defined]
        if got == want:
            return got
        time.sleep(0.2)
    return got


# ------------------------------------------------------------------------------------------------------
# Long outage, kill -9 during the outage and during the backfill, then every sample queried back.
# ------------------------------------------------------------------------------------------------------

CASES = [
    pytest.param("prometheus", {}, True, id="prometheus-ooo3d-kill9"),
    # Over HTTP a lost acknowledgement can always turn into a re-send; VictoriaMetrics stores exact
    # duplicates unless deduplication is on, so the run that kills the sender mid-backfill turns it on
    # and the run without dedup kills only during the outage (no request can be in flight then).
    pytest.param("vm", {"dedup": "1ms"}, True, id="victoriametrics-dedup-kill9"),
    pytest.param("vm", {}, False, id="victoriametrics-nodedup"),
]


@pytest.mark.parametrize(("kind", "rkw", "kill_in_backfill"), CASES)
def test_outage_with_kill9_delivers_every_sample_once_in_order(
    receivers: Callable[..., Receiver],
    agents: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    kind: str,
    rkw: dict[str, Any],
    kill_in_backfill: bool,
) -> None:
    r = receivers(kind, **rkw)
    series, total = 10, 720
    step = 4 * 60_000  # 720 points x 4 min = a 48 h outage, in timestamps the test controls
    t0 = int(time.time() * 1000) - 49 * HOUR
    metric = f"rwtest_outage_{kind}"
    state, status = tmp_path / "state", tmp_path / "status.json"
    settings = {
        "name": "central",
        "url": r.write_url,
        "batch_send_deadline": "50ms",
        "max_samples_per_send": 100,
        "min_backoff": "50ms",
        "max_backoff": "300ms",
        "backfill_lane": True,
        "backfill_after": "1s",
        "bandwidth_limit": 2000,
        "max_sample_age": "3d",
        "buffer": {"segment_size": 16384, "fsync_interval": "200ms"},
    }
    common = {"series": series, "t0": t0, "step": step, "metric": metric}

    # Link up: the first samples go out at once; then kill -9 anyway.
    p = start_agent(agents, state, status, settings, first=0, last=100, **common)
    wait_status(status, lambda s: not s["appending"] and s["pending"] == 0, p)
    kill9(p)

    # Outage: the receiver is gone; samples pile up; the sender is killed twice while it retries.
    r.stop()
    p = start_agent(agents, state, status, settings, first=100, last=400, **common)
    st = wait_status(status, lambda s: not s["appending"] and s["retries"] > 0, p)
    assert st["pending"] == 300 * series
    kill9(p)
    p = start_agent(agents, state, status, settings, first=400, last=500, **common)
    st = wait_status(status, lambda s: not s["appending"] and s["retries"] > 0, p)
    # Everything appended before the kills is still there (counted as appended at start).
    assert st["pending"] == 400 * series and st["sent"] == 0
    kill9(p)

    # Link back: live samples keep coming while the backlog is delivered on the backfill lane.
    r.start()
    p = start_agent(agents, state, status, settings, first=500, last=total, every=0.01, **common)
    if kill_in_backfill:
        st = wait_status(
            status,
            lambda s: not s["appending"] and s["backfill"] and s["live_pending"] == 0 and s["sent"] >= 600,
            p,
        )
        kill9(p)
        assert st["backfill"] and st["pending"] > 0, "the kill must land in the middle of the backfill"
        # Newest first: the live samples are all in while part of the backlog is still missing.
        mid = r.series_samples(metric)  # type: ignore[attr-defined]
        newest = (t0 + (total - 1) * step, float(total - 1))
        assert all(newest in mid.get(f"s{j}", []) for j in range(series)), (
            st,
            {k: len(v) for k, v in mid.items()},
        )
        assert sum(len(v) for v in mid.values()) < series * total
        p = start_agent(
            agents, state, status, settings, first=total, last=total, exit_when_drained=True, **common
        )
    else:
        wait_status(status, lambda s: s["backfill"], p)
        wait_status(status, lambda s: not s["appending"] and s["pending"] == 0, p)
        kill9(p)
        p = start_agent(
            agents, state, status, settings, first=total, last=total, exit_when_drained=True, **common
        )
    assert p.wait(120) == 0
    st = json.loads(status.read_text())
    assert_invariant(st)
    assert st["pending"] == 0 and sum(st["dropped"].values()) == 0

    want = expected(series, 0, total, t0, step)
    got = wait_for_samples(r, metric, want)
    assert sorted(got) == sorted(want)
    for name, samples in want.items():
        assert got[name] == samples, f"{name}: {len(got[name])} samples back, {len(samples)} sent"
    # The buffer let go of what was delivered (only the open tail segment is left).
    assert len(list(state.glob("remote_write/central/seg-*"))) == 1


def test_kill9_while_appending_keeps_a_clean_prefix(
    receivers: Callable[..., Receiver], agents: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """kill -9 at an arbitrary moment of a stream of appends (receiver down, so no request is in
    flight): the restart repairs the buffer and the receiver gets exactly samples 0..k-1 of every series,
    with k at least what the agent had reported appended."""
    port = free_port()
    series, t0 = 200, int(time.time() * 1000) - 10 * HOUR
    state, status = tmp_path / "state", tmp_path / "status.json"
    settings = {
        "name": "c",
        "url": f"http://127.0.0.1:{port}/api/v1/write",
        "min_backoff": "50ms",
        "max_backoff": "200ms",
    }
    common = {"series": series, "t0": t0, "step": 1000, "metric": "rwtest_tear", "status_every": 0.01}
    p = start_agent(agents, state, status, settings, first=0, last=100_000, **common)
    st = wait_status(status, lambda s: s["appended_index"] >= 300, p)
    kill9(p)
    reported = st["appended_index"]
    vm = receivers("vm", port=port)
    p = start_agent(agents, state, status, settings, first=0, last=0, exit_when_drained=True, **common)
    assert p.wait(120) == 0
    got = vm.series_samples('{__name__="rwtest_tear"}')  # type: ignore[attr-defined]
    assert len(got) == series
    k = len(got["s0"])
    assert k >= reported
    for name in got:
        assert got[name] == [(t0 + i * 1000, float(i)) for i in range(k)], name


# ------------------------------------------------------------------------------------------------------
# In-process: lost acknowledgement, retry rules, headers, too-old samples, full disk.
# ------------------------------------------------------------------------------------------------------


def _settings(url: str, **kw: Any) -> RemoteWriteSettings:
    base: dict[str, Any] = {
        "name": "t",
        "url": url,
        "batch_send_deadline": "20ms",
        "min_backoff": "20ms",
        "max_backoff": "200ms",
        "buffer": {"fsync_interval": "100ms"},
    }
    base.update(kw)
    return RemoteWriteSettings.model_validate(base)


def _rows(metric: str, series: int, i: int, ts: int) -> list[tuple[dict[str, str], float, int]]:
    return [({"__name__": metric, "series": f"s{j}"}, float(i), ts) for j in range(series)]


async def _until(pred: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _invariant(w: RemoteWriter) -> None:
    assert w.stats.appended == w.stats.sent + sum(w.dropped().values()) + w.pending


def test_lost_acknowledgement_resend_counts_as_sent_and_new_samples_survive(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    # Prometheus without an out-of-order window answers 400 "out of order sample" to a re-sent stored batch.
    prom = receivers("prometheus", ooo_window=None)
    now = int(time.time() * 1000)
    with Proxy(prom.write_url, ["pass", "drop_answer"]) as proxy:

        async def run() -> RemoteWriter:
            w = RemoteWriter(_settings(proxy.url, min_backoff="400ms", max_backoff="400ms"), tmp_path)
            await w.start()
            w.append(_rows("rwtest_lostack", 3, 0, now - 3000))
            await _until(lambda: w.stats.sent == 3)
            # Two samples per series in one batch: re-sending it gets 400 (an exact single-sample
            # duplicate is accepted with 204 by 2.42, which needs no special case).
            w.append(_rows("rwtest_lostack", 3, 1, now - 2500))
            w.append(_rows("rwtest_lostack", 3, 2, now - 2000))
            await _until(lambda: "dropped" in proxy.statuses)
            # New samples arrive while the sender waits to re-send: they must not ride along.
            w.append(_rows("rwtest_lostack", 3, 3, now - 1000))
            await _until(lambda: w.pending == 0)
            _invariant(w)
            await w.close()
            return w

        w = asyncio.run(run())
    assert proxy.statuses[:2] == [204, "dropped"]
    assert 400 in proxy.statuses  # the re-send was refused as already stored ...
    assert w.stats.duplicate_batches == 1  # ... and recognised as delivered
    assert proxy.statuses[-1] == 204
    assert w.stats.sent == 12 and sum(w.dropped().values()) == 0
    got = prom.series_samples("rwtest_lostack")  # type: ignore[attr-defined]
    want = [(now - 3000, 0.0), (now - 2500, 1.0), (now - 2000, 2.0), (now - 1000, 3.0)]
    assert got == {f"s{j}": want for j in range(3)}


def test_retry_rules_headers_and_auth(receivers: Callable[..., Receiver], tmp_path: Path) -> None:
    vm = receivers("vm")
    now = int(time.time() * 1000)
    with Proxy(vm.write_url, [503, 500, 429, "pass", 400, "pass"]) as proxy:
        proxy.retry_after = "0.05"

        async def run() -> RemoteWriter:
            w = RemoteWriter(
                _settings(proxy.url, bearer_token="s3cret-token", external_labels={"agent": "a1"}), tmp_path
            )
            await w.start()
            w.append(_rows("rwtest_retry", 2, 0, now - 2000))
            await _until(lambda: w.pending == 0)
            assert w.stats.retries == 3 and w.stats.sent == 2
            w.append(_rows("rwtest_retry", 2, 1, now - 1000))  # answered 400: dropped, never retried
            await _until(lambda: w.pending == 0)
            w.append(_rows("rwtest_retry", 2, 2, now))
            await _until(lambda: w.pending == 0)
            _invariant(w)
            await w.close()
            return w

        w = asyncio.run(run())
    assert proxy.statuses == [503, 500, 429, 204, 400, 204]
    assert w.stats.retries == 3
    assert w.dropped().get("rejected") == 2 and w.stats.sent == 4
    h = proxy.headers[0]
    assert h["content-encoding"] == "snappy"
    assert h["content-type"] == "application/x-protobuf"
    assert h["x-prometheus-remote-write-version"] == "0.1.0"
    assert h["user-agent"].startswith("giamsat/")
    assert h["authorization"] == "Bearer s3cret-token"
    got = vm.series_samples('{__name__="rwtest_retry"}')  # type: ignore[attr-defined]
    assert got == {f"s{j}": [(now - 2000, 0.0), (now, 2.0)] for j in range(2)}
    with urllib.request.urlopen(f"{vm.base}/api/v1/series?match[]=rwtest_retry", timeout=10) as resp:
        raw = json.loads(resp.read())
    assert len(raw["data"]) == 2
    assert all(m.get("agent") == "a1" for m in raw["data"])


def test_basic_auth_header(tmp_path: Path) -> None:
    # A receiver that only records: answers 204 itself.
    with Proxy("http://127.0.0.1:1/api/v1/write", [204]) as proxy:

        async def run() -> None:
            s = _settings(proxy.url, basic_auth={"username": "site7", "password_env": "GS_TEST_RW_PW"})
            w = RemoteWriter(s, tmp_path)
            await w.start()
            w.append(_rows("x", 1, 0, int(time.time() * 1000)))
            await _until(lambda: w.pending == 0)
            await w.close()

        os.environ["GS_TEST_RW_PW"] = "pa:ss"
        try:
            asyncio.run(run())
        finally:
            del os.environ["GS_TEST_RW_PW"]
    assert proxy.headers[0]["authorization"] == "Basic c2l0ZTc6cGE6c3M="  # base64("site7:pa:ss")


def test_tls_with_own_ca_and_server_name(tmp_path: Path) -> None:
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl += ["-days", "2", "-keyout", str(key), "-out", str(crt), "-subj", "/CN=rw.test"]
    openssl += ["-addext", "subjectAltName=DNS:rw.test"]
    subprocess.run(
        openssl,
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    with Proxy("http://127.0.0.1:1/api/v1/write", [204, 204], tls=ctx) as proxy:

        async def run(tls: dict[str, Any], state: Path) -> RemoteWriter:
            w = RemoteWriter(_settings(proxy.url, tls=tls), state)
            await w.start()
            w.append(_rows("x", 1, 0, int(time.time() * 1000)))
            with contextlib.suppress(AssertionError):
                await _until(lambda: w.pending == 0, 5)
            await w.close()
            return w

        good = asyncio.run(run({"ca_file": str(crt), "server_name": "rw.test"}, tmp_path / "a"))
        # The certificate does not name 127.0.0.1: without server_name verification must fail.
        bad = asyncio.run(run({"ca_file": str(crt)}, tmp_path / "b"))
    assert good.stats.sent == 1
    assert bad.stats.sent == 0 and bad.stats.retries > 0 and bad.pending == 1
    assert proxy.statuses == [204]


def test_too_old_samples_are_dropped_not_retried_forever(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    prom = receivers("prometheus", ooo_window="3d")
    now = int(time.time() * 1000)

    async def run() -> RemoteWriter:
        # No age limit in the sender: Prometheus 2.42 answers 500 "too old sample" for 5-day-old samples.
        w = RemoteWriter(_settings(prom.write_url, max_sample_age=None), tmp_path / "a")
        await w.start()
        # (An empty head accepts any age: give it a recent sample first, as a live receiver has.)
        w.append(_rows("rwtest_anchor", 1, 0, now))
        await _until(lambda: w.pending == 0)
        w.append(_rows("rwtest_old", 2, 0, now - 120 * HOUR))
        await _until(lambda: w.pending == 0)
        assert w.dropped()["too_old"] == 2
        await w.close()
        # With max_sample_age the sender drops them itself, before sending; newer ones still go.
        w = RemoteWriter(_settings(prom.write_url, max_sample_age="2d"), tmp_path / "b")
        await w.start()
        w.append(_rows("rwtest_old", 2, 1, now - 50 * HOUR))
        w.append(_rows("rwtest_old", 2, 2, now - 47 * HOUR))
        await _until(lambda: w.pending == 0)
        _invariant(w)
        await w.close()
        return w

    w = asyncio.run(run())
    assert w.dropped()["too_old"] == 2 and w.stats.sent == 2
    got = prom.series_samples("rwtest_old")  # type: ignore[attr-defined]
    assert got == {f"s{j}": [(now - 47 * HOUR, 2.0)] for j in range(2)}


@pytest.mark.root
def test_full_disk_drops_with_a_count_and_recovers(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        port = free_port()
        now = int(time.time() * 1000) - HOUR
        stored: list[int] = []

        async def run() -> RemoteWriter:
            url = f"http://127.0.0.1:{port}/api/v1/write"  # receiver not started yet: an outage
            w = RemoteWriter(_settings(url, buffer={"segment_size": 65536, "fsync_interval": "50ms"}), mnt)
            await w.start()
            i = 0
            while w.dropped().get("disk_full", 0) == 0:
                assert i < 5000, "the 1 MiB disk never filled"
                if w.append(_rows("rwtest_full", 50, i, now + i * 1000)):
                    stored.append(i)
                i += 1
                if i % 20 == 0:
                    await asyncio.sleep(0)
            for _ in range(20):  # more appends while full: dropped and counted, no exception
                assert w.append(_rows("rwtest_full", 50, i, now + i * 1000)) == 0
                i += 1
            assert w.dropped()["disk_full"] == 21 * 50
            _invariant(w)
            await asyncio.to_thread(receivers_start)
            await _until(lambda: w.pending == 0, 90)
            # Delivered segments were deleted, so there is room again.
            assert w.append(_rows("rwtest_full", 50, i, now + i * 1000)) == 50
            stored.append(i)
            await _until(lambda: w.pending == 0, 30)
            _invariant(w)
            await w.close()
            return w

        holder: dict[str, Receiver] = {}

        def receivers_start() -> None:
            holder["r"] = receivers("vm", port=port)

        w = asyncio.run(run())
        assert w.dropped() == {"disk_full": 21 * 50}
        got = holder["r"].series_samples('{__name__="rwtest_full"}')  # type: ignore[attr-defined]
        assert len(got) == 50
        for samples in got.values():
            assert [v for _, v in samples] == [float(i) for i in stored]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def netns_prometheus(tmp_path: Path) -> Iterator[tuple[PrometheusReceiver, str]]:
    """Prometheus inside a network namespace reached over a veth pair (198.19.208.0/30), so a test can
    blackhole the path with an nftables drop rule: requests then hang until the sender's timeout."""
    with exclusive_addresses("198.19.208.0/30"):
        yield from _netns_prometheus(tmp_path)


def _netns_prometheus(tmp_path: Path) -> Iterator[tuple[PrometheusReceiver, str]]:
    pid = os.getpid()
    ns, host_if, ns_if = f"gsrw{pid}", f"gsrw{pid}h", f"gsrw{pid}n"
    host_ip, ns_ip = "198.19.208.1", "198.19.208.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    prom: PrometheusReceiver | None = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("-n", ns, "link", "set", ns_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")

        class NsPrometheus(PrometheusReceiver):
            @property
            def base(self) -> str:
                return f"http://{ns_ip}:{self.port}"

            def argv(self) -> list[str]:
                argv = super().argv()
                argv[argv.index(f"--web.listen-address=127.0.0.1:{self.port}")] = (
                    f"--web.listen-address={ns_ip}:{self.port}"
                )
                return ["ip", "netns", "exec", ns, *argv]  # ip execs prometheus: the PID is prometheus'

        prom = NsPrometheus(tmp_path / "nsprom", port=9090)
        prom.start()
        yield prom, ns
    finally:
        if prom is not None:
            prom.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


@pytest.mark.root
def test_blackholed_link_times_out_and_delivers_everything_once(
    netns_prometheus: tuple[PrometheusReceiver, str], tmp_path: Path
) -> None:
    prom, ns = netns_prometheus
    t0 = int(time.time() * 1000) - 2 * HOUR
    total = 120

    def nft(script: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script.encode(), check=True)

    async def run() -> RemoteWriter:
        w = RemoteWriter(
            _settings(
                prom.write_url,
                remote_timeout="1s",
                max_samples_per_send=40,
                backfill_lane=True,
                backfill_after="1s",
            ),
            tmp_path,
        )
        await w.start()
        for i in range(total):
            w.append(_rows("rwtest_blackhole", 4, i, t0 + i * 60_000))
            if i == 30:
                await _until(lambda: w.pending == 0)
                nft(
                    f"table inet gsrw{os.getpid()} {{ chain blackhole {{ type filter hook input priority 0; tcp dport 9090 drop; }}; }}"
                )
            if i == 90:
                await _until(lambda: w.stats.retries >= 2)
                nft(f"delete table inet gsrw{os.getpid()}")
            await asyncio.sleep(0.02)
        await _until(lambda: w.pending == 0, 60)
        _invariant(w)
        await w.close()
        return w

    w = asyncio.run(run())
    assert w.stats.retries >= 2 and sum(w.dropped().values()) == 0
    got = prom.series_samples("rwtest_blackhole")
    assert got == {f"s{j}": [(t0 + i * 60_000, float(i)) for i in range(total)] for j in range(4)}


def test_bandwidth_budget_is_never_exceeded(receivers: Callable[..., Receiver], tmp_path: Path) -> None:
    # A lower bound only (the budget forbids going faster), so a slow machine cannot make it fail.
    vm = receivers("vm")
    rate = 4000
    t0 = int(time.time() * 1000) - HOUR

    async def run() -> tuple[RemoteWriter, float]:
        w = RemoteWriter(_settings(vm.write_url, bandwidth_limit=rate, max_samples_per_send=200), tmp_path)
        await w.start()
        start = time.monotonic()
        for i in range(300):
            w.append(
                [
                    ({"__name__": "rwtest_bw", "series": f"s{j}"}, float(i * j), t0 + i * 1000)
                    for j in range(20)
                ]
            )
        await _until(lambda: w.pending == 0, 120)
        elapsed = time.monotonic() - start
        await w.close()
        return w, elapsed

    w, elapsed = asyncio.run(run())
    assert w.stats.sent_bytes > 3 * rate  # enough bytes for the budget to bind
    # At most one second's burst plus the request in flight may go before the budget is paid (the
    # bucket goes into debt for a request bigger than what is left; 2x the mean request size bounds it).
    last_request = w.stats.sent_bytes / w.stats.requests
    assert elapsed >= (w.stats.sent_bytes - rate - 2 * last_request) / rate, (
        elapsed,
        w.stats.sent_bytes,
        w.stats.requests,
    )


# ------------------------------------------------------------------------------------------------------
# Reviewer findings (session 3): failed start, trickling receiver, credentials in the URL.
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_tls", ["ca_file", "cert_file"])
def test_failed_start_releases_the_buffer_so_the_old_writer_restarts(
    receivers: Callable[..., Receiver], tmp_path: Path, bad_tls: str
) -> None:
    """Guards a reload to a bad TLS file: the failing writer must not keep the buffer directory locked,
    or the writer it replaces cannot start again on it (BufferLockedError) and remote write stops.
    The sequence is the lifecycle's: old writer closes, new one fails, old settings start again."""
    vm = receivers("vm")
    now = int(time.time() * 1000)
    down = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nothing listens: samples stay buffered

    async def run() -> tuple[RemoteWriter, pytest.ExceptionInfo[BaseException]]:
        old = RemoteWriter(_settings(down), tmp_path)
        await old.start()
        old.append(_rows("rwtest_reload", 2, 0, now - 1000))
        await old.close()
        # The file was fine when the configuration was checked and is gone when the writer starts.
        pem = tmp_path / "gone.pem"
        pki = CA(tmp_path)
        client = pki.issue("client", "xa-01", server=False)
        pem.write_bytes(pki.pair.cert.read_bytes() if bad_tls == "ca_file" else client.cert.read_bytes())
        tls = {bad_tls: str(pem)} | ({"key_file": str(client.key)} if bad_tls == "cert_file" else {})
        new = RemoteWriter(_settings(vm.write_url.replace("http:", "https:"), tls=tls), tmp_path)
        pem.unlink()
        with pytest.raises((ValueError, OSError)) as err:
            await new.start()
        await new.close()  # safe after a failed start, and twice
        await new.close()
        again = RemoteWriter(_settings(vm.write_url), tmp_path)
        await again.start()  # BufferLockedError before the fix
        assert again.pending == 2
        again.append(_rows("rwtest_reload", 2, 1, now))
        await _until(lambda: again.pending == 0)
        _invariant(again)
        await again.close()
        await again.close()
        return again, err

    w, err = asyncio.run(run())
    assert "tls.ca_file/cert_file/key_file" in str(err.value)
    assert w.stats.sent == 4
    got = vm.series_samples('{__name__="rwtest_reload"}')  # type: ignore[attr-defined]
    assert got == {f"s{j}": [(now - 1000, 0.0), (now, 1.0)] for j in range(2)}


class _TricklingThenForwarding:
    """An HTTP server on loopback that answers the first ``trickle`` requests one byte every 0.2 s for
    ever (the status line, then header bytes), as a stuck proxy or receiver can; later requests are
    forwarded to ``upstream`` (a real receiver)."""

    def __init__(self, upstream: str, trickle: int) -> None:
        import socket
        import threading
        import urllib.parse

        self.upstream = urllib.parse.urlsplit(upstream)
        self.left = trickle
        self.trickled = 0
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]
        self.lock = threading.Lock()
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.upstream.path}"

    def _accept(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c: Any) -> None:
        import http.client

        with c:
            c.settimeout(5)
            f = c.makefile("rb")
            while not self.stop.is_set():
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = f.readline()
                    if not line:
                        return
                    head += line
                n = 0
                hdrs: dict[str, str] = {}
                for h in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        hdrs[k.strip()] = v.strip()
                        if k.strip().lower() == "content-length":
                            n = int(v)
                body = f.read(n)
                with self.lock:
                    trickle = self.left > 0
                    self.left -= 1
                if trickle:
                    self.trickled += 1
                    try:
                        c.sendall(b"HTTP/1.1 204 No Content\r\n")
                        while not self.stop.wait(0.2):
                            c.sendall(b"X")
                    except OSError:
                        pass
                    return
                conn = http.client.HTTPConnection(
                    self.upstream.hostname or "", self.upstream.port, timeout=30
                )
                fwd = {k: v for k, v in hdrs.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.upstream.path, body=body, headers=fwd)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                c.sendall(
                    f"HTTP/1.1 {resp.status} X\r\nContent-Length: {len(data)}\r\n\r\n".encode("latin-1")
                    + data
                )

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.sock.close()


def test_remote_timeout_bounds_the_whole_request_against_a_trickling_receiver(
    receivers: Callable[..., Receiver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards remote_timeout as one request's limit: httpx's timeout only bounds each read, so a receiver
    trickling its answer held one POST open for ever (no retry, no failure logged, pending grew). Now
    the request is abandoned after remote_timeout, logged as failing, retried, and delivered once."""
    vm = receivers("vm")
    now = int(time.time() * 1000)
    server = _TricklingThenForwarding(vm.write_url, trickle=1)
    try:

        async def run() -> RemoteWriter:
            w = RemoteWriter(_settings(server.url, remote_timeout="1s"), tmp_path)
            await w.start()
            w.append(_rows("rwtest_trickle", 3, 0, now - 1000))
            await _until(lambda: w.pending == 0, 30)  # never reached before the fix
            w.append(_rows("rwtest_trickle", 3, 1, now))
            await _until(lambda: w.pending == 0, 30)
            _invariant(w)
            await w.close()
            return w

        with caplog.at_level("INFO", logger="giamsat.remote_write"):
            w = asyncio.run(run())
    finally:
        server.close()
    assert server.trickled == 1
    assert w.stats.retries >= 1 and w.stats.sent == 6
    failing = [r for r in caplog.records if r.getMessage() == "remote write failing, buffering and retrying"]
    assert failing and "timeout" in failing[0].__dict__["error"]
    got = vm.series_samples('{__name__="rwtest_trickle"}')  # type: ignore[attr-defined]
    assert got == {f"s{j}": [(now - 1000, 0.0), (now, 1.0)] for j in range(3)}


def test_password_in_url_is_refused_and_never_printed(tmp_path: Path) -> None:
    """Guards secrets hygiene: ``http://user:pass@host/`` put the password in the "remote write started"
    log line. It is refused at load with a pointer to basic_auth, and the password appears nowhere in
    what check-config or run print."""
    import secrets

    from tests.helpers import GIAMSAT

    canary = "pw" + secrets.token_hex(8)
    cfg = tmp_path / "giamsat.yml"
    cfg.write_text(
        f"""
agent:
  site: tinh
  state_dir: {tmp_path / "state"}
  listen_address: 127.0.0.1:{free_port()}
sites:
  - {{id: tinh, name: "Tinh", level: province}}
remote_write:
  - name: central
    url: http://site7:{canary}@127.0.0.1:{free_port()}/api/v1/write
"""
    )
    for argv in ([GIAMSAT, "check-config", str(cfg)], [GIAMSAT, "run", "--config.file", str(cfg)]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "basic_auth" in out and "remote_write" in out, out
        assert canary not in out
    assert not (tmp_path / "state").exists() or canary not in "".join(
        p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file()
    )


def _result(i: int, t0: float) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    from agent.kernel.results import JobResult

    g = GaugeMetricFamily("rwtest_swap", "x", labels=["series"])
    for j in range(2):
        g.add_metric([f"s{j}"], float(i))
    return JobResult("host/h", "host", "h", "tinh", (g,), t0 + i, 0.01, True)


def test_results_during_a_writer_swap_are_held_and_delivered(
    receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    """Guards the reload gap (reviewer's r11): while the lifecycle closes one RemoteWriteSet and starts the
    next on the same buffer, results went to no writer and were lost uncounted. ResultHold keeps them
    (bounded) and hands them over first, in order; beyond its bound they are counted as dropped
    with reason "reload", so appended = sent + dropped + pending still holds."""
    from exporters.remote_write import RemoteWriteSet, ResultHold

    vm = receivers("vm")
    t0 = time.time() - 60

    async def run() -> tuple[RemoteWriteSet, RemoteWriteSet]:
        old = RemoteWriteSet([_settings(vm.write_url)], tmp_path)
        await old.start()
        old.on_result(_result(0, t0))
        hold = ResultHold(max_samples=4)  # the lifecycle's listener from detach to attach
        await old.close()
        for i in (1, 2, 3):  # finished while no writer is attached: two held, the third over the bound
            hold.on_result(_result(i, t0))
        new = RemoteWriteSet([_settings(vm.write_url, batch_send_deadline="30ms")], tmp_path)
        await new.start()
        hold.release_to(new)  # same event-loop step as attaching new.on_result
        new.on_result(_result(4, t0))
        w = new.writers[0]
        await _until(lambda: w.pending == 0)
        _invariant(w)
        await new.close()
        return old, new

    old, new = asyncio.run(run())
    w = new.writers[0]
    assert w.dropped() == {"reload": 2}
    assert old.writers[0].stats.sent + w.stats.sent == 8
    got = vm.series_samples('{__name__="rwtest_swap"}')  # type: ignore[attr-defined]
    want = [(int((t0 + i) * 1000), float(i)) for i in (0, 1, 2, 4)]
    assert got == {f"s{j}": want for j in range(2)}


def test_timeout_while_connecting_is_not_taken_for_a_possibly_stored_request(tmp_path: Path) -> None:
    """Guards the whole-request timeout's classification: if remote_timeout expires before the request's
    headers went out (here: the receiver's accept queue is full, so the SYN is dropped), the receiver
    cannot have stored it, so a later 400 "out of order sample" is a rejection, not "already stored"."""
    import socket
    import threading

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    filler = socket.create_connection(ls.getsockname())  # fills the accept queue: further SYNs dropped
    serving = threading.Event()
    stop = threading.Event()
    answered: list[int] = []

    def serve() -> None:
        serving.wait()
        c, _ = ls.accept()
        c.close()  # the filler
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except TimeoutError:
                continue
            with c, c.makefile("rb") as f:
                n = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                f.read(n)
                body = b"out of order sample"
                c.sendall(
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                answered.append(400)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{ls.getsockname()[1]}/api/v1/write"
    try:

        async def run() -> RemoteWriter:
            w = RemoteWriter(_settings(url, remote_timeout="300ms"), tmp_path)
            await w.start()
            w.append(_rows("rwtest_conn", 2, 0, int(time.time() * 1000)))
            await _until(lambda: w.stats.retries >= 2)  # connects timed out
            serving.set()
            await _until(lambda: w.pending == 0)
            _invariant(w)
            await w.close()
            return w

        w = asyncio.run(run())
    finally:
        serving.set()
        stop.set()
        t.join(5)
        filler.close()
        ls.close()
    assert answered == [400]
    assert w.stats.duplicate_batches == 0 and w.stats.sent == 0
    assert w.dropped() == {"rejected": 2}
