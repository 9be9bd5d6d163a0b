"""The Tavern's Champion board panel and its toasts in a real browser (Debian chromium via Playwright).

The home is a copy of the session's trained home: three real checkpoints, each evaluated at save
time, and the champion the guild chose. The page shows the board ranked as GET /api/champion ranks
it. Then, while the page is open, the champion is moved by hand to the worst checkpoint and the
guild's rule (guild.champion.judge, as the arena's checkpoint hook calls it) takes it back: the
page toasts "New champion!" and lights the new champion's row without a reload. A `disk.low` event
(the disk guard's announcement) toasts "Disk low!". The screenshot goes to /tmp/champion_board.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import TRAINED_STEPS
from tests.helpers import free_port, start_tavern, stop
from tests.test_browser_tavern import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/champion_board.png")

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (make browser)", allow_module_level=True)


@pytest.fixture
def served(trained_copy):
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_tavern(trained_copy, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = browser.new_context(
                viewport={"width": 1440, "height": 1000}, base_url=f"http://127.0.0.1:{port}"
            )
            pg = ctx.new_page()
            # Script errors anywhere on the page, and any failed champion-board read. (Other panels'
            # reads may answer 503 on this home with no services running, e.g. a health check.)
            pg.errors = []
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.on("console", lambda m: pg.errors.append(m.text) if "handler failed" in m.text else None)
            pg.on(
                "response",
                lambda r: (
                    pg.errors.append(f"{r.status} {r.url}")
                    if "/api/champion" in r.url and r.status >= 400
                    else None
                ),
            )
            yield pg, f"http://127.0.0.1:{port}", trained_copy
            ctx.close()
            browser.close()
    finally:
        stop(proc)


def test_champion_board_panel_and_toasts(served):
    from guild import champion
    from guild.guild import Guild
    from sentinels.realm import Realm
    from vault.ledger import Ledger

    page, base, home = served
    board = requests.get(f"{base}/api/champion", timeout=30).json()
    page.goto("/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.wait_for_function("document.getElementById('conn-label').textContent === 'live'", timeout=15000)
    page.wait_for_selector("#cb-rows tr[data-checkpoint]", timeout=15000)
    shown = page.eval_on_selector_all(
        "#cb-rows tr[data-checkpoint]", "rs => rs.map(r => r.dataset.checkpoint)"
    )
    assert shown == [r["name"] for r in board["checkpoints"]] and len(shown) == len(TRAINED_STEPS)
    assert page.text_content("#cb-champion-name") == board["champion"]["name"]
    assert page.get_attribute("#cb-rows tr.cb-champion", "data-checkpoint") == board["champion"]["name"]
    assert page.text_content("#cb-head").strip().startswith("#")

    # The champion moves by hand to the worst checkpoint; the rule takes the title back.
    best, worst = board["checkpoints"][0]["name"], board["checkpoints"][-1]["name"]
    realm = Realm.open(home)
    try:
        ledger = Ledger(realm.store, realm.events)
        ledger.set_alias("champion", worst, by="test", reason="by hand")
        page.wait_for_function(
            f"document.getElementById('cb-champion-name').textContent === {worst!r}", timeout=15000
        )
        assert champion.judge(Guild.from_realm(realm), ledger, best).moved
        page.wait_for_selector(".toast[data-key='champion-" + best + "']", timeout=15000)
        assert "New champion!" in page.text_content(f".toast[data-key='champion-{best}']")
        page.wait_for_function(
            "document.querySelector('#cb-rows tr.cb-champion')?.dataset.checkpoint === " + repr(best),
            timeout=15000,
        )
        realm.events.emit(
            "disk.low", free_gb=0.4, min_free_gb=2.0, message="0.4 GB free on models/, below 2 GB"
        )
        page.wait_for_selector(".toast[data-key='disk-low']", timeout=15000)
        assert "Disk low!" in page.text_content(".toast[data-key='disk-low']")
    finally:
        realm.store.close()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.errors == []
