"""The status page in a real headless Chromium during a district cut: the simulated province in network
namespaces (deploy/demo/province.py), ``giamsat run`` probing it, the page read with ``--dump-dom`` and
photographed with ``--screenshot``. The cut district shows down with its communes unreachable behind it,
the never-connected commune sits apart, the screenshot carries the state colours; the page follows the
browser's language, and the restore clears the problems."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    CHROMIUM_FLAGS,
    GIAMSAT,
    free_port,
    http_get,
    parse_exposition,
    stop_process,
    wait_for,
    wait_ready,
)
from tests.integration.test_sites_e2e import province_mod
from tests.pagetext import parse, section
from tests.pngread import count_near

pytestmark = pytest.mark.root

# Address blocks of this module only (13 /24s each from 198.19.<base>.0: 212 - 250), claimed under a lock.
BASES = (212, 225, 238)
VX_COMMUNES = {"vx-daoduc": "Xã Đạo Đức", "vx-phulinh": "Xã Phú Linh", "vx-linhho": "Xã Linh Hồ"}
# The page's state colours (exporters/status/render.py STYLE).
COLOURS = {"down": (0xD3, 0x2F, 0x2F), "unreachable": (0xEF, 0x6C, 0x00), "up": (0x2E, 0x7D, 0x32)}


@pytest.fixture(scope="module")
def province() -> Iterator[Any]:
    prov = province_mod.Province.claim(f"gs{os.getpid()}w", BASES)
    prov.build()
    try:
        yield prov
    finally:
        prov.teardown()


@pytest.fixture(scope="module")
def agent_url(province: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("status-page")
    config = tmp / "giamsat.yml"
    # 5 s: the demo's 3 echoes 1 s apart (and a confirmation burst after a lost round) fit in a round
    config.write_text(province.config(tmp / "state", interval="5s"), encoding="utf-8")
    port = free_port()
    with (tmp / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [GIAMSAT, "run", "--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/-/ready", tmp / "agent.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def states(url: str) -> dict[str, str]:
    m = parse_exposition(http_get(url + "/metrics")[1])
    return {
        k.split('site="')[1].split('"')[0]: k.split('state="')[1].split('"')[0]
        for k, v in m.items()
        if k.startswith("giamsat_site_state{") and v == 1
    }


def chromium(url: str, tmp: Path, *args: str, lang: str = "vi") -> str:
    """Run headless Chromium once on ``url``; its stdout (the DOM with --dump-dom)."""
    profile = tmp / f"profile-{time.monotonic_ns()}"
    cmd = [
        "chromium",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--lang={lang}",
        f"--accept-lang={lang}",
    ]
    proc = subprocess.Popen(
        [*cmd, *args, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp,
        start_new_session=True,  # its helper processes are in its own group: stopped with it
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode("utf-8")


def test_a_cut_district_in_a_real_browser(province: Any, agent_url: str, tmp_path: Path) -> None:
    all_up = {n.site: "up" for n in province_mod.NODES} | {"bm-lacnong": "gap"}
    wait_for(lambda: states(agent_url) == all_up, 90, 1, what="steady states")
    dom = chromium(agent_url + "/", tmp_path, "--dump-dom")
    assert "Không có sự cố" in parse(section(dom, "problems")).text
    calm = tmp_path / "calm.png"
    chromium(agent_url + "/", tmp_path, f"--screenshot={calm}", "--window-size=1280,2000")

    province.cut("vx")
    try:
        cut = {"vx": "down"} | dict.fromkeys(VX_COMMUNES, "unreachable")
        wait_for(lambda: states(agent_url) == all_up | cut, 90, 1, what="vx down, its communes unreachable")
        # The page as the browser built it (no script runs: what a reader sees).
        dom = chromium(agent_url + "/", tmp_path, "--dump-dom")
        shot = tmp_path / "cut.png"
        chromium(agent_url + "/", tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    finally:
        province.restore("vx")
    page = parse(dom)
    assert ("html", {"lang": "vi"}) in page.tags
    problems = parse(section(dom, "problems")).text
    assert "Sự cố (1)" in problems
    assert "Mất kết nối Huyện Vị Xuyên vx Cấp huyện" in problems
    assert "icmp/vx-wan" in problems
    for name in VX_COMMUNES.values():
        assert f"Không tới được {name}" in problems
    assert "lỗi ở cấp trên" in problems
    assert "Bắc Mê" not in problems and "Lạc Nông" not in problems
    gaps = parse(section(dom, "gaps")).text
    assert "Xã Lạc Nông bm-lacnong" in gaps and "Vị Xuyên" not in gaps
    summary = parse(section(dom, "summary")).text
    assert "Cấp huyện 1 0 0 0 1" in summary and "Cấp xã 0 3 1 0 2" in summary
    assert "giamsat" in parse(section(dom, "agent")).text and "icmp" in parse(section(dom, "agent")).text
    # The screenshot shows the outage in the states' colours: far more of the down red and the
    # unreachable orange than the same page before the cut (whose legend has a little of each).
    before, during = count_near(calm, COLOURS), count_near(shot, COLOURS)
    print(f"\nstate-colour pixels before the cut {before}, during it {during} ({shot})")
    assert during["down"] > before["down"] + 1000
    assert during["unreachable"] > before["unreachable"] + 3000
    assert during["up"] > 1000

    # Restored: no problem left, in English this time (the browser's language).
    wait_for(lambda: states(agent_url) == all_up, 90, 1, what="states after the restore")
    dom = chromium(agent_url + "/", tmp_path, "--dump-dom", lang="en-US")
    assert ("html", {"lang": "en"}) in parse(dom).tags
    assert "No problems" in parse(section(dom, "problems")).text
    assert "Never connected (coverage gaps) (1)" in parse(section(dom, "gaps")).text


def test_language_headers_and_escaped_query(agent_url: str) -> None:
    status, body, headers = http_get(agent_url + "/", headers={"Accept-Language": "en-GB,en;q=0.9,vi;q=0.5"})
    assert status == 200 and headers["Content-Language"] == "en" and '<html lang="en">' in body
    assert headers["Vary"] == "Accept-Language" and headers["Content-Type"] == "text/html; charset=utf-8"
    status, body, headers = http_get(agent_url + "/?lang=vi", headers={"Accept-Language": "en"})
    assert headers["Content-Language"] == "vi" and "Tỉnh Hà Giang" in body
    status, body, _ = http_get(agent_url + "/?lang=%3Cscript%3E&open=%3Cscript%3E")
    assert status == 200 and "<script" not in body
    # a healthy district is collapsed, unless pinned open (its own link), which the refresh keeps
    assert '<details id="s-bm"><summary>' in body
    assert '<details id="s-bm" open><summary>' in http_get(agent_url + "/?open=bm-yenphu")[1]


def test_every_link_on_the_page_answers(agent_url: str) -> None:
    page = parse(http_get(agent_url + "/")[1])
    links = {href for tag, attrs in page.tags if tag == "a" and (href := attrs.get("href"))}
    assert {"/report", "/metrics", "/-/healthy", "/-/ready", "/?lang=en"} <= links
    for href in sorted(links):
        assert href is not None and href.startswith("/")
        assert http_get(agent_url + href.split("#")[0], timeout=10)[0] == 200, href
