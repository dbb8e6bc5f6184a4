"""The report in a real browser: Debian's Chromium, headless, opens the HTML without errors or requests
elsewhere; a screenshot of each section has ink (charts: their colours, text: dark pixels), Vietnamese
diacritics are in the DOM and drawn; the CSV files are UTF-8 with a BOM."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from agent.report.html import SCALE, UNKNOWN_COLOUR
from tests.helpers import CHROMIUM_FLAGS as HEADLESS_CHROMIUM
from tests.helpers import GIAMSAT
from tests.pngread import read_rgb
from tests.unit.test_ledger_figures import build

SECTIONS = ("summary", "coverage", "availability", "heatmap", "causes", "worst", "outages", "sites")
CHROMIUM_FLAGS = [*HEADLESS_CHROMIUM, "--enable-logging=stderr", "--v=0"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pixels(path: Path) -> list[tuple[int, int, int]]:
    _, _, it = read_rgb(path)
    return list(it)


def count(px: list[tuple[int, int, int]], colours: set[tuple[int, int, int]]) -> int:
    return sum(1 for p in px if p in colours)


def dark(px: list[tuple[int, int, int]]) -> int:
    return sum(1 for r, g, b in px if r + g + b < 300)


def rgb(hexcolour: str) -> tuple[int, int, int]:
    v = int(hexcolour[1:], 16)
    return v >> 16, (v >> 8) & 0xFF, v & 0xFF


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    build(tmp / "state")
    r = subprocess.run(
        [
            GIAMSAT,
            "report",
            "--state-dir",
            str(tmp / "state"),
            "--month",
            "2026-11",
            "--tz",
            "Asia/Ho_Chi_Minh",
            "--out",
            str(tmp / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return tmp / "out"


def test_opens_without_errors_and_keeps_vietnamese(report: Path, tmp_path: Path) -> None:
    page = report / "giamsat-report-2026-11.html"
    text = page.read_text(encoding="utf-8")
    # self-contained: nothing to fetch, no script
    assert not re.search(r"""(src|href)\s*=|url\(|<script|@import""", text)
    r = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert dom.rstrip().endswith("</html>")
    for sid in SECTIONS:
        assert f'id="{sid}"' in dom
    for words in ("Tính sẵn sàng theo huyện", "Xã Đạo Đức", "Huyện Vị Xuyên", "Mất điện", "Tuyến trên"):
        assert words in dom
    # no console messages (page errors) and no network errors in the browser's log
    assert not [line for line in r.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]


def test_every_section_is_drawn(report: Path, tmp_path: Path) -> None:
    text = (report / "giamsat-report-2026-11.html").read_text(encoding="utf-8")
    head = text[: text.index("<body>") + len("<body>")]
    chart_colours = {rgb(c) for _, c, _, _ in SCALE}
    for sid in SECTIONS:
        m = re.search(rf'<section id="{sid}".*?</section>', text, re.S)
        assert m, sid
        one = tmp_path / f"{sid}.html"
        one.write_text(head + m.group(0) + "</body></html>", encoding="utf-8")
        png = tmp_path / f"{sid}.png"
        r = chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,900", one.as_uri())
        assert r.returncode == 0 and png.exists(), r.stderr[-2000:]
        px = pixels(png)
        assert dark(px) > 2000, f"section {sid}: no text drawn"
        if sid in ("availability", "heatmap"):
            assert count(px, chart_colours) > 2000, f"section {sid}: empty chart"
        if sid == "heatmap":
            assert count(px, {rgb(UNKNOWN_COLOUR)}) > 2000  # the days without data are drawn as such


def test_diacritics_are_drawn(tmp_path: Path) -> None:
    """A glyph with its marks: 'ệ' has ink above and below where 'e' has none (not a missing glyph box,
    which would be as tall as a capital and empty inside)."""

    def ink_rows(ch: str) -> set[int]:
        page = tmp_path / f"g{ord(ch)}.html"
        page.write_text(
            '<!doctype html><html lang="vi"><meta charset="utf-8"><body style="margin:0">'
            f"<p style=\"font:120px 'DejaVu Sans',sans-serif;margin:0;padding:40px\">{ch}</p></body></html>",
            encoding="utf-8",
        )
        png = tmp_path / f"g{ord(ch)}.png"
        assert (
            chromium(tmp_path, f"--screenshot={png}", "--window-size=300,300", page.as_uri()).returncode == 0
        )
        width, _, it = read_rgb(png)
        return {i // width for i, (r, g, b) in enumerate(it) if r + g + b < 300}

    e, e_marks = ink_rows("e"), ink_rows("ệ")
    assert e and min(e_marks) < min(e) - 10 and max(e_marks) > max(e) + 5


def test_csv_is_utf8_with_bom(report: Path) -> None:
    files = sorted(report.glob("*.csv"))
    assert [f.name.rsplit("-", 1)[1] for f in files] == ["districts.csv", "outages.csv", "sites.csv"]
    for f in files:
        raw = f.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), f
        raw.decode("utf-8")
    assert "Xã Đạo Đức" in (report / "giamsat-report-2026-11-sites.csv").read_text(encoding="utf-8-sig")


def test_prints_to_pdf(report: Path, tmp_path: Path) -> None:
    """Printing from the browser gives a PDF of several pages (the long sections start on their own)."""
    pdf = tmp_path / "report.pdf"
    page = report / "giamsat-report-2026-11.html"
    r = chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    assert r.returncode == 0 and pdf.exists(), r.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 4, (
        pages
    )  # summary..., the heatmap, the outage list and the site table each from a new page
