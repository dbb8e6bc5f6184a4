"""The report's words in Vietnamese (the default: the document goes to a provincial department) and English."""

from __future__ import annotations

import datetime as dt

LANGS = ("vi", "en")

_T: dict[str, tuple[str, str]] = {
    "title": ("Báo cáo tính sẵn sàng và độ phủ mạng", "Network availability and coverage report"),
    "period": ("Kỳ báo cáo", "Period"),
    "source": ("Nguồn số liệu", "Source"),
    "generated": ("Lập lúc", "Generated"),
    "tz": ("Múi giờ", "Time zone"),
    "summary": ("Tóm tắt", "Summary"),
    "coverage": ("Độ phủ: xã có đường truyền", "Coverage: communes with a working link"),
    "availability": ("Tính sẵn sàng theo huyện", "Availability per district"),
    "heatmap": ("Tính sẵn sàng theo ngày", "Availability by day"),
    "causes": ("Sự cố theo nguyên nhân", "Outages by cause"),
    "worst": ("Các điểm kém nhất", "Worst sites"),
    "outages": ("Sự cố kéo dài", "Long outages"),
    "sites": ("Chi tiết từng điểm", "Every site"),
    "province_avail": ("Tính sẵn sàng toàn tỉnh", "Province availability"),
    "communes_now": ("Xã đang có kết nối (cuối kỳ)", "Communes connected (end of period)"),
    "communes_ever": ("Xã đã từng kết nối", "Communes ever connected"),
    "outage_count": ("Số sự cố", "Outages"),
    "downtime": ("Tổng thời gian gián đoạn", "Total downtime"),
    "mttr": ("Thời gian khắc phục trung bình (MTTR)", "Mean time to repair (MTTR)"),
    "unknown_time": ("Thời gian không có số liệu", "Time without data"),
    "group": ("Huyện (cũ) / nút", "District-era node"),
    "direct": ("Trực thuộc tỉnh", "Directly under the province"),
    "communes": ("Số xã", "Communes"),
    "now": ("Đang kết nối", "Connected now"),
    "ever": ("Đã từng kết nối", "Ever connected"),
    "never": ("Xã chưa từng kết nối", "Communes never connected"),
    "none": ("Không có", "None"),
    "site": ("Điểm", "Site"),
    "name": ("Tên", "Name"),
    "level": ("Cấp", "Level"),
    "avail": ("Sẵn sàng", "Availability"),
    "cause": ("Nguyên nhân", "Cause"),
    "repaired": ("Đã khắc phục", "Repaired"),
    "start": ("Bắt đầu", "Start"),
    "end": ("Kết thúc", "End"),
    "duration": ("Thời lượng", "Duration"),
    "links": ("Đường truyền lỗi", "Failed uplinks"),
    "ongoing": ("đang diễn ra", "ongoing"),
    "unknown": ("không rõ", "unknown"),
    "state_end": ("Trạng thái cuối kỳ", "State at end"),
    "legend_unknown": ("không có số liệu", "no data"),
    "cause.own_link": ("Đường truyền của điểm", "Own link"),
    "cause.upstream": ("Tuyến trên", "Upstream"),
    "cause.power": ("Mất điện", "Power"),
    "cause.unknown": ("Không rõ", "Unknown"),
    "cause.total": ("Tổng", "Total"),
    "state.up": ("hoạt động", "up"),
    "state.down": ("mất kết nối", "down"),
    "state.unreachable": ("không tới được (tuyến trên)", "unreachable (upstream)"),
    "state.gap": ("chưa từng kết nối", "never connected"),
    "state.unknown": ("không rõ", "unknown"),
    "level.province": ("tỉnh", "province"),
    "level.district": ("huyện", "district"),
    "level.commune": ("xã", "commune"),
    "longer_than": ("dài từ", "at least"),
    "note_unknown": (
        "Thời gian không có số liệu (agent không chạy, kết quả quá cũ, ngoài phạm vi dữ liệu) được ghi là "
        "không rõ, không tính là sẵn sàng hay gián đoạn.",
        "Time without data (agent not running, stale results, beyond the data) is shown as unknown, "
        "never counted as available or as down.",
    ),
    "notes": ("Ghi chú", "Notes"),
    "approx_times": (
        "~: giờ bắt đầu và kết thúc đọc từ bộ đếm trên máy chủ Prometheus, chính xác đến bước truy vấn; "
        "sổ ghi của agent (--state-dir) có giờ chính xác đến giây.",
        "~: start and end read from the counters on a Prometheus server, as precise as the query step; "
        "an agent's ledger (--state-dir) has them to the second.",
    ),
    "day": ("Ngày", "Day"),
}


class Text:
    def __init__(self, lang: str, zone: dt.tzinfo) -> None:
        self.lang = lang
        self.i = LANGS.index(lang)
        self.zone = zone

    def __call__(self, key: str) -> str:
        return _T[key][self.i]

    def pct(self, v: float | None, digits: int = 3) -> str:
        if v is None:
            return self("unknown")
        s = f"{100 * v:.{digits}f}%"
        return s.replace(".", ",") if self.lang == "vi" else s

    def dur(self, s: float | None) -> str:
        if s is None:
            return "–"
        s = round(s)
        d, rem = divmod(s, 86400)
        h, rem = divmod(rem, 3600)
        m, sec = divmod(rem, 60)
        days = f"{d} {'ngày' if self.lang == 'vi' else 'd'} " if d else ""
        return f"{days}{h:02d}:{m:02d}:{sec:02d}"

    def time(self, ts: float | None) -> str:
        if ts is None:
            return self("ongoing")
        t = dt.datetime.fromtimestamp(ts, self.zone)
        hms = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"  # f-strings: twice as fast as strftime
        if self.lang == "vi":
            return f"{t.day:02d}/{t.month:02d}/{t.year} {hms}"
        return f"{t.year}-{t.month:02d}-{t.day:02d} {hms}"

    def day(self, ts: float) -> str:
        t = dt.datetime.fromtimestamp(ts, self.zone)
        return t.strftime("%d/%m" if self.lang == "vi" else "%m-%d")
