"""The Oracle room in a real browser: Debian's chromium driven by Playwright against `realm tavern`,
which proxies to a real `realm oracle` found through the home's hosts registry, serving the
checkpoints of the session's short training run.

Screenshots land in test-artifacts/oracle/ (git-ignored); the room's main one is also copied to
/tmp/oracle_room.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, TRAINED_STEPS
from tests.test_browser_tavern import ARGS, CHROMIUM
from tests.test_tavern_oracle import ORACLE_HOST, start_stack

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts" / "oracle"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (make browser)", allow_module_level=True)

# Records the length of the newest answer in a transcript at every DOM change: the observations of
# a reply growing as its tokens stream in.
WATCH = """(id) => {
  window.__lengths = [];
  const list = document.getElementById(id);
  new MutationObserver(() => {
    const last = [...list.querySelectorAll('.msg.assistant .text')].at(-1);
    if (last) window.__lengths.push(last.textContent.length);
  }).observe(list, { subtree: true, childList: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def stack(trained_home, tmp_path_factory):
    yield from start_stack(trained_home, tmp_path_factory.mktemp("oracle-browser"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, stack):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=stack.tavern)
    pg = ctx.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


def open_room(page, max_tokens: int = 48) -> None:
    page.goto("/oracle")
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    page.click("#settings summary")
    page.fill("#set-max-tokens", str(max_tokens))
    # A barely trained hero may end an answer after one token; the page's "ignore eos" (the
    # Oracle's ignore_eos) makes it speak max_tokens tokens, so there is a stream to watch.
    page.check("#set-ignore-eos")


def test_choose_a_checkpoint_send_a_message_and_watch_it_stream(page, stack):
    open_room(page)
    assert page.locator("#host-select option").all_text_contents()[0].startswith(ORACLE_HOST)
    page.wait_for_selector("#host-status.up", timeout=20000)
    # The picker comes from the ledger (every checkpoint; the champion chosen first).
    options = page.eval_on_selector_all("#ckpt-a option", "els => els.map(e => e.value)")
    assert sorted(options) == sorted(stack.names.values())
    assert page.input_value("#ckpt-a") == stack.names[TRAINED_STEPS[1]]
    assert "champion" in page.text_content("#card-a")

    chosen = stack.names[TRAINED_STEPS[0]]
    page.select_option("#ckpt-a", chosen)
    assert f"{TRAINED_STEPS[0]}" in page.text_content("#card-a")
    page.evaluate(WATCH, "transcript-a")
    page.fill("#chat-input", "Hello DIO")
    page.click("#btn-send")
    answer = page.locator("#transcript-a .msg.assistant").last
    page.wait_for_selector("#transcript-a .msg.assistant[data-state='done']", timeout=120000)
    text = answer.locator(".text").text_content()
    lengths = page.evaluate("window.__lengths")
    grown = sorted({n for n in lengths if n > 0})
    assert len(grown) >= 2, lengths  # the reply was seen at two (or more) lengths before its last
    assert grown[-1] == len(text) and lengths == sorted(lengths)  # it only ever grew
    assert answer.get_attribute("data-model") == chosen  # the Oracle answered as the chosen checkpoint
    assert "48 tokens" in answer.locator(".meta").text_content()

    # Regenerate replaces the answer (one question, one answer), Stop ends a long one early.
    page.click("#btn-regen")
    page.wait_for_selector("#transcript-a .msg.assistant[data-state='done']", timeout=120000)
    assert page.locator("#transcript-a .msg.assistant").count() == 1
    page.fill("#set-max-tokens", "512")
    page.fill("#chat-input", "Tell me a long story")
    page.click("#btn-send")
    page.wait_for_function(
        "(document.querySelector('#transcript-a .msg.assistant:last-child .text')?.textContent || '').length > 0",
        timeout=120000,
    )
    page.click("#btn-stop")
    page.wait_for_selector("#transcript-a .msg.assistant[data-state='stopped']", timeout=30000)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
    assert page.errors == []


def test_side_by_side_shows_two_answers_to_one_prompt(page, stack):
    open_room(page, max_tokens=24)
    page.check("#side-by-side")
    assert page.locator(".chat-col[data-side='b']").is_visible()
    a, b = stack.names[TRAINED_STEPS[0]], stack.names[TRAINED_STEPS[-1]]
    page.select_option("#ckpt-a", a)
    page.select_option("#ckpt-b", b)
    page.fill("#chat-input", "Compute: add(①⓪, ①)")
    page.click("#btn-send")
    for side in "ab":
        page.wait_for_selector(f"#transcript-{side} .msg.assistant[data-state='done']", timeout=120000)
        assert page.text_content(f"#transcript-{side} .msg.user .text") == "Compute: add(①⓪, ①)"
    answers = {side: page.locator(f"#transcript-{side} .msg.assistant").last for side in "ab"}
    assert answers["a"].get_attribute("data-model") == a
    assert answers["b"].get_attribute("data-model") == b
    assert all(len(answers[s].locator(".text").text_content()) > 0 for s in "ab")

    # "Try an eval problem": both checkpoints answer a BIN problem, and the scorer judges each.
    page.select_option("#eval-skill", "bin")
    page.fill("#eval-level", "3")
    page.click("#btn-draw")
    page.wait_for_selector("#problem:not([hidden])")
    # A BIN problem, possibly under a difficulty tag line ([show-work], [trace], [verify]: guild/bin.py).
    assert page.text_content("#problem-prompt").splitlines()[-1].startswith("Compute:")
    page.click("#btn-ask")
    page.wait_for_function("document.querySelectorAll('.verdict[data-correct]').length === 2", timeout=120000)
    verdicts = page.locator(".verdict")
    assert [verdicts.nth(i).locator("b").text_content() for i in range(2)] == [a, b]
    assert all(verdicts.nth(i).locator(".mark").text_content() in ("✓ correct", "✗ wrong") for i in range(2))
    page.screenshot(path=str(ARTIFACTS / "side-by-side.png"), full_page=True)
    shutil.copyfile(ARTIFACTS / "side-by-side.png", "/tmp/oracle_room.png")
    assert page.errors == []
