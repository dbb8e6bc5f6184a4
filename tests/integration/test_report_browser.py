"""The report in a real browser: Debian's Chromium, headless, opens the HTML without errors or requests
elsewhere; a screenshot of each section has ink (charts: their colours, text: dark pixels), Vietnamese
diacritics are in the DOM and drawn; the CSV files are UTF-8 with a BOM."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from agent.report.html import SCALE, UNKNOWN_COLOUR
from tests.helpers import GIAMSAT
from tests.unit.test_ledger_figures import build

SECTIONS = ("summary", "coverage", "availability", "heatmap", "causes", "worst", "outages", "sites")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = ctype = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        rows.append(bytes(line[j] for j in range(stride) if j % bpp < 3))
    return width, height, rows


def count(rows: list[bytes], colours: set[tuple[int, int, int]]) -> int:
    n = 0
    for row in rows:
        for x in range(0, len(row), 3):
            if (row[x], row[x + 1], row[x + 2]) in colours:
                n += 1
    return n


def dark(rows: list[bytes]) -> int:
    return sum(1 for row in rows for x in range(0, len(row), 3) if row[x] + row[x + 1] + row[x + 2] < 300)


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
        _, _, rows = read_png(png)
        assert dark(rows) > 2000, f"section {sid}: no text drawn"
        if sid in ("availability", "heatmap"):
            assert count(rows, chart_colours) > 2000, f"section {sid}: empty chart"
        if sid == "heatmap":
            assert count(rows, {rgb(UNKNOWN_COLOUR)}) > 2000  # the days without data are drawn as such


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
        _, _, rows = read_png(png)
        return {
            y for y, row in enumerate(rows) if any(sum(row[x : x + 3]) < 300 for x in range(0, len(row), 3))
        }

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
