"""Quest statuses (issue 12, defect 8): a retried quest is a known status and stays on the board."""

from __future__ import annotations

from arena.queue import STATUSES, QuestQueue
from tavern.app import create_app


def test_a_retried_quest_is_counted_and_shown_on_the_board(realm):
    queue = QuestQueue(realm.home, realm.store, realm.events)
    src = realm.home.inbox / ".bad.tmp"
    src.write_text("not json\n")
    refused = queue.reject(src, name="bad.jsonl", reason="line 1: not JSON", error={"validator": "test"})

    client = create_app(realm, testing=True).test_client()
    r = client.post(f"/api/quests/{refused.id}/retry")
    assert r.status_code < 300, r.get_json()
    assert queue.get(refused.id).status == "retried"
    assert (realm.home.inbox / "bad.jsonl").exists()

    assert "retried" in STATUSES
    assert realm.status()["quests"]["retried"] == 1
    board = client.get("/api/quests").get_json()
    cards = [q for column in board["columns"].values() for q in column if q["id"] == refused.id]
    assert [(q["status"], q["reason"]) for q in cards] == [("retried", "line 1: not JSON")]
    assert cards[0] in board["columns"]["failed"]  # with the refusals it came from
    assert board["inbox"] == ["bad.jsonl"]
