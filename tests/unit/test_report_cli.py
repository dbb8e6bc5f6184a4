"""``giamsat report`` on bad input: one clear line, a non-zero exit, never a traceback; a period the
data does not cover is unknown, never available."""

from __future__ import annotations

import csv
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.journal import segments
from tests.helpers import GIAMSAT, free_port
from tests.unit.test_ledger_figures import KNOWN_S, build


def report(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([GIAMSAT, "report", *args], capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report-cli")
    build(d)
    return d


def test_unknown_site(state: Path, tmp_path: Path) -> None:
    r = report("--state-dir", str(state), "--month", "2026-11", "--tz", "UTC", "--site", "nowhere")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "giamsat report: --site: unknown site 'nowhere'; the inventory has 8 sites (c1, c2, c3, c4, c5, ...)"
    ]
    assert not list(tmp_path.iterdir())


def test_one_district(state: Path, tmp_path: Path) -> None:
    r = report(
        "--state-dir", str(state), "--month", "2026-11", "--tz", "UTC", "--site", "d1", "--out", str(tmp_path)
    )
    assert r.returncode == 0, r.stderr
    rows = list(
        csv.DictReader((tmp_path / "giamsat-report-2026-11-d1-sites.csv").read_text("utf-8-sig").splitlines())
    )
    assert [row["Điểm"] for row in rows] == ["d1", "c1", "c2"]


def test_period_with_no_data(state: Path, tmp_path: Path) -> None:
    r = report("--state-dir", str(state), "--month", "2026-09", "--tz", "UTC", "--out", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.startswith("giamsat report: no data for 2026-09: ledger ")
    assert "covers 2026-10-31T23:00:00+00:00 to 2026-11-03T00:00:00+00:00" in r.stderr
    assert not list(tmp_path.iterdir())


def test_uncovered_time_is_unknown_not_available(state: Path, tmp_path: Path) -> None:
    """The agent ran on the 1st and 2nd only: the rest of the month is unknown, and availability is
    over the known time alone."""
    r = report(
        "--state-dir", str(state), "--month", "2026-11", "--tz", "UTC", "--out", str(tmp_path), "--lang", "en"
    )
    assert r.returncode == 0, r.stderr
    rows = {
        row["Site"]: row
        for row in csv.DictReader(
            (tmp_path / "giamsat-report-2026-11-sites.csv").read_text("utf-8-sig").splitlines()
        )
    }
    assert rows["p"]["Time without data (s)"] == str(round(30 * 86400 - KNOWN_S))
    assert rows["p"]["Availability (%)"] == "100.0000"
    assert rows["c4"]["Availability (%)"] == ""  # never connected: no availability to speak of
    assert rows["c1"]["State at end"] == "unknown"
    page = (tmp_path / "giamsat-report-2026-11.html").read_text(encoding="utf-8")
    assert 'Time without data</th><td class="big">93.4%' in page


def test_bad_arguments(state: Path) -> None:
    cases = {
        ("--month", "2026-13"): "--month: '2026-13' is not a month (YYYY-MM, e.g. 2026-11)",
        ("--month", "2026-11", "--from", "2026-11-01"): "give either --month or --from/--to, not both",
        ("--from", "yesterday"): "--from: 'yesterday' is not a date or time (2026-11-01 or 2026-11-01T08:00)",
        (
            "--month",
            "2026-11",
            "--tz",
            "Mars/Olympus",
        ): "--tz: unknown time zone 'Mars/Olympus' (e.g. Asia/Ho_Chi_Minh, UTC)",
        ("--month", "2099-01"): "the period 2099-01 has not started yet",
    }
    for args, message in cases.items():
        r = report("--state-dir", str(state), *args)
        assert (r.returncode, r.stderr.strip()) == (2, f"giamsat report: {message}"), args


def test_state_dir_without_a_ledger(tmp_path: Path) -> None:
    r = report("--state-dir", str(tmp_path / "missing"), "--month", "2026-11")
    assert (r.returncode, r.stderr.strip()) == (
        2,
        f"giamsat report: --state-dir {tmp_path / 'missing'}: no such directory",
    )
    r = report("--state-dir", str(tmp_path), "--month", "2026-11")
    assert r.returncode == 1 and "no ledger in it" in r.stderr


def test_torn_records_are_named_and_flagged(tmp_path: Path) -> None:
    build(tmp_path / "s")
    seg = segments(tmp_path / "s" / "ledger")[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data) + b"\xa7L\x10\x00")  # and a torn tail
    r = report(
        "--state-dir", str(tmp_path / "s"), "--month", "2026-11", "--tz", "UTC", "--out", str(tmp_path / "o")
    )
    assert r.returncode == 3
    assert "2 damaged record(s)" in r.stderr and seg.name in r.stderr
    page = (tmp_path / "o" / "giamsat-report-2026-11.html").read_text(encoding="utf-8")
    assert f"skipped in {seg.name} (2)" in page  # in the report itself, not only on stderr


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_unreachable_or_wrong_prometheus(not_prometheus: str) -> None:
    port = free_port()
    r = report("--prometheus", f"http://127.0.0.1:{port}", "--month", "2026-11")
    assert r.returncode == 1
    assert r.stderr.startswith(f"giamsat report: --prometheus http://127.0.0.1:{port}: cannot reach it: ")
    r = report("--prometheus", not_prometheus, "--month", "2026-11")
    assert r.returncode == 1 and "not a Prometheus API answer on /api/v1/query" in r.stderr
    r = report("--prometheus", "file:///etc/passwd", "--month", "2026-11")
    assert r.returncode == 2 and "is not an http(s) URL" in r.stderr
