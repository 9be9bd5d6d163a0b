"""The Tavern in a real browser: Debian's chromium driven by Playwright against `realm tavern`.

Screenshots land in test-artifacts/tavern/ (git-ignored). Training comes from the real
`realm arena --max-steps N` on a real BIN quest that went through intake; the tiny hero trains with
small batches so the page moves within seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REALM_PY, REPO, free_port, write_home_config
from tests.test_tavern_server import start_tavern, stop
from tests.test_tavern_support import seed_guild

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "tavern"
GOOD = "".join(
    json.dumps(
        {"messages": [{"role": "user", "content": f"{i}+1"}, {"role": "assistant", "content": str(i + 1)}]}
    )
    + "\n"
    for i in range(40)
)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (make browser)", allow_module_level=True)


TRAINING = {
    # Small, fast steps so the page has something to show within seconds.
    "event_interval_s": 0.05,
    "batch_size": 4,
    "max_length": 128,
    "warmup_steps": 5,
    "save_steps": 100000,
    "eval_every": 100000,
}


def drop_training_quest(realm, name: str = "bin-practice.jsonl", epochs: int = 20) -> None:
    """A real BIN quest from `realm skill generate`, through the real intake."""
    from arena.intake import Intake

    proc = subprocess.run(
        [
            sys.executable,
            str(REALM_PY),
            "skill",
            "generate",
            "bin",
            "--level",
            "3",
            "--count",
            "300",
            "--seed",
            "11",
            "--home",
            str(realm.home.root),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    (realm.home.inbox / (name + ".meta.json")).write_text(json.dumps({"spec": "skill_v1", "epochs": epochs}))
    (realm.home.inbox / name).write_text(proc.stdout)
    [quest] = Intake.for_realm(realm).scan()
    assert quest.status == "queued", quest.reason


@pytest.fixture(scope="module")
def realm_home(tmp_path_factory):
    from sentinels.realm import Realm

    home = tmp_path_factory.mktemp("tavern-browser")
    write_home_config(
        home, {**{f"training.{k}": v for k, v in TRAINING.items()}, "guild.auto_generate": False}
    )
    realm = Realm.open(home)
    realm.init()
    seed_guild(realm)
    drop_training_quest(realm)
    _join(_train(realm, 30))  # a real history before the first page load
    yield realm
    realm.store.close()


@pytest.fixture(scope="module")
def base_url(realm_home):
    port = free_port()
    proc = start_tavern(realm_home.home.root, port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=base_url)
    pg = ctx.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


def open_tavern(page):
    page.goto("/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.wait_for_function("document.getElementById('conn-label').textContent === 'live'", timeout=10000)


def xp(page) -> int:
    return int(page.get_attribute("#xp-label", "data-xp") or 0)


def chart_points(page) -> int:
    return int(page.get_attribute("#loss-chart", "data-points") or 0)


def test_page_loads_without_console_errors(page, realm_home):
    open_tavern(page)
    assert page.text_content("#hero-name") == "DIO"
    assert page.locator(".skill").count() >= 2
    # SY unlocks at BIN level 1; this home's BIN is at level 2, so neither card waits.
    assert page.locator("#skills [data-waiting]").count() == 0
    # With BIN back at 0, SY is listed but not scheduled, and its card says why.
    with realm_home.store.tx() as conn:
        conn.execute("UPDATE skills SET mastered_level = 0 WHERE id = 'bin'")
    try:
        open_tavern(page)
        assert "unlocks at BIN level 1 (now 0)" in page.text_content("#skills [data-waiting='sy']")
        assert page.locator("#skills [data-waiting='bin']").count() == 0
    finally:
        with realm_home.store.tx() as conn:
            conn.execute("UPDATE skills SET mastered_level = 2 WHERE id = 'bin'")
    open_tavern(page)
    assert page.locator("#achievements .achv").count() == realm_home.store.scalar(
        "SELECT count(*) FROM achievements"
    )
    # Every step event of the warm-up battle is a point (events are throttled, so fewer than 30).
    steps = realm_home.store.scalar("SELECT count(*) FROM events WHERE kind = 'step'")
    assert steps >= 5 and chart_points(page) >= steps  # plus val-loss points from battle ends
    page.screenshot(path=str(ARTIFACTS / "main.png"), full_page=True)
    for path in ("/guild/bin", "/armory"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "armory.png"), full_page=True)
    assert page.errors == []


def _train(realm, steps: int) -> subprocess.Popen:
    """`realm arena --max-steps` in the background, `steps` past the last published step."""
    last = realm.store.get_state("battle", {}).get("step", 0) or 0
    env = {k: v for k, v in os.environ.items() if k != "REALM_HOME"}
    return subprocess.Popen(
        [
            sys.executable,
            str(REALM_PY),
            "arena",
            "--max-steps",
            str(last + steps),
            "--home",
            str(realm.home.root),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _join(worker: subprocess.Popen, timeout: float = 240) -> None:
    assert worker.wait(timeout) == 0


def test_xp_and_loss_chart_update_live(page, realm_home):
    open_tavern(page)
    xp0, pts0 = xp(page), chart_points(page)
    worker = _train(realm_home, 60)
    try:
        page.wait_for_function(
            f"Number(document.getElementById('xp-label').dataset.xp) > {xp0}", timeout=120000
        )
        page.wait_for_function(
            f"Number(document.getElementById('loss-chart').dataset.points) > {pts0 + 5}", timeout=120000
        )
        assert page.locator(".floater").count() + 1 > 0
        page.screenshot(path=str(ARTIFACTS / "live.png"))
    finally:
        _join(worker)
    assert page.errors == []


def test_upload_by_picker_queues_and_malformed_by_drop_shows_reason(page, tmp_path):
    open_tavern(page)
    good = tmp_path / "picked-quest.jsonl"
    good.write_text(GOOD)
    page.set_input_files("#file-input", str(good))
    queued = page.locator("[data-column='queued'] .qcard", has_text="picked-quest.jsonl")
    queued.wait_for(timeout=15000)
    bad = "{this is not json\n"
    handle = page.evaluate_handle(
        """(text) => { const dt = new DataTransfer();
            dt.items.add(new File([text], "broken-drop.jsonl", {type: "application/jsonl"})); return dt; }""",
        bad,
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": handle})
    failed = page.locator("[data-column='failed'] .qcard", has_text="broken-drop.jsonl")
    failed.wait_for(timeout=15000)
    reason = failed.locator(".reason").text_content()
    assert reason and len(reason) > 5
    page.locator(".toast.bad", has_text="broken-drop.jsonl").wait_for(timeout=5000)
    page.screenshot(path=str(ARTIFACTS / "quests.png"), full_page=True)
    assert page.errors == []


def battle_state(page) -> str | None:
    return page.get_attribute("#battle-state", "data-state")


def test_pause_and_resume_change_the_battle_state(page, realm_home):
    from arena import control

    open_tavern(page)
    worker = _train(realm_home, 100000)
    try:
        page.wait_for_function(
            "document.getElementById('battle-state').dataset.state === 'fighting'", timeout=120000
        )
        page.click("#btn-pause")
        page.wait_for_function(
            "document.getElementById('battle-state').dataset.state === 'paused'", timeout=15000
        )
        step = realm_home.store.get_state("battle", {}).get("step")
        page.wait_for_timeout(1500)  # paused means no step lands
        assert realm_home.store.get_state("battle", {}).get("step") == step
        page.click("#btn-resume")
        page.wait_for_function(
            "document.getElementById('battle-state').dataset.state === 'fighting'", timeout=15000
        )
        page.screenshot(path=str(ARTIFACTS / "resumed.png"))
    finally:
        control.send(realm_home.store, realm_home.events, "stop")
        _join(worker)
    actions = [r["action"] for r in realm_home.store.query("SELECT action FROM commands ORDER BY id")]
    assert actions[-3:] == ["pause", "resume", "stop"]
    assert page.errors == []


def test_reload_mid_battle_shows_the_same_history(page, realm_home):
    open_tavern(page)
    worker = _train(realm_home, 40)
    page.wait_for_function(
        "Number(document.getElementById('loss-chart').dataset.points) > 40", timeout=120000
    )
    _join(worker)
    page.wait_for_timeout(1000)  # the last pushes land
    before = (xp(page), chart_points(page))
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    page.wait_for_timeout(500)
    assert (xp(page), chart_points(page)) == before
    page.screenshot(path=str(ARTIFACTS / "reloaded.png"))
    assert page.errors == []


def teardown_module(_module):
    shutil.rmtree(ARTIFACTS / "tmp", ignore_errors=True)
