"""The status page's words, one table per language, and the choice of language for a request.

Every string the page shows comes from ``STRINGS``; both tables have the same keys (a unit test checks
it), so a missing translation is a failing test rather than an English word on a Vietnamese page.
"""

from __future__ import annotations

LANGUAGES = ("vi", "en")
DEFAULT = "vi"

VI: dict[str, str] = {
    "lang": "vi",
    "pin": "[giữ mở]",
    "title": "Giám sát mạng",
    "state.up": "Hoạt động",
    "state.down": "Mất kết nối",
    "state.unreachable": "Không tới được",
    "state.gap": "Chưa từng kết nối",
    "state.unknown": "Chưa rõ",
    "level.province": "Tỉnh",
    "level.district": "Cấp huyện",
    "level.commune": "Cấp xã",
    "levels.district": "nút cấp huyện",
    "levels.commune": "xã",
    "nav.report": "Báo cáo tháng",
    "nav.metrics": "Số liệu (metrics)",
    "nav.health": "Tình trạng",
    "nav.ready": "Sẵn sàng",
    "nav.language": "English",
    "summary": "Toàn tỉnh",
    "problems": "Sự cố",
    "problems.none": "Không có sự cố: mọi điểm có kết nối đều hoạt động.",
    "problems.behind": "Phía sau, không tới được",
    "tree": "Cây điểm",
    "direct": "Xã trực thuộc tỉnh",
    "gaps": "Chưa từng kết nối (khoảng trống phủ sóng)",
    "gaps.none": "Không có điểm nào chưa từng kết nối.",
    "gaps.note": "Đã cấu hình đường truyền và đã thử, nhưng chưa lần nào thành công.",
    "col.site": "Điểm",
    "col.id": "Mã",
    "col.state": "Trạng thái",
    "col.since": "Từ lúc",
    "col.why": "Lý do / đường truyền lỗi",
    "col.tried": "Thử từ lúc",
    "ago": "{} trước",
    "unit.s": "{} giây",
    "unit.min": "{} phút",
    "unit.h": "{} giờ {} phút",
    "unit.d": "{} ngày {} giờ",
    "since.unknown": "chưa rõ",
    "reason.upstream": "lỗi ở cấp trên",
    "reason.never_up": "chưa từng thành công",
    "reason.no_uplinks": "chưa cấu hình đường truyền",
    "reason.no_result": "chưa có kết quả",
    "reason.down": "không trả lời",
    "degraded": "một đường truyền lỗi",
    "agent": "Tình trạng tác tử giám sát",
    "agent.version": "Phiên bản",
    "agent.config": "Tệp cấu hình",
    "agent.reload": "Nạp lại cấu hình",
    "agent.reload.ok": "thành công lúc {}",
    "agent.reload.failed": "THẤT BẠI (cấu hình cũ vẫn chạy); lần thành công cuối lúc {}",
    "agent.round": "Vòng thu thập đầu tiên",
    "agent.round.done": "đã xong",
    "agent.round.waiting": "đang chờ",
    "agent.latest": "Lần thu thập thành công gần nhất",
    "agent.rendered": "Trang tạo lúc {}; tự làm mới sau mỗi {} giây.",
    "col.collector": "Bộ thu thập",
    "col.jobs": "Tác vụ",
    "col.ok": "Chạy tốt",
    "col.failing": "Lỗi",
    "col.pending": "Chưa chạy",
    "col.last": "Thành công gần nhất",
    "col.errors": "Lỗi thường gặp",
    "never": "chưa bao giờ",
    "collectors.note": "Bộ thu thập chạy tốt nghĩa là tác tử làm được việc của nó; điểm mất kết nối vẫn là kết quả hợp lệ.",
    "sites.none": "Chưa cấu hình điểm nào (mục sites).",
}

EN: dict[str, str] = {
    "lang": "en",
    "pin": "[keep open]",
    "title": "Network monitoring",
    "state.up": "up",
    "state.down": "down",
    "state.unreachable": "unreachable",
    "state.gap": "never connected",
    "state.unknown": "unknown",
    "level.province": "Province",
    "level.district": "District node",
    "level.commune": "Commune",
    "levels.district": "district nodes",
    "levels.commune": "communes",
    "nav.report": "Monthly report",
    "nav.metrics": "Metrics",
    "nav.health": "Health",
    "nav.ready": "Readiness",
    "nav.language": "Tiếng Việt",
    "summary": "Whole province",
    "problems": "Problems",
    "problems.none": "No problems: every connected site is up.",
    "problems.behind": "Cut off behind it",
    "tree": "Site tree",
    "direct": "Communes directly under the province",
    "gaps": "Never connected (coverage gaps)",
    "gaps.none": "No site is a coverage gap.",
    "gaps.note": "Uplinks are configured and tried, but none has ever succeeded.",
    "col.site": "Site",
    "col.id": "Id",
    "col.state": "State",
    "col.since": "Since",
    "col.why": "Reason / failing uplinks",
    "col.tried": "Tried since",
    "ago": "{} ago",
    "unit.s": "{} s",
    "unit.min": "{} min",
    "unit.h": "{} h {} min",
    "unit.d": "{} d {} h",
    "since.unknown": "unknown",
    "reason.upstream": "outage upstream",
    "reason.never_up": "never succeeded",
    "reason.no_uplinks": "no uplinks configured",
    "reason.no_result": "no result yet",
    "reason.down": "no answer",
    "degraded": "an uplink is failing",
    "agent": "The monitoring agent's own health",
    "agent.version": "Version",
    "agent.config": "Configuration file",
    "agent.reload": "Configuration reload",
    "agent.reload.ok": "successful at {}",
    "agent.reload.failed": "FAILED (the old configuration keeps running); last success at {}",
    "agent.round": "First collection round",
    "agent.round.done": "done",
    "agent.round.waiting": "waiting",
    "agent.latest": "Newest successful collection",
    "agent.rendered": "Page made at {}; it refreshes itself every {} s.",
    "col.collector": "Collector",
    "col.jobs": "Jobs",
    "col.ok": "Working",
    "col.failing": "Failing",
    "col.pending": "Not run yet",
    "col.last": "Newest success",
    "col.errors": "Frequent errors",
    "never": "never",
    "collectors.note": "A working collector means the agent can do its job; a site that is down is still a valid result.",
    "sites.none": "No sites configured (the sites section).",
}

STRINGS: dict[str, dict[str, str]] = {"vi": VI, "en": EN}

_MAX_RANGES = 32  # more language ranges than any browser sends: the rest is ignored


def negotiate(accept_language: str | None, override: str = "auto", asked: str | None = None) -> str:
    """The page's language: ``?lang=`` if supported, else the configured one unless ``auto``, else the
    best ``Accept-Language`` match by q-value (ties: the order given), else Vietnamese."""
    if asked in STRINGS:
        return asked
    if override in STRINGS:
        return override
    best, best_q = DEFAULT, 0.0
    for item in (accept_language or "").split(",")[:_MAX_RANGES]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also NaN
                    q = 0.0
        lang = DEFAULT if primary == "*" else primary
        if lang in STRINGS and q > best_q:
            best, best_q = lang, q
    return best
