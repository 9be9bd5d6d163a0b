"""The Tavern's Vault room in a real browser: Debian's chromium driven by Playwright against `realm tavern`.

The home holds three real checkpoint folders landed by the vault's own call and a NAS folder zone.
The test promotes a checkpoint to champion by clicking, and the champion's history shows the move;
a push to the NAS and an alias moved elsewhere (another process's call) show up without a reload.
The screenshot goes to /tmp/vault_room.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_port, start_tavern, stop
from tests.test_browser_tavern import ARGS, CHROMIUM
from tests.test_vault_api import make_checkpoint, open_home

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/vault_room.png")

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (make browser)", allow_module_level=True)


@pytest.fixture
def vault_realm(tmp_path):
    from vault.zones import add_zone

    home = tmp_path / "home"
    home.mkdir()
    realm = open_home(home)
    for step, loss in ((100, 2.4), (200, 1.7), (300, 1.2)):
        make_checkpoint(realm, step, train_loss=loss, val_loss=loss + 0.2, size=50_000)
    (tmp_path / "nas").mkdir()
    add_zone(realm.store, "nas", str(tmp_path / "nas"))
    yield realm
    realm.store.close()


@pytest.fixture
def page(vault_realm):
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_tavern(vault_realm.home.root, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            ctx = browser.new_context(
                viewport={"width": 1440, "height": 900}, base_url=f"http://127.0.0.1:{port}"
            )
            pg = ctx.new_page()
            pg.errors = []
            pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            yield pg
            ctx.close()
            browser.close()
    finally:
        stop(proc)


def open_vault(page) -> None:
    page.goto("/vault")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.wait_for_function("document.getElementById('conn-label').textContent === 'live'", timeout=15000)


def test_promote_to_champion_and_the_history_shows_it(page, vault_realm):
    from vault.keeper import VaultKeeper

    open_vault(page)
    assert page.locator("#ckpt-rows tr[data-asset]").count() == 3
    assert page.locator("#zone-list .zone-card").count() == 2
    assert "1.2" in page.text_content("tr[data-asset='checkpoint_300']")  # ledger stats in the row
    assert page.locator("tr[data-asset='checkpoint_300'] .tag.alias.latest").count() == 1

    page.click("tr[data-asset='checkpoint_200'] button[data-action='promote']")
    page.wait_for_selector("#alias-history li[data-to='checkpoint_200']", timeout=15000)
    assert "checkpoint-200" in page.text_content("#champion-name")
    page.click("tr[data-asset='checkpoint_300'] button[data-action='promote']")
    moved = page.locator("#alias-history li[data-to='checkpoint_300'][data-from='checkpoint_200']")
    moved.wait_for(timeout=15000)
    assert page.locator("#alias-history li").count() == 2
    assert page.locator("tr[data-asset='checkpoint_300'] .tag.alias.champion").count() == 1
    assert page.is_disabled("tr[data-asset='checkpoint_300'] button[data-action='promote']")
    # The Tavern went through the vault: the ledger's own history holds both moves, by the Tavern.
    hist = VaultKeeper(vault_realm).ledger.alias_history("champion")
    assert [(h["from_asset"], h["to_asset"], h["by"]) for h in hist] == [
        ("checkpoint_200", "checkpoint_300", "tavern"),
        (None, "checkpoint_200", "tavern"),
    ]

    # Push the champion to the NAS: its row lists the new zone.
    page.select_option("tr[data-asset='checkpoint_300'] select", "nas")
    page.click("tr[data-asset='checkpoint_300'] button[data-action='push']")
    page.wait_for_selector(
        "tr[data-asset='checkpoint_300'] .tag.zone.verified[data-zone='nas']", timeout=30000
    )

    # Another process moves an alias: the room shows it live, from the event log.
    VaultKeeper(vault_realm).set_alias("release-1", 100, by="cli:test", reason="first release")
    page.wait_for_selector("tr[data-asset='checkpoint_100'] .tag.alias.release-1", timeout=15000)

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert page.errors == []
