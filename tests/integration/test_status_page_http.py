"""The status page on the endpoint's real server, in-process: a page that takes long (a huge inventory,
a slow snapshot) never holds ``/metrics`` up, and pages in flight at once all answer."""

from __future__ import annotations

import threading

from exporters.status import AgentHealth, SiteRow, SiteTree, StatusSnapshot
from tests.helpers import http_get
from tests.integration.static_agent import StaticAgent, serve
from tests.pagetext import parse, section


class SlowPageAgent(StaticAgent):
    """Its status snapshot waits until released, as a page stuck in its work would."""

    def __init__(self) -> None:
        super().__init__()
        self.page_entered = threading.Semaphore(0)
        self.page_release = threading.Event()
        self.tree = SiteTree([SiteRow("p", "Tỉnh Hà Giang", 0, None)])

    def status(self) -> StatusSnapshot:
        self.page_entered.release()
        self.page_release.wait(30)
        return StatusSnapshot(self.tree, {}, AgentHealth("t", "-", True, 0.0, True, ()))


def test_a_slow_page_never_holds_up_metrics() -> None:
    agent = SlowPageAgent()
    with serve(agent) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        pages: list[tuple[int, str]] = []

        def get_page() -> None:
            status, body, _ = http_get(url + "/", timeout=30)
            pages.append((status, body))

        threads = [threading.Thread(target=get_page) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in threads:
            assert agent.page_entered.acquire(timeout=10)
        # three pages are stuck in their snapshot: scrapes still answer, and answer fully
        for _ in range(5):
            status, body, _ = http_get(url + "/metrics", timeout=10)
            assert status == 200 and "# TYPE" in body
        assert all(t.is_alive() for t in threads)
        agent.page_release.set()
        for t in threads:
            t.join(30)
    assert [s for s, _ in pages] == [200, 200, 200]
    for _, body in pages:
        assert "Tỉnh Hà Giang" in parse(section(body, "tree")).text
