"""A month on a real Prometheus: the known ledger's counters, as the agent exported them every 60 s
while it ran, backfilled with ``promtool tsdb create-blocks-from openmetrics``; ``giamsat report
--prometheus --month`` reads them at every day boundary (one ``query_range`` with a one-day step) and
gives the ledger's figures: seconds by state per site and per day, outages and repairs by cause."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ledger.book import CAUSES, KNOWN
from agent.ledger.recorder import replay
from agent.report.data import make_period
from agent.report.figures import compute
from agent.report.from_prometheus import from_prometheus
from tests.helpers import GIAMSAT, free_port, http_get, stop_process, wait_for
from tests.unit.test_ledger_figures import DAY, T, build

STEP = 60  # one scrape a minute; the day boundaries fall on it
RUNNING = [(T - 3600, T + 50600), (T + 52000, T + 2 * DAY)]  # the agent's two runs in the known ledger


def openmetrics(state: Path) -> str:
    book = replay(state / "ledger")
    until = book.last_ts
    lines = [f"# TYPE giamsat_site_{st}_seconds counter" for st in KNOWN]
    lines += [
        "# TYPE giamsat_site_outages counter",
        "# TYPE giamsat_site_repairs counter",
        "# TYPE giamsat_site_repair_seconds counter",
        "# TYPE giamsat_site_info gauge",
    ]
    samples: dict[str, list[str]] = {}
    for sid, name, level, parent in book.inventory:
        spans = book.spans(sid, until)
        history = book.sites[sid].history
        for lo, hi in RUNNING:
            t = -(-lo // STEP) * STEP  # scrapes on the minute, as the day boundaries are
            while t <= hi:
                for st in KNOWN:
                    v = sum(max(0.0, min(e, t) - s) for s, e, state in spans if state == st)
                    samples.setdefault(f"giamsat_site_{st}_seconds", []).append(
                        f'giamsat_site_{st}_seconds_total{{site="{sid}"}} {v} {t:.0f}'
                    )
                for c in CAUSES:
                    started = [o for o in history if o.cause == c and o.start <= t]
                    ended = [o for o in started if o.end is not None and o.end <= t]
                    if started:
                        samples.setdefault("giamsat_site_outages", []).append(
                            f'giamsat_site_outages_total{{site="{sid}",cause="{c}"}} {len(started)} {t:.0f}'
                        )
                    if ended:
                        samples.setdefault("giamsat_site_repairs", []).append(
                            f'giamsat_site_repairs_total{{site="{sid}",cause="{c}"}} {len(ended)} {t:.0f}'
                        )
                        secs = sum(o.end - o.start for o in ended if o.end is not None)
                        samples.setdefault("giamsat_site_repair_seconds", []).append(
                            f'giamsat_site_repair_seconds_total{{site="{sid}",cause="{c}"}} {secs} {t:.0f}'
                        )
                samples.setdefault("giamsat_site_info", []).append(
                    f'giamsat_site_info{{site="{sid}",name="{name}",level="{level}",parent="{parent or ""}"}} 1 {t:.0f}'
                )
                t += STEP
    out = []
    for head in lines:
        fam = head.split()[2]
        out.append(head)
        out += samples.get(fam, [])
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("report-backfill")
    build(tmp / "state")
    (tmp / "in.om").write_text(openmetrics(tmp / "state"), encoding="utf-8")
    r = subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(tmp / "in.om"),
            str(tmp / "tsdb"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    (tmp / "prometheus.yml").write_text("global: {}\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(lambda: http_get(url + "/-/ready")[0] == 200, 60, 0.3, what="prometheus ready")
        yield url, tmp / "state"
    finally:
        stop_process(proc)


def test_a_month_from_prometheus_equals_the_ledger(served: tuple[str, Path]) -> None:
    url, state = served
    book = replay(state / "ledger")
    period = make_period("2026-11", None, None, "UTC", now=T + 40 * DAY)
    from agent.report.from_ledger import from_book

    exact = compute(from_book(book, period, book.last_ts, "ledger"))
    server = compute(from_prometheus(url, period))
    assert set(server.sites) == set(exact.sites)
    for sid, f in exact.sites.items():
        g = server.sites[sid]
        # a reading every 60 s, the day boundaries on the grid: each reading is the ledger's to the
        # second; the agent's last reading before it stopped is up to one scrape interval before the stop
        for st in KNOWN:
            assert g.totals.seconds[st] == pytest.approx(f.totals.seconds[st], abs=STEP), (sid, st)
        assert g.days[0] == f.days[0], sid  # the first day: every reading on it is there
        assert g.days[1] == pytest.approx(f.days[1], abs=STEP / DAY), sid
        assert g.days[2:] == f.days[2:] == [None] * 28, sid
        assert g.totals.outages == f.totals.outages, sid
        assert g.totals.repairs == f.totals.repairs, sid
        assert g.totals.repair_seconds == f.totals.repair_seconds, sid
        assert g.ever_up == f.ever_up, sid
    assert server.province.totals.mttr() == exact.province.totals.mttr()
    assert server.sites["c2"].totals.seconds["down"] == 3600  # across the crash and restart, exact
    assert [(o.site, o.cause) for o in server.data.outages] == [(o.site, o.cause) for o in exact.data.outages]


def test_the_command_on_a_month(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    r = subprocess.run(
        [GIAMSAT, "report", "--prometheus", url, "--month", "2026-11", "--tz", "UTC", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    rows = {
        row["Điểm"]: row
        for row in csv.DictReader(
            (tmp_path / "giamsat-report-2026-11-sites.csv").read_text(encoding="utf-8-sig").splitlines()
        )
    }
    assert rows["c2"]["Số sự cố: Đường truyền của điểm"] == "1"
    assert rows["c3"]["Số sự cố: Mất điện"] == "1"
    r = subprocess.run(
        [
            GIAMSAT,
            "report",
            "--prometheus",
            url,
            "--month",
            "2026-09",
            "--tz",
            "UTC",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1 and "no data for 2026-09" in r.stderr
