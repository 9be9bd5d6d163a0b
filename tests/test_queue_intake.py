"""The priority queue as intake fills it: order, restart recovery, and the quest CLI end to end."""

from __future__ import annotations

import json

from arena.intake import Intake
from arena.queue import QuestQueue
from sentinels.config import IntakeConfig
from tests.conftest import run_realm


def chat_file(i: int) -> bytes:
    row = {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    return (json.dumps(row) + "\n").encode()


def test_thirty_files_claimed_high_normal_low_fifo_inside(realm):
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig())
    order = {"high": [], "normal": [], "low": []}
    for i in range(30):
        prio = ("low", "high", "normal")[i % 3]
        path = realm.home.inbox / f"f{i:02d}.jsonl"
        if i % 2:  # half by sidecar, half by the caller (as `realm quest add --priority` does)
            (realm.home.inbox / f"f{i:02d}.jsonl.meta.json").write_text(json.dumps({"priority": prio}))
            path.write_bytes(chat_file(i))
            q = intake.process_file(path)
        else:
            path.write_bytes(chat_file(i))
            q = intake.process_file(path, priority=None if prio == "normal" else prio)
        assert (q.status, q.priority) == ("queued", prio)
        assert q.path.parent.name == prio
        order[prio].append(q.name)
    claimed = [intake.queue.claim_next().name for _ in range(30)]
    assert claimed == order["high"] + order["normal"] + order["low"]
    assert intake.queue.claim_next() is None


def test_restart_puts_processing_quest_back_first(realm):
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig())
    for i in range(3):
        (realm.home.inbox / f"r{i}.jsonl").write_bytes(chat_file(i))
    intake.scan(settle=False)
    first = intake.queue.claim_next()
    assert first.name == "r0.jsonl" and first.path.parent.name == "processing"
    # The process dies here. A new process opens the same home:
    realm.store.close()
    from sentinels.realm import Realm

    again = Realm.open(realm.home.root)
    queue = QuestQueue(again.home, again.store, again.events)
    back = queue.recover()
    assert [q.id for q in back] == [first.id]
    assert back[0].status == "queued" and back[0].path.exists() and back[0].path.parent.name == "normal"
    assert [queue.claim_next().name for _ in range(3)] == ["r0.jsonl", "r1.jsonl", "r2.jsonl"]
    again.store.close()


def test_claim_skips_a_queued_quest_whose_file_vanished(realm):
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig())
    for i in range(2):
        (realm.home.inbox / f"v{i}.jsonl").write_bytes(chat_file(i))
    gone, kept = intake.scan(settle=False)
    gone.path.unlink()
    assert intake.queue.claim_next().id == kept.id
    assert intake.queue.get(gone.id).status == "failed"


def test_quest_cli_end_to_end(home, tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_file(1) + chat_file(2))
    p = run_realm("quest", "add", str(good), "--priority", "high", home=home)
    assert p.returncode == 0 and "quest #1 queued (high, chat_sft_v1, 2 examples)" in p.stdout, p.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "hello"}\n')
    p = run_realm("quest", "add", str(bad), home=home)
    assert p.returncode == 1
    assert "quest #2 failed: line 1: 'messages' must be a list of {role, content}; got a string" in p.stdout

    p = run_realm("quest", "show", "2", "--json", home=home, check=True)
    shown = json.loads(p.stdout)
    assert shown["status"] == "failed" and shown["error"]["lines"] == [1]
    fixed = home / "queue" / "failed" / "000002__bad.jsonl"
    fixed.write_bytes(chat_file(3))  # the user fixes the file in place, then retries
    p = run_realm("quest", "retry", "2", home=home)
    assert p.returncode == 0 and "quest #3 queued (normal" in p.stdout, p.stdout + p.stderr

    p = run_realm("quest", "priority", "3", "low", home=home, check=True)
    assert "quest #3 is now low" in p.stdout
    (home / "inbox" / "dropped.jsonl").write_bytes(chat_file(4))
    p = run_realm("intake", "--once", home=home, check=True)
    assert "1 file(s) processed" in p.stdout
    p = run_realm("queue", "list", "--json", home=home, check=True)
    assert [(q["id"], q["priority"]) for q in json.loads(p.stdout)] == [
        (1, "high"),
        (4, "normal"),
        (3, "low"),
    ]

    p = run_realm("quest", "cancel", "4", home=home, check=True)
    err = json.loads((home / "queue" / "failed" / "000004__dropped.jsonl.error.json").read_text())
    assert err["message"] == "cancelled" and (home / "queue" / "failed" / "000004__dropped.jsonl").exists()
    p = run_realm("quest", "cancel", "4", home=home)
    assert p.returncode == 1 and "only a queued quest can be cancelled" in p.stderr
    p = run_realm("queue", "list", home=home, check=True)
    assert "good.jsonl" in p.stdout and "dropped.jsonl" not in p.stdout

    from sentinels.realm import Realm

    r = Realm.open(home)
    kinds = [e.kind for e in r.events.since(0, kinds=["quest.*"])]
    r.store.close()
    assert kinds.count("quest.received") == 4 and kinds.count("quest.queued") == 3
    assert "quest.rejected" in kinds and "quest.retried" in kinds and "quest.cancelled" in kinds


def test_scan_without_wait_leaves_a_growing_file_for_the_next_pass(realm):
    intake = Intake(realm.home, realm.store, realm.events, IntakeConfig(settle_s=0.3))
    (realm.home.inbox / "fresh.jsonl").write_bytes(chat_file(1))
    assert intake.scan(wait=False) == []
    assert (realm.home.inbox / "fresh.jsonl").exists()
    [q] = intake.scan()  # waits until the file has settled
    assert q.status == "queued"
